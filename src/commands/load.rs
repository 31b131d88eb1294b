//! `rbuild load`: a `docker save` archive or an OCI layout tar (plain, gzip or zstd) from a
//! file or stdin. Nothing is recorded unless the whole archive is valid.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use rbuild_image::archive::load;
use rbuild_image::local::reference::familiar_tag;

use crate::cli::LoadArgs;

pub fn run(root: Option<&Path>, args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let store = super::store::open(root)?;
    let report = match &args.input {
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            load(&store, BufReader::new(file))
                .with_context(|| format!("cannot load {}", path.display()))?
        }
        None => load(&store, std::io::stdin().lock()).context("cannot load from stdin")?,
    };
    for image in &report.images {
        if image.tags.is_empty() {
            outln!("Loaded image ID: {}", image.id);
        }
        for tag in &image.tags {
            outln!("Loaded image: {}", familiar_tag(tag));
        }
    }
    Ok(ExitCode::SUCCESS)
}
