//! `rbuild prune`: delete blobs nothing references (oldest first down to
//! `--keep-storage`); with `--all`, untagged images go first so their blobs are freed too.

use std::collections::BTreeSet;
use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use rbuild_cache::{Digest, MetaError};
use rbuild_image::local::ImageStore;
use rbuild_image::unpack;

use super::render::{human_size, parse_size};
use crate::cli::PruneArgs;

pub fn run(root: Option<&Path>, args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let keep_storage = args
        .keep_storage
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--keep-storage: {e}"))?;
    if !args.force && !confirm(args.all)? {
        return Ok(ExitCode::SUCCESS);
    }
    let store = super::store::open(root)?;
    let store = store.store();
    let removed = if args.all {
        remove_untagged(store)?
    } else {
        Vec::new()
    };
    // Snapshots first: layers no image uses any more are freed with this prune.
    let snapshots = if store.root().join(unpack::SNAPSHOTS_DIR).is_dir() {
        let snapshotter = unpack::open_snapshotter(store.root())?;
        unpack::prune_snapshots(&ImageStore::new(store.clone()), &snapshotter)?
    } else {
        unpack::PrunedSnapshots::default()
    };
    let report = store.prune(&BTreeSet::new(), keep_storage)?;
    if !removed.is_empty() {
        outln!("Deleted Images:");
        for id in &removed {
            outln!("deleted: {id}");
        }
        outln!();
    }
    if !report.deleted.is_empty() {
        outln!("Deleted blobs:");
        for blob in &report.deleted {
            outln!("{}", blob.digest);
        }
        outln!();
    }
    if !snapshots.keys.is_empty() {
        outln!("Deleted snapshots:");
        for key in &snapshots.keys {
            outln!("{key}");
        }
        outln!();
    }
    outln!(
        "Total reclaimed space: {}",
        human_size(report.reclaimed + snapshots.reclaimed)
    );
    Ok(ExitCode::SUCCESS)
}

/// Removes every image record no tag points at, in one transaction; returns their ids.
fn remove_untagged(store: &rbuild_cache::Store) -> anyhow::Result<Vec<Digest>> {
    let ids = store.meta().write(|tx| {
        let tagged: BTreeSet<Digest> = tx.list_tags()?.into_iter().map(|(_, r)| r.digest).collect();
        let mut ids = BTreeSet::new();
        for (manifest, _) in tx.list_images()? {
            if !tagged.contains(&manifest)
                && let Some(record) = tx.remove_image(&manifest)?
            {
                ids.insert(record.config);
            }
        }
        Ok::<_, MetaError>(ids)
    })?;
    Ok(ids.into_iter().collect())
}

fn confirm(all: bool) -> anyhow::Result<bool> {
    let what = if all {
        "all untagged images and all unreferenced blobs"
    } else {
        "all unreferenced blobs"
    };
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer from stdin")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}
