//! `docker save` archives: writing them ([`save`]) and loading them or OCI layout tars
//! ([`load`]).
//!
//! [`save`] writes the layout Docker 25+ writes, which is an OCI layout and a classic
//! `docker save` archive at once: `oci-layout`, `index.json`, `blobs/sha256/<hex>`,
//! `manifest.json` and `repositories`. Layers go out as stored (uncompressed, gzip or
//! zstd, all of which `docker load` reads).
//!
//! [`load`] reads both that layout and the legacy one (`<id>/layer.tar`, `<hex>.json`),
//! and plain OCI layout tars, gzip- or zstd-compressed or not. Blobs stream into the
//! content store as the tar is read, verified against their digests; images and tags are
//! recorded last, in one transaction, so a bad archive leaves no image or tag behind (only
//! unreferenced blobs, which prune removes).

mod collect;
mod images;

use std::io::{self, Read, Write};
use std::path::PathBuf;

use rbuild_cache::{ContentError, Digest, StoreError};

pub use collect::Collector;

use crate::compress::{CompressError, decompressed_reader};
use crate::layout::{ExportError, Flavor, plan, write_tar};
use crate::local::{ImageStore, LocalError, MAX_DOCUMENT, RecordedImage, ReferenceError};
use crate::oci::SpecError;

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
    #[error("archive contains no images")]
    NoImages,
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
    /// The load failed and the blobs it added could not all be removed again.
    #[error("{load}; its new blobs could not be removed")]
    Cleanup {
        load: Box<LoadError>,
        #[source]
        source: StoreError,
    },
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

/// Writes a `docker save` archive of the named images to `writer`.
pub fn save<W: Write>(store: &ImageStore, names: &[String], writer: W) -> Result<W, ExportError> {
    let images = plan(store, names)?;
    write_tar(store, &images, Flavor::Docker, writer)
}

/// Loads a `docker save` archive or an OCI layout tar (optionally gzip or zstd compressed)
/// into the store.
pub fn load(store: &ImageStore, reader: impl Read) -> Result<LoadReport, LoadError> {
    let mut collector = Collector::new(store)?;
    let read = read_archive(&mut collector, reader);
    collector.finish_or_discard(read)
}

/// Feeds every file of the archive to the collector.
fn read_archive(collector: &mut Collector<'_>, reader: impl Read) -> Result<(), LoadError> {
    let plain = decompressed_reader(reader).map_err(LoadError::Decompress)?;
    let mut archive = tar::Archive::new(EofTracker::new(plain));
    let mut count = 0usize;
    for entry in archive.entries().map_err(LoadError::Tar)? {
        let mut entry = entry.map_err(LoadError::Tar)?;
        count += 1;
        let path = entry
            .path()
            .map_err(LoadError::Tar)?
            .to_string_lossy()
            .into_owned();
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                collector.add_file(&path, size, &mut entry)?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(LoadError::Tar)?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if kind == tar::EntryType::Link {
                    collector.add_hardlink(&path, &target);
                } else {
                    collector.add_symlink(&path, &target);
                }
            }
            _ => {}
        }
    }
    let mut rest = archive.into_inner();
    if rest.hit_eof() {
        return Err(if count == 0 {
            LoadError::Empty
        } else {
            LoadError::NoEndMarker
        });
    }
    // Drain the rest of the end-of-archive blocks so a broken compressed tail is an error.
    io::copy(&mut rest, &mut io::sink()).map_err(LoadError::Tar)?;
    Ok(())
}

/// Remembers whether the input ran out. A tar cut at a block boundary reads like a shorter
/// archive; only the missing end-of-archive blocks (which the reader stops at without
/// reaching the end of input) tell it apart.
#[derive(Debug)]
pub(crate) struct EofTracker<R> {
    inner: R,
    eof: bool,
}

impl<R: Read> EofTracker<R> {
    pub(crate) fn new(inner: R) -> EofTracker<R> {
        EofTracker { inner, eof: false }
    }

    pub(crate) fn hit_eof(&self) -> bool {
        self.eof
    }
}

impl<R: Read> Read for EofTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        Ok(n)
    }
}
