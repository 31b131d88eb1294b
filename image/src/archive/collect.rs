//! The loader shared by archive tars and layout directories: files arrive in any order and
//! are ingested or buffered as they come; [`Collector::finish`] then works out the images.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::PathBuf;

use rbuild_cache::{ContentError, ContentStore, Digest, Hasher, LockGuard, StoreError};
use serde::Deserialize;

use crate::compress::{CompressError, Detected, decompressed_reader, detect};
use crate::local::{
    ImageStore, LocalError, MAX_DOCUMENT, NewImage, RecordedImage, ReferenceError, normalize_tag,
    parse_reference,
};
use crate::oci::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, ImageConfig, Index, Manifest,
    SpecError, canonical_json, host_platform, media,
};

/// Errors of loading an archive or layout. Whatever the error, no image or tag was recorded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid tar archive")]
    Tar(#[source] io::Error),
    #[error("input is empty")]
    Empty,
    #[error("archive is truncated: no end-of-archive marker")]
    NoEndMarker,
    #[error("cannot decompress archive")]
    Decompress(#[source] CompressError),
    #[error("not an image archive: no manifest.json or index.json")]
    NoManifest,
    #[error("invalid {path}")]
    Document {
        path: String,
        #[source]
        source: SpecError,
    },
    #[error("{path} is larger than {MAX_DOCUMENT} bytes")]
    DocumentTooLarge { path: String },
    #[error("{path} is truncated: expected {expected} bytes, got {actual}")]
    Truncated {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {path} does not match its name")]
    Blob {
        path: String,
        #[source]
        source: ContentError,
    },
    #[error("{path} is referenced by the manifest but missing from the archive")]
    MissingFile { path: String },
    #[error("layer {layer} does not match diffID {expected} in the config (got {actual})")]
    DiffId {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("cannot decompress layer {layer}")]
    Layer {
        layer: Digest,
        #[source]
        source: io::Error,
    },
    #[error("{config} lists {diff_ids} diffIDs for {layers} layers")]
    LayerCount {
        config: String,
        diff_ids: usize,
        layers: usize,
    },
    #[error("no manifest for platform {platform} in index {index}")]
    NoPlatform { index: Digest, platform: String },
    #[error("invalid image name in archive")]
    Name(#[from] ReferenceError),
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a load stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub images: Vec<RecordedImage>,
}

enum Entry {
    /// A small JSON document, kept in memory.
    Document(Vec<u8>),
    /// A file streamed into the content store.
    Blob(rbuild_cache::Descriptor),
    /// A link to another path of the archive (already resolved to archive-root form).
    Link(String),
}

/// One entry of a `docker save` `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// Collects the files of an archive or layout, then records its images.
///
/// Holds the store's GC guard from creation to [`finish`](Collector::finish), so prune cannot
/// take blobs between ingest and the final transaction.
pub struct Collector<'a> {
    store: &'a ImageStore,
    entries: BTreeMap<String, Entry>,
    _gc: LockGuard,
}

impl std::fmt::Debug for Collector<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// `./a/b/../c` → `a/c`; `None` if it climbs out of the root.
fn clean(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn is_document(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(
        name,
        "manifest.json" | "index.json" | "oci-layout" | "repositories" | "json" | "VERSION"
    ) || name.ends_with(".json")
}

impl<'a> Collector<'a> {
    pub fn new(store: &'a ImageStore) -> Result<Collector<'a>, LoadError> {
        Ok(Collector {
            _gc: store.store().gc_guard()?,
            store,
            entries: BTreeMap::new(),
        })
    }

    /// Takes one regular file: blobs named by digest are ingested and verified, small JSON
    /// documents are kept, anything else (legacy `layer.tar`) is ingested by content.
    pub fn add_file(&mut self, path: &str, size: u64, reader: impl Read) -> Result<(), LoadError> {
        let Some(path) = clean(path) else {
            return Ok(());
        };
        let content = self.store.store().content();
        let named_digest = path
            .strip_prefix("blobs/")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(alg, hex)| Digest::parse(&format!("{alg}:{hex}")).ok());
        let entry = match named_digest {
            Some(digest) => {
                let want = rbuild_cache::Descriptor::new(digest, size);
                let got = content
                    .ingest(Some(&want), reader)
                    .map_err(|source| match source {
                        ContentError::SizeMismatch { actual, .. } => LoadError::Truncated {
                            path: path.clone(),
                            expected: size,
                            actual,
                        },
                        ContentError::Read(source) => LoadError::Read {
                            path: path.clone(),
                            source,
                        },
                        source => LoadError::Blob {
                            path: path.clone(),
                            source,
                        },
                    })?;
                Entry::Blob(got)
            }
            None if is_document(&path) => {
                if size > MAX_DOCUMENT {
                    return Err(LoadError::DocumentTooLarge { path });
                }
                let mut bytes = Vec::new();
                reader
                    .take(size)
                    .read_to_end(&mut bytes)
                    .map_err(|source| LoadError::Read {
                        path: path.clone(),
                        source,
                    })?;
                if bytes.len() as u64 != size {
                    return Err(LoadError::Truncated {
                        path,
                        expected: size,
                        actual: bytes.len() as u64,
                    });
                }
                Entry::Document(bytes)
            }
            None => {
                let got =
                    content
                        .ingest(None, reader.take(size))
                        .map_err(|source| match source {
                            ContentError::Read(source) => LoadError::Read {
                                path: path.clone(),
                                source,
                            },
                            other => LoadError::Content(other),
                        })?;
                if got.size != size {
                    return Err(LoadError::Truncated {
                        path,
                        expected: size,
                        actual: got.size,
                    });
                }
                Entry::Blob(got)
            }
        };
        self.entries.insert(path, entry);
        Ok(())
    }

    /// A symbolic link; `target` is relative to the link's directory (legacy archives link
    /// duplicate layers this way).
    pub fn add_symlink(&mut self, path: &str, target: &str) {
        let Some(path) = clean(path) else { return };
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let joined = if target.starts_with('/') {
            target.to_owned()
        } else {
            format!("{dir}/{target}")
        };
        if let Some(target) = clean(&joined) {
            self.entries.insert(path, Entry::Link(target));
        }
    }

    /// A hard link; `target` is a path from the archive root.
    pub fn add_hardlink(&mut self, path: &str, target: &str) {
        if let (Some(path), Some(target)) = (clean(path), clean(target)) {
            self.entries.insert(path, Entry::Link(target));
        }
    }

    fn lookup(&self, path: &str) -> Option<&Entry> {
        let mut path = clean(path)?;
        // Bounded, so a link cycle ends.
        for _ in 0..16 {
            match self.entries.get(&path)? {
                Entry::Link(target) => path = target.clone(),
                other => return Some(other),
            }
        }
        None
    }

    /// A document by path, from memory or (if it was stored as a blob) from the store.
    fn document(&self, path: &str) -> Result<Option<Vec<u8>>, LoadError> {
        match self.lookup(path) {
            None | Some(Entry::Link(_)) => Ok(None),
            Some(Entry::Document(bytes)) => Ok(Some(bytes.clone())),
            Some(Entry::Blob(desc)) => {
                Ok(Some(self.store.read_document("document", &desc.digest)?))
            }
        }
    }

    /// A file the manifest needs as a blob; documents are ingested on demand.
    fn blob(&self, path: &str) -> Result<rbuild_cache::Descriptor, LoadError> {
        match self.lookup(path) {
            Some(Entry::Blob(desc)) => Ok(desc.clone()),
            Some(Entry::Document(bytes)) => Ok(self
                .store
                .store()
                .content()
                .ingest(None, bytes.as_slice())?),
            _ => Err(LoadError::MissingFile {
                path: path.to_owned(),
            }),
        }
    }

    /// Works out the images from `manifest.json` (Docker archives) or `index.json` (OCI
    /// layouts), checks every layer against its diffID, and records images and tags in one
    /// transaction.
    pub fn finish(self) -> Result<LoadReport, LoadError> {
        let index = match self.document("index.json")? {
            Some(bytes) => {
                Some(
                    Index::from_slice(&bytes).map_err(|source| LoadError::Document {
                        path: "index.json".to_owned(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let images = if let Some(bytes) = self.document("manifest.json")? {
            self.images_from_docker_manifest(&bytes, index.as_ref())?
        } else if let Some(index) = &index {
            self.images_from_index(index)?
        } else {
            return Err(LoadError::NoManifest);
        };
        let mut checked = BTreeMap::new();
        for image in &images {
            self.check_diff_ids(&image.manifest, &mut checked)?;
        }
        // This collector already holds the GC guard.
        let images = self.store.record_images_locked(&images)?;
        Ok(LoadReport { images })
    }

    fn images_from_docker_manifest(
        &self,
        bytes: &[u8],
        index: Option<&Index>,
    ) -> Result<Vec<NewImage>, LoadError> {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(bytes).map_err(|source| LoadError::Document {
                path: "manifest.json".to_owned(),
                source: SpecError::Decode {
                    what: "manifest.json",
                    source,
                },
            })?;
        // Manifests of the OCI side of a Docker 25+ archive: reuse them so the manifest
        // digest survives save/load.
        let originals = match index {
            Some(index) => self.index_manifests(index)?,
            None => Vec::new(),
        };
        let content = self.store.store().content();
        let mut out = Vec::new();
        for entry in entries {
            let config_bytes =
                self.document(&entry.config)?
                    .ok_or_else(|| LoadError::MissingFile {
                        path: entry.config.clone(),
                    })?;
            let config =
                ImageConfig::from_slice(&config_bytes).map_err(|source| LoadError::Document {
                    path: entry.config.clone(),
                    source,
                })?;
            let config_desc = content.ingest(None, config_bytes.as_slice())?;
            let layers = entry
                .layers
                .iter()
                .map(|p| self.blob(p))
                .collect::<Result<Vec<_>, _>>()?;
            if config.rootfs.diff_ids.len() != layers.len() {
                return Err(LoadError::LayerCount {
                    config: entry.config,
                    diff_ids: config.rootfs.diff_ids.len(),
                    layers: layers.len(),
                });
            }
            let original = originals.iter().find(|(_, m)| {
                m.config.digest == config_desc.digest
                    && m.layers.len() == layers.len()
                    && m.layers
                        .iter()
                        .zip(&layers)
                        .all(|(a, b)| a.digest == b.digest)
            });
            let manifest = match original {
                Some((digest, _)) => digest.clone(),
                None => self.synthesize_manifest(&config_desc, &layers)?,
            };
            let tags = entry.repo_tags.unwrap_or_default();
            for tag in &tags {
                normalize_tag(tag)?;
            }
            out.push(NewImage { manifest, tags });
        }
        Ok(out)
    }

    /// An OCI manifest for a legacy entry, with layer media types told by content.
    fn synthesize_manifest(
        &self,
        config: &rbuild_cache::Descriptor,
        layers: &[rbuild_cache::Descriptor],
    ) -> Result<Digest, LoadError> {
        let content = self.store.store().content();
        let mut descriptors = Vec::with_capacity(layers.len());
        for layer in layers {
            let mut magic = [0u8; 4];
            let mut reader = content.open(&layer.digest)?;
            let n = read_prefix(&mut reader, &mut magic).map_err(|source| LoadError::Read {
                path: layer.digest.to_string(),
                source,
            })?;
            let media_type = match detect(&magic[..n]) {
                Detected::Gzip => media::OCI_LAYER_GZIP,
                Detected::Zstd => media::OCI_LAYER_ZSTD,
                Detected::None => media::OCI_LAYER_TAR,
            };
            descriptors.push(Descriptor::new(
                media_type,
                layer.digest.clone(),
                layer.size,
            ));
        }
        let manifest = Manifest::oci(
            Descriptor::new(media::OCI_CONFIG, config.digest.clone(), config.size),
            descriptors,
        );
        let bytes = canonical_json("manifest", &manifest).map_err(LocalError::Encode)?;
        Ok(content.ingest(None, bytes.as_slice())?.digest)
    }

    /// Every image manifest an index leads to, with its digest (nested indexes narrowed to
    /// this host's platform).
    fn index_manifests(&self, index: &Index) -> Result<Vec<(Digest, Manifest)>, LoadError> {
        let mut out = Vec::new();
        for desc in &index.manifests {
            if let Some(digest) = self.pick_manifest(desc)? {
                let manifest = self.store.read_manifest(&digest)?;
                out.push((digest, manifest));
            }
        }
        Ok(out)
    }

    /// The image manifest a descriptor leads to; `None` for descriptors of other kinds.
    fn pick_manifest(&self, desc: &Descriptor) -> Result<Option<Digest>, LoadError> {
        self.check_present(desc)?;
        if media::is_manifest(&desc.media_type) {
            return Ok(Some(desc.digest.clone()));
        }
        if !media::is_index(&desc.media_type) {
            return Ok(None);
        }
        let bytes = self.store.read_document("index", &desc.digest)?;
        let nested = Index::from_slice(&bytes).map_err(|source| LoadError::Document {
            path: desc.digest.to_string(),
            source,
        })?;
        let host = host_platform();
        let manifests: Vec<&Descriptor> = nested
            .manifests
            .iter()
            .filter(|d| media::is_manifest(&d.media_type) || media::is_index(&d.media_type))
            .collect();
        let chosen = manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == host.os && p.architecture == host.architecture)
            })
            .or(if manifests.len() == 1 {
                manifests.first()
            } else {
                None
            });
        match chosen {
            Some(d) => self.pick_manifest(d),
            None => Err(LoadError::NoPlatform {
                index: desc.digest.clone(),
                platform: format!("{}/{}", host.os, host.architecture),
            }),
        }
    }

    fn check_present(&self, desc: &Descriptor) -> Result<(), LoadError> {
        match self.store.store().content().info(&desc.digest) {
            Ok(have) if have.size == desc.size => Ok(()),
            Ok(have) => Err(LoadError::Truncated {
                path: format!("blobs/{}/{}", desc.digest.algorithm(), desc.digest.hex()),
                expected: desc.size,
                actual: have.size,
            }),
            Err(ContentError::NotFound(_)) => Err(LoadError::MissingFile {
                path: format!("blobs/{}/{}", desc.digest.algorithm(), desc.digest.hex()),
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn images_from_index(&self, index: &Index) -> Result<Vec<NewImage>, LoadError> {
        let mut out: Vec<NewImage> = Vec::new();
        for desc in &index.manifests {
            let Some(manifest) = self.pick_manifest(desc)? else {
                continue;
            };
            let name = desc
                .annotations
                .get(ANNOTATION_IMAGE_NAME)
                .cloned()
                .or_else(|| {
                    // A bare tag (`latest`) names nothing by itself; a full reference does.
                    desc.annotations
                        .get(ANNOTATION_REF_NAME)
                        .filter(|r| r.contains('/') || r.contains(':'))
                        .filter(|r| parse_reference(r).is_ok())
                        .cloned()
                });
            let tags: Vec<String> = name.into_iter().collect();
            for tag in &tags {
                normalize_tag(tag)?;
            }
            match out.iter_mut().find(|i| i.manifest == manifest) {
                Some(existing) => existing.tags.extend(tags),
                None => out.push(NewImage { manifest, tags }),
            }
        }
        Ok(out)
    }

    /// Every layer must unpack to the diffID its config lists: an uncompressed layer's
    /// digest is its diffID, a compressed one is decompressed and hashed.
    fn check_diff_ids(
        &self,
        manifest: &Digest,
        checked: &mut BTreeMap<Digest, Digest>,
    ) -> Result<(), LoadError> {
        let manifest = self.store.read_manifest(manifest)?;
        let config = self.store.read_config(&manifest)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(LoadError::LayerCount {
                config: manifest.config.digest.to_string(),
                diff_ids: config.rootfs.diff_ids.len(),
                layers: manifest.layers.len(),
            });
        }
        let content = self.store.store().content();
        for (layer, expected) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if media::is_foreign_layer(&layer.media_type) && !content.contains(&layer.digest)? {
                continue;
            }
            let actual = match checked.get(&layer.digest) {
                Some(d) => d.clone(),
                None => {
                    let reader = content.open(&layer.digest)?;
                    let layer_err = |source| LoadError::Layer {
                        layer: layer.digest.clone(),
                        source,
                    };
                    let mut plain = decompressed_reader(reader).map_err(|e| match e {
                        CompressError::Io(source) | CompressError::Zstd(source) => {
                            layer_err(source)
                        }
                        other => layer_err(io::Error::other(other)),
                    })?;
                    let mut hasher = Hasher::new();
                    io::copy(&mut plain, &mut hasher).map_err(layer_err)?;
                    let d = hasher.finish();
                    checked.insert(layer.digest.clone(), d.clone());
                    d
                }
            };
            if actual != *expected {
                return Err(LoadError::DiffId {
                    layer: layer.digest.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

/// Reads up to `buf.len()` bytes, stopping early only at end of input.
fn read_prefix(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
