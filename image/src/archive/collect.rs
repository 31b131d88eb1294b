//! Gathering the files of an archive or layout: files arrive in any order and are ingested
//! (blobs, layers) or buffered (small JSON documents) as they come.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use rbuild_cache::{ContentError, ContentStore, Digest, LockGuard};

use super::{LoadError, LoadReport};
use crate::local::{ImageStore, MAX_DOCUMENT};

pub(super) enum Entry {
    /// A small JSON document, kept in memory.
    Document(Vec<u8>),
    /// A file streamed into the content store.
    Blob(rbuild_cache::Descriptor),
    /// A link to another path of the archive (already resolved to archive-root form).
    Link(String),
}

/// Collects the files of an archive or layout, then records its images.
///
/// Holds the store's GC guard from creation to [`finish`](Collector::finish), so prune cannot
/// take blobs between ingest and the final transaction. If the load fails, the blobs it
/// brought into the store are removed again unless something else references them by then:
/// bad input leaves the store as it was.
pub struct Collector<'a> {
    pub(super) store: &'a ImageStore,
    entries: BTreeMap<String, Entry>,
    /// Blobs this load put into the store (not those it found already there).
    fresh: RefCell<BTreeSet<Digest>>,
    gc: Option<LockGuard>,
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
            gc: Some(store.store().gc_guard()?),
            store,
            entries: BTreeMap::new(),
            fresh: RefCell::new(BTreeSet::new()),
        })
    }

    /// Ingests a blob and remembers it if it is new to the store.
    pub(super) fn ingest(
        &self,
        expected: Option<&rbuild_cache::Descriptor>,
        reader: impl Read,
    ) -> Result<rbuild_cache::Descriptor, ContentError> {
        let (desc, new) = self.store.store().content().ingest_new(expected, reader)?;
        if new {
            self.fresh.borrow_mut().insert(desc.digest.clone());
        }
        Ok(desc)
    }

    /// Records the images if `read` (the reading of every file) succeeded; otherwise, or if
    /// recording fails, removes the blobs this load added that nothing references.
    pub fn finish_or_discard(
        mut self,
        read: Result<(), LoadError>,
    ) -> Result<LoadReport, LoadError> {
        let err = match read.and_then(|()| self.finish()) {
            Ok(report) => return Ok(report),
            Err(e) => e,
        };
        // Our own shared guard must go before the discard takes the exclusive lock.
        self.gc = None;
        let fresh = self.fresh.take();
        match self.store.store().discard_unreferenced(&fresh) {
            Ok(_) => Err(err),
            Err(cleanup) => Err(LoadError::Cleanup {
                load: Box::new(err),
                source: cleanup,
            }),
        }
    }

    /// Takes one regular file: blobs named by digest are ingested and verified, small JSON
    /// documents are kept, anything else (legacy `layer.tar`) is ingested by content.
    pub fn add_file(&mut self, path: &str, size: u64, reader: impl Read) -> Result<(), LoadError> {
        let Some(path) = clean(path) else {
            return Ok(());
        };
        let named_digest = path
            .strip_prefix("blobs/")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(alg, hex)| Digest::parse(&format!("{alg}:{hex}")).ok());
        let entry = match named_digest {
            Some(digest) => {
                let want = rbuild_cache::Descriptor::new(digest, size);
                let got = self
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
                let got = self
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

    pub(super) fn lookup(&self, path: &str) -> Option<&Entry> {
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
    pub(super) fn document(&self, path: &str) -> Result<Option<Vec<u8>>, LoadError> {
        match self.lookup(path) {
            None | Some(Entry::Link(_)) => Ok(None),
            Some(Entry::Document(bytes)) => Ok(Some(bytes.clone())),
            Some(Entry::Blob(desc)) => {
                Ok(Some(self.store.read_document("document", &desc.digest)?))
            }
        }
    }

    /// A file the manifest needs as a blob; documents are ingested on demand.
    pub(super) fn blob(&self, path: &str) -> Result<rbuild_cache::Descriptor, LoadError> {
        match self.lookup(path) {
            Some(Entry::Blob(desc)) => Ok(desc.clone()),
            Some(Entry::Document(bytes)) => Ok(self.ingest(None, bytes.as_slice())?),
            _ => Err(LoadError::MissingFile {
                path: path.to_owned(),
            }),
        }
    }
}
