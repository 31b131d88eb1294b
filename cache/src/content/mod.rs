//! The content store: immutable blobs addressed by digest.
//!
//! [`ContentStore`] is the interface the rest of rbuild uses; [`FsContentStore`] keeps blobs
//! under the store root and [`MemContentStore`] keeps them in memory (tests, and a model for
//! a later registry-backed store). Every blob that becomes visible has been hashed while it
//! was written and matched against what the caller expected.

mod fs;
mod mem;

#[cfg(test)]
mod conformance;

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};

pub use fs::{BlobEntry, FsBlobWriter, FsContentStore, IngestTemp};
pub use mem::{MemBlobWriter, MemContentStore};

/// Errors from the content store.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {0} not found")]
    NotFound(Digest),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("a blob hashed by its writer's caller needs the caller's digest to commit")]
    NoCallerDigest,
    #[error("blob {digest} is larger than the expected {expected} bytes")]
    TooLarge { digest: Digest, expected: u64 },
    #[error("cannot read blob data")]
    Read(#[source] io::Error),
    #[error("cannot write blob data")]
    Write(#[source] io::Error),
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ContentError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ContentError::NotFound(_))
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ContentError::Io {
            action,
            path,
            source,
        }
    }
}

/// A blob's digest and size: what the store knows about it and what a caller may expect.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Descriptor {
    pub digest: Digest,
    pub size: u64,
}

impl Descriptor {
    pub fn new(digest: Digest, size: u64) -> Descriptor {
        Descriptor { digest, size }
    }

    /// The descriptor of an in-memory byte string.
    pub fn of(data: &[u8]) -> Descriptor {
        Descriptor::new(Digest::sha256_of(data), data.len() as u64)
    }
}

/// A push-style ingest: write the bytes, then [`commit`](BlobWriter::commit).
///
/// Dropping a writer without committing discards everything written.
pub trait BlobWriter: Write + Send {
    /// Bytes written so far.
    fn written(&self) -> u64;

    /// Verifies the data against `expected` (size, then digest) and makes the blob visible
    /// atomically. On error nothing becomes visible.
    fn commit(self, expected: Option<&Descriptor>) -> Result<Descriptor, ContentError>
    where
        Self: Sized,
    {
        self.commit_new(expected).map(|(d, _)| d)
    }

    /// [`BlobWriter::commit`], also telling whether this commit put the blob in place
    /// (`true`) or found it already stored (`false`), so a failed operation can undo exactly
    /// its own additions.
    fn commit_new(self, expected: Option<&Descriptor>) -> Result<(Descriptor, bool), ContentError>
    where
        Self: Sized;
}

/// Blobs by digest. Implementations are safe to share between threads.
pub trait ContentStore: Send + Sync {
    type Reader: Read + Send;
    type Writer: BlobWriter;

    /// The descriptor of a stored blob, or [`ContentError::NotFound`].
    fn info(&self, digest: &Digest) -> Result<Descriptor, ContentError>;

    /// Opens a stored blob for reading, or [`ContentError::NotFound`].
    fn open(&self, digest: &Digest) -> Result<Self::Reader, ContentError>;

    /// Starts a streaming ingest.
    fn writer(&self) -> Result<Self::Writer, ContentError>;

    /// Starts an ingest whose digest the caller computes itself from exactly the bytes it
    /// writes (a layer's compressor already hashes them on threads of its own, so a second
    /// sha256 on the writer's thread would only cost time). The commit must then be given
    /// that digest ([`ContentError::NoCallerDigest`] otherwise) and still checks the size.
    /// Backends that hash cheaply may ignore this and verify as [`ContentStore::writer`].
    fn writer_hashed_by_caller(&self) -> Result<Self::Writer, ContentError> {
        self.writer()
    }

    /// Removes a blob; `Ok(false)` if it was not there.
    fn delete(&self, digest: &Digest) -> Result<bool, ContentError>;

    /// Every stored blob, sorted by digest.
    fn list(&self) -> Result<Vec<Descriptor>, ContentError>;

    fn contains(&self, digest: &Digest) -> Result<bool, ContentError> {
        match self.info(digest) {
            Ok(_) => Ok(true),
            Err(ContentError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Streams `reader` into the store and returns what was stored.
    ///
    /// With `expected`, a blob already present with that digest and size is returned without
    /// reading `reader` at all, and at most `expected.size + 1` bytes are read otherwise, so
    /// an endless or oversized stream fails early.
    fn ingest(
        &self,
        expected: Option<&Descriptor>,
        reader: impl Read,
    ) -> Result<Descriptor, ContentError>
    where
        Self: Sized,
    {
        self.ingest_new(expected, reader).map(|(d, _)| d)
    }

    /// [`ContentStore::ingest`], also telling whether the blob is new (see
    /// [`BlobWriter::commit_new`]).
    fn ingest_new(
        &self,
        expected: Option<&Descriptor>,
        reader: impl Read,
    ) -> Result<(Descriptor, bool), ContentError>
    where
        Self: Sized,
    {
        if let Some(want) = expected
            && matches!(self.info(&want.digest), Ok(have) if have.size == want.size)
        {
            return Ok((want.clone(), false));
        }
        let mut writer = self.writer()?;
        match expected {
            Some(want) => {
                copy_into(&mut reader.take(want.size.saturating_add(1)), &mut writer)?;
                if writer.written() > want.size {
                    return Err(ContentError::TooLarge {
                        digest: want.digest.clone(),
                        expected: want.size,
                    });
                }
            }
            None => copy_into(&mut { reader }, &mut writer)?,
        }
        writer.commit_new(expected)
    }

    /// Re-reads a stored blob and checks it still hashes to the digest it is stored under
    /// (bit rot, or a file changed behind the store's back).
    fn verify(&self, digest: &Digest) -> Result<Descriptor, ContentError> {
        let mut hasher = Hasher::new();
        io::copy(&mut self.open(digest)?, &mut hasher).map_err(ContentError::Read)?;
        let size = hasher.len();
        let actual = hasher.finish();
        if actual != *digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(Descriptor::new(actual, size))
    }

    /// Sum of the sizes of every stored blob.
    fn total_size(&self) -> Result<u64, ContentError> {
        Ok(self.list()?.iter().map(|d| d.size).sum())
    }
}

/// Copies a reader into a blob writer, telling read errors apart from write errors.
fn copy_into(reader: &mut impl Read, writer: &mut impl BlobWriter) -> Result<(), ContentError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ContentError::Read(e)),
        };
        writer.write_all(&buf[..n]).map_err(ContentError::Write)?;
    }
}

/// Compares what was written with what the caller expected; shared by every backend.
pub(crate) fn verify(
    actual: &Descriptor,
    expected: Option<&Descriptor>,
) -> Result<(), ContentError> {
    let Some(want) = expected else {
        return Ok(());
    };
    if actual.size != want.size {
        return Err(ContentError::SizeMismatch {
            digest: want.digest.clone(),
            expected: want.size,
            actual: actual.size,
        });
    }
    if actual.digest != want.digest {
        return Err(ContentError::DigestMismatch {
            expected: want.digest.clone(),
            actual: actual.digest.clone(),
        });
    }
    Ok(())
}
