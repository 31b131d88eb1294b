//! The context metadata cache: remembers each file's content hash together with the
//! metadata it was read under, so a rebuild of an unchanged context reads no contents.
//!
//! An entry (content hash and xattr digest) is reused only when dev, inode, size, mtime,
//! ctime and mode all match; changing contents or xattrs always moves ctime.
//! ctime is the guard: users can set mtime back (BuildKit's size+mtime check misses such
//! edits, moby/buildkit #2592, #4817) but no one can set ctime back. Hashes are only
//! remembered for files whose ctime lies outside a "racy" window before the hash began,
//! so an edit landing in the same timestamp tick as the hashed version (git's "racily
//! clean" problem) cannot be mistaken for the hashed content.

use std::collections::BTreeMap;
use std::fs::{File, Metadata};
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// File name of the cache inside the directory the caller chooses.
pub const CACHE_FILE: &str = "context-metadata.json";
const VERSION: u32 = 1;
/// Default racy window: wider than the timestamp granularity of every local filesystem
/// Linux supports (FAT's is 2 s).
pub const DEFAULT_RACY_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot read metadata cache {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write metadata cache {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The metadata a cached hash is valid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub mode: u32,
}

impl FileKey {
    pub fn of(meta: &Metadata) -> Self {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
            mode: meta.mode(),
        }
    }
}

/// What the cache remembers about a file's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileHashes {
    /// blake3 of the contents.
    pub content: [u8; 32],
    /// blake3 of the canonical encoding of its extended attributes.
    pub xattrs: [u8; 32],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    key: FileKey,
    blake3: String,
    xattrs: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    entries: BTreeMap<String, Stored>,
}

/// Cumulative counters of a [`MetaCache`] (or of one checksum run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashStats {
    /// Files whose contents were read and hashed.
    pub files_hashed: u64,
    /// Bytes of file contents read.
    pub bytes_read: u64,
    /// Files whose hash came from the cache without reading them.
    pub cache_hits: u64,
}

/// A path → (metadata, content hash) map, shared by the threads hashing a context.
#[derive(Debug)]
pub struct MetaCache {
    entries: RwLock<BTreeMap<String, (FileKey, FileHashes)>>,
    /// Whether an entry was added, replaced or dropped since the load: an unchanged
    /// cache is not written back (a no-op rebuild then writes nothing).
    changed: AtomicBool,
    racy_window: Duration,
    files_hashed: AtomicU64,
    bytes_read: AtomicU64,
    cache_hits: AtomicU64,
}

impl Default for MetaCache {
    fn default() -> Self {
        MetaCache {
            entries: RwLock::new(BTreeMap::new()),
            changed: AtomicBool::new(false),
            racy_window: DEFAULT_RACY_WINDOW,
            files_hashed: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        }
    }
}

impl MetaCache {
    /// An empty cache.
    pub fn new() -> Self {
        MetaCache::default()
    }

    /// Sets how recent a file's ctime may be (relative to the start of hashing) before
    /// its hash is considered racy and not remembered. It must exceed the filesystem's
    /// timestamp granularity; lowering it is for tests.
    pub fn with_racy_window(mut self, window: Duration) -> Self {
        self.racy_window = window;
        self
    }

    pub fn racy_window(&self) -> Duration {
        self.racy_window
    }

    /// Loads the cache from `dir`. A missing file gives an empty cache, and so does a
    /// file of another version or one that does not parse: the cache only saves work.
    pub fn load(dir: &Path) -> Result<Self, CacheError> {
        let path = dir.join(CACHE_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(MetaCache::new()),
            Err(source) => return Err(CacheError::Read { path, source }),
        };
        let cache = MetaCache::new();
        let Ok(disk) = serde_json::from_reader::<_, OnDisk>(BufReader::new(file)) else {
            return Ok(cache);
        };
        if disk.version != VERSION {
            return Ok(cache);
        }
        let mut map = BTreeMap::new();
        for (path, stored) in disk.entries {
            let mut content = [0u8; 32];
            let mut xattrs = [0u8; 32];
            if hex::decode_to_slice(&stored.blake3, &mut content).is_ok()
                && hex::decode_to_slice(&stored.xattrs, &mut xattrs).is_ok()
            {
                map.insert(path, (stored.key, FileHashes { content, xattrs }));
            }
        }
        *cache.write() = map;
        Ok(cache)
    }

    /// Writes the cache to `dir` atomically (temporary file, fsync, rename).
    pub fn save(&self, dir: &Path) -> Result<(), CacheError> {
        let path = dir.join(CACHE_FILE);
        let werr = |source| CacheError::Write {
            path: path.clone(),
            source,
        };
        let disk = OnDisk {
            version: VERSION,
            entries: self
                .read()
                .iter()
                .map(|(p, (key, hashes))| {
                    (
                        p.clone(),
                        Stored {
                            key: *key,
                            blake3: hex::encode(hashes.content),
                            xattrs: hex::encode(hashes.xattrs),
                        },
                    )
                })
                .collect(),
        };
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(werr)?;
        {
            let mut w = BufWriter::new(tmp.as_file());
            serde_json::to_writer(&mut w, &disk).map_err(|e| werr(e.into()))?;
            w.flush().map_err(werr)?;
        }
        tmp.as_file().sync_data().map_err(werr)?;
        tmp.persist(&path).map_err(|e| werr(e.error))?;
        Ok(())
    }

    /// [`MetaCache::save`] when an entry was added, replaced or dropped since the load;
    /// returns whether it wrote.
    pub fn save_if_changed(&self, dir: &Path) -> Result<bool, CacheError> {
        if !self.changed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.save(dir)?;
        self.changed.store(false, Ordering::Relaxed);
        Ok(true)
    }

    /// Number of remembered files.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry whose path no longer has the remembered metadata (deleted or
    /// changed files), so the cache does not grow without bound.
    pub fn prune_stale(&self) {
        let mut map = self.write();
        let before = map.len();
        map.retain(|path, (key, _)| {
            std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && FileKey::of(&m) == *key)
        });
        if map.len() != before {
            self.changed.store(true, Ordering::Relaxed);
        }
    }

    /// Counters accumulated over every checksum run that used this cache.
    pub fn stats(&self) -> HashStats {
        HashStats {
            files_hashed: self.files_hashed.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        }
    }

    /// The remembered hash of `path`, if its metadata is exactly `key`.
    pub(crate) fn lookup(&self, path: &str, key: &FileKey) -> Option<FileHashes> {
        match self.read().get(path) {
            Some((stored, hashes)) if stored == key => Some(*hashes),
            _ => None,
        }
    }

    pub(crate) fn insert(&self, path: String, key: FileKey, hashes: FileHashes) {
        let entry = (key, hashes);
        if self.write().insert(path, entry) != Some(entry) {
            self.changed.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn count(&self, hashed: u64, bytes: u64, hits: u64) {
        self.files_hashed.fetch_add(hashed, Ordering::Relaxed);
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        self.cache_hits.fetch_add(hits, Ordering::Relaxed);
    }

    // A panic while holding the lock cannot leave the map half-updated (single inserts
    // and retains), so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, (FileKey, FileHashes)>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, (FileKey, FileHashes)>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }
}
