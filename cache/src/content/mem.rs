//! An in-memory content store with the same contract as the on-disk one.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Write};
use std::sync::{Arc, PoisonError, RwLock};

use super::{BlobWriter, ContentError, ContentStore, Descriptor, verify};
use crate::digest::{Digest, Hasher};

type Blobs = Arc<RwLock<BTreeMap<Digest, Arc<[u8]>>>>;

/// Blobs held in memory; clones share the same blobs.
#[derive(Debug, Clone, Default)]
pub struct MemContentStore {
    blobs: Blobs,
}

impl MemContentStore {
    pub fn new() -> MemContentStore {
        MemContentStore::default()
    }
}

// A panic while holding the lock cannot leave the map half-updated (every update is a
// single insert or remove), so a poisoned lock is still safe to use.
fn read(blobs: &Blobs) -> std::sync::RwLockReadGuard<'_, BTreeMap<Digest, Arc<[u8]>>> {
    blobs.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(blobs: &Blobs) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Digest, Arc<[u8]>>> {
    blobs.write().unwrap_or_else(PoisonError::into_inner)
}

impl ContentStore for MemContentStore {
    type Reader = Cursor<Arc<[u8]>>;
    type Writer = MemBlobWriter;

    fn info(&self, digest: &Digest) -> Result<Descriptor, ContentError> {
        read(&self.blobs)
            .get(digest)
            .map(|b| Descriptor::new(digest.clone(), b.len() as u64))
            .ok_or_else(|| ContentError::NotFound(digest.clone()))
    }

    fn open(&self, digest: &Digest) -> Result<Self::Reader, ContentError> {
        read(&self.blobs)
            .get(digest)
            .map(|b| Cursor::new(Arc::clone(b)))
            .ok_or_else(|| ContentError::NotFound(digest.clone()))
    }

    fn writer(&self) -> Result<MemBlobWriter, ContentError> {
        Ok(MemBlobWriter {
            data: Vec::new(),
            hasher: Hasher::new(),
            blobs: Arc::clone(&self.blobs),
        })
    }

    fn delete(&self, digest: &Digest) -> Result<bool, ContentError> {
        Ok(write(&self.blobs).remove(digest).is_some())
    }

    fn list(&self) -> Result<Vec<Descriptor>, ContentError> {
        Ok(read(&self.blobs)
            .iter()
            .map(|(d, b)| Descriptor::new(d.clone(), b.len() as u64))
            .collect())
    }
}

/// A streaming ingest into memory; see [`MemContentStore`].
#[derive(Debug)]
pub struct MemBlobWriter {
    data: Vec<u8>,
    hasher: Hasher,
    blobs: Blobs,
}

impl Write for MemBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.data.extend_from_slice(buf);
        self.hasher.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for MemBlobWriter {
    fn written(&self) -> u64 {
        self.hasher.len()
    }

    fn commit_new(self, expected: Option<&Descriptor>) -> Result<(Descriptor, bool), ContentError> {
        let size = self.hasher.len();
        let actual = Descriptor::new(self.hasher.finish(), size);
        verify(&actual, expected)?;
        let mut blobs = write(&self.blobs);
        let new = !blobs.contains_key(&actual.digest);
        if new {
            blobs.insert(actual.digest.clone(), self.data.into());
        }
        Ok((actual, new))
    }
}
