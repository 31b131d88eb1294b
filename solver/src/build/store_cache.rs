//! The build cache in the store: step results recorded in the metadata database's cache
//! index ([`super::record`]), checked against the snapshots they name on every hit.
//!
//! Records are written in batches ([`StoreCache::flush`]): first one `syncfs` makes every
//! layer committed so far durable (snapshots are committed on volatile overlays), then one
//! transaction writes the records. A record therefore never names a layer a crash could
//! lose, and a build pays for one sync per batch instead of one per step. A build killed
//! before a flush loses only the records of that batch; its layers are then unreferenced.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rbuild_cache::Meta;
use rbuild_executor::snapshot::{SnapshotError, Snapshotter};

use super::error::StepError;
use super::fs::Fs;
use super::record::{StepRecord, step_key};
use crate::blocking::blocking;
use crate::cache::{Cache, CacheKey};

/// A [`Cache`] of build results in one store.
#[derive(Debug, Clone)]
pub struct StoreCache {
    meta: Meta,
    snapshotter: Arc<Snapshotter>,
    /// `false` for `--no-cache`: nothing is reused, results are still recorded.
    read: bool,
    /// Records not yet written (database key → record).
    pending: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

/// Records buffered before a flush is forced.
const FLUSH_EVERY: usize = 32;

impl StoreCache {
    pub fn new(meta: Meta, snapshotter: Arc<Snapshotter>, read: bool) -> StoreCache {
        StoreCache {
            meta,
            snapshotter,
            read,
            pending: Arc::default(),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // Inserts and takes cannot leave the map half-updated.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the layers durable and writes every buffered record in one transaction.
    pub fn flush(&self) -> Result<(), StepError> {
        let batch = std::mem::take(&mut *self.pending());
        if batch.is_empty() {
            return Ok(());
        }
        let written = self
            .snapshotter
            .sync()
            .map_err(StepError::Snapshot)
            .and_then(|()| {
                self.meta
                    .write(|tx| {
                        for (k, v) in &batch {
                            tx.cache_put(k, v)?;
                        }
                        Ok::<_, rbuild_cache::MetaError>(())
                    })
                    .map_err(StepError::Meta)
            });
        if written.is_err() {
            // Put back, so a later flush may still succeed.
            let mut pending = self.pending();
            for (k, v) in batch {
                pending.entry(k).or_insert(v);
            }
        }
        written
    }

    /// The recorded result of `key`, if every snapshot it names still exists.
    pub fn lookup(&self, key: &CacheKey) -> Result<Option<Fs>, StepError> {
        let db_key = step_key(key);
        let buffered = self.pending().get(&db_key).cloned();
        let bytes = match buffered {
            Some(b) => b,
            None => match self.meta.cache_get(&db_key).map_err(StepError::Meta)? {
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
        Ok(Some(Fs::layers(record.into_layers())))
    }

    /// Records the result of `key`; the build context is never recorded (it is a
    /// directory of this machine, re-read by every build).
    pub fn record(&self, key: &CacheKey, value: &Fs) -> Result<(), StepError> {
        let Some(layers) = value.as_layers() else {
            return Ok(());
        };
        let bytes = StepRecord::from_layers(layers).encode();
        let full = {
            let mut pending = self.pending();
            pending.insert(step_key(key), bytes);
            pending.len() >= FLUSH_EVERY
        };
        if full { self.flush() } else { Ok(()) }
    }
}

impl Cache<Fs> for StoreCache {
    type Error = StepError;

    async fn get(&self, key: &CacheKey) -> Result<Option<Fs>, StepError> {
        if !self.read {
            return Ok(None);
        }
        let this = self.clone();
        let key = key.clone();
        blocking(move || this.lookup(&key)).await?
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
        // Buffered until a flush; then another handle (a later build) sees it.
        let later = StoreCache::new(cache.meta.clone(), snap.clone(), true);
        assert!(later.get(&key).await.unwrap().is_none());
        cache.flush().unwrap();
        assert!(later.get(&key).await.unwrap().is_some());

        // --no-cache: never a hit, still recorded.
        let blind = StoreCache::new(cache.meta.clone(), snap.clone(), false);
        assert!(blind.get(&key).await.unwrap().is_none());
        blind.put(&other, &fs).await.unwrap();
        blind.flush().unwrap();
        assert!(cache.get(&other).await.unwrap().is_some());

        // A record whose snapshot is gone is a miss.
        snap.remove(snap.committed("layer-a").unwrap()).unwrap();
        assert!(cache.get(&key).await.unwrap().is_none());
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
