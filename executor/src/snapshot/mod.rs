//! The snapshotter: root filesystems for `RUN` steps built from committed layer
//! directories.
//!
//! - [`Snapshotter::prepare`] makes a writable tree from committed parents (listed base
//!   first); with overlayfs it mounts `lowerdir` = the parents' directories, a new upper
//!   and work dir (an empty lower when there is no parent).
//! - [`Snapshotter::commit`] turns the changes into a committed layer directory in
//!   overlay format (whiteouts as 0/0 character devices, opaque directories marked with
//!   `trusted.overlay.opaque=y`): with overlayfs the upper dir itself is renamed.
//! - [`Snapshotter::view`] is a read-only tree of committed parents; `remove` deletes.
//!
//! More lowers than fit in one mount option page go through `fsconfig`'s `lowerdir+`;
//! more than overlayfs stacks (500), or a kernel refusing them, are flattened into one
//! lower. Where overlayfs cannot be mounted at all (probed in the store at open), a copy
//! backend applies the layers into a plain directory and computes the layer back by
//! comparing it to a manifest of the base; [`Snapshotter::backend`] reports which.

mod durable;
pub(crate) mod tree;

use std::io;
use std::path::{Path, PathBuf};

use crate::spec::Rootfs;
use crate::sys::{Mount, Mounter, MsFlags, Overlay, RealSys};

/// The most lower layers overlayfs stacks (`OVL_MAX_STACK`).
const OVERLAY_MAX_STACK: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("invalid snapshot key {0:?}")]
    InvalidKey(String),
    #[error("snapshot {0} already exists")]
    Exists(String),
    #[error("snapshot {0} not found")]
    NotFound(String),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Sys(#[from] crate::sys::SysError),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// How snapshots are made in this store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Overlay,
    /// Plain copies, because overlayfs could not be used; `reason` says why.
    Copy {
        reason: String,
    },
}

/// A committed, immutable layer directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    key: String,
    dir: PathBuf,
}

impl Committed {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The layer directory, in overlay format (the input of the layer tar diff).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// How an active snapshot's tree is held.
#[derive(Debug)]
enum ActiveKind {
    /// Mounted overlay; the upper dir holds the changes.
    Overlay { upper: PathBuf },
    /// A plain copy and the manifest of its base.
    Copy { base: tree::Manifest },
}

/// A writable tree being changed by a step; commit or remove it (dropping it removes it).
#[derive(Debug)]
pub struct ActiveSnapshot {
    key: String,
    dir: PathBuf,
    merged: PathBuf,
    kind: Option<ActiveKind>,
}

impl ActiveSnapshot {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The tree the step sees as `/`.
    pub fn path(&self) -> &Path {
        &self.merged
    }

    /// The rootfs to hand to the sandbox.
    pub fn rootfs(&self) -> Rootfs {
        Rootfs::Dir(self.merged.clone())
    }

    /// The overlay upper dir (changes so far), when the overlay backend is used.
    pub fn upper(&self) -> Option<&Path> {
        match &self.kind {
            Some(ActiveKind::Overlay { upper, .. }) => Some(upper),
            _ => None,
        }
    }

    fn teardown(&mut self) -> Result<(), SnapshotError> {
        if let Some(ActiveKind::Overlay { .. }) = self.kind.take() {
            unmount(&self.merged)?;
        }
        discard(&self.dir)
    }
}

impl Drop for ActiveSnapshot {
    fn drop(&mut self) {
        // Best effort: an abandoned step leaves nothing mounted or half-visible.
        let _ = self.teardown();
    }
}

/// A read-only tree of committed layers.
#[derive(Debug)]
pub struct View {
    dir: PathBuf,
    merged: PathBuf,
    mounted: bool,
}

impl View {
    pub fn path(&self) -> &Path {
        &self.merged
    }

    fn teardown(&mut self) -> Result<(), SnapshotError> {
        if std::mem::take(&mut self.mounted) {
            unmount(&self.merged)?;
        }
        discard(&self.dir)
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// The store directory that `discard` moves trees to.
const TRASH: &str = "trash";

static TRASHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Removes `dir` (an entry of `<store>/active`, `views` or `layers`) off the caller's
/// path: one rename into the store's trash makes it disappear at once (its key is free,
/// nothing half-deleted stays visible), and a background thread deletes it. Deleting an
/// overlay's work dir right after the unmount costs 5-25 ms on a busy machine, most of
/// a step's commit; the next step need not wait for it. Whatever a killed process left
/// in the trash is deleted when the store is next opened.
fn discard(dir: &Path) -> Result<(), SnapshotError> {
    let Some(trash) = dir.parent().and_then(Path::parent).map(|r| r.join(TRASH)) else {
        return Ok(());
    };
    let name = format!(
        "{}-{}",
        std::process::id(),
        TRASHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let target = trash.join(name);
    match std::fs::rename(dir, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // No trash (a store made by an older rbuild) or another filesystem: inline.
        Err(_) => {
            return std::fs::remove_dir_all(dir).map_err(io_err("remove", dir));
        }
    }
    let spawned = std::thread::Builder::new()
        .name("rbuild-trash".into())
        .spawn({
            let target = target.clone();
            move || {
                let _ = std::fs::remove_dir_all(&target);
            }
        });
    if spawned.is_err() {
        std::fs::remove_dir_all(&target).map_err(io_err("remove", &target))?;
    }
    Ok(())
}

/// Deletes (in the background) what earlier processes left in the trash.
fn empty_trash(root: &Path) {
    let trash = root.join(TRASH);
    let Ok(entries) = std::fs::read_dir(&trash) else {
        return;
    };
    let leftovers: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    if leftovers.is_empty() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("rbuild-trash".into())
        .spawn(move || {
            for p in leftovers {
                let _ = std::fs::remove_dir_all(p);
            }
        });
}

fn unmount(path: &Path) -> Result<(), SnapshotError> {
    // Always lazy: a plain umount2 waits for an RCU grace period (over 10 ms on a busy
    // machine, most of a step's commit), a detach defers it. The tree is no different:
    // the sandbox that used it is gone, and a leftover holder would only have made a
    // plain unmount fail with EBUSY, which we answered with a detach anyway.
    Ok(RealSys.umount(path, true)?)
}

/// The directory name of a key: bytes outside `[A-Za-z0-9_-]` (and a `.` anywhere but
/// inside a name) are percent-encoded, so any key — a digest like `sha256:…` included —
/// maps to exactly one name that is safe in a path and in overlay mount options (which
/// split on `,` and `:`).
fn key_dir(key: &str) -> Result<String, SnapshotError> {
    let mut out = String::with_capacity(key.len());
    for (i, b) in key.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b'-')
            || (b == b'.' && i > 0 && i + 1 < key.len());
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if key.is_empty() || out.len() > 200 {
        return Err(SnapshotError::InvalidKey(key.to_owned()));
    }
    Ok(out)
}

/// The key a [`key_dir`] name stands for.
fn key_from_dir(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let key = String::from_utf8(out).ok()?;
    (key_dir(&key).ok()? == name).then_some(key)
}

/// Bytes a tree takes on disk (allocated blocks, each inode once), like `du`.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    let mut todo = vec![path.to_owned()];
    while let Some(p) = todo.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
        if m.is_dir()
            && let Ok(entries) = std::fs::read_dir(&p)
        {
            todo.extend(entries.flatten().map(|e| e.path()));
        }
    }
    total
}

/// Snapshots in one store directory.
#[derive(Debug)]
pub struct Snapshotter {
    root: PathBuf,
    backend: Backend,
    /// Active uppers skip syncs (see [`Snapshotter::sync`]).
    volatile: bool,
}

impl Snapshotter {
    /// Opens (creating) a store at `root` and picks the backend: overlayfs if a probe
    /// mount in the store works, else copies.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, SnapshotError> {
        let root = root.into();
        Self::create_dirs(&root)?;
        let (backend, volatile) = match probe_overlay(&root, true) {
            Ok(()) => (Backend::Overlay, true),
            Err(_) => match probe_overlay(&root, false) {
                Ok(()) => (Backend::Overlay, false),
                Err(reason) => (Backend::Copy { reason }, false),
            },
        };
        Ok(Self {
            root,
            backend,
            volatile,
        })
    }

    /// Opens a store with a chosen backend (tests; stores on filesystems known to refuse
    /// overlay upper dirs).
    pub fn with_backend(root: impl Into<PathBuf>, backend: Backend) -> Result<Self, SnapshotError> {
        let root = root.into();
        Self::create_dirs(&root)?;
        let volatile = backend == Backend::Overlay && probe_overlay(&root, true).is_ok();
        Ok(Self {
            root,
            backend,
            volatile,
        })
    }

    fn create_dirs(root: &Path) -> Result<(), SnapshotError> {
        for d in ["layers", "active", "views", "empty", TRASH] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        empty_trash(root);
        Ok(())
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes what a holder that died (crash, kill) left of the active snapshot `key`,
    /// unmounting its overlay if still mounted; returns whether there was anything. The
    /// caller makes sure nobody else uses the key (for example with a lock file).
    pub fn remove_abandoned(&self, key: &str) -> Result<bool, SnapshotError> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.root.join("active").join(key_dir(key)?);
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            return Ok(false);
        };
        let merged = dir.join("merged");
        // A mounted overlay has a device of its own.
        if std::fs::symlink_metadata(&merged).is_ok_and(|m| m.dev() != meta.dev()) {
            unmount(&merged)?;
        }
        discard(&dir)?;
        Ok(true)
    }

    /// A committed layer made earlier, by key.
    pub fn committed(&self, key: &str) -> Result<Committed, SnapshotError> {
        let dir = self.root.join("layers").join(key_dir(key)?);
        if !dir.is_dir() {
            return Err(SnapshotError::NotFound(key.to_owned()));
        }
        Ok(Committed {
            key: key.to_owned(),
            dir,
        })
    }

    /// Lowers for overlayfs, top-most first; flattened into `flat` when there are more
    /// than overlayfs stacks.
    fn lowers(&self, parents: &[Committed], flat: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
        if parents.is_empty() {
            return Ok(vec![self.root.join("empty")]);
        }
        if parents.len() > OVERLAY_MAX_STACK {
            return self.flatten(parents, flat);
        }
        Ok(parents.iter().rev().map(|p| p.dir.clone()).collect())
    }

    fn flatten(&self, parents: &[Committed], flat: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
        std::fs::create_dir_all(flat).map_err(io_err("create", flat))?;
        for p in parents {
            tree::apply_layer(&p.dir, flat).map_err(io_err("flatten layer", &p.dir))?;
        }
        Ok(vec![flat.to_owned()])
    }

    fn new_dir(&self, kind: &str, key: &str) -> Result<PathBuf, SnapshotError> {
        let name = key_dir(key)?;
        if self.root.join("layers").join(&name).exists() {
            return Err(SnapshotError::Exists(key.to_owned()));
        }
        let dir = self.root.join(kind).join(&name);
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(SnapshotError::Exists(key.to_owned()))
            }
            other => other.map(|()| dir.clone()).map_err(io_err("create", &dir)),
        }
    }

    /// A writable tree on top of `parents` (base first).
    pub fn prepare(
        &self,
        key: &str,
        parents: &[Committed],
    ) -> Result<ActiveSnapshot, SnapshotError> {
        let dir = self.new_dir("active", key)?;
        let merged = dir.join("merged");
        let mut active = ActiveSnapshot {
            key: key.to_owned(),
            dir: dir.clone(),
            merged: merged.clone(),
            kind: None,
        };
        std::fs::create_dir(&merged).map_err(io_err("create", &merged))?;
        match &self.backend {
            Backend::Overlay => {
                let upper = dir.join("upper");
                let work = dir.join("work");
                for d in [&upper, &work] {
                    std::fs::create_dir(d).map_err(io_err("create", d))?;
                }
                let flat = dir.join("flat");
                let overlay = Overlay {
                    lowers: self.lowers(parents, &flat)?,
                    upper: Some((upper.clone(), work.clone())),
                    volatile: self.volatile,
                };
                if let Err(e) = RealSys.mount_overlay(&overlay, &merged) {
                    if parents.len() <= 1 {
                        return Err(e.into());
                    }
                    // The kernel refused the stack (too deep for it, or no lowerdir+):
                    // one flattened lower always works.
                    let overlay = Overlay {
                        lowers: self.flatten(parents, &flat)?,
                        upper: overlay.upper,
                        volatile: self.volatile,
                    };
                    RealSys.mount_overlay(&overlay, &merged)?;
                }
                active.kind = Some(ActiveKind::Overlay { upper });
            }
            Backend::Copy { .. } => {
                for p in parents {
                    tree::apply_layer(&p.dir, &merged).map_err(io_err("apply layer", &p.dir))?;
                }
                let base = tree::manifest(&merged).map_err(io_err("scan", &merged))?;
                active.kind = Some(ActiveKind::Copy { base });
            }
        }
        Ok(active)
    }

    /// Turns the changes of `active` into a committed layer with the same key.
    pub fn commit(&self, mut active: ActiveSnapshot) -> Result<Committed, SnapshotError> {
        let layer = self.root.join("layers").join(key_dir(&active.key)?);
        let staging = active.dir.join("layer");
        match active.kind.take() {
            Some(ActiveKind::Overlay { upper }) => {
                unmount(&active.merged)?;
                std::fs::rename(&upper, &staging).map_err(io_err("rename", &upper))?;
            }
            Some(ActiveKind::Copy { base }) => {
                std::fs::create_dir(&staging).map_err(io_err("create", &staging))?;
                tree::diff(&active.merged, &base, &staging)
                    .map_err(io_err("diff", &active.merged))?;
            }
            None => return Err(SnapshotError::NotFound(active.key.clone())),
        }
        // The rename is the commit point: before it the layer does not exist at all.
        std::fs::rename(&staging, &layer).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(libc::ENOTEMPTY)
            {
                SnapshotError::Exists(active.key.clone())
            } else {
                io_err("rename", &staging)(e)
            }
        })?;
        let key = active.key.clone();
        active.teardown()?;
        Ok(Committed { key, dir: layer })
    }

    /// Every committed layer of the store, in key order.
    pub fn list(&self) -> Result<Vec<Committed>, SnapshotError> {
        let layers = self.root.join("layers");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&layers).map_err(io_err("list", &layers))? {
            let e = e.map_err(io_err("list", &layers))?;
            let name = e.file_name();
            // Names are key_dir's output (ASCII); anything else is not ours.
            if let Some(key) = name.to_str().and_then(key_from_dir)
                && e.path().is_dir()
            {
                out.push(Committed { key, dir: e.path() });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Makes every committed layer durable: one `syncfs` of the store's filesystem.
    ///
    /// Active overlay uppers are mounted `volatile` (unmounting a synced overlay flushes
    /// the whole upper filesystem, which costs more than the step itself), so a commit is
    /// atomic but not durable until this is called; callers batch it, for example once
    /// before recording a build's cache entries.
    pub fn sync(&self) -> Result<(), SnapshotError> {
        crate::sys::sync_filesystem(&self.root).map_err(io_err("sync", &self.root))
    }

    /// Makes the committed layers `keys` durable (their files, directories and the
    /// renames that committed them), syncing just those when they are small, else the
    /// whole filesystem as [`Self::sync`] does. Layers removed meanwhile are skipped.
    pub fn sync_layers(&self, keys: &[&str]) -> Result<(), SnapshotError> {
        let mut dirs = Vec::with_capacity(keys.len());
        for key in keys {
            match self.committed(key) {
                Ok(c) => dirs.push(c.dir),
                Err(SnapshotError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if dirs.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        let layers = self.root.join("layers");
        match durable::entries(&refs, durable::WALK_LIMIT).map_err(io_err("scan", &layers))? {
            Some(mut paths) => {
                // The directory the commits renamed the layers into.
                paths.push(layers.clone());
                durable::sync_all(&paths).map_err(io_err("sync", &layers))
            }
            None => self.sync(),
        }
    }

    /// Throws an active snapshot away.
    pub fn remove_active(&self, mut active: ActiveSnapshot) -> Result<(), SnapshotError> {
        active.teardown()
    }

    /// Deletes a committed layer (callers make sure nothing uses it as a parent).
    pub fn remove(&self, committed: Committed) -> Result<(), SnapshotError> {
        // Renamed away first, so a crash never leaves a half-deleted layer under its key.
        if !committed.dir.is_dir() {
            return Err(SnapshotError::NotFound(committed.key));
        }
        discard(&committed.dir)
    }

    /// A read-only tree of `parents` (base first), removed when dropped.
    pub fn view(&self, key: &str, parents: &[Committed]) -> Result<View, SnapshotError> {
        let dir = self.new_dir("views", key)?;
        let merged = dir.join("merged");
        let mut view = View {
            dir: dir.clone(),
            merged: merged.clone(),
            mounted: false,
        };
        std::fs::create_dir(&merged).map_err(io_err("create", &merged))?;
        match (&self.backend, parents) {
            (Backend::Overlay, [single]) => {
                // overlayfs wants two lowers without an upper: a read-only bind instead.
                RealSys.mount(&Mount::bind(&single.dir, &merged, false))?;
                view.mounted = true;
                RealSys.mount(&Mount::remount_readonly(&merged, MsFlags::empty()))?;
            }
            (Backend::Overlay, []) => {
                RealSys.mount(&Mount::bind(self.root.join("empty"), &merged, false))?;
                view.mounted = true;
                RealSys.mount(&Mount::remount_readonly(&merged, MsFlags::empty()))?;
            }
            (Backend::Overlay, _) => {
                let lowers = self.lowers(parents, &dir.join("flat"))?;
                let overlay = if lowers.len() == 1 {
                    None
                } else {
                    Some(Overlay {
                        lowers: lowers.clone(),
                        upper: None,
                        volatile: false,
                    })
                };
                match overlay {
                    Some(ov) => RealSys.mount_overlay(&ov, &merged)?,
                    None => {
                        RealSys.mount(&Mount::bind(&lowers[0], &merged, false))?;
                        view.mounted = true;
                        RealSys.mount(&Mount::remount_readonly(&merged, MsFlags::empty()))?;
                    }
                }
                view.mounted = true;
            }
            (Backend::Copy { .. }, _) => {
                // Not enforced read-only: a copy has no mount to make read-only.
                for p in parents {
                    tree::apply_layer(&p.dir, &merged).map_err(io_err("apply layer", &p.dir))?;
                }
            }
        }
        Ok(view)
    }
}

/// Mounts a tiny overlay inside the store; the error text is the reason for the copy
/// backend.
fn probe_overlay(root: &Path, volatile: bool) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix(".probe-")
        .tempdir_in(root.join("active"))
        .map_err(|e| format!("create probe dir: {e}"))?;
    let [lower, upper, work, merged] =
        ["lower", "upper", "work", "merged"].map(|n| dir.path().join(n));
    for d in [&lower, &upper, &work, &merged] {
        std::fs::create_dir(d).map_err(|e| format!("create probe dir: {e}"))?;
    }
    let overlay = Overlay {
        lowers: vec![lower],
        upper: Some((upper, work)),
        volatile,
    };
    RealSys
        .mount_overlay(&overlay, &merged)
        .map_err(|e| e.to_string())?;
    RealSys.umount(&merged, true).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_map_back_to_keys() {
        for key in ["sha256:ab.c_1-2", "..", ".x", "a/b,c", "run-1"] {
            assert_eq!(key_from_dir(&key_dir(key).unwrap()).as_deref(), Some(key));
        }
        assert_eq!(key_from_dir("%2"), None);
        assert_eq!(key_from_dir("a:b"), None);
    }

    #[test]
    fn keys_map_to_safe_distinct_names() {
        assert_eq!(key_dir("sha256:ab.c_1-2").unwrap(), "sha256%3Aab.c_1-2");
        assert_eq!(key_dir("..").unwrap(), "%2E%2E");
        assert_eq!(key_dir(".x").unwrap(), "%2Ex");
        assert_eq!(key_dir("a/b,c").unwrap(), "a%2Fb%2Cc");
        assert_ne!(key_dir("a:b").unwrap(), key_dir("a-b").unwrap());
        assert_ne!(key_dir("a%3Ab").unwrap(), key_dir("a:b").unwrap());
        for bad in ["", &"x".repeat(201)] {
            assert!(matches!(key_dir(bad), Err(SnapshotError::InvalidKey(_))));
        }
    }

    #[test]
    fn copy_backend_prepare_commit_view() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::with_backend(
            dir.path(),
            Backend::Copy {
                reason: "test".into(),
            },
        )
        .unwrap();
        let a = s.prepare("sha256:base", &[]).unwrap();
        std::fs::write(a.path().join("f"), "1").unwrap();
        std::fs::write(a.path().join("g"), "1").unwrap();
        let base = s.commit(a).unwrap();
        assert_eq!(std::fs::read_to_string(base.dir().join("f")).unwrap(), "1");

        let b = s.prepare("step", std::slice::from_ref(&base)).unwrap();
        assert_eq!(std::fs::read_to_string(b.path().join("f")).unwrap(), "1");
        std::fs::write(b.path().join("x"), "new").unwrap();
        std::fs::remove_file(b.path().join("g")).unwrap();
        let step = s.commit(b).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(step.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["g", "x"]);
        assert!(tree::is_whiteout(
            &std::fs::symlink_metadata(step.dir().join("g")).unwrap()
        ));
        assert!(!dir.path().join("active/step").exists());

        let v = s.view("v", &[base.clone(), step.clone()]).unwrap();
        assert!(v.path().join("x").exists());
        assert!(!v.path().join("g").exists());
        let vpath = v.path().to_owned();
        drop(v);
        assert!(!vpath.exists());

        assert!(matches!(
            s.prepare("step", &[]),
            Err(SnapshotError::Exists(_))
        ));
        assert_eq!(s.committed("step").unwrap(), step);
        s.remove(step).unwrap();
        assert!(matches!(
            s.committed("step"),
            Err(SnapshotError::NotFound(_))
        ));
    }

    #[test]
    fn dropped_active_snapshot_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::with_backend(
            dir.path(),
            Backend::Copy {
                reason: "test".into(),
            },
        )
        .unwrap();
        let a = s.prepare("gone", &[]).unwrap();
        let p = a.path().to_owned();
        drop(a);
        assert!(!p.exists());
        assert!(matches!(
            s.committed("gone"),
            Err(SnapshotError::NotFound(_))
        ));
    }
}
