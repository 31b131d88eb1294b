//! Output variants of a stored image: layers recompressed (`compression=`,
//! `compression-level=`, `force-compression=`) and media types switched between OCI and
//! Docker (`oci-mediatypes=`), written as a new manifest beside the stored one. The config
//! and the diffIDs never change, so the image id stays the same.
//!
//! A recompressed layer is streamed (store → decompress → [`CompressWriter`] → store) and
//! checked against its diffID. It is remembered in the store's database: a cache-index
//! record keyed by the source blob and the target compression names the new blob and owns
//! it (a ref), so prune keeps it and a second export of the same variant converts nothing.
//! The variant manifest itself is a small deterministic document, rebuilt on every export.

use std::collections::BTreeSet;
use std::io;

use rbuild_cache::{BlobWriter, ContentStore, Descriptor as BlobDescriptor, Digest, RefOwner};
use serde::{Deserialize, Serialize};

use super::{OutputError, Progress};
use crate::compress::{CompressError, CompressWriter, Compression, decompressed_reader};
use crate::local::{ImageStore, LocalError};
use crate::oci::media::{self, LayerCompression};
use crate::oci::{Descriptor, canonical_json};

/// Prefix of the cache-index keys of converted layers.
const RECORD_PREFIX: &str = "export/layer-v1/";

/// What a variant changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Variant {
    /// `compression=`: every layer not in it is converted (every layer with `force`).
    pub compression: Option<Compression>,
    /// Without `compression=`: what layers stored uncompressed become (the store keeps
    /// built layers uncompressed; artifacts and pushes gzip them).
    pub uncompressed: Option<Compression>,
    pub force: bool,
    pub oci_mediatypes: Option<bool>,
}

impl Variant {
    /// What a push or a saved archive gets: uncompressed layers gzipped, nothing else
    /// changed.
    pub(crate) const DISTRIBUTABLE: Variant = Variant {
        compression: None,
        uncompressed: Some(Compression::DEFAULT_GZIP),
        force: false,
        oci_mediatypes: None,
    };

    /// The compression a layer stored as `kind` is converted to, if any.
    fn target_for(&self, kind: LayerCompression) -> Option<Compression> {
        match self.compression {
            Some(t) => (self.force || kind != kind_of(t)).then_some(t),
            None => self
                .uncompressed
                .filter(|u| kind == LayerCompression::None && kind_of(*u) != kind),
        }
    }
}

/// A converted layer as recorded in the database.
#[derive(Debug, Serialize, Deserialize)]
struct LayerRecord {
    digest: Digest,
    size: u64,
}

fn kind_of(compression: Compression) -> LayerCompression {
    match compression {
        Compression::None => LayerCompression::None,
        Compression::Gzip { .. } => LayerCompression::Gzip,
        Compression::Zstd { .. } => LayerCompression::Zstd,
    }
}

fn record_key(source: &Digest, target: Compression) -> String {
    let target = match target {
        Compression::None => "uncompressed".to_owned(),
        Compression::Gzip { level } => format!("gzip-{level}"),
        Compression::Zstd { level } => format!("zstd-{level}"),
    };
    format!("{RECORD_PREFIX}{source}/{target}")
}

fn docker_layer(kind: LayerCompression) -> Option<&'static str> {
    match kind {
        LayerCompression::None => Some(media::DOCKER_LAYER_TAR),
        LayerCompression::Gzip => Some(media::DOCKER_LAYER_GZIP),
        LayerCompression::Zstd => None,
    }
}

/// The manifest to export for `variant`: the stored one when nothing changes, else a new
/// manifest (ingested into the content store; the caller holds the GC guard) with
/// converted layers.
pub(crate) fn prepare(
    store: &ImageStore,
    manifest_digest: &Digest,
    variant: Variant,
    progress: &dyn Progress,
) -> Result<Digest, OutputError> {
    let manifest = store.read_manifest(manifest_digest)?;
    let config = store.read_config(&manifest)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(LocalError::LayerCount {
            manifest: manifest_digest.clone(),
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        }
        .into());
    }
    let source_oci = manifest.media_type() == media::OCI_MANIFEST;
    // Per layer: its stored compression, and what it is converted to (foreign layers never
    // are: their blobs live elsewhere).
    let plan = manifest
        .layers
        .iter()
        .map(|l| {
            let kind = media::layer_compression(&l.media_type)
                .ok_or_else(|| OutputError::UnknownLayer(l.media_type.clone()))?;
            let to = if media::is_foreign_layer(&l.media_type) {
                None
            } else {
                variant.target_for(kind)
            };
            Ok((kind, to))
        })
        .collect::<Result<Vec<_>, OutputError>>()?;
    // Zstd has no Docker media type: a zstd export is OCI unless told otherwise.
    let zstd = matches!(variant.compression, Some(Compression::Zstd { .. }))
        || plan
            .iter()
            .any(|(kind, to)| to.map_or(*kind, kind_of) == LayerCompression::Zstd);
    let oci = match variant.oci_mediatypes {
        Some(false) if zstd => return Err(OutputError::ZstdDockerMediaTypes),
        Some(explicit) => explicit,
        None => source_oci || zstd,
    };

    let total: u64 = manifest.layers.iter().map(|l| l.size).sum();
    let needs_layers = plan.iter().any(|(_, to)| to.is_some());
    if needs_layers {
        progress.start("converting layers", Some(total));
    }
    let mut layers = Vec::with_capacity(manifest.layers.len());
    for ((layer, diff_id), (kind, to)) in manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .zip(plan)
    {
        let foreign = media::is_foreign_layer(&layer.media_type);
        let (blob, kind) = match to {
            Some(t) => (converted(store, layer, diff_id, t, progress)?, kind_of(t)),
            None => {
                if needs_layers {
                    progress.advance(layer.size);
                }
                (layer.blob(), kind)
            }
        };
        let media_type = if foreign {
            layer.media_type.clone()
        } else if oci {
            media::oci_layer(kind).to_owned()
        } else {
            docker_layer(kind)
                .ok_or(OutputError::ZstdDockerMediaTypes)?
                .to_owned()
        };
        let mut out = layer.clone();
        out.media_type = media_type;
        out.digest = blob.digest;
        out.size = blob.size;
        layers.push(out);
    }

    let mut new = manifest.clone();
    new.layers = layers;
    if oci != source_oci {
        let (manifest_type, config_type) = if oci {
            (media::OCI_MANIFEST, media::OCI_CONFIG)
        } else {
            (media::DOCKER_MANIFEST, media::DOCKER_CONFIG)
        };
        new.media_type = Some(manifest_type.to_owned());
        new.config.media_type = config_type.to_owned();
    }
    if new == manifest {
        return Ok(manifest_digest.clone());
    }
    let bytes = canonical_json("manifest", &new).map_err(LocalError::Encode)?;
    Ok(store
        .store()
        .content()
        .ingest(None, bytes.as_slice())?
        .digest)
}

/// The layer in `target` compression: from the database record when its blob is still
/// there, else converted now and recorded.
fn converted(
    store: &ImageStore,
    layer: &Descriptor,
    diff_id: &Digest,
    target: Compression,
    progress: &dyn Progress,
) -> Result<BlobDescriptor, OutputError> {
    let key = record_key(&layer.digest, target);
    let meta = store.store().meta();
    let content = store.store().content();
    if let Some(bytes) = meta.cache_get(key.as_bytes()).map_err(LocalError::from)?
        && let Ok(record) = serde_json::from_slice::<LayerRecord>(&bytes)
        && content
            .info(&record.digest)
            .is_ok_and(|d| d.size == record.size)
    {
        progress.advance(layer.size);
        return Ok(BlobDescriptor::new(record.digest, record.size));
    }

    let layer_err = |source: io::Error| OutputError::Convert {
        layer: layer.digest.clone(),
        source,
    };
    let reader = super::ProgressReader::new(content.open(&layer.digest)?, progress);
    let mut plain = decompressed_reader(reader).map_err(|e| match e {
        CompressError::Io(source) | CompressError::Zstd(source) => layer_err(source),
        other => layer_err(io::Error::other(other)),
    })?;
    let writer = content.writer()?;
    let mut compressor = CompressWriter::new(writer, target).map_err(OutputError::Compress)?;
    io::copy(&mut plain, &mut compressor).map_err(layer_err)?;
    let (writer, digests) = compressor.finish().map_err(OutputError::Compress)?;
    let actual = Digest::from_sha256(*digests.diff_id.as_bytes());
    if actual != *diff_id {
        return Err(OutputError::DiffId {
            layer: layer.digest.clone(),
            expected: diff_id.clone(),
            actual,
        });
    }
    let want = BlobDescriptor::new(
        Digest::from_sha256(*digests.digest.as_bytes()),
        digests.size,
    );
    let blob = writer.commit(Some(&want))?;
    let record = serde_json::to_vec(&LayerRecord {
        digest: blob.digest.clone(),
        size: blob.size,
    })
    .map_err(|e| OutputError::Record(e.to_string()))?;
    meta.write(|tx| {
        tx.cache_put(key.as_bytes(), &record)?;
        tx.set_refs(
            &RefOwner::Cache(key.clone()),
            &BTreeSet::from([blob.digest.clone()]),
        )?;
        Ok::<_, LocalError>(())
    })?;
    Ok(blob)
}
