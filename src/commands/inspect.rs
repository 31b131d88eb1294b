//! `rbuild inspect`: a JSON array like `docker image inspect`. Images that resolve are
//! printed; each that does not is an error line and makes the exit code 1.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize as _;

use crate::cli::InspectArgs;

pub fn run(root: Option<&Path>, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let store = super::store::open(root)?;
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.images {
        match store.inspect(name) {
            Ok(info) => found.push(info),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    // Docker indents with four spaces.
    let mut bytes = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    found.serialize(&mut serde_json::Serializer::with_formatter(
        &mut bytes, formatter,
    ))?;
    outln!("{}", String::from_utf8_lossy(&bytes));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
