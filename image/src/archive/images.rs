//! Working out the images of a collected archive: from `manifest.json` (Docker archives) or
//! `index.json` (OCI layouts), every layer checked against its diffID, then recorded.

use std::collections::BTreeMap;
use std::io::{self, Read};

use rbuild_cache::{ContentError, ContentStore, Digest, Hasher};
use serde::Deserialize;

use super::{Collector, LoadError, LoadReport};
use crate::compress::{CompressError, Detected, decompressed_reader, detect};
use crate::local::{LocalError, NewImage, normalize_tag, parse_reference};
use crate::oci::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, ImageConfig, Index, Manifest,
    SpecError, canonical_json, host_platform, media,
};

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

impl Collector<'_> {
    /// Works out the images from `manifest.json` (Docker archives) or `index.json` (OCI
    /// layouts), checks every layer against its diffID, and records images and tags in one
    /// transaction.
    pub(super) fn finish(&self) -> Result<LoadReport, LoadError> {
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
        if images.is_empty() {
            return Err(LoadError::NoImages);
        }
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
            let config_desc = self.ingest(None, config_bytes.as_slice())?;
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
        Ok(self.ingest(None, bytes.as_slice())?.digest)
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
