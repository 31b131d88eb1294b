//! The local image store: images and tags on top of `rbuild_cache::Store`.
//!
//! An image is a manifest, a config and layers, all blobs in the content store; the
//! metadata database records it by manifest digest (owning its blobs, so prune keeps them)
//! and tags point at manifests. The image id is the config digest, as in Docker, and may be
//! given by any unique prefix of its hex.

mod changes;
mod import;
mod inspect;
mod ops;
pub mod reference;

use std::collections::BTreeSet;
use std::io::Read;

use rbuild_cache::{
    ContentError, ContentStore, Digest, ImageRecord, MetaError, MetaTxn, Store, StoreError,
    TagRecord,
};

use rbuild_cache::meta::now_unix;

use crate::oci::{ImageConfig, Manifest, SpecError, media};

pub use changes::{ChangeError, apply_changes};
pub use import::{ImportError, ImportOptions, import_rootfs};
pub use inspect::{HistoryRow, InspectInfo, InspectMetadata, InspectRootFs};
pub use ops::{ImageRow, RemoveEvent};
pub use reference::{Reference, ReferenceError, familiar, normalize_tag, parse_reference};

/// Manifests and configs are small documents; anything bigger is refused rather than read.
pub const MAX_DOCUMENT: u64 = 8 * 1024 * 1024;

/// Errors of the local image store.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("image id prefix {0:?} is ambiguous")]
    Ambiguous(String),
    #[error(
        "conflict: unable to delete {0} (must be forced) - image is referenced in multiple repositories"
    )]
    MultipleReferences(String),
    #[error("{digest} is a {media_type}, not an image manifest")]
    NotAManifest { digest: Digest, media_type: String },
    #[error("image {manifest} has {layers} layers but its config lists {diff_ids} diffIDs")]
    LayerCount {
        manifest: Digest,
        layers: usize,
        diff_ids: usize,
    },
    #[error("{what} {digest} is missing from the content store")]
    MissingBlob { what: &'static str, digest: Digest },
    #[error("{what} {digest} is {size} bytes, larger than the expected {expected}")]
    SizeMismatch {
        what: &'static str,
        digest: Digest,
        size: u64,
        expected: u64,
    },
    #[error("{what} {digest} is larger than {MAX_DOCUMENT} bytes")]
    TooLarge { what: &'static str, digest: Digest },
    #[error("cannot read {what} {digest}")]
    Read {
        what: &'static str,
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {what} {digest}")]
    Spec {
        what: &'static str,
        digest: Digest,
        #[source]
        source: SpecError,
    },
    #[error("cannot encode document")]
    Encode(#[source] SpecError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored image, resolved and parsed.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    /// The config digest: Docker's image id.
    pub id: Digest,
    pub config: ImageConfig,
    pub record: ImageRecord,
    /// Full names (`docker.io/library/busybox:latest`) pointing at this manifest, sorted.
    pub tags: Vec<String>,
}

/// An image to record: a manifest already in the content store and the tags to point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    pub manifest: Digest,
    /// Names in any form `normalize_tag` accepts.
    pub tags: Vec<String>,
}

/// What [`ImageStore::record_images`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedImage {
    pub manifest: Digest,
    pub id: Digest,
    /// Normalised names.
    pub tags: Vec<String>,
}

/// Images and tags in one store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ImageStore {
    store: Store,
}

impl ImageStore {
    pub fn new(store: Store) -> ImageStore {
        ImageStore { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores an image whose layers are already in the content store: ingests the manifest
    /// and config, then records the image and its tags in one transaction.
    pub fn put_image(
        &self,
        manifest: &[u8],
        config: &[u8],
        tags: &[String],
    ) -> Result<RecordedImage, LocalError> {
        let _gc = self.store.gc_guard()?;
        let content = self.store.content();
        content.ingest(None, config)?;
        let manifest = content.ingest(None, manifest)?.digest;
        let mut recorded = self.record_images_locked(&[NewImage {
            manifest,
            tags: tags.to_vec(),
        }])?;
        Ok(recorded.remove(0))
    }

    /// Records images whose manifest, config and layers are all in the content store, with
    /// their tags, in one transaction: either every image is recorded or none is.
    ///
    /// Callers that ingested the blobs themselves hold [`Store::gc_guard`] from the first
    /// ingest until this returns, so prune cannot take the blobs in between.
    pub fn record_images(&self, images: &[NewImage]) -> Result<Vec<RecordedImage>, LocalError> {
        let _gc = self.store.gc_guard()?;
        self.record_images_locked(images)
    }

    pub(crate) fn record_images_locked(
        &self,
        images: &[NewImage],
    ) -> Result<Vec<RecordedImage>, LocalError> {
        let mut prepared = Vec::with_capacity(images.len());
        for image in images {
            let manifest = self.read_manifest(&image.manifest)?;
            let manifest_size = self.store.content().info(&image.manifest)?.size;
            let config = self.read_config(&manifest)?;
            if config.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(LocalError::LayerCount {
                    manifest: image.manifest.clone(),
                    layers: manifest.layers.len(),
                    diff_ids: config.rootfs.diff_ids.len(),
                });
            }
            let mut blobs = BTreeSet::new();
            let mut size = manifest_size + manifest.config.size;
            for layer in &manifest.layers {
                match self.check_blob("layer", &layer.blob()) {
                    Ok(()) => {
                        blobs.insert(layer.digest.clone());
                        size += layer.size;
                    }
                    // Foreign layers live at their URLs, not necessarily here.
                    Err(LocalError::MissingBlob { .. })
                        if media::is_foreign_layer(&layer.media_type) => {}
                    Err(e) => return Err(e),
                }
            }
            let tags = image
                .tags
                .iter()
                .map(|t| normalize_tag(t))
                .collect::<Result<BTreeSet<_>, _>>()?;
            let record = ImageRecord {
                config: manifest.config.digest.clone(),
                size,
                created: now_unix(),
            };
            prepared.push((image.manifest.clone(), record, blobs, tags));
        }
        self.store.meta().write(|tx| {
            let mut out = Vec::with_capacity(prepared.len());
            for (manifest, record, blobs, tags) in &prepared {
                tx.put_image(manifest, record, blobs)?;
                for tag in tags {
                    tx.put_tag(tag, &TagRecord::now(manifest.clone()))?;
                }
                out.push(RecordedImage {
                    manifest: manifest.clone(),
                    id: record.config.clone(),
                    tags: tags.iter().cloned().collect(),
                });
            }
            Ok::<_, LocalError>(out)
        })
    }

    /// Finds an image by name (`busybox`, `app:1`, `app@sha256:...`) or by id (full config
    /// digest, or a unique prefix of its hex, with or without `sha256:`).
    pub fn resolve(&self, name_or_id: &str) -> Result<Image, LocalError> {
        let (manifest_digest, record, tags) =
            self.store.meta().read(|tx| resolve_in(tx, name_or_id))?;
        self.load(manifest_digest, record, tags)
    }

    pub(crate) fn load(
        &self,
        manifest_digest: Digest,
        record: ImageRecord,
        tags: Vec<String>,
    ) -> Result<Image, LocalError> {
        let manifest = self.read_manifest(&manifest_digest)?;
        let config = self.read_config(&manifest)?;
        Ok(Image {
            manifest_digest,
            id: manifest.config.digest.clone(),
            manifest,
            config,
            record,
            tags,
        })
    }

    /// Reads a small document blob (manifest, config, index) whole.
    pub fn read_document(
        &self,
        what: &'static str,
        digest: &Digest,
    ) -> Result<Vec<u8>, LocalError> {
        let content = self.store.content();
        let reader = content.open(digest).map_err(|e| match e {
            ContentError::NotFound(digest) => LocalError::MissingBlob { what, digest },
            other => other.into(),
        })?;
        let mut bytes = Vec::new();
        reader
            .take(MAX_DOCUMENT + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| LocalError::Read {
                what,
                digest: digest.clone(),
                source,
            })?;
        if bytes.len() as u64 > MAX_DOCUMENT {
            return Err(LocalError::TooLarge {
                what,
                digest: digest.clone(),
            });
        }
        Ok(bytes)
    }

    /// Reads and parses an image manifest, refusing indexes and other documents.
    pub fn read_manifest(&self, digest: &Digest) -> Result<Manifest, LocalError> {
        let bytes = self.read_document("manifest", digest)?;
        let manifest = Manifest::from_slice(&bytes).map_err(|source| LocalError::Spec {
            what: "manifest",
            digest: digest.clone(),
            source,
        })?;
        if !media::is_manifest(manifest.media_type()) {
            return Err(LocalError::NotAManifest {
                digest: digest.clone(),
                media_type: manifest.media_type().to_owned(),
            });
        }
        Ok(manifest)
    }

    /// Reads and parses the config a manifest points at, checking its size.
    pub fn read_config(&self, manifest: &Manifest) -> Result<ImageConfig, LocalError> {
        let digest = &manifest.config.digest;
        self.check_blob("config", &manifest.config.blob())?;
        let bytes = self.read_document("config", digest)?;
        ImageConfig::from_slice(&bytes).map_err(|source| LocalError::Spec {
            what: "config",
            digest: digest.clone(),
            source,
        })
    }

    fn check_blob(
        &self,
        what: &'static str,
        want: &rbuild_cache::Descriptor,
    ) -> Result<(), LocalError> {
        match self.store.content().info(&want.digest) {
            Ok(have) if have.size == want.size => Ok(()),
            Ok(have) => Err(LocalError::SizeMismatch {
                what,
                digest: want.digest.clone(),
                size: have.size,
                expected: want.size,
            }),
            Err(ContentError::NotFound(digest)) => Err(LocalError::MissingBlob { what, digest }),
            Err(e) => Err(e.into()),
        }
    }
}

/// Tags pointing at `manifest`, sorted.
pub(crate) fn tags_of(tx: &MetaTxn, manifest: &Digest) -> Result<Vec<String>, MetaError> {
    Ok(tx
        .list_tags()?
        .into_iter()
        .filter(|(_, r)| r.digest == *manifest)
        .map(|(name, _)| name)
        .collect())
}

/// Where a name or id points: by tag or digest first, then by id prefix.
pub(crate) fn resolve_in(
    tx: &MetaTxn,
    name_or_id: &str,
) -> Result<(Digest, ImageRecord, Vec<String>), LocalError> {
    let not_found = || LocalError::NotFound(name_or_id.to_owned());
    if let Ok(reference) = parse_reference(name_or_id) {
        let manifest = match &reference {
            Reference::Tag { repository, tag } => tx
                .get_tag(&format!("{repository}:{tag}"))?
                .map(|r| r.digest),
            Reference::Digest { digest, .. } => Some(digest.clone()),
        };
        if let Some(manifest) = manifest
            && let Some(record) = tx.get_image(&manifest)?
        {
            let tags = tags_of(tx, &manifest)?;
            return Ok((manifest, record, tags));
        }
    }
    let candidates = by_id_prefix(tx, name_or_id)?.ok_or_else(not_found)?;
    // Several manifests may share one config (say, gzip and zstd variants): prefer a
    // tagged one, then the newest.
    let mut best: Option<(bool, u64, Digest, ImageRecord, Vec<String>)> = None;
    for (manifest, record) in candidates {
        let tags = tags_of(tx, &manifest)?;
        let rank = (!tags.is_empty(), record.created);
        if best.as_ref().is_none_or(|b| rank > (b.0, b.1)) {
            best = Some((rank.0, rank.1, manifest, record, tags));
        }
    }
    let (_, _, manifest, record, tags) = best.ok_or_else(not_found)?;
    Ok((manifest, record, tags))
}

/// Image records whose id (config digest) starts with the given hex prefix; `None` when the
/// input is not an id or nothing matches, an error when it matches several ids.
pub(crate) fn by_id_prefix(
    tx: &MetaTxn,
    input: &str,
) -> Result<Option<Vec<(Digest, ImageRecord)>>, LocalError> {
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    let is_hex = !hex.is_empty()
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !is_hex {
        return Ok(None);
    }
    let matches: Vec<_> = tx
        .list_images()?
        .into_iter()
        .filter(|(_, r)| r.config.hex().starts_with(hex))
        .collect();
    let ids: BTreeSet<_> = matches.iter().map(|(_, r)| &r.config).collect();
    match ids.len() {
        0 => Ok(None),
        1 => Ok(Some(matches)),
        _ => Err(LocalError::Ambiguous(input.to_owned())),
    }
}

/// The 12-hex short id Docker prints.
pub fn short_id(id: &Digest) -> &str {
    &id.hex()[..12]
}
