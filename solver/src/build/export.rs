//! Export of a built filesystem into the local image store: each built layer diffed from
//! its overlay-format snapshot, compressed and ingested (remembered per snapshot, so a
//! second export reuses the blob), base-image blobs reused as they are, empty layers left
//! out (their history entry marked `empty_layer`), then config, manifest and tags recorded
//! in one transaction under the store's GC guard. Nothing is tagged before every blob of
//! the image is in the store.

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

/// The blob of a built layer: remembered, or diffed and compressed now (`None`: empty).
fn built_blob(
    images: &ImageStore,
    snapshotter: &Snapshotter,
    snapshot: &str,
    opts: &ExportOptions,
    computed: &mut usize,
) -> Result<Option<LayerBlob>, ExportError> {
    let store = images.store();
    let key = blob_key(
        &compression_name(opts.compression, opts.source_date_epoch),
        snapshot,
    );
    if let Some(bytes) = store.meta().cache_get(&key)?
        && let Some(rec) = BlobRecord::decode(&bytes)
    {
        match rec.blob {
            None => return Ok(None),
            // Only while the blob is still there (prune may have taken it).
            Some(b)
                if store
                    .content()
                    .info(&b.digest)
                    .is_ok_and(|i| i.size == b.size) =>
            {
                return Ok(Some(b.into()));
            }
            Some(_) => {}
        }
    }
    let committed = snapshotter.committed(snapshot)?;
    let writer = store.content().writer()?;
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
    *computed += 1;
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
    store.meta().cache_put(&key, &rec.encode())?;
    Ok(blob.map(Into::into))
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
fn created_time(
    images: &ImageStore,
    config: &ImageConfig,
    blobs: &[LayerBlob],
    epoch: Option<i64>,
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
    meta.cache_put(&key, now.as_bytes())?;
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
    let mut computed = 0;
    let mut blobs: Vec<Option<LayerBlob>> = Vec::with_capacity(layers.len());
    for layer in layers {
        let stored = |b: &LayerBlob| {
            images
                .store()
                .content()
                .info(&b.digest)
                .is_ok_and(|i| i.size == b.size)
        };
        blobs.push(match &layer.blob {
            Some(b) if stored(b) => Some(b.clone()),
            // A base layer whose blob was pruned since it was unpacked: made again from
            // its snapshot, like a built layer.
            _ => built_blob(images, snapshotter, &layer.snapshot, opts, &mut computed)?,
        });
    }

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
    let created = created_time(images, &config, &blobs, opts.source_date_epoch)?;
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
}
