//! Unpacking a stored image into snapshots: one committed snapshot per layer, keyed by the
//! OCI chain ID of the layers up to it, so images sharing a base share its snapshots and
//! an image is unpacked once however often it is run.
//!
//! This lives in the image crate (which now depends on the executor) rather than the other
//! way round: the executor knows namespaces and directories, not OCI manifests, layer
//! blobs or diffIDs, and stays free of the image formats.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rbuild_cache::{ContentError, ContentStore, Digest, Hasher};
use rbuild_executor::snapshot::{ActiveSnapshot, Committed, SnapshotError, Snapshotter};

use crate::compress::{CompressError, decompressed_reader};
use crate::layer::{ApplyError, ApplyOptions, apply};
use crate::local::{Image, ImageStore, LocalError};

/// Directory of the snapshot store inside a store root.
pub const SNAPSHOTS_DIR: &str = "snapshots-v1";

/// Errors of unpacking an image.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("image has {layers} layers but its config lists {diff_ids} diffIDs")]
    LayerCount { layers: usize, diff_ids: usize },
    #[error("cannot open layer {0}")]
    Open(Digest, #[source] ContentError),
    #[error("cannot decompress layer {0}")]
    Decompress(Digest, #[source] CompressError),
    #[error("cannot apply layer {0}")]
    Apply(Digest, #[source] ApplyError),
    #[error("layer {layer} unpacks to {actual}, not its diffID {expected}")]
    DiffId {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The snapshot store of the store root `root` (`<root>/snapshots-v1`).
pub fn open_snapshotter(root: &Path) -> Result<Snapshotter, SnapshotError> {
    Snapshotter::open(root.join(SNAPSHOTS_DIR))
}

/// OCI chain IDs of a layer stack (bottom first): `ChainID(L0) = DiffID(L0)`,
/// `ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => {
                Digest::sha256_of(format!("{} {}", parent.as_str(), diff_id.as_str()).as_bytes())
            }
        };
        out.push(next);
    }
    out
}

/// An image's layers as committed snapshots.
#[derive(Debug)]
pub struct Unpacked {
    /// One per layer, base first (the `parents` of a prepare).
    pub layers: Vec<Committed>,
    /// How many of them this call had to unpack (0 when all existed).
    pub unpacked: usize,
}

/// Counts (hashes) what goes through it: the uncompressed layer tar, for its diffID.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Makes sure every layer of `image` is a committed snapshot, unpacking the missing ones
/// (verifying each against its diffID); existing snapshots are reused.
///
/// Unpacks are serialised across processes by a lock file in the snapshot store, so two
/// runs of a new image unpack it once.
pub fn unpack(
    images: &ImageStore,
    snapshotter: &Snapshotter,
    image: &Image,
) -> Result<Unpacked, UnpackError> {
    let diff_ids = &image.config.rootfs.diff_ids;
    if diff_ids.len() != image.manifest.layers.len() {
        return Err(UnpackError::LayerCount {
            layers: image.manifest.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let chains = chain_ids(diff_ids);
    let mut layers = Vec::with_capacity(chains.len());
    let mut unpacked = 0;
    // Fast path without the lock: everything is already there.
    for chain in &chains {
        match snapshotter.committed(chain.as_str()) {
            Ok(c) => layers.push(c),
            Err(SnapshotError::NotFound(_)) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if layers.len() == chains.len() {
        return Ok(Unpacked { layers, unpacked });
    }
    let lock_path = snapshotter.root().join("unpack.lock");
    let lock_err = |source| UnpackError::Lock {
        path: lock_path.clone(),
        source,
    };
    let lock = std::fs::File::create(&lock_path).map_err(lock_err)?;
    lock.lock().map_err(lock_err)?;
    layers.clear();
    for ((chain, diff_id), desc) in chains.iter().zip(diff_ids).zip(&image.manifest.layers) {
        let committed = match snapshotter.committed(chain.as_str()) {
            Ok(c) => c,
            Err(SnapshotError::NotFound(_)) => {
                // Under the lock, an active snapshot of this key is a killed unpack's.
                snapshotter.remove_abandoned(chain.as_str())?;
                let active = snapshotter.prepare(chain.as_str(), &layers)?;
                match apply_layer(images, &active, &desc.digest, diff_id) {
                    Ok(()) => {}
                    Err(e) => {
                        let _ = snapshotter.remove_active(active);
                        return Err(e);
                    }
                }
                unpacked += 1;
                snapshotter.commit(active)?
            }
            Err(e) => return Err(e.into()),
        };
        layers.push(committed);
    }
    if unpacked > 0 {
        snapshotter.sync()?;
    }
    Ok(Unpacked { layers, unpacked })
}

/// Key prefix of container snapshots (`rbuild run`).
const CONTAINER_PREFIX: &str = "run-";
/// Directory (in the snapshot store) of the lock files that mark containers alive.
const CONTAINER_LOCKS: &str = "containers";

/// A container's writable snapshot, and the lock that tells other processes its owner is
/// alive: a snapshot whose lock can be taken was left by a killed process.
#[derive(Debug)]
pub struct Container {
    snapshot: ActiveSnapshot,
    lock_path: PathBuf,
    _lock: std::fs::File,
}

impl Container {
    pub fn snapshot(&self) -> &ActiveSnapshot {
        &self.snapshot
    }

    /// Throws the container's changes away.
    pub fn remove(self, snapshotter: &Snapshotter) -> Result<(), SnapshotError> {
        let removed = snapshotter.remove_active(self.snapshot);
        // Removed while still locked: a sweeper never takes a live container's lock.
        let _ = std::fs::remove_file(&self.lock_path);
        removed
    }
}

/// A writable snapshot on `layers` for a container with a unique `id`. Containers left by
/// killed processes (their overlay possibly still mounted) are removed first.
pub fn prepare_container(
    snapshotter: &Snapshotter,
    layers: &[Committed],
    id: &str,
) -> Result<Container, UnpackError> {
    let locks = snapshotter.root().join(CONTAINER_LOCKS);
    std::fs::create_dir_all(&locks).map_err(|source| UnpackError::Lock {
        path: locks.clone(),
        source,
    })?;
    sweep_containers(snapshotter, &locks);
    let key = format!("{CONTAINER_PREFIX}{id}");
    let lock_path = locks.join(format!("{key}.lock"));
    let lock_err = |source| UnpackError::Lock {
        path: lock_path.clone(),
        source,
    };
    let lock = std::fs::File::create(&lock_path).map_err(lock_err)?;
    lock.lock().map_err(lock_err)?;
    // The layers it stands on, for a prune to leave alone while it lives.
    let keys: String = layers.iter().map(|l| format!("{}\n", l.key())).collect();
    io::Write::write_all(&mut &lock, keys.as_bytes()).map_err(lock_err)?;
    match snapshotter.prepare(&key, layers) {
        Ok(snapshot) => Ok(Container {
            snapshot,
            lock_path,
            _lock: lock,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&lock_path);
            Err(e.into())
        }
    }
}

/// Removes the container snapshots whose owners are gone. Best effort: a container that
/// cannot be removed now is tried again by the next run.
fn sweep_containers(snapshotter: &Snapshotter, locks: &Path) {
    let Ok(entries) = std::fs::read_dir(snapshotter.root().join("active")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(key) = name.to_str().filter(|k| k.starts_with(CONTAINER_PREFIX)) else {
            continue;
        };
        let lock_path = locks.join(format!("{key}.lock"));
        // The lock file lives as long as the snapshot, so a missing one means the owner
        // died between the two; a lock that can be taken means it died since.
        let lock = match std::fs::File::open(&lock_path) {
            Ok(f) => match f.try_lock() {
                Ok(()) => Some(f),
                Err(_) => continue,
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(_) => continue,
        };
        if snapshotter.remove_abandoned(key).is_ok() {
            let _ = std::fs::remove_file(&lock_path);
        }
        drop(lock);
    }
}

/// The lock file that orders snapshot users against a prune: held shared by whoever
/// looks layers up and builds on them ([`hold_snapshots`]), exclusive by the prune.
const GC_LOCK: &str = "gc.lock";

/// Keeps a prune from removing snapshots while held (shared with other holders): take it
/// before looking layers up, keep it at least until they are in use (a container's lock
/// lists its layers) or for as long as they are used (a build).
pub fn hold_snapshots(snapshotter: &Snapshotter) -> Result<std::fs::File, UnpackError> {
    let path = snapshotter.root().join(GC_LOCK);
    let err = |source| UnpackError::Lock {
        path: path.clone(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    f.lock_shared().map_err(err)?;
    Ok(f)
}

/// The snapshot keys (chain IDs) of every stored image.
fn image_keys(images: &ImageStore) -> Result<BTreeSet<String>, UnpackError> {
    let mut keys = BTreeSet::new();
    for (manifest_digest, _) in images
        .store()
        .meta()
        .list_images()
        .map_err(LocalError::from)?
    {
        let manifest = images.read_manifest(&manifest_digest)?;
        let config = images.read_config(&manifest)?;
        keys.extend(
            chain_ids(&config.rootfs.diff_ids)
                .into_iter()
                .map(|c| c.as_str().to_owned()),
        );
    }
    Ok(keys)
}

/// The layer keys live containers stand on (their lock files list them).
fn live_container_keys(snapshotter: &Snapshotter) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(snapshotter.root().join(CONTAINER_LOCKS)) else {
        return keys;
    };
    for e in entries.flatten() {
        let Ok(f) = std::fs::File::open(e.path()) else {
            continue;
        };
        // A lock we can take is a dead container's.
        if f.try_lock_shared().is_ok() {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            keys.extend(text.lines().map(str::to_owned));
        }
    }
    keys
}

/// Space used by the snapshot store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotUsage {
    /// Committed layer snapshots.
    pub layers: usize,
    /// Of which an image or a running container uses.
    pub in_use: usize,
    /// Bytes of the whole store (layers, containers, leftovers).
    pub bytes: u64,
    /// Bytes a prune would free.
    pub reclaimable: u64,
}

/// What the snapshot store holds and what a prune would free.
pub fn snapshot_usage(
    images: &ImageStore,
    snapshotter: &Snapshotter,
) -> Result<SnapshotUsage, UnpackError> {
    let mut keep = image_keys(images)?;
    keep.extend(live_container_keys(snapshotter));
    let layers = snapshotter.list()?;
    let mut usage = SnapshotUsage {
        layers: layers.len(),
        bytes: rbuild_executor::snapshot::disk_usage(snapshotter.root()),
        ..SnapshotUsage::default()
    };
    for l in &layers {
        if keep.contains(l.key()) {
            usage.in_use += 1;
        } else {
            usage.reclaimable += rbuild_executor::snapshot::disk_usage(l.dir());
        }
    }
    Ok(usage)
}

/// What [`prune_snapshots`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunedSnapshots {
    pub keys: Vec<String>,
    pub reclaimed: u64,
}

/// Removes the layer snapshots no stored image references and no running container
/// stands on, and what killed runs left. Waits for snapshot users that hold
/// [`hold_snapshots`] (they are quick: a run holds it until its container lists its
/// layers) and keeps new ones out until done.
pub fn prune_snapshots(
    images: &ImageStore,
    snapshotter: &Snapshotter,
) -> Result<PrunedSnapshots, UnpackError> {
    let path = snapshotter.root().join(GC_LOCK);
    let err = |source| UnpackError::Lock {
        path: path.clone(),
        source,
    };
    let gc = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    gc.lock().map_err(err)?;
    let locks = snapshotter.root().join(CONTAINER_LOCKS);
    sweep_containers(snapshotter, &locks);
    let mut keep = image_keys(images)?;
    keep.extend(live_container_keys(snapshotter));
    let mut pruned = PrunedSnapshots::default();
    for layer in snapshotter.list()? {
        if keep.contains(layer.key()) {
            continue;
        }
        let bytes = rbuild_executor::snapshot::disk_usage(layer.dir());
        let key = layer.key().to_owned();
        snapshotter.remove(layer)?;
        pruned.keys.push(key);
        pruned.reclaimed += bytes;
    }
    drop(gc);
    Ok(pruned)
}

fn apply_layer(
    images: &ImageStore,
    active: &ActiveSnapshot,
    blob: &Digest,
    diff_id: &Digest,
) -> Result<(), UnpackError> {
    let file = images
        .store()
        .content()
        .open(blob)
        .map_err(|e| UnpackError::Open(blob.clone(), e))?;
    let plain = decompressed_reader(io::BufReader::new(file))
        .map_err(|e| UnpackError::Decompress(blob.clone(), e))?;
    let mut reader = HashingReader {
        inner: plain,
        hasher: Hasher::new(),
    };
    apply(&mut reader, active.path(), &ApplyOptions::default())
        .map_err(|e| UnpackError::Apply(blob.clone(), e))?;
    let actual = reader.hasher.finish();
    if &actual != diff_id {
        return Err(UnpackError::DiffId {
            layer: blob.clone(),
            expected: diff_id.clone(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        let want = Digest::sha256_of(format!("{} {}", a.as_str(), b.as_str()).as_bytes());
        assert_eq!(chains[1], want);
        assert!(chain_ids(&[]).is_empty());
    }
}
