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

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{
    Database, MultimapTableDefinition, ReadableMultimapTable, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::lock::{LockError, LockGuard, LockMode};

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

/// Seconds since the Unix epoch, the time unit of every record.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a tag points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// Manifest digest.
    pub digest: Digest,
    /// When the tag was set, in Unix seconds.
    pub created: u64,
}

impl TagRecord {
    pub fn now(digest: Digest) -> TagRecord {
        TagRecord {
            digest,
            created: now_unix(),
        }
    }
}

/// What the store knows about an image, keyed by manifest digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub config: Digest,
    /// Total size of manifest, config and layers as stored.
    pub size: u64,
    /// When the image entered the store, in Unix seconds.
    pub created: u64,
}

/// A temporary claim on blobs, e.g. by a build in progress; expired leases stop counting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub created: u64,
    /// Unix seconds after which the lease no longer protects anything.
    pub expires: Option<u64>,
}

/// Who holds a reference to a blob.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefOwner {
    /// A stored image, by manifest digest; owns manifest, config and layers.
    Image(Digest),
    /// A lease, by id.
    Lease(String),
    /// A cache-index entry or other record, by an id the caller chooses.
    Cache(String),
}

impl RefOwner {
    fn key(&self) -> String {
        match self {
            RefOwner::Image(d) => format!("image/{d}"),
            RefOwner::Lease(id) => format!("lease/{id}"),
            RefOwner::Cache(id) => format!("cache/{id}"),
        }
    }

    fn lease_id(key: &str) -> Option<&str> {
        key.strip_prefix("lease/")
    }
}

/// A cache-index key and value.
pub type CacheEntry = (Vec<u8>, Vec<u8>);

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
            Ok(())
        })?;
        Ok(meta)
    }

    pub fn path(&self) -> &Path {
        &self.db_path
    }

    /// Runs `f` in one write transaction, committed only if `f` returns `Ok`.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut MetaTxn) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        let _lock = LockGuard::acquire(&self.lock_path, LockMode::Exclusive)?;
        let db = self.open_db()?;
        let mut tx = MetaTxn {
            tx: db.begin_write()?,
        };
        let out = f(&mut tx)?;
        tx.tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in a transaction that is always rolled back.
    ///
    /// Reads use a write transaction too: this process owns the database exclusively while
    /// the lock is held, so a separate read path would buy nothing.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&MetaTxn) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        let _lock = LockGuard::acquire(&self.lock_path, LockMode::Exclusive)?;
        let db = self.open_db()?;
        let tx = MetaTxn {
            tx: db.begin_write()?,
        };
        let out = f(&tx)?;
        tx.tx.abort()?;
        Ok(out)
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

/// One transaction on the metadata database; see [`Meta::write`] and [`Meta::read`].
pub struct MetaTxn {
    tx: WriteTransaction,
}

impl std::fmt::Debug for MetaTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaTxn").finish_non_exhaustive()
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, MetaError> {
    serde_json::to_vec(value).map_err(MetaError::Encode)
}

fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, MetaError> {
    serde_json::from_slice(bytes).map_err(|source| MetaError::Corrupt {
        table,
        key: key.to_owned(),
        source,
    })
}

impl MetaTxn {
    /// Points `name` (`repository:tag`) at a manifest; returns the previous record.
    pub fn put_tag(
        &mut self,
        name: &str,
        record: &TagRecord,
    ) -> Result<Option<TagRecord>, MetaError> {
        let mut table = self.tx.open_table(TAGS)?;
        let old = table.insert(name, encode(record)?.as_slice())?;
        old.map(|v| decode("tag", name, v.value())).transpose()
    }

    pub fn get_tag(&self, name: &str) -> Result<Option<TagRecord>, MetaError> {
        let table = self.tx.open_table(TAGS)?;
        let value = table.get(name)?;
        value.map(|v| decode("tag", name, v.value())).transpose()
    }

    pub fn remove_tag(&mut self, name: &str) -> Result<Option<TagRecord>, MetaError> {
        let mut table = self.tx.open_table(TAGS)?;
        let old = table.remove(name)?;
        old.map(|v| decode("tag", name, v.value())).transpose()
    }

    /// Every tag, sorted by name.
    pub fn list_tags(&self) -> Result<Vec<(String, TagRecord)>, MetaError> {
        let table = self.tx.open_table(TAGS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let name = k.value().to_owned();
            let record = decode("tag", &name, v.value())?;
            out.push((name, record));
        }
        Ok(out)
    }

    /// Records an image and makes it the owner of `blobs` plus its manifest and config,
    /// replacing any references it held before.
    pub fn put_image(
        &mut self,
        manifest: &Digest,
        record: &ImageRecord,
        blobs: &BTreeSet<Digest>,
    ) -> Result<(), MetaError> {
        self.tx
            .open_table(IMAGES)?
            .insert(manifest.as_str(), encode(record)?.as_slice())?;
        let mut all = blobs.clone();
        all.insert(manifest.clone());
        all.insert(record.config.clone());
        self.set_refs(&RefOwner::Image(manifest.clone()), &all)
    }

    pub fn get_image(&self, manifest: &Digest) -> Result<Option<ImageRecord>, MetaError> {
        let table = self.tx.open_table(IMAGES)?;
        let value = table.get(manifest.as_str())?;
        value
            .map(|v| decode("image", manifest.as_str(), v.value()))
            .transpose()
    }

    /// Forgets an image and the references it held; tags pointing at it are left alone.
    pub fn remove_image(&mut self, manifest: &Digest) -> Result<Option<ImageRecord>, MetaError> {
        let old = {
            let mut table = self.tx.open_table(IMAGES)?;
            let old = table.remove(manifest.as_str())?;
            old.map(|v| decode("image", manifest.as_str(), v.value()))
                .transpose()?
        };
        self.clear_refs(&RefOwner::Image(manifest.clone()))?;
        Ok(old)
    }

    /// Every image record, sorted by manifest digest.
    pub fn list_images(&self) -> Result<Vec<(Digest, ImageRecord)>, MetaError> {
        let table = self.tx.open_table(IMAGES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let key = k.value();
            let digest = Digest::parse(key).map_err(|_| MetaError::CorruptRef {
                owner: "images".to_owned(),
                value: key.to_owned(),
            })?;
            out.push((digest, decode("image", key, v.value())?));
        }
        Ok(out)
    }

    pub fn cache_put(&mut self, key: &[u8], value: &[u8]) -> Result<(), MetaError> {
        self.tx.open_table(CACHE_INDEX)?.insert(key, value)?;
        Ok(())
    }

    pub fn cache_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        let table = self.tx.open_table(CACHE_INDEX)?;
        let value = table.get(key)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    pub fn cache_remove(&mut self, key: &[u8]) -> Result<bool, MetaError> {
        let mut table = self.tx.open_table(CACHE_INDEX)?;
        let old = table.remove(key)?;
        Ok(old.is_some())
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn cache_scan(&self, prefix: &[u8]) -> Result<Vec<CacheEntry>, MetaError> {
        let table = self.tx.open_table(CACHE_INDEX)?;
        let mut out = Vec::new();
        for entry in table.range(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Replaces the set of blobs `owner` references.
    pub fn set_refs(
        &mut self,
        owner: &RefOwner,
        blobs: &BTreeSet<Digest>,
    ) -> Result<(), MetaError> {
        let key = owner.key();
        let mut table = self.tx.open_multimap_table(REFS)?;
        table.remove_all(key.as_str())?;
        for digest in blobs {
            table.insert(key.as_str(), digest.as_str())?;
        }
        Ok(())
    }

    /// Adds to the blobs `owner` references.
    pub fn add_refs(
        &mut self,
        owner: &RefOwner,
        blobs: &BTreeSet<Digest>,
    ) -> Result<(), MetaError> {
        if let RefOwner::Lease(id) = owner
            && self.tx.open_table(LEASES)?.get(id.as_str())?.is_none()
        {
            return Err(MetaError::LeaseNotFound(id.clone()));
        }
        let key = owner.key();
        let mut table = self.tx.open_multimap_table(REFS)?;
        for digest in blobs {
            table.insert(key.as_str(), digest.as_str())?;
        }
        Ok(())
    }

    pub fn clear_refs(&mut self, owner: &RefOwner) -> Result<(), MetaError> {
        let key = owner.key();
        self.tx
            .open_multimap_table(REFS)?
            .remove_all(key.as_str())?;
        Ok(())
    }

    /// The blobs `owner` references, sorted.
    pub fn refs(&self, owner: &RefOwner) -> Result<BTreeSet<Digest>, MetaError> {
        let key = owner.key();
        let table = self.tx.open_multimap_table(REFS)?;
        let mut out = BTreeSet::new();
        for value in table.get(key.as_str())? {
            out.insert(parse_ref(&key, value?.value())?);
        }
        Ok(out)
    }

    /// Starts (or renews) a lease; blobs added to it are kept until it is deleted or expires.
    pub fn create_lease(&mut self, id: &str, expires: Option<u64>) -> Result<(), MetaError> {
        let record = LeaseRecord {
            created: now_unix(),
            expires,
        };
        self.tx
            .open_table(LEASES)?
            .insert(id, encode(&record)?.as_slice())?;
        Ok(())
    }

    pub fn get_lease(&self, id: &str) -> Result<Option<LeaseRecord>, MetaError> {
        let table = self.tx.open_table(LEASES)?;
        let value = table.get(id)?;
        value.map(|v| decode("lease", id, v.value())).transpose()
    }

    /// Ends a lease and drops its references.
    pub fn delete_lease(&mut self, id: &str) -> Result<bool, MetaError> {
        let existed = self.tx.open_table(LEASES)?.remove(id)?.is_some();
        self.clear_refs(&RefOwner::Lease(id.to_owned()))?;
        Ok(existed)
    }

    /// Deletes every lease that expired before `now`; returns their ids.
    pub fn expire_leases(&mut self, now: u64) -> Result<Vec<String>, MetaError> {
        let expired: Vec<String> = {
            let table = self.tx.open_table(LEASES)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                let record: LeaseRecord = decode("lease", k.value(), v.value())?;
                if record.expires.is_some_and(|t| t <= now) {
                    out.push(k.value().to_owned());
                }
            }
            out
        };
        for id in &expired {
            self.delete_lease(id)?;
        }
        Ok(expired)
    }

    /// Every blob referenced by an image, a cache record or a lease live at `now`.
    pub fn referenced(&self, now: u64) -> Result<BTreeSet<Digest>, MetaError> {
        let leases = self.tx.open_table(LEASES)?;
        let refs = self.tx.open_multimap_table(REFS)?;
        let mut out = BTreeSet::new();
        for entry in refs.iter()? {
            let (owner, values) = entry?;
            let owner = owner.value();
            if let Some(id) = RefOwner::lease_id(owner) {
                let live = match leases.get(id)? {
                    Some(v) => decode::<LeaseRecord>("lease", id, v.value())?
                        .expires
                        .is_none_or(|t| t > now),
                    None => false,
                };
                if !live {
                    continue;
                }
            }
            for value in values {
                out.insert(parse_ref(owner, value?.value())?);
            }
        }
        Ok(out)
    }
}

fn parse_ref(owner: &str, value: &str) -> Result<Digest, MetaError> {
    Digest::parse(value).map_err(|_| MetaError::CorruptRef {
        owner: owner.to_owned(),
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> (Meta, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let meta =
            Meta::open(&dir.path().join("meta.redb"), &dir.path().join("meta.lock")).unwrap();
        (meta, dir)
    }

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    #[test]
    fn tags_put_get_list_remove() {
        let (meta, _dir) = meta();
        assert_eq!(meta.get_tag("busybox:latest").unwrap(), None);
        let a = TagRecord {
            digest: d("a"),
            created: 10,
        };
        let b = TagRecord {
            digest: d("b"),
            created: 20,
        };
        assert_eq!(meta.put_tag("busybox:latest", &a).unwrap(), None);
        assert_eq!(meta.put_tag("alpine:3", &b).unwrap(), None);
        assert_eq!(meta.put_tag("busybox:latest", &b).unwrap(), Some(a));
        assert_eq!(meta.get_tag("busybox:latest").unwrap(), Some(b.clone()));
        assert_eq!(
            meta.list_tags().unwrap(),
            vec![
                ("alpine:3".to_owned(), b.clone()),
                ("busybox:latest".to_owned(), b.clone())
            ]
        );
        assert_eq!(meta.remove_tag("alpine:3").unwrap(), Some(b));
        assert_eq!(meta.remove_tag("alpine:3").unwrap(), None);
        assert_eq!(meta.list_tags().unwrap().len(), 1);
    }

    #[test]
    fn data_survives_reopen() {
        let (meta, dir) = meta();
        meta.put_tag("x:1", &TagRecord::now(d("x"))).unwrap();
        drop(meta);
        let again =
            Meta::open(&dir.path().join("meta.redb"), &dir.path().join("meta.lock")).unwrap();
        assert_eq!(again.get_tag("x:1").unwrap().unwrap().digest, d("x"));
    }

    #[test]
    fn images_own_their_blobs_until_removed() {
        let (meta, _dir) = meta();
        let manifest = d("manifest");
        let record = ImageRecord {
            config: d("config"),
            size: 42,
            created: 1,
        };
        let layers: BTreeSet<_> = [d("l1"), d("l2")].into();
        meta.put_image(&manifest, &record, &layers).unwrap();
        assert_eq!(meta.get_image(&manifest).unwrap(), Some(record.clone()));
        assert_eq!(
            meta.list_images().unwrap(),
            vec![(manifest.clone(), record.clone())]
        );
        let want: BTreeSet<_> = [d("manifest"), d("config"), d("l1"), d("l2")].into();
        assert_eq!(meta.referenced(0).unwrap(), want);
        assert_eq!(
            meta.read(|tx| tx.refs(&RefOwner::Image(manifest.clone())))
                .unwrap(),
            want
        );
        assert_eq!(meta.remove_image(&manifest).unwrap(), Some(record));
        assert!(meta.referenced(0).unwrap().is_empty());
        assert!(meta.list_images().unwrap().is_empty());
    }

    #[test]
    fn leases_protect_blobs_until_deleted_or_expired() {
        let (meta, _dir) = meta();
        let blobs: BTreeSet<_> = [d("x")].into();
        let missing = meta.write(|tx| tx.add_refs(&RefOwner::Lease("nope".into()), &blobs));
        assert!(matches!(missing, Err(MetaError::LeaseNotFound(id)) if id == "nope"));

        meta.create_lease("build-1", Some(100)).unwrap();
        meta.create_lease("pin", None).unwrap();
        meta.write(|tx| {
            tx.add_refs(&RefOwner::Lease("build-1".into()), &blobs)?;
            tx.add_refs(&RefOwner::Lease("pin".into()), &[d("y")].into())
        })
        .unwrap();
        assert_eq!(meta.referenced(99).unwrap(), [d("x"), d("y")].into());
        assert_eq!(meta.referenced(100).unwrap(), [d("y")].into());

        let expired = meta.write(|tx| tx.expire_leases(100)).unwrap();
        assert_eq!(expired, vec!["build-1".to_owned()]);
        assert_eq!(meta.read(|tx| tx.get_lease("build-1")).unwrap(), None);
        assert!(meta.delete_lease("pin").unwrap());
        assert!(!meta.delete_lease("pin").unwrap());
        assert!(meta.referenced(0).unwrap().is_empty());
    }

    #[test]
    fn cache_index_is_a_byte_map_with_prefix_scan() {
        let (meta, _dir) = meta();
        meta.write(|tx| {
            tx.cache_put(b"k/1", b"one")?;
            tx.cache_put(b"k/2", b"two")?;
            tx.cache_put(b"l/1", b"other")
        })
        .unwrap();
        assert_eq!(meta.cache_get(b"k/2").unwrap(), Some(b"two".to_vec()));
        let scanned = meta.read(|tx| tx.cache_scan(b"k/")).unwrap();
        assert_eq!(
            scanned,
            vec![
                (b"k/1".to_vec(), b"one".to_vec()),
                (b"k/2".to_vec(), b"two".to_vec())
            ]
        );
        assert!(meta.cache_remove(b"k/1").unwrap());
        assert!(!meta.cache_remove(b"k/1").unwrap());
        assert_eq!(meta.cache_get(b"k/1").unwrap(), None);
    }

    #[test]
    fn failed_write_closure_rolls_back() {
        let (meta, _dir) = meta();
        let result: Result<(), MetaError> = meta.write(|tx| {
            tx.put_tag("a:1", &TagRecord::now(d("a")))?;
            Err(MetaError::LeaseNotFound("abort".into()))
        });
        assert!(result.is_err());
        assert_eq!(meta.get_tag("a:1").unwrap(), None);
    }

    #[test]
    fn threads_adding_tags_lose_none() {
        let (meta, _dir) = meta();
        std::thread::scope(|s| {
            for t in 0..4 {
                let meta = &meta;
                s.spawn(move || {
                    for i in 0..10 {
                        meta.put_tag(&format!("t{t}:{i}"), &TagRecord::now(d("x")))
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(meta.list_tags().unwrap().len(), 40);
    }

    #[test]
    fn garbage_database_file_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("meta.redb");
        std::fs::write(&db, vec![7u8; 8192]).unwrap();
        let err = Meta::open(&db, &dir.path().join("meta.lock")).unwrap_err();
        assert!(matches!(err, MetaError::Open { .. }), "{err:?}");
    }
}
