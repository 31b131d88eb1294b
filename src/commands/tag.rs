//! `rbuild tag SRC DST`.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::TagArgs;

pub fn run(root: Option<&Path>, args: &TagArgs) -> anyhow::Result<ExitCode> {
    super::store::open(root)?.tag(&args.source, &args.target)?;
    Ok(ExitCode::SUCCESS)
}
