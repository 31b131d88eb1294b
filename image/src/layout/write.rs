//! Writing layouts and `docker save` archives from the local store, streaming every blob.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rbuild_cache::{ContentError, ContentStore, Digest};
use serde::Serialize;

use crate::local::reference::{familiar, familiar_tag, split_tag};
use crate::local::{ImageStore, LocalError, Reference, normalize_tag, parse_reference};
use crate::oci::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, ImageConfig, Index, Manifest,
    SpecError, canonical_json, media,
};

/// Errors of writing a layout or archive.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no images to export")]
    NoImages,
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("cannot encode {0}")]
    Encode(&'static str, #[source] SpecError),
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot create {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What goes into an export: a layout, or a layout that `docker load` also reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `oci-layout`, `index.json`, `blobs/`.
    Oci,
    /// The OCI layout plus `manifest.json` and `repositories`, as `docker save` (25+)
    /// writes it.
    Docker,
}

/// One image to export and the names to give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportImage {
    /// The manifest as the index lists it.
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// Full names (`docker.io/library/busybox:latest`); empty when asked for by id.
    pub names: Vec<String>,
}

/// Resolves what to export: a name exports the image under that name, a repository without
/// a tag every tag of it (as `docker save` does), an id the image unnamed. Asking twice for
/// one image merges the names.
pub fn plan(store: &ImageStore, names: &[String]) -> Result<Vec<ExportImage>, ExportError> {
    if names.is_empty() {
        return Err(ExportError::NoImages);
    }
    let mut out: Vec<ExportImage> = Vec::new();
    for requested in names {
        for name in expand_repository(store, requested)? {
            let image = store.resolve(&name)?;
            let as_tag = match parse_reference(&name) {
                Ok(Reference::Tag { .. }) => normalize_tag(&name).ok(),
                _ => None,
            }
            .filter(|t| image.tags.contains(t));
            let position = match out
                .iter()
                .position(|e| e.manifest.digest == image.manifest_digest)
            {
                Some(i) => i,
                None => {
                    out.push(describe(
                        store,
                        &image.manifest_digest,
                        &image.manifest,
                        &image.config,
                    )?);
                    out.len() - 1
                }
            };
            let entry = &mut out[position];
            if let Some(tag) = as_tag
                && !entry.names.contains(&tag)
            {
                entry.names.push(tag);
            }
        }
    }
    Ok(out)
}

/// One image by manifest digest (which need not be recorded as an image: a variant with
/// other layer compression is enough), under `names` (any form [`normalize_tag`] accepts).
/// What an exporter of a just-built image uses instead of [`plan`].
pub fn image_for(
    store: &ImageStore,
    manifest_digest: &Digest,
    names: &[String],
) -> Result<ExportImage, ExportError> {
    let manifest = store.read_manifest(manifest_digest)?;
    let config = store.read_config(&manifest)?;
    let mut image = describe(store, manifest_digest, &manifest, &config)?;
    for name in names {
        let name = normalize_tag(name).map_err(LocalError::from)?;
        if !image.names.contains(&name) {
            image.names.push(name);
        }
    }
    Ok(image)
}

/// The index entry of a manifest (with the platform its config names) and its blobs.
fn describe(
    store: &ImageStore,
    manifest_digest: &Digest,
    manifest: &Manifest,
    config: &ImageConfig,
) -> Result<ExportImage, ExportError> {
    let size = store.store().content().info(manifest_digest)?.size;
    let mut descriptor = Descriptor::new(manifest.media_type(), manifest_digest.clone(), size);
    descriptor.platform = Some(crate::oci::Platform {
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        variant: config.variant.clone(),
        ..Default::default()
    });
    Ok(ExportImage {
        manifest: descriptor,
        config: manifest.config.clone(),
        layers: manifest.layers.clone(),
        names: Vec::new(),
    })
}

/// `app` (no tag, no digest) → every stored `app:*` tag; anything else as it is.
fn expand_repository(store: &ImageStore, name: &str) -> Result<Vec<String>, ExportError> {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let explicit = name[last_slash..].contains(':') || name.contains('@');
    let repository = match parse_reference(name) {
        Ok(reference) if !explicit => reference.repository().to_owned(),
        _ => return Ok(vec![name.to_owned()]),
    };
    let tags: Vec<String> = store
        .store()
        .meta()
        .list_tags()
        .map_err(LocalError::from)?
        .into_iter()
        .map(|(tag, _)| tag)
        .filter(|tag| split_tag(tag).0 == repository)
        .collect();
    Ok(if tags.is_empty() {
        vec![name.to_owned()]
    } else {
        tags
    })
}

/// Writes an OCI layout for `images` into `dir` (created if missing). Blobs already there
/// are kept; `index.json` is replaced last, so a reader never sees an index naming a blob
/// that is not written yet.
pub fn write_dir(
    store: &ImageStore,
    images: &[ExportImage],
    dir: &Path,
) -> Result<(), ExportError> {
    write_dir_with(store, images, Flavor::Oci, dir, &|_| {})
}

/// [`write_dir`] for either flavor, calling `progress` with the byte count of every chunk
/// of blob data written.
pub fn write_dir_with(
    store: &ImageStore,
    images: &[ExportImage],
    flavor: Flavor,
    dir: &Path,
    progress: &dyn Fn(u64),
) -> Result<(), ExportError> {
    fs::create_dir_all(dir).map_err(|source| ExportError::Create {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut sink = DirSink {
        root: dir.to_path_buf(),
    };
    write_layout(&mut sink, store, images, flavor, progress)
}

/// Writes an OCI layout (or, with [`Flavor::Docker`], a `docker save` archive) as a tar
/// stream. Entries are sorted and headers normalised, so the same images give the same
/// bytes.
pub fn write_tar<W: Write>(
    store: &ImageStore,
    images: &[ExportImage],
    flavor: Flavor,
    writer: W,
) -> Result<W, ExportError> {
    write_tar_with(store, images, flavor, writer, &|_| {})
}

/// [`write_tar`], calling `progress` with the byte count of every chunk of blob data
/// written.
pub fn write_tar_with<W: Write>(
    store: &ImageStore,
    images: &[ExportImage],
    flavor: Flavor,
    writer: W,
    progress: &dyn Fn(u64),
) -> Result<W, ExportError> {
    let mut builder = tar::Builder::new(writer);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut sink = TarSink { builder };
    write_layout(&mut sink, store, images, flavor, progress)?;
    sink.builder
        .into_inner()
        .map_err(|source| ExportError::Write {
            path: "tar trailer".to_owned(),
            source,
        })
}

/// Reports the bytes read through it.
struct Reporting<'a, R> {
    inner: R,
    progress: &'a dyn Fn(u64),
}

impl<R: Read> Read for Reporting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            (self.progress)(n as u64);
        }
        Ok(n)
    }
}

trait Sink {
    fn dir(&mut self, path: &str) -> Result<(), ExportError>;
    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<(), ExportError>;
    /// Whether a blob is already present (a layout directory being updated).
    fn has(&self, _path: &str, _size: u64) -> bool {
        false
    }
}

fn write_err(path: &str) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Write {
        path: path.to_owned(),
        source,
    }
}

struct TarSink<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> Sink for TarSink<W> {
    fn dir(&mut self, path: &str) -> Result<(), ExportError> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(0);
        self.builder
            .append_data(&mut header, path, io::empty())
            .map_err(write_err(path))
    }

    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<(), ExportError> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(size);
        header.set_mtime(0);
        let mut exact = ExactReader {
            inner: data.take(size),
            remaining: size,
        };
        self.builder
            .append_data(&mut header, path, &mut exact)
            .map_err(write_err(path))
    }
}

struct DirSink {
    root: PathBuf,
}

impl Sink for DirSink {
    fn dir(&mut self, path: &str) -> Result<(), ExportError> {
        let full = self.root.join(path);
        fs::create_dir_all(&full).map_err(|source| ExportError::Create { path: full, source })
    }

    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<(), ExportError> {
        let full = self.root.join(path);
        let parent = full.parent().unwrap_or(&self.root).to_path_buf();
        let mut temp =
            tempfile::NamedTempFile::new_in(&parent).map_err(|source| ExportError::Create {
                path: parent,
                source,
            })?;
        let mut exact = ExactReader {
            inner: data.take(size),
            remaining: size,
        };
        io::copy(&mut exact, &mut temp).map_err(write_err(path))?;
        temp.as_file().sync_all().map_err(write_err(path))?;
        temp.persist(&full).map_err(|e| ExportError::Create {
            path: full,
            source: e.error,
        })?;
        Ok(())
    }

    fn has(&self, path: &str, size: u64) -> bool {
        fs::metadata(self.root.join(path)).is_ok_and(|m| m.is_file() && m.len() == size)
    }
}

/// Yields exactly `remaining` bytes or fails: a blob that changed size under us must not
/// produce a corrupt tar.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob is shorter than its descriptor",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

/// One entry of `manifest.json`, with Docker's field names and order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OciLayoutFile {
    image_layout_version: &'static str,
}

fn json<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, ExportError> {
    canonical_json(what, value).map_err(|e| ExportError::Encode(what, e))
}

fn write_layout(
    sink: &mut dyn Sink,
    store: &ImageStore,
    images: &[ExportImage],
    flavor: Flavor,
    progress: &dyn Fn(u64),
) -> Result<(), ExportError> {
    if images.is_empty() {
        return Err(ExportError::NoImages);
    }
    let content = store.store().content();
    let layout = json(
        "oci-layout",
        &OciLayoutFile {
            image_layout_version: "1.0.0",
        },
    )?;
    sink.file("oci-layout", layout.len() as u64, &mut layout.as_slice())?;
    sink.dir("blobs/")?;
    sink.dir("blobs/sha256/")?;

    let mut blobs = BTreeSet::new();
    for image in images {
        blobs.insert(image.manifest.blob());
        blobs.insert(image.config.blob());
        for layer in &image.layers {
            // Foreign layers are fetched from their URLs; Docker leaves them out too.
            if media::is_foreign_layer(&layer.media_type) && !content.contains(&layer.digest)? {
                continue;
            }
            blobs.insert(layer.blob());
        }
    }
    for blob in &blobs {
        let path = blob_path(&blob.digest);
        if sink.has(&path, blob.size) {
            progress(blob.size);
            continue;
        }
        let mut reader = Reporting {
            inner: content.open(&blob.digest)?,
            progress,
        };
        sink.file(&path, blob.size, &mut reader)?;
    }

    let mut entries = Vec::new();
    for image in images {
        if image.names.is_empty() {
            entries.push(image.manifest.clone());
        }
        for name in &image.names {
            let mut entry = image.manifest.clone();
            entry
                .annotations
                .insert(ANNOTATION_IMAGE_NAME.to_owned(), name.clone());
            entry
                .annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), split_tag(name).1.to_owned());
            entries.push(entry);
        }
    }

    if flavor == Flavor::Docker {
        let manifest_json: Vec<DockerManifestEntry> = images
            .iter()
            .map(|image| DockerManifestEntry {
                config: blob_path(&image.config.digest),
                repo_tags: (!image.names.is_empty())
                    .then(|| image.names.iter().map(|n| familiar_tag(n)).collect()),
                layers: image.layers.iter().map(|l| blob_path(&l.digest)).collect(),
            })
            .collect();
        let bytes = json("manifest.json", &manifest_json)?;
        sink.file("manifest.json", bytes.len() as u64, &mut bytes.as_slice())?;

        // The legacy `repositories` file maps each name to its top layer.
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for image in images {
            let Some(top) = image.layers.last() else {
                continue;
            };
            for name in &image.names {
                let (repo, tag) = split_tag(name);
                repositories
                    .entry(familiar(repo).to_owned())
                    .or_default()
                    .insert(tag.to_owned(), top.digest.hex().to_owned());
            }
        }
        if !repositories.is_empty() {
            let bytes = json("repositories", &repositories)?;
            sink.file("repositories", bytes.len() as u64, &mut bytes.as_slice())?;
        }
    }

    let index = json("index.json", &Index::oci(entries))?;
    sink.file("index.json", index.len() as u64, &mut index.as_slice())?;
    Ok(())
}
