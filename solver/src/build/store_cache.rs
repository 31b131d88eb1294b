//! The build cache in the store: step results recorded in the metadata database's cache
//! index ([`super::record`]), checked against the snapshots they name on every hit.
//!
//! Records are written in batches ([`StoreCache::flush`]): first the layers the batch's
//! records name and no earlier flush made durable are synced (snapshots are committed on
//! volatile overlays, so a commit is atomic but not durable), then one transaction writes
//! the records. A record therefore never names a layer a crash could lose, and a build
//! pays for one durability barrier per batch instead of one per step. The barrier syncs
//! just those layers' files and directories when they are few (a trivial step's layer is
//! a handful of entries), else the whole filesystem
//! ([`Snapshotter::sync_layers`]). A build killed before a flush loses only the records of
//! that batch; its layers are then unreferenced.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use rbuild_cache::Meta;
use rbuild_executor::snapshot::{SnapshotError, Snapshotter};

use super::cache_from::CacheFrom;
use super::error::StepError;
use super::explainer::Bypass;
use super::fs::Fs;
use super::record::{STEP_PREFIX, StepRecord, step_key};
use crate::blocking::blocking;
use crate::cache::{Cache, CacheKey};

/// A [`Cache`] of build results in one store.
#[derive(Debug, Clone)]
pub struct StoreCache {
    meta: Meta,
    snapshotter: Arc<Snapshotter>,
    /// `false` for `--no-cache`: nothing is reused, results are still recorded.
    read: bool,
    /// Keys never reused in this build (`--no-cache-filter`).
    bypass: Arc<Bypass>,
    /// Images whose layers may stand in for a missing result (`--cache-from`).
    cache_from: Option<Arc<CacheFrom>>,
    /// Other records written with the next flush: puts and removals (`--explain`).
    extra: Arc<Mutex<(Records, Vec<Vec<u8>>)>>,
    /// Results taken from `--cache-from` images.
    from_images: Arc<std::sync::atomic::AtomicUsize>,
    /// Records not yet written (database key → record).
    pending: Arc<Mutex<Records>>,
    /// Built layers (no blob yet) the pending records name: synced by the next flush
    /// unless in `durable`.
    pending_layers: Arc<Mutex<BTreeSet<String>>>,
    /// Layers known durable: synced by an earlier flush, or named by a record read from
    /// the database (which was only written after they were synced).
    durable: Arc<Mutex<BTreeSet<String>>>,
    /// Every step record, read in one transaction at the first lookup (a build asks for
    /// many keys; one database open each would dominate a no-op rebuild). Records other
    /// builds write later are not seen: a miss, never a false hit.
    index: Arc<Mutex<Option<Records>>>,
}

/// Database key → encoded record.
type Records = BTreeMap<Vec<u8>, Vec<u8>>;

/// Records buffered before a flush is forced.
const FLUSH_EVERY: usize = 32;

impl StoreCache {
    pub fn new(meta: Meta, snapshotter: Arc<Snapshotter>, read: bool) -> StoreCache {
        StoreCache {
            meta,
            snapshotter,
            read,
            bypass: Arc::default(),
            cache_from: None,
            extra: Arc::default(),
            from_images: Arc::default(),
            pending: Arc::default(),
            pending_layers: Arc::default(),
            durable: Arc::default(),
            index: Arc::default(),
        }
    }

    /// Never reuses the keys `bypass` holds.
    pub fn with_bypass(mut self, bypass: Arc<Bypass>) -> StoreCache {
        self.bypass = bypass;
        self
    }

    /// Falls back to the layers of these images on a miss.
    pub fn with_cache_from(mut self, cache_from: Arc<CacheFrom>) -> StoreCache {
        self.cache_from = Some(cache_from);
        self
    }

    /// How many results came from `--cache-from` images.
    pub fn cache_from_hits(&self) -> usize {
        self.from_images.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes these records and removes those keys with the next flush.
    pub fn stage_writes(&self, puts: Records, removals: Vec<Vec<u8>>) {
        let mut extra = self.extra.lock().unwrap_or_else(|e| e.into_inner());
        extra.0.extend(puts);
        extra.1.extend(removals);
    }

    /// The stored record of a database key, from the index read once per cache.
    fn stored(&self, db_key: &[u8]) -> Result<Option<Vec<u8>>, StepError> {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if index.is_none() {
            let all = self
                .meta
                .read(|tx| tx.cache_scan(STEP_PREFIX))
                .map_err(StepError::Meta)?;
            *index = Some(all.into_iter().collect());
        }
        Ok(index.as_ref().and_then(|i| i.get(db_key).cloned()))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Records> {
        // Inserts and takes cannot leave the map half-updated.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the layers durable and writes every buffered record in one transaction.
    pub fn flush(&self) -> Result<(), StepError> {
        let batch = std::mem::take(&mut *self.pending());
        let (puts, removals) =
            std::mem::take(&mut *self.extra.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.is_empty() && puts.is_empty() && removals.is_empty() {
            return Ok(());
        }
        // Only step records name layers that must be durable first.
        let layers: Vec<String> = {
            let taken = std::mem::take(&mut *lock(&self.pending_layers));
            let durable = lock(&self.durable);
            taken.into_iter().filter(|k| !durable.contains(k)).collect()
        };
        let keys: Vec<&str> = layers.iter().map(String::as_str).collect();
        let written = self
            .snapshotter
            .sync_layers(&keys)
            .map_err(StepError::Snapshot)
            .and_then(|()| {
                self.meta
                    .write(|tx| {
                        for (k, v) in batch.iter().chain(&puts) {
                            tx.cache_put(k, v)?;
                        }
                        for k in &removals {
                            tx.cache_remove(k)?;
                        }
                        Ok::<_, rbuild_cache::MetaError>(())
                    })
                    .map_err(StepError::Meta)
            });
        if written.is_ok()
            && let Some(index) = self
                .index
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
        {
            index.extend(batch.clone());
        }
        if written.is_err() {
            // Put back, so a later flush may still succeed.
            let mut pending = self.pending();
            for (k, v) in batch {
                pending.entry(k).or_insert(v);
            }
            drop(pending);
            self.stage_writes(puts, removals);
            lock(&self.pending_layers).extend(layers);
        } else {
            lock(&self.durable).extend(layers);
        }
        written
    }

    /// The recorded result of `key`, if every snapshot it names still exists.
    pub fn lookup(&self, key: &CacheKey) -> Result<Option<Fs>, StepError> {
        let db_key = step_key(key);
        let buffered = self.pending().get(&db_key).cloned();
        // Read back from the database: its layers were synced before it was written.
        let from_database = buffered.is_none();
        let bytes = match buffered {
            Some(b) => b,
            None => match self.stored(&db_key)? {
                Some(b) => b,
                None => return Ok(None),
            },
        };
        let Some(record) = StepRecord::decode(&bytes) else {
            return Ok(None);
        };
        for layer in &record.layers {
            match self.snapshotter.committed(&layer.snapshot) {
                Ok(_) => {}
                // Removed since (or never made on this machine): a miss, not an error.
                Err(SnapshotError::NotFound(_) | SnapshotError::InvalidKey(_)) => {
                    return Ok(None);
                }
                Err(e) => return Err(StepError::Snapshot(e)),
            }
        }
        if from_database {
            lock(&self.durable).extend(record.layers.iter().map(|l| l.snapshot.clone()));
        }
        Ok(Some(Fs::layers(record.into_layers())))
    }

    /// Records the result of `key`; the build context is never recorded (it is a
    /// directory of this machine, re-read by every build).
    pub fn record(&self, key: &CacheKey, value: &Fs) -> Result<(), StepError> {
        let Some(layers) = value.as_layers() else {
            return Ok(());
        };
        let bytes = StepRecord::from_layers(layers).encode();
        lock(&self.pending_layers).extend(
            layers
                .iter()
                .filter(|l| l.blob.is_none())
                .map(|l| l.snapshot.clone()),
        );
        let full = {
            let mut pending = self.pending();
            pending.insert(step_key(key), bytes);
            pending.len() >= FLUSH_EVERY
        };
        if full { self.flush() } else { Ok(()) }
    }
}

/// Inserts and takes cannot leave a set half-updated, so a poisoned lock is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cache<Fs> for StoreCache {
    type Error = StepError;

    async fn get(&self, key: &CacheKey) -> Result<Option<Fs>, StepError> {
        if !self.read || self.bypass.contains(key) {
            return Ok(None);
        }
        let this = self.clone();
        let key = key.clone();
        blocking(move || {
            if let Some(hit) = this.lookup(&key)? {
                return Ok(Some(hit));
            }
            let Some(from) = &this.cache_from else {
                return Ok(None);
            };
            let Some(hit) = from
                .lookup(&key)
                .map_err(|e| StepError::CacheFrom(Box::new(e)))?
            else {
                return Ok(None);
            };
            // Remembered like a built result: the next build finds it without the image.
            this.record(&key, &hit)?;
            this.from_images
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(Some(hit))
        })
        .await?
    }

    async fn put(&self, key: &CacheKey, value: &Fs) -> Result<(), StepError> {
        let this = self.clone();
        let key = key.clone();
        let value = value.clone();
        blocking(move || this.record(&key, &value)).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fs::{Layer, LayerBlob};
    use rbuild_executor::snapshot::Backend;

    fn setup() -> (tempfile::TempDir, StoreCache, Arc<Snapshotter>) {
        let dir = tempfile::tempdir().unwrap();
        let store = rbuild_cache::Store::open(&dir.path().join("store")).unwrap();
        let snap = Arc::new(
            Snapshotter::with_backend(
                dir.path().join("snaps"),
                Backend::Copy {
                    reason: "test".into(),
                },
            )
            .unwrap(),
        );
        let cache = StoreCache::new(store.meta().clone(), snap.clone(), true);
        (dir, cache, snap)
    }

    #[tokio::test]
    async fn records_survive_and_need_their_snapshots() {
        let (_dir, cache, snap) = setup();
        let a = snap.prepare("layer-a", &[]).unwrap();
        std::fs::write(a.path().join("f"), "x").unwrap();
        snap.commit(a).unwrap();
        let fs = Fs::layers(vec![Layer {
            snapshot: "layer-a".into(),
            blob: Some(LayerBlob {
                media_type: "m".into(),
                digest: rbuild_cache::Digest::sha256_of(b"b"),
                size: 1,
                diff_id: rbuild_cache::Digest::sha256_of(b"d"),
            }),
        }]);
        let key = CacheKey::derive(&[b"step"], &[]);
        let other = CacheKey::derive(&[b"other"], &[]);
        assert!(cache.get(&key).await.unwrap().is_none());
        cache.put(&key, &fs).await.unwrap();
        let hit = cache.get(&key).await.unwrap().expect("hit");
        assert_eq!(hit.as_layers(), fs.as_layers());
        assert!(cache.get(&other).await.unwrap().is_none());
        // Buffered until a flush; then a later build sees it, and this one still does.
        let before = StoreCache::new(cache.meta.clone(), snap.clone(), true);
        assert!(before.get(&key).await.unwrap().is_none());
        cache.flush().unwrap();
        assert!(cache.get(&key).await.unwrap().is_some());
        let later = StoreCache::new(cache.meta.clone(), snap.clone(), true);
        assert!(later.get(&key).await.unwrap().is_some());

        // --no-cache: never a hit, still recorded.
        let blind = StoreCache::new(cache.meta.clone(), snap.clone(), false);
        assert!(blind.get(&key).await.unwrap().is_none());
        blind.put(&other, &fs).await.unwrap();
        blind.flush().unwrap();
        let after = StoreCache::new(cache.meta.clone(), snap.clone(), true);
        assert!(after.get(&other).await.unwrap().is_some());

        // A record whose snapshot is gone is a miss.
        snap.remove(snap.committed("layer-a").unwrap()).unwrap();
        assert!(cache.get(&key).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn built_layers_are_synced_once_before_their_records() {
        let (_dir, cache, snap) = setup();
        let built = |key: &str| {
            let a = snap.prepare(key, &[]).unwrap();
            std::fs::create_dir(a.path().join("d")).unwrap();
            std::fs::write(a.path().join("d/f"), key).unwrap();
            snap.commit(a).unwrap();
            Layer {
                snapshot: key.into(),
                blob: None,
            }
        };
        let first = built("built-1");
        let one = Fs::layers(vec![first.clone()]);
        let two = Fs::layers(vec![first, built("built-2")]);
        let (k1, k2) = (
            CacheKey::derive(&[b"one"], &[]),
            CacheKey::derive(&[b"two"], &[]),
        );
        cache.put(&k1, &one).await.unwrap();
        assert_eq!(lock(&cache.pending_layers).len(), 1);
        cache.flush().unwrap();
        assert!(lock(&cache.durable).contains("built-1"));
        cache.put(&k2, &two).await.unwrap();
        cache.flush().unwrap();
        assert_eq!(lock(&cache.durable).len(), 2);
        assert!(lock(&cache.pending_layers).is_empty());
        let later = StoreCache::new(cache.meta.clone(), snap.clone(), true);
        let hit = later.get(&k2).await.unwrap().expect("hit");
        assert_eq!(hit.as_layers(), two.as_layers());
        // Records read back name layers made durable before they were written.
        assert_eq!(lock(&later.durable).len(), 2);
    }

    #[tokio::test]
    async fn the_context_is_never_recorded() {
        let (dir, cache, _snap) = setup();
        let key = CacheKey::derive(&[b"ctx"], &[]);
        let ctx = Fs::context(dir.path().to_owned(), Default::default());
        cache.put(&key, &ctx).await.unwrap();
        cache.flush().unwrap();
        assert!(cache.meta.cache_get(&step_key(&key)).unwrap().is_none());
    }
}
