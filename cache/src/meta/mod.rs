//! The metadata database: tags, image records, the solver's cache index, and the blob
//! references that tell garbage collection what to keep.
//!
//! Backed by redb: one file, ACID, crash-safe (copy-on-write pages with checksummed
//! commits), pure Rust. redb lets only one `Database` handle own the file at a time (it
//! takes an exclusive `flock`), so each operation here takes the store's `meta.lock`
//! exclusively, opens the database, runs one transaction and closes it again. That makes
//! any number of processes and threads safe on one store at the cost of an open per
//! transaction (cheap: redb reads two header pages); batch related changes in one
//! [`Meta::write`] call.
//!
//! Records are JSON so they stay readable and can be exported (registry cache, `inspect`).

mod records;
#[cfg(test)]
mod tests;
mod txn;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{Database, MultimapTableDefinition, TableDefinition};

use crate::digest::Digest;
use crate::lock::{LockError, LockGuard, LockMode};

pub use records::{ImageRecord, LeaseRecord, RefOwner, TagRecord, now_unix};
pub use txn::{CacheEntry, MetaTxn};

const TAGS: TableDefinition<&str, &[u8]> = TableDefinition::new("tags-v1");
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images-v1");
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases-v1");
const CACHE_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("cache-index-v1");
const REFS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("refs-v1");

// How long a database held open by someone else is waited for; see `Meta::open_db`.
const OPEN_RETRY_LIMIT: Duration = Duration::from_secs(10);

// redb's page cache is allocated lazily, but bound it: each open is short-lived.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Errors from the metadata database.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("cannot open metadata database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("metadata database error")]
    Db(#[source] redb::Error),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("corrupt {table} record {key:?}")]
    Corrupt {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("corrupt reference {owner:?} -> {value:?}")]
    CorruptRef { owner: String, value: String },
    #[error("cannot encode record")]
    Encode(#[source] serde_json::Error),
    #[error("lease {0:?} not found")]
    LeaseNotFound(String),
}

macro_rules! from_redb {
    ($($ty:ty),+) => {
        $(impl From<$ty> for MetaError {
            fn from(e: $ty) -> MetaError {
                MetaError::Db(e.into())
            }
        })+
    };
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Handle on the metadata database of one store.
#[derive(Debug, Clone)]
pub struct Meta {
    db_path: PathBuf,
    lock_path: PathBuf,
}

impl Meta {
    /// Opens (creating if needed) the database at `db_path`; `lock_path` serialises access
    /// across processes.
    pub fn open(db_path: &Path, lock_path: &Path) -> Result<Meta, MetaError> {
        let meta = Meta {
            db_path: db_path.to_path_buf(),
            lock_path: lock_path.to_path_buf(),
        };
        // Creating every table up front lets read paths assume they exist.
        meta.write(|tx| {
            tx.tx.open_table(TAGS)?;
            tx.tx.open_table(IMAGES)?;
            tx.tx.open_table(LEASES)?;
            tx.tx.open_table(CACHE_INDEX)?;
            tx.tx.open_multimap_table(REFS)?;
            Ok::<_, MetaError>(())
        })?;
        Ok(meta)
    }

    pub fn path(&self) -> &Path {
        &self.db_path
    }

    /// Runs `f` in one write transaction, committed only if `f` returns `Ok`.
    ///
    /// `f` may fail with the caller's own error type, so several steps of a higher-level
    /// operation (an import, a tag move) can share one transaction.
    pub fn write<T, E: From<MetaError>>(
        &self,
        f: impl FnOnce(&mut MetaTxn) -> Result<T, E>,
    ) -> Result<T, E> {
        let (_lock, db) = self.lock_and_open()?;
        let mut tx = MetaTxn {
            tx: db.begin_write().map_err(MetaError::from)?,
        };
        let out = f(&mut tx)?;
        tx.tx.commit().map_err(MetaError::from)?;
        Ok(out)
    }

    /// Runs `f` in a transaction that is always rolled back.
    ///
    /// Reads use a write transaction too: this process owns the database exclusively while
    /// the lock is held, so a separate read path would buy nothing.
    pub fn read<T, E: From<MetaError>>(
        &self,
        f: impl FnOnce(&MetaTxn) -> Result<T, E>,
    ) -> Result<T, E> {
        let (_lock, db) = self.lock_and_open()?;
        let tx = MetaTxn {
            tx: db.begin_write().map_err(MetaError::from)?,
        };
        let out = f(&tx)?;
        tx.tx.abort().map_err(MetaError::from)?;
        Ok(out)
    }

    /// Callers bind the result as `let (_lock, db)`: locals drop in reverse order, so the
    /// database is closed before the lock is released.
    fn lock_and_open(&self) -> Result<(LockGuard, Database), MetaError> {
        let lock = LockGuard::acquire(&self.lock_path, LockMode::Exclusive)?;
        let db = self.open_db()?;
        Ok((lock, db))
    }

    fn open_db(&self) -> Result<Database, MetaError> {
        // Holding meta.lock means no rbuild code has the database open, but a process
        // forked by another thread in that window (a RUN step starting) inherits the
        // descriptor and redb's flock with it until its exec closes it. So a busy
        // database is retried for a while before giving up.
        let mut delay = Duration::from_millis(5);
        let mut waited = Duration::ZERO;
        loop {
            match Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(&self.db_path)
            {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if waited < OPEN_RETRY_LIMIT => {
                    std::thread::sleep(delay);
                    waited += delay;
                    delay = (delay * 2).min(Duration::from_millis(200));
                }
                result => {
                    return result.map_err(|source| MetaError::Open {
                        path: self.db_path.clone(),
                        source,
                    });
                }
            }
        }
    }

    pub fn put_tag(&self, name: &str, record: &TagRecord) -> Result<Option<TagRecord>, MetaError> {
        self.write(|tx| tx.put_tag(name, record))
    }

    pub fn get_tag(&self, name: &str) -> Result<Option<TagRecord>, MetaError> {
        self.read(|tx| tx.get_tag(name))
    }

    pub fn remove_tag(&self, name: &str) -> Result<Option<TagRecord>, MetaError> {
        self.write(|tx| tx.remove_tag(name))
    }

    pub fn list_tags(&self) -> Result<Vec<(String, TagRecord)>, MetaError> {
        self.read(|tx| tx.list_tags())
    }

    pub fn put_image(
        &self,
        manifest: &Digest,
        record: &ImageRecord,
        blobs: &BTreeSet<Digest>,
    ) -> Result<(), MetaError> {
        self.write(|tx| tx.put_image(manifest, record, blobs))
    }

    pub fn get_image(&self, manifest: &Digest) -> Result<Option<ImageRecord>, MetaError> {
        self.read(|tx| tx.get_image(manifest))
    }

    pub fn remove_image(&self, manifest: &Digest) -> Result<Option<ImageRecord>, MetaError> {
        self.write(|tx| tx.remove_image(manifest))
    }

    pub fn list_images(&self) -> Result<Vec<(Digest, ImageRecord)>, MetaError> {
        self.read(|tx| tx.list_images())
    }

    pub fn cache_put(&self, key: &[u8], value: &[u8]) -> Result<(), MetaError> {
        self.write(|tx| tx.cache_put(key, value))
    }

    pub fn cache_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        self.read(|tx| tx.cache_get(key))
    }

    pub fn cache_remove(&self, key: &[u8]) -> Result<bool, MetaError> {
        self.write(|tx| tx.cache_remove(key))
    }

    pub fn create_lease(&self, id: &str, expires: Option<u64>) -> Result<(), MetaError> {
        self.write(|tx| tx.create_lease(id, expires))
    }

    pub fn delete_lease(&self, id: &str) -> Result<bool, MetaError> {
        self.write(|tx| tx.delete_lease(id))
    }

    /// Every blob some live owner references at time `now`: the GC roots.
    pub fn referenced(&self, now: u64) -> Result<BTreeSet<Digest>, MetaError> {
        self.read(|tx| tx.referenced(now))
    }
}
