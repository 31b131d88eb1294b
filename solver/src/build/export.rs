//! Export of a built filesystem into the local image store: each built layer diffed from
//! its overlay-format snapshot, compressed and ingested (remembered per snapshot, so a
//! second export reuses the blob), base-image blobs reused as they are, empty layers left
//! out (their history entry marked `empty_layer`), then config, manifest and tags recorded
//! in one transaction under the store's GC guard. Nothing is tagged before every blob of
//! the image is in the store.
//!
//! The blob records of the built layers are read in one transaction before and written in
//! one after the layers are done, not one each per layer: every database commit syncs the
//! disk several times, which made a 50-step image's export take seconds. Each blob is
//! durable (the content store syncs it) before the transaction that records it, so a
//! record never names a blob a crash could lose; an export killed before that transaction
//! leaves unrecorded blobs, which the next export finds again by digest and prune removes.
//! Built layers are made a few at a time ([`PARALLEL_LAYERS`]), so the syncs of many small
//! layers overlap.

use std::io::Write;

use rbuild_cache::{BlobWriter, ContentStore, Descriptor as BlobDescriptor, Digest};
use rbuild_executor::snapshot::Snapshotter;
use rbuild_graph::ImageConfig;
use rbuild_image::compress::{CompressWriter, Compression};
use rbuild_image::layer::{DiffOptions, diff_overlay_upper};
use rbuild_image::local::{ImageStore, LocalError};
use rbuild_image::oci::{self, Descriptor, Manifest, media};

use super::fs::{Layer, LayerBlob};
use super::record::{BlobDesc, BlobRecord, RECORD_VERSION, blob_key};

/// Errors of exporting an image.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("snapshot")]
    Snapshot(#[from] rbuild_executor::snapshot::SnapshotError),
    #[error("cannot diff layer {snapshot}")]
    Diff {
        snapshot: String,
        #[source]
        source: rbuild_image::layer::DiffError,
    },
    #[error("cannot compress layer")]
    Compress(#[from] rbuild_image::compress::CompressError),
    #[error("content store")]
    Content(#[from] rbuild_cache::ContentError),
    #[error("cache index")]
    Meta(#[from] rbuild_cache::MetaError),
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("store")]
    Store(#[from] rbuild_cache::StoreError),
    #[error("cannot encode {0}")]
    Encode(&'static str, #[source] serde_json::Error),
    #[error("cannot encode manifest")]
    Spec(#[from] oci::SpecError),
    #[error("cancelled")]
    Cancelled,
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub compression: Compression,
    /// Clamp layer mtimes and set history times to this (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
    pub tags: Vec<String>,
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Config digest.
    pub id: Digest,
    pub manifest: Digest,
    pub tags: Vec<String>,
    /// Layers diffed and compressed by this export (0 when every blob was known).
    pub layers_computed: usize,
}

fn compression_name(c: Compression, epoch: Option<i64>) -> String {
    let base = match c {
        Compression::None => "none".to_owned(),
        Compression::Gzip { level } => format!("gzip-{level}"),
        Compression::Zstd { level } => format!("zstd-{level}"),
    };
    match epoch {
        Some(e) => format!("{base}-sde{e}"),
        None => base,
    }
}

/// Database key → encoded record, of blob records read or to be written.
type BlobRecords = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

/// The blob record key of a built layer's snapshot in this export's compression.
fn record_key(snapshot: &str, opts: &ExportOptions) -> Vec<u8> {
    blob_key(
        &compression_name(opts.compression, opts.source_date_epoch),
        snapshot,
    )
}

/// The blob of a built layer as `known` remembers it, while the blob is still stored
/// (prune may have taken it): `Some(None)` for an empty layer, `None` if unknown.
fn remembered_blob(
    images: &ImageStore,
    known: &BlobRecords,
    key: &[u8],
) -> Option<Option<LayerBlob>> {
    let rec = BlobRecord::decode(known.get(key)?)?;
    match rec.blob {
        None => Some(None),
        Some(b)
            if images
                .store()
                .content()
                .info(&b.digest)
                .is_ok_and(|i| i.size == b.size) =>
        {
            Some(Some(b.into()))
        }
        Some(_) => None,
    }
}

/// A layer's blob made by this export (`None`: an empty layer) and its encoded record.
type MadeBlob = (Option<LayerBlob>, Vec<u8>);

/// Diffs and compresses a built layer into the content store (`None`: empty layer) and
/// returns its record, to be written with the others.
fn compute_blob(
    images: &ImageStore,
    snapshotter: &Snapshotter,
    snapshot: &str,
    opts: &ExportOptions,
) -> Result<MadeBlob, ExportError> {
    let store = images.store();
    let committed = snapshotter.committed(snapshot)?;
    // The compressor hashes every byte it hands the writer (diffID and blob digest, on
    // threads of its own): the store takes its digest instead of hashing them again.
    let writer = store.content().writer_hashed_by_caller()?;
    let cw = CompressWriter::new(writer, opts.compression)?;
    let diff_opts = DiffOptions {
        source_date_epoch: opts.source_date_epoch,
    };
    let (cw, stats) = diff_overlay_upper(committed.dir(), cw, &diff_opts).map_err(|source| {
        ExportError::Diff {
            snapshot: snapshot.to_owned(),
            source,
        }
    })?;
    let (mut writer, digests) = cw.finish()?;
    let blob = if stats.entries == 0 {
        // Dropped uncommitted: the temp file goes with it.
        drop(writer);
        None
    } else {
        writer.flush().map_err(rbuild_cache::ContentError::Write)?;
        let digest = Digest::from_sha256(*digests.digest.as_bytes());
        writer.commit(Some(&BlobDescriptor::new(digest.clone(), digests.size)))?;
        Some(BlobDesc {
            media_type: layer_media_type(opts.compression).to_owned(),
            digest,
            size: digests.size,
            diff_id: Digest::from_sha256(*digests.diff_id.as_bytes()),
        })
    };
    let rec = BlobRecord {
        version: RECORD_VERSION,
        blob: blob.clone(),
    };
    Ok((blob.map(Into::into), rec.encode()))
}

/// Layers diffed and compressed at once. A small layer costs little but its syncs, and
/// syncs of several files at once share the filesystem's journal commits (50 one-file
/// layers: ~0.35 s one after the other, ~0.03 s eight at a time here); a large layer
/// already uses every core, and each one in flight holds up to ~16 MiB of buffers, so
/// the count stays small for the peak RSS.
const PARALLEL_LAYERS: usize = 4;

/// [`compute_blob`] for each of `snapshots`, up to [`PARALLEL_LAYERS`] at once; results
/// in the order of `snapshots`. Stops starting layers once `cancel` is set.
fn compute_blobs(
    images: &ImageStore,
    snapshotter: &Snapshotter,
    snapshots: &[&str],
    opts: &ExportOptions,
    cancel: &crate::CancelToken,
) -> Result<Vec<MadeBlob>, ExportError> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<_, ExportError>>>> =
        Mutex::new((0..snapshots.len()).map(|_| None).collect());
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(snapshot) = snapshots.get(i) else {
                return;
            };
            let r = if cancel.is_cancelled() {
                Err(ExportError::Cancelled)
            } else {
                compute_blob(images, snapshotter, snapshot, opts)
            };
            let failed = r.is_err();
            results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            if failed {
                // Let the other workers stop at their next layer.
                next.store(snapshots.len(), Ordering::Relaxed);
                return;
            }
        }
    };
    let workers = PARALLEL_LAYERS.min(snapshots.len());
    if workers <= 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(work);
            }
        });
    }
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    // The first failure in layer order is reported; a layer never started after it is
    // then `None`, which cannot come before a failure.
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Some(r) => out.push(r?),
            None => return Err(ExportError::Cancelled),
        }
    }
    Ok(out)
}

fn layer_media_type(c: Compression) -> &'static str {
    match c {
        Compression::None => media::DOCKER_LAYER_TAR,
        Compression::Gzip { .. } => media::DOCKER_LAYER_GZIP,
        Compression::Zstd { .. } => media::OCI_LAYER_ZSTD,
    }
}

/// A layer media type in the manifest's family (Docker or OCI).
fn in_family(media_type: &str, docker: bool) -> String {
    let m = match (docker, media_type) {
        (true, media::OCI_LAYER_GZIP) => media::DOCKER_LAYER_GZIP,
        (true, media::OCI_LAYER_TAR) => media::DOCKER_LAYER_TAR,
        (false, media::DOCKER_LAYER_GZIP) => media::OCI_LAYER_GZIP,
        (false, media::DOCKER_LAYER_TAR) => media::OCI_LAYER_TAR,
        (_, other) => other,
    };
    m.to_owned()
}

fn now_or_epoch(epoch: Option<i64>) -> String {
    let secs = match epoch {
        Some(e) => u64::try_from(e).unwrap_or(0),
        None => rbuild_cache::meta::now_unix(),
    };
    oci::rfc3339(secs)
}

/// The creation time of an image: `SOURCE_DATE_EPOCH`, else the time this exact config and
/// these layers were first exported, so a rebuild that changed nothing gives the same id.
/// A new time is added to `fresh`, to be recorded with the blob records.
fn created_time(
    images: &ImageStore,
    config: &ImageConfig,
    blobs: &[LayerBlob],
    epoch: Option<i64>,
    fresh: &mut BlobRecords,
) -> Result<String, ExportError> {
    if epoch.is_some() {
        return Ok(now_or_epoch(epoch));
    }
    let mut identity = serde_json::to_vec(config).map_err(|e| ExportError::Encode("config", e))?;
    for b in blobs {
        identity.extend_from_slice(b.diff_id.as_str().as_bytes());
    }
    let key = format!("created/v1/{}", Digest::sha256_of(&identity).as_str()).into_bytes();
    let meta = images.store().meta();
    if let Some(bytes) = meta.cache_get(&key)?
        && let Ok(text) = String::from_utf8(bytes)
        && oci::parse_rfc3339(&text).is_some()
    {
        return Ok(text);
    }
    let now = now_or_epoch(None);
    fresh.insert(key, now.as_bytes().to_vec());
    Ok(now)
}

/// Stores the image whose filesystem is `layers` and whose config is `config`.
pub fn export(
    images: &ImageStore,
    snapshotter: &Snapshotter,
    layers: &[Layer],
    config: &ImageConfig,
    opts: &ExportOptions,
    cancel: &crate::CancelToken,
) -> Result<Exported, ExportError> {
    // Blobs are unreferenced until the image is recorded: keep prune out until then.
    let _gc = images.store().gc_guard()?;
    let stored = |b: &LayerBlob| {
        images
            .store()
            .content()
            .info(&b.digest)
            .is_ok_and(|i| i.size == b.size)
    };
    // The records of every layer that may need one, in one read.
    let wanted: Vec<Vec<u8>> = layers
        .iter()
        .filter(|l| !l.blob.as_ref().is_some_and(stored))
        .map(|l| record_key(&l.snapshot, opts))
        .collect();
    let known: BlobRecords = if wanted.is_empty() {
        BlobRecords::new()
    } else {
        images.store().meta().read(|tx| {
            let mut found = BlobRecords::new();
            for k in &wanted {
                if let Some(v) = tx.cache_get(k)? {
                    found.insert(k.clone(), v);
                }
            }
            Ok::<_, rbuild_cache::MetaError>(found)
        })?
    };
    // Which built layers have a remembered blob and which need one made now (each
    // snapshot once), then those, in parallel.
    let mut found: std::collections::BTreeMap<&str, Option<LayerBlob>> = Default::default();
    let mut todo: Vec<&str> = Vec::new();
    for layer in layers {
        let snapshot = layer.snapshot.as_str();
        if layer.blob.as_ref().is_some_and(stored) || found.contains_key(snapshot) {
            continue;
        }
        match remembered_blob(images, &known, &record_key(snapshot, opts)) {
            Some(blob) => {
                found.insert(snapshot, blob);
            }
            None if !todo.contains(&snapshot) => todo.push(snapshot),
            None => {}
        }
    }
    let made = compute_blobs(images, snapshotter, &todo, opts, cancel)?;
    let mut fresh = BlobRecords::new();
    for (snapshot, (blob, rec)) in todo.iter().zip(made) {
        fresh.insert(record_key(snapshot, opts), rec);
        found.insert(snapshot, blob);
    }
    let blobs: Vec<Option<LayerBlob>> = layers
        .iter()
        .map(|layer| match &layer.blob {
            Some(b) if stored(b) => Some(b.clone()),
            // A base layer whose blob was pruned since it was unpacked is made again from
            // its snapshot, like a built layer.
            _ => found.get(layer.snapshot.as_str()).cloned().flatten(),
        })
        .collect();
    let computed = fresh.len();

    // Layers and non-empty history entries correspond from the top down; an empty built
    // layer turns its entry into an empty one.
    let mut config = config.clone();
    let entries: Vec<usize> = config
        .history
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.empty_layer)
        .map(|(i, _)| i)
        .collect();
    for (blob, &entry) in blobs.iter().rev().zip(entries.iter().rev()) {
        if blob.is_none() {
            config.history[entry].empty_layer = true;
        }
    }
    let blobs: Vec<LayerBlob> = blobs.into_iter().flatten().collect();
    let created = created_time(images, &config, &blobs, opts.source_date_epoch, &mut fresh)?;
    if !fresh.is_empty() {
        // Every blob named here was synced by the content store when it was ingested.
        images.store().meta().write(|tx| {
            for (k, v) in &fresh {
                tx.cache_put(k, v)?;
            }
            Ok::<_, rbuild_cache::MetaError>(())
        })?;
    }
    for h in &mut config.history {
        if h.created.is_none() {
            h.created = Some(created.clone());
        }
    }

    let mut value = serde_json::to_value(&config).map_err(|e| ExportError::Encode("config", e))?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("created".into(), serde_json::Value::String(created));
        obj.insert(
            "rootfs".into(),
            serde_json::json!({
                "type": "layers",
                "diff_ids": blobs.iter().map(|b| b.diff_id.as_str()).collect::<Vec<_>>(),
            }),
        );
    }
    let config_bytes = serde_json::to_vec(&value).map_err(|e| ExportError::Encode("config", e))?;

    let docker = !blobs
        .iter()
        .any(|b| media::layer_compression(&b.media_type) == Some(media::LayerCompression::Zstd));
    let config_desc = Descriptor::new(
        if docker {
            media::DOCKER_CONFIG
        } else {
            media::OCI_CONFIG
        },
        Digest::sha256_of(&config_bytes),
        config_bytes.len() as u64,
    );
    let layer_descs = blobs
        .iter()
        .map(|b| Descriptor::new(in_family(&b.media_type, docker), b.digest.clone(), b.size))
        .collect();
    let mut manifest = Manifest::oci(config_desc, layer_descs);
    if docker {
        manifest.media_type = Some(media::DOCKER_MANIFEST.to_owned());
    }
    let manifest_bytes = oci::canonical_json("manifest", &manifest)?;
    // Last point of no return: a cancelled build tags nothing.
    if cancel.is_cancelled() {
        return Err(ExportError::Cancelled);
    }
    let recorded = images.put_image(&manifest_bytes, &config_bytes, &opts.tags)?;
    Ok(Exported {
        id: recorded.id,
        manifest: recorded.manifest,
        tags: recorded.tags,
        layers_computed: computed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_follow_the_manifest_family() {
        assert_eq!(
            in_family(media::OCI_LAYER_GZIP, true),
            media::DOCKER_LAYER_GZIP
        );
        assert_eq!(
            in_family(media::DOCKER_LAYER_GZIP, false),
            media::OCI_LAYER_GZIP
        );
        assert_eq!(
            in_family(media::OCI_LAYER_ZSTD, false),
            media::OCI_LAYER_ZSTD
        );
        assert_eq!(
            compression_name(Compression::DEFAULT_GZIP, Some(5)),
            "gzip-6-sde5"
        );
        assert_ne!(
            compression_name(Compression::DEFAULT_GZIP, None),
            compression_name(Compression::DEFAULT_ZSTD, None)
        );
    }

    /// A store, a copy-backend snapshotter and two built layers: one writing a file,
    /// one changing nothing.
    fn fixture() -> (tempfile::TempDir, ImageStore, Snapshotter, Vec<Layer>) {
        let dir = tempfile::tempdir().unwrap();
        let store = rbuild_cache::Store::open(&dir.path().join("store")).unwrap();
        let snap = Snapshotter::with_backend(
            dir.path().join("snaps"),
            rbuild_executor::snapshot::Backend::Copy {
                reason: "test".into(),
            },
        )
        .unwrap();
        let a = snap.prepare("full", &[]).unwrap();
        std::fs::write(a.path().join("hello"), "hi").unwrap();
        let full = snap.commit(a).unwrap();
        let b = snap.prepare("empty", std::slice::from_ref(&full)).unwrap();
        snap.commit(b).unwrap();
        let layers = ["full", "empty"]
            .map(|k| Layer {
                snapshot: k.into(),
                blob: None,
            })
            .to_vec();
        (dir, ImageStore::new(store), snap, layers)
    }

    fn config() -> ImageConfig {
        let mut c = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Default::default()
        };
        for (by, empty) in [
            ("COPY hello", false),
            ("RUN true", false),
            ("ENV A=1", true),
        ] {
            c.history.push(rbuild_graph::History {
                created_by: by.into(),
                empty_layer: empty,
                ..Default::default()
            });
        }
        c
    }

    #[test]
    fn empty_layers_become_empty_history_and_blobs_are_remembered() {
        let (_dir, images, snap, layers) = fixture();
        let opts = ExportOptions {
            compression: Compression::DEFAULT_GZIP,
            source_date_epoch: None,
            tags: vec!["t:1".into()],
        };
        let cancel = crate::CancelToken::new();
        let first = export(&images, &snap, &layers, &config(), &opts, &cancel).unwrap();
        assert_eq!(first.layers_computed, 2);
        let image = images.resolve("t:1").unwrap();
        assert_eq!(image.manifest.media_type(), media::DOCKER_MANIFEST);
        assert_eq!(image.manifest.layers.len(), 1);
        assert_eq!(
            image.manifest.layers[0].media_type,
            media::DOCKER_LAYER_GZIP
        );
        assert_eq!(image.config.rootfs.diff_ids.len(), 1);
        let empty: Vec<bool> = image.config.history.iter().map(|h| h.empty_layer).collect();
        assert_eq!(empty, [false, true, true]);
        assert!(image.config.history.iter().all(|h| h.created.is_some()));

        // A second export diffs nothing and, with nothing changed, gives the same image.
        let second = export(&images, &snap, &layers, &config(), &opts, &cancel).unwrap();
        assert_eq!(second.layers_computed, 0);
        assert_eq!(second.id, first.id);
        assert_eq!(second.manifest, first.manifest);
    }

    #[test]
    fn cancelled_exports_tag_nothing_and_epochs_fix_the_time() {
        let (_dir, images, snap, layers) = fixture();
        let cancel = crate::CancelToken::new();
        cancel.cancel();
        let opts = ExportOptions {
            compression: Compression::DEFAULT_ZSTD,
            source_date_epoch: Some(1_700_000_000),
            tags: vec!["t:1".into()],
        };
        assert!(matches!(
            export(&images, &snap, &layers, &config(), &opts, &cancel),
            Err(ExportError::Cancelled)
        ));
        assert!(images.resolve("t:1").is_err());

        let go = crate::CancelToken::new();
        export(&images, &snap, &layers, &config(), &opts, &go).unwrap();
        let image = images.resolve("t:1").unwrap();
        assert_eq!(image.manifest.media_type(), media::OCI_MANIFEST);
        assert_eq!(
            image.config.created.as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
    }
}
