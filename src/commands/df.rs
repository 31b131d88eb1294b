//! `rbuild df`: space used by images, blobs and the build cache, like `docker system df`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;

use rbuild_cache::meta::now_unix;
use rbuild_cache::{ContentStore as _, Digest, MetaError, RefOwner};
use rbuild_image::local::ImageStore;
use rbuild_image::unpack;

use super::render::{human_size, table};

/// The snapshot store's usage (`snapshots-v1/`: unpacked layers and containers); an
/// empty one when nothing was ever unpacked.
fn snapshot_usage(store: &rbuild_cache::Store) -> anyhow::Result<unpack::SnapshotUsage> {
    let dir = store.root().join(unpack::SNAPSHOTS_DIR);
    if !dir.is_dir() {
        return Ok(unpack::SnapshotUsage::default());
    }
    let snapshotter = unpack::open_snapshotter(store.root())?;
    let images = ImageStore::new(store.clone());
    Ok(unpack::snapshot_usage(&images, &snapshotter)?)
}

pub fn run(root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = super::store::open(root)?;
    let store = store.store();
    let usage = store.usage()?;
    let sizes: BTreeMap<Digest, u64> = store
        .content()
        .list()?
        .into_iter()
        .map(|d| (d.digest, d.size))
        .collect();
    let (images, referenced) = store.meta().read(|tx| {
        let tags = tx.list_tags()?;
        let tagged: BTreeSet<&Digest> = tags.iter().map(|(_, r)| &r.digest).collect();
        let mut images = Vec::new();
        for (manifest, _) in tx.list_images()? {
            let blobs = tx.refs(&RefOwner::Image(manifest.clone()))?;
            images.push((tagged.contains(&manifest), blobs));
        }
        Ok::<_, MetaError>((images, tx.referenced(now_unix())?))
    })?;
    let bytes = |set: &BTreeSet<Digest>| set.iter().filter_map(|d| sizes.get(d)).sum::<u64>();

    let all_image_blobs: BTreeSet<Digest> = images.iter().flat_map(|(_, b)| b.clone()).collect();
    let tagged_blobs: BTreeSet<Digest> = images
        .iter()
        .filter(|(tagged, _)| *tagged)
        .flat_map(|(_, b)| b.clone())
        .collect();
    let untagged_only: BTreeSet<Digest> =
        all_image_blobs.difference(&tagged_blobs).cloned().collect();
    let cache_blobs: BTreeSet<Digest> = referenced.difference(&all_image_blobs).cloned().collect();
    let unreferenced: BTreeSet<Digest> = sizes
        .keys()
        .filter(|d| !referenced.contains(*d))
        .cloned()
        .collect();

    let snapshots = snapshot_usage(store)?;

    let images_total = images.len();
    let images_active = images.iter().filter(|(tagged, _)| *tagged).count();
    let rows = vec![
        vec![
            "Images".to_owned(),
            images_total.to_string(),
            images_active.to_string(),
            human_size(bytes(&all_image_blobs)),
            human_size(bytes(&untagged_only)),
        ],
        vec![
            "Blobs".to_owned(),
            usage.blobs.to_string(),
            (usage.blobs - unreferenced.len() as u64).to_string(),
            human_size(usage.blob_bytes),
            human_size(bytes(&unreferenced)),
        ],
        vec![
            "Build Cache".to_owned(),
            cache_blobs.len().to_string(),
            cache_blobs.len().to_string(),
            human_size(bytes(&cache_blobs) + usage.ingest_bytes),
            human_size(usage.ingest_bytes),
        ],
        vec![
            "Snapshots".to_owned(),
            snapshots.layers.to_string(),
            snapshots.in_use.to_string(),
            human_size(snapshots.bytes),
            human_size(snapshots.reclaimable),
        ],
        vec![
            "Metadata".to_owned(),
            "1".to_owned(),
            "1".to_owned(),
            human_size(usage.meta_bytes),
            "0B".to_owned(),
        ],
    ];
    out!(
        "{}",
        table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}
