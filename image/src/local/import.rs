//! `import`: a root filesystem tarball becomes a one-layer image, like `docker import`.

use std::io::{self, Read, Write};

use rbuild_cache::meta::now_unix;
use rbuild_cache::{BlobWriter, ContentError, ContentStore, Digest, StoreError};

use super::changes::{ChangeError, apply_changes};
use super::reference::{ReferenceError, normalize_tag};
use super::{ImageStore, LocalError, NewImage, RecordedImage};
use crate::archive::EofTracker;
use crate::compress::{CompressError, CompressWriter, Compression, decompressed_reader};
use crate::oci::{
    Descriptor, History, ImageConfig, Manifest, RootFs, canonical_json, host_platform, media,
    rfc3339,
};

/// Errors of [`import_rootfs`].
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("invalid --change")]
    Change(#[from] ChangeError),
    #[error("input is empty")]
    Empty,
    #[error("input is not a valid tar archive")]
    NotATar(#[source] io::Error),
    #[error("cannot decompress input")]
    Decompress(#[source] CompressError),
    #[error("cannot compress layer")]
    Compress(#[source] CompressError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Local(#[from] LocalError),
}

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Dockerfile config instructions applied to the new config (`--change`).
    pub changes: Vec<String>,
    /// History comment (`--message`); Docker's default is `Imported from <source>`.
    pub message: Option<String>,
    /// Where the tarball came from, for the default comment (`-` for stdin).
    pub source: String,
    /// The config's `created` time in Unix seconds; now when `None`.
    pub created: Option<u64>,
    /// How the layer blob is stored.
    pub compression: Compression,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions {
            changes: Vec::new(),
            message: None,
            source: "-".to_owned(),
            created: None,
            compression: Compression::DEFAULT_GZIP,
        }
    }
}

/// Makes an image from a root filesystem tar (plain, gzip or zstd), tagged `name` if given.
///
/// The tar is checked entry by entry while it streams into the content store; nothing is
/// recorded unless the whole input is a valid tar and every change applies.
pub fn import_rootfs(
    store: &ImageStore,
    input: impl Read,
    name: Option<&str>,
    options: &ImportOptions,
) -> Result<RecordedImage, ImportError> {
    // Everything that can be checked without the data is checked first.
    let tags = name.map(normalize_tag).transpose()?.into_iter().collect();
    let created = rfc3339(options.created.unwrap_or_else(now_unix));
    let platform = host_platform();
    let mut config = ImageConfig {
        created: Some(created.clone()),
        architecture: platform.architecture,
        os: platform.os,
        history: vec![History {
            created: Some(created),
            comment: Some(
                options
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("Imported from {}", options.source)),
            ),
            ..History::default()
        }],
        ..ImageConfig::default()
    };
    apply_changes(&mut config, &options.changes)?;

    let _gc = store.store().gc_guard()?;
    let content = store.store().content();
    let plain = decompressed_reader(input).map_err(ImportError::Decompress)?;
    let writer = CompressWriter::new(content.writer()?, options.compression)
        .map_err(ImportError::Compress)?;
    let mut tee = TeeReader {
        inner: plain,
        out: writer,
    };
    check_tar(&mut tee)?;
    let (blob_writer, digests) = tee.out.finish().map_err(ImportError::Compress)?;
    let diff_id = Digest::from_sha256(*digests.diff_id.as_bytes());
    let blob_digest = Digest::from_sha256(*digests.digest.as_bytes());
    let layer = blob_writer.commit(Some(&rbuild_cache::Descriptor::new(
        blob_digest,
        digests.size,
    )))?;

    config.rootfs = RootFs {
        diff_ids: vec![diff_id],
        ..RootFs::default()
    };
    let config_bytes = canonical_json("config", &config).map_err(LocalError::Encode)?;
    let config_desc = content.ingest(None, config_bytes.as_slice())?;
    let layer_media = match options.compression {
        Compression::None => media::OCI_LAYER_TAR,
        Compression::Gzip { .. } => media::OCI_LAYER_GZIP,
        Compression::Zstd { .. } => media::OCI_LAYER_ZSTD,
    };
    let manifest = Manifest::oci(
        Descriptor::new(media::OCI_CONFIG, config_desc.digest, config_desc.size),
        vec![Descriptor::new(layer_media, layer.digest, layer.size)],
    );
    let manifest_bytes = canonical_json("manifest", &manifest).map_err(LocalError::Encode)?;
    let manifest_digest = content.ingest(None, manifest_bytes.as_slice())?.digest;
    let mut recorded = store.record_images_locked(&[NewImage {
        manifest: manifest_digest,
        tags,
    }])?;
    Ok(recorded.remove(0))
}

/// Reads every entry of a tar through `reader` (so all of it reaches the tee), then the
/// trailing padding.
fn check_tar<R: Read>(reader: &mut R) -> Result<(), ImportError> {
    let mut archive = tar::Archive::new(EofTracker::new(&mut *reader));
    let mut count = 0usize;
    for entry in archive.entries().map_err(ImportError::NotATar)? {
        let mut entry = entry.map_err(ImportError::NotATar)?;
        count += 1;
        io::copy(&mut entry, &mut io::sink()).map_err(ImportError::NotATar)?;
    }
    let mut rest = archive.into_inner();
    if rest.hit_eof() && count == 0 {
        return Err(ImportError::Empty);
    }
    if rest.hit_eof() {
        return Err(ImportError::NotATar(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "no end-of-archive marker",
        )));
    }
    io::copy(&mut rest, &mut io::sink()).map_err(ImportError::NotATar)?;
    Ok(())
}

/// Copies everything read into `out`.
struct TeeReader<R, W> {
    inner: R,
    out: W,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}
