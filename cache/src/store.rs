//! [`Store`]: one store root with its content store, metadata database and locks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::content::{ContentError, ContentStore, FsContentStore};
use crate::digest::Digest;
use crate::gc::{self, GcError, PruneOptions, PruneReport};
use crate::layout::{Layout, LayoutError};
use crate::lock::{LockError, LockGuard, LockMode};
use crate::meta::{Meta, MetaError, now_unix};

/// Errors from opening or pruning a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Gc(#[from] GcError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("cannot stat {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Space used by a store, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUsage {
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Temp files of ingests in progress or abandoned.
    pub ingest_bytes: u64,
    /// The metadata database file.
    pub meta_bytes: u64,
}

/// An opened store. Cheap to clone; every clone and every process may use it at once.
///
/// Blobs become garbage the moment they are not referenced, so code that ingests blobs and
/// then records references to them (a pull, a build step) holds [`Store::gc_guard`] across
/// both; [`Store::prune`] waits for those guards to go.
#[derive(Debug, Clone)]
pub struct Store {
    layout: Layout,
    content: FsContentStore,
    meta: Meta,
}

impl Store {
    /// Opens the store at `root`, creating the layout and database if they are new.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let layout = Layout::create_or_open(root)?;
        let meta = Meta::open(&layout.meta_db(), &layout.meta_lock())?;
        Ok(Store {
            content: FsContentStore::new(layout.clone()),
            layout,
            meta,
        })
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn content(&self) -> &FsContentStore {
        &self.content
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Space used by the store, for `rbuild df`.
    pub fn usage(&self) -> Result<StoreUsage, StoreError> {
        let blobs = self.content.list()?;
        let temps = self.content.ingest_temps()?;
        let db = self.layout.meta_db();
        let meta_bytes = std::fs::metadata(&db)
            .map(|m| m.len())
            .map_err(|source| StoreError::Stat { path: db, source })?;
        Ok(StoreUsage {
            blobs: blobs.len() as u64,
            blob_bytes: blobs.iter().map(|d| d.size).sum(),
            ingest_bytes: temps.iter().map(|t| t.size).sum(),
            meta_bytes,
        })
    }

    /// A shared hold on the store that keeps garbage collection out until dropped.
    pub fn gc_guard(&self) -> Result<LockGuard, StoreError> {
        Ok(LockGuard::acquire(
            &self.layout.gc_lock(),
            LockMode::Shared,
        )?)
    }

    /// Deletes every blob that is neither in `keep` nor referenced in the database (by an
    /// image, a cache record or a live lease), oldest first until at most `keep_storage`
    /// bytes remain, and removes temp files of dead ingests.
    pub fn prune(
        &self,
        keep: &BTreeSet<Digest>,
        keep_storage: Option<u64>,
    ) -> Result<PruneReport, StoreError> {
        self.prune_with(
            keep,
            &PruneOptions {
                keep_storage,
                ..PruneOptions::default()
            },
        )
    }

    /// Undoes the ingests of a failed operation: deletes those of `candidates` (blobs the
    /// operation itself brought into the store) that nothing references by now.
    ///
    /// Runs under the exclusive `gc.lock`, so it waits for every other process that holds
    /// [`Store::gc_guard`] (one may have found a candidate already present, skipped its own
    /// ingest, and be about to record a reference to it) and then sees their references. The
    /// caller must have dropped its own guard first, or this waits for itself.
    pub fn discard_unreferenced(
        &self,
        candidates: &BTreeSet<Digest>,
    ) -> Result<Vec<Digest>, StoreError> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let _gc = LockGuard::acquire(&self.layout.gc_lock(), LockMode::Exclusive)?;
        let referenced = self.meta.referenced(now_unix())?;
        let mut deleted = Vec::new();
        for digest in candidates.difference(&referenced) {
            if self.content.delete(digest)? {
                deleted.push(digest.clone());
            }
        }
        Ok(deleted)
    }

    /// [`Store::prune`] with every option.
    pub fn prune_with(
        &self,
        keep: &BTreeSet<Digest>,
        options: &PruneOptions,
    ) -> Result<PruneReport, StoreError> {
        let _gc = LockGuard::acquire(&self.layout.gc_lock(), LockMode::Exclusive)?;
        let mut roots = self.meta.referenced(now_unix())?;
        roots.extend(keep.iter().cloned());
        Ok(gc::prune(&self.content, &roots, options)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Descriptor;
    use crate::meta::{ImageRecord, RefOwner, TagRecord};
    use std::io::Write;

    /// The digests of every blob in the store.
    fn stored_digests(store: &Store) -> BTreeSet<Digest> {
        store
            .content()
            .list()
            .unwrap()
            .into_iter()
            .map(|d| d.digest)
            .collect()
    }

    #[test]
    fn open_creates_layout_and_reopen_sees_data() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let store = Store::open(&root).unwrap();
        assert!(root.join("layout-version").is_file());
        assert!(store.layout().meta_db().is_file());
        let d = store.content().ingest(None, &b"blob"[..]).unwrap();
        store
            .meta()
            .put_tag("app:1", &TagRecord::now(d.digest.clone()))
            .unwrap();
        drop(store);
        let again = Store::open(&root).unwrap();
        assert_eq!(again.root(), root);
        assert!(again.content().contains(&d.digest).unwrap());
        assert_eq!(
            again.meta().get_tag("app:1").unwrap().unwrap().digest,
            d.digest
        );
    }

    #[test]
    fn prune_keeps_what_images_leases_and_caller_reference() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ingest = |data: &[u8]| store.content().ingest(None, data).unwrap().digest;
        let (manifest, config, layer) = (ingest(b"manifest"), ingest(b"config"), ingest(b"layer"));
        let (leased, expired, pinned, garbage) = (
            ingest(b"leased"),
            ingest(b"expired"),
            ingest(b"pinned"),
            ingest(b"garbage"),
        );

        let record = ImageRecord {
            config: config.clone(),
            size: 19,
            created: 0,
        };
        store
            .meta()
            .put_image(&manifest, &record, &[layer.clone()].into())
            .unwrap();
        store
            .meta()
            .write(|tx| {
                tx.create_lease("live", None)?;
                tx.add_refs(&RefOwner::Lease("live".into()), &[leased.clone()].into())?;
                tx.create_lease("old", Some(1))?;
                tx.add_refs(&RefOwner::Lease("old".into()), &[expired.clone()].into())
            })
            .unwrap();

        let report = store.prune(&[pinned.clone()].into(), None).unwrap();
        let deleted: BTreeSet<_> = report.deleted.into_iter().map(|d| d.digest).collect();
        assert_eq!(deleted, [expired, garbage].into());
        let left = stored_digests(&store);
        assert_eq!(
            left,
            [manifest.clone(), config, layer, leased, pinned].into()
        );

        // Once the image is gone its blobs are garbage too.
        store.meta().remove_image(&manifest).unwrap();
        let report = store.prune(&BTreeSet::new(), None).unwrap();
        assert_eq!(report.deleted.len(), 4);
    }

    #[test]
    fn discard_unreferenced_keeps_what_others_reference_and_waits_for_their_guards() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ingest = |data: &[u8]| store.content().ingest(None, data).unwrap().digest;
        let (ours, shared, leased, old) = (
            ingest(b"ours"),
            ingest(b"shared"),
            ingest(b"leased"),
            ingest(b"old"),
        );
        store
            .meta()
            .write(|tx| {
                tx.create_lease("other", None)?;
                tx.add_refs(&RefOwner::Lease("other".into()), &[leased.clone()].into())
            })
            .unwrap();

        // Another process holds its guard while it is about to reference `shared`.
        let other = store.clone();
        let guard = other.gc_guard().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let candidates: BTreeSet<_> = [ours.clone(), shared.clone(), leased.clone()].into();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let deleted = store.discard_unreferenced(&candidates).unwrap();
                tx.send(()).unwrap();
                deleted
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            // The discard cannot have run yet: the other process's guard is held.
            assert!(rx.try_recv().is_err());
            assert!(other.content().contains(&ours).unwrap());
            other
                .meta()
                .write(|tx| tx.add_refs(&RefOwner::Lease("other".into()), &[shared.clone()].into()))
                .unwrap();
            drop(guard);
            let deleted = waiter.join().unwrap();
            assert_eq!(deleted, vec![ours.clone()]);
        });
        let left = stored_digests(&store);
        // Blobs that were not candidates are never touched, referenced or not.
        assert_eq!(left, [shared, leased, old].into());
    }

    #[test]
    fn concurrent_first_opens_of_one_root_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("new");
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..6).map(|_| s.spawn(|| Store::open(&root))).collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        let store = Store::open(&root).unwrap();
        assert_eq!(
            std::fs::read_to_string(store.layout().version_file()).unwrap(),
            "1\n"
        );
        let names: BTreeSet<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let want: BTreeSet<String> = [
            "blobs-v1",
            "ingest-v1",
            "layout-version",
            "locks-v1",
            "meta-v1",
        ]
        .map(String::from)
        .into();
        assert_eq!(names, want);
    }

    #[test]
    fn usage_counts_blobs_temps_and_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.content().ingest(None, &[1u8; 1000][..]).unwrap();
        store.content().ingest(None, &[2u8; 24][..]).unwrap();
        let mut w = store.content().writer().unwrap();
        w.write_all(&[3u8; 10]).unwrap();
        w.flush().unwrap();
        let usage = store.usage().unwrap();
        assert_eq!((usage.blobs, usage.blob_bytes), (2, 1024));
        assert_eq!(usage.ingest_bytes, 10);
        assert!(usage.meta_bytes > 0);
        drop(w);
    }

    #[test]
    fn gc_guard_excludes_prune_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let guard = store.gc_guard().unwrap();
        let probe = std::fs::File::open(store.layout().gc_lock()).unwrap();
        assert!(probe.try_lock().is_err());
        drop(guard);
        probe.try_lock().unwrap();
    }

    #[test]
    fn abandoned_ingest_is_invisible_after_reopen_and_pruned_when_stale() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = vec![9u8; 100_000];
        let mut writer = store.content().writer().unwrap();
        writer.write_all(&data[..60_000]).unwrap();
        writer.flush().unwrap();
        // Leak the writer: its temp file stays, as if the process had been killed.
        std::mem::forget(writer);

        let reopened = Store::open(dir.path()).unwrap();
        assert!(reopened.content().list().unwrap().is_empty());
        let temps = reopened.content().ingest_temps().unwrap();
        assert_eq!(temps.len(), 1);
        assert_eq!(temps[0].size, 60_000);

        let fresh = reopened.prune(&BTreeSet::new(), None).unwrap();
        assert!(fresh.temps_removed.is_empty());
        let options = PruneOptions {
            ingest_max_age: std::time::Duration::ZERO,
            ..PruneOptions::default()
        };
        let stale = reopened.prune_with(&BTreeSet::new(), &options).unwrap();
        assert_eq!(stale.temps_removed, vec![temps[0].path.clone()]);
        // The store still works normally afterwards.
        let d = reopened.content().ingest(None, &data[..]).unwrap();
        assert_eq!(d, Descriptor::of(&data));
    }
}
