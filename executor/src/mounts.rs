//! The host side of `RUN --mount` types that need more than a mount: persistent cache
//! directories (`type=cache`, with BuildKit's `sharing` modes) and the SSH agent proxy
//! (`type=ssh`). Both are resolved by the caller before the sandbox starts and held
//! until it ends; the sandbox then sees plain bind mounts.
//!
//! # Cache directories
//!
//! A cache id lives in `<root>/<id, percent-encoded>/`: `data/` is the shared instance,
//! `data-N/` are extra instances for `sharing=private`, and each `X/` has a lock file
//! `X.lock` held by every run using it (shared for `sharing=shared`, exclusive for
//! `locked` and `private`), so a prune can tell which instances are free. A new instance
//! is made in a temporary directory with its `uid`/`gid`/`mode` and renamed into place,
//! so nobody sees it half-made.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The directory, under a store root, that holds cache mounts.
pub const CACHE_MOUNTS_DIR: &str = "cache-mounts-v1";

/// Most instances one cache id gets with `sharing=private` (a guard against runaway
/// concurrency, not a real limit).
const MAX_PRIVATE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid cache id {0:?}")]
    InvalidId(String),
    #[error("cache {0:?}: more than {MAX_PRIVATE} private instances in use")]
    TooManyInstances(String),
    #[error("ssh agent socket {path}")]
    Agent {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> MountError + 'a {
    move |source| MountError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// How concurrent runs share one cache id (BuildKit's `sharing=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Sharing {
    /// Every run uses the same directory at the same time.
    #[default]
    Shared,
    /// A run uses the directory alone; a concurrent one gets another instance.
    Private,
    /// Runs take turns: a second one waits until the first is done.
    Locked,
}

/// A persistent cache directory for `RUN --mount=type=cache`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMount {
    /// The cache store, usually `<store root>/`[`CACHE_MOUNTS_DIR`].
    pub root: PathBuf,
    pub id: String,
    pub sharing: Sharing,
    /// Owner and permissions of a directory made for the cache (existing ones are kept
    /// as the runs left them, as BuildKit does).
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub readonly: bool,
    /// What a new cache directory starts with (`from=`/`source=`: a directory of a
    /// stage's tree), copied with owners, modes and times; an existing cache keeps its
    /// contents, as BuildKit does.
    pub seed: Option<PathBuf>,
}

impl CacheMount {
    /// BuildKit's defaults: shared, root-owned, mode 0755, writable.
    pub fn new(root: impl Into<PathBuf>, id: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            id: id.into(),
            sharing: Sharing::Shared,
            uid: 0,
            gid: 0,
            mode: 0o755,
            readonly: false,
            seed: None,
        }
    }
}

/// The directory name of a cache id: bytes outside `[A-Za-z0-9_-]` percent-encoded, so
/// any id (paths like `/root/.cache/go-build` included) maps to one safe name.
fn id_dir(id: &str) -> Result<String, MountError> {
    if id.is_empty() || id.len() > 400 {
        return Err(MountError::InvalidId(id.to_owned()));
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// A cache directory in use by one run; the lock is released when dropped.
#[derive(Debug)]
pub struct CacheLease {
    dir: PathBuf,
    _lock: File,
}

impl CacheLease {
    /// The host directory to bind-mount.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

static MADE: AtomicU64 = AtomicU64::new(0);

/// Makes `dir` (with owner and mode) if it does not exist yet, atomically.
fn ensure_instance(dir: &Path, m: &CacheMount) -> Result<(), MountError> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let tmp = parent.join(format!(
        ".new-{}-{}",
        std::process::id(),
        MADE.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(io_err("create", &tmp))?;
    // Rootless, the caller's own ids are root inside: nothing else can be set.
    let owned = if crate::sys::running_as_root() {
        std::os::unix::fs::chown(&tmp, Some(m.uid), Some(m.gid))
    } else {
        Ok(())
    };
    let made = owned
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m.mode)))
        .and_then(|()| match &m.seed {
            Some(seed) => crate::snapshot::tree::apply_layer(seed, &tmp),
            None => Ok(()),
        });
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(io_err("make", dir)(e));
    }
    // Never over another run's (empty) directory: a plain rename would replace it.
    let renamed = nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &tmp,
        nix::fcntl::AT_FDCWD,
        dir,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(io::Error::from);
    match renamed {
        Ok(()) => Ok(()),
        // Made by a concurrent run meanwhile: theirs wins.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(io_err("rename", &tmp)(e))
        }
    }
}

fn lock_file(path: &Path) -> Result<File, MountError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))
}

/// Takes the cache directory for one run, as its `sharing` mode says: blocks while
/// another run holds a `locked` cache (or, for a `shared` one, an exclusive holder).
pub fn acquire_cache(m: &CacheMount) -> Result<CacheLease, MountError> {
    let base = m.root.join(id_dir(&m.id)?);
    std::fs::create_dir_all(&base).map_err(io_err("create", &base))?;
    let instance = |n: usize| {
        let name = if n == 0 {
            "data".to_owned()
        } else {
            format!("data-{n}")
        };
        (base.join(&name), base.join(format!("{name}.lock")))
    };
    let (dir, lock) = match m.sharing {
        Sharing::Shared | Sharing::Locked => {
            let (dir, lock_path) = instance(0);
            let lock = lock_file(&lock_path)?;
            let taken = if m.sharing == Sharing::Shared {
                lock.lock_shared()
            } else {
                lock.lock()
            };
            taken.map_err(io_err("lock", &lock_path))?;
            (dir, lock)
        }
        Sharing::Private => {
            let mut found = None;
            for n in 0..MAX_PRIVATE {
                let (dir, lock_path) = instance(n);
                let lock = lock_file(&lock_path)?;
                if lock.try_lock().is_ok() {
                    found = Some((dir, lock));
                    break;
                }
            }
            found.ok_or_else(|| MountError::TooManyInstances(m.id.clone()))?
        }
    };
    ensure_instance(&dir, m)?;
    Ok(CacheLease { dir, _lock: lock })
}

/// A Unix socket in a private directory that forwards every connection to the host's
/// SSH agent, so the sandbox sees a socket with the owner and mode it asked for and
/// never the agent's own path. Stops accepting when dropped.
#[derive(Debug)]
pub struct AgentProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

/// How long the accept loop sleeps when no connection is waiting.
const ACCEPT_NAP: std::time::Duration = std::time::Duration::from_millis(20);

impl AgentProxy {
    /// Listens at `path` (owned by `uid:gid`, permissions `mode`) and forwards to the
    /// agent socket `agent`, which must accept connections now.
    pub fn start(
        agent: &Path,
        path: &Path,
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> Result<Self, MountError> {
        // Fail now, with the agent's path in the message, rather than inside the step.
        UnixStream::connect(agent).map_err(|source| MountError::Agent {
            path: agent.to_owned(),
            source,
        })?;
        let listener = UnixListener::bind(path).map_err(io_err("listen on", path))?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .or_else(|e| {
                // Rootless: the socket can only be ours (root inside).
                if crate::sys::running_as_root() {
                    Err(e)
                } else {
                    Ok(())
                }
            })
            .map_err(io_err("chown", path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", path))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("listen on", path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let agent = agent.to_owned();
        let accept = std::thread::Builder::new()
            .name("rbuild-ssh-proxy".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || {
                    // Non-blocking accept with a short nap: the loop sees `stop` even when
                    // the socket's path is gone and no connect can wake a blocked accept.
                    while !stop.load(Ordering::SeqCst) {
                        match listener.accept() {
                            Ok((conn, _)) => {
                                if stop.load(Ordering::SeqCst) {
                                    break;
                                }
                                // Relayed connections block on their own threads.
                                let _ = conn.set_nonblocking(false);
                                if let Ok(upstream) = UnixStream::connect(&agent) {
                                    relay(conn, upstream);
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                std::thread::sleep(ACCEPT_NAP);
                            }
                            Err(_) => std::thread::sleep(ACCEPT_NAP),
                        }
                    }
                }
            })
            .map_err(io_err("start proxy for", path))?;
        Ok(Self {
            path: path.to_owned(),
            stop,
            accept: Some(accept),
        })
    }

    /// The socket to bind-mount into the sandbox.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies bytes both ways between `a` and `b` until either side closes.
fn relay(a: UnixStream, b: UnixStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let pipe = |mut from: UnixStream, mut to: UnixStream| {
        move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
            let _ = from.shutdown(std::net::Shutdown::Read);
        }
    };
    let _ = std::thread::Builder::new()
        .name("rbuild-ssh-relay".into())
        .spawn(pipe(a, b));
    let _ = std::thread::Builder::new()
        .name("rbuild-ssh-relay".into())
        .spawn(pipe(b2, a2));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn agent_proxy_relays_and_stops_even_when_its_socket_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("agent.sock");
        let agent = UnixListener::bind(&agent_path).unwrap();
        // A toy agent: answers every connection with its first byte plus one.
        std::thread::spawn(move || {
            for conn in agent.incoming() {
                let Ok(mut conn) = conn else { break };
                let mut b = [0u8; 1];
                if conn.read_exact(&mut b).is_ok() {
                    let _ = conn.write_all(&[b[0] + 1]);
                }
            }
        });
        let proxy_path = dir.path().join("proxy.sock");
        let uid = std::fs::metadata(dir.path()).unwrap().uid();
        let gid = std::fs::metadata(dir.path()).unwrap().gid();
        let proxy = AgentProxy::start(&agent_path, &proxy_path, uid, gid, 0o600).unwrap();
        let mut c = UnixStream::connect(proxy.path()).unwrap();
        c.write_all(&[41]).unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert_eq!(b[0], 42);
        // Someone removed the socket: dropping the proxy must still return.
        std::fs::remove_file(&proxy_path).unwrap();
        drop(proxy);
    }

    #[test]
    fn ids_map_to_safe_distinct_names() {
        assert_eq!(id_dir("go-build_1").unwrap(), "go-build_1");
        assert_eq!(id_dir("/root/.cache").unwrap(), "%2Froot%2F%2Ecache");
        assert_ne!(id_dir("a/b").unwrap(), id_dir("a%2Fb").unwrap());
        assert!(id_dir("").is_err());
    }

    #[test]
    fn shared_is_one_dir_private_gives_each_holder_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = CacheMount::new(dir.path(), "c");
        m.uid = nix::unistd::geteuid().as_raw();
        m.gid = nix::unistd::getegid().as_raw();
        m.mode = 0o710;
        let a = acquire_cache(&m).unwrap();
        let b = acquire_cache(&m).unwrap();
        assert_eq!(a.dir(), b.dir());
        let meta = std::fs::metadata(a.dir()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o710);
        drop((a, b));

        m.sharing = Sharing::Private;
        let p1 = acquire_cache(&m).unwrap();
        let p2 = acquire_cache(&m).unwrap();
        assert_ne!(p1.dir(), p2.dir());
        let first = p1.dir().to_owned();
        drop(p1);
        // A free instance is reused.
        let p3 = acquire_cache(&m).unwrap();
        assert_eq!(p3.dir(), first);
    }

    #[test]
    fn a_new_cache_starts_from_its_seed_an_existing_one_keeps_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let seed = tempfile::tempdir().unwrap();
        std::fs::create_dir(seed.path().join("sub")).unwrap();
        std::fs::write(seed.path().join("sub/f"), "seeded").unwrap();
        std::os::unix::fs::symlink("sub/f", seed.path().join("link")).unwrap();
        let mut m = CacheMount::new(dir.path(), "s");
        m.uid = nix::unistd::geteuid().as_raw();
        m.gid = nix::unistd::getegid().as_raw();
        m.seed = Some(seed.path().to_owned());
        let lease = acquire_cache(&m).unwrap();
        assert_eq!(
            std::fs::read_to_string(lease.dir().join("link")).unwrap(),
            "seeded"
        );
        std::fs::write(lease.dir().join("sub/f"), "used").unwrap();
        drop(lease);
        let lease = acquire_cache(&m).unwrap();
        assert_eq!(
            std::fs::read_to_string(lease.dir().join("sub/f")).unwrap(),
            "used"
        );
        // Nothing half-made is left next to it.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("s"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with(".new-")), "{names:?}");
    }

    #[test]
    fn locked_waits_for_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = CacheMount::new(dir.path(), "l");
        m.uid = nix::unistd::geteuid().as_raw();
        m.gid = nix::unistd::getegid().as_raw();
        m.sharing = Sharing::Locked;
        let held = acquire_cache(&m).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn({
            let m = m.clone();
            move || {
                let lease = acquire_cache(&m).unwrap();
                tx.send(()).unwrap();
                drop(lease);
            }
        });
        // The waiter cannot get through while the lease is held...
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err()
        );
        drop(held);
        // ...and does once it is released.
        rx.recv().unwrap();
        waiter.join().unwrap();
    }
}
