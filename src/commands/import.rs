//! `rbuild import`: a root filesystem tarball becomes a one-layer image, like
//! `docker import`. `SOURCE_DATE_EPOCH` fixes the created time, so one tarball gives one
//! image id on every machine.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use rbuild_image::local::{ImportOptions, import_rootfs};

use crate::cli::ImportArgs;

pub fn run(root: Option<&Path>, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let created = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse::<u64>()
                .map_err(|_| anyhow::anyhow!("invalid SOURCE_DATE_EPOCH {v:?}"))?,
        ),
        _ => None,
    };
    let options = ImportOptions {
        changes: args.changes.clone(),
        message: args.message.clone(),
        // The docker CLI streams files as its body, so the daemon names every local source
        // `-`; the history comment is then the same whichever way the tarball came.
        source: "-".to_owned(),
        created,
        ..ImportOptions::default()
    };
    let store = super::store::open(root)?;
    let name = args.name.as_deref();
    let recorded = if args.file == "-" {
        import_rootfs(&store, std::io::stdin().lock(), name, &options)
            .context("cannot import from stdin")?
    } else {
        let file = File::open(&args.file).with_context(|| format!("cannot open {}", args.file))?;
        import_rootfs(&store, BufReader::new(file), name, &options)
            .with_context(|| format!("cannot import {}", args.file))?
    };
    outln!("{}", recorded.id);
    Ok(ExitCode::SUCCESS)
}
