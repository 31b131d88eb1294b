//! The only place in rbuild where `unsafe` and raw syscalls are allowed. Each syscall family
//! sits behind a small trait so the code above it can be unit-tested with a recording fake.
//!
//! - [`Mounter`], [`Namespaces`] and [`Process`] are what the sandbox init uses to build the
//!   container; [`RealSys`] implements them with real syscalls, [`RecordingSys`] records the
//!   calls so the exact setup order can be asserted without root.
//! - [`launch`] holds the process-control primitives (fd inheritance, sealed memfd copies,
//!   fork, pidfds, signal masks) that cannot be meaningfully faked.
#![allow(unsafe_code)]

mod fake;
pub mod launch;
mod real;
pub mod tty;

use std::io;
use std::path::{Path, PathBuf};

pub use caps::Capability;
pub use fake::{Call, RecordingSys};
pub use nix::mount::MsFlags;
pub use nix::sched::CloneFlags;
pub use real::RealSys;

/// A failed syscall, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SysError {
    what: String,
    #[source]
    source: io::Error,
}

impl SysError {
    /// Wraps an I/O error with a short description of the operation.
    pub fn new(what: impl Into<String>, source: io::Error) -> Self {
        Self {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn errno(what: impl Into<String>, errno: nix::errno::Errno) -> Self {
        Self::new(what, io::Error::from(errno))
    }

    /// The underlying OS error number, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// One `mount(2)` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: Option<PathBuf>,
    pub target: PathBuf,
    pub fstype: Option<String>,
    pub flags: MsFlags,
    pub data: Option<String>,
}

impl Mount {
    /// A new filesystem of type `fstype` (proc, tmpfs, sysfs...).
    pub fn fs(
        fstype: &str,
        target: impl Into<PathBuf>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Self {
        Self {
            source: Some(PathBuf::from(fstype)),
            target: target.into(),
            fstype: Some(fstype.to_owned()),
            flags,
            data: data.map(str::to_owned),
        }
    }

    /// A (recursive) bind mount of `source` on `target`.
    pub fn bind(source: impl Into<PathBuf>, target: impl Into<PathBuf>, recursive: bool) -> Self {
        let mut flags = MsFlags::MS_BIND;
        if recursive {
            flags |= MsFlags::MS_REC;
        }
        Self {
            source: Some(source.into()),
            target: target.into(),
            fstype: None,
            flags,
            data: None,
        }
    }

    /// Remounts the bind mount at `target` read-only, keeping `extra` flags
    /// (a bind mount ignores `MS_RDONLY` on the first call, hence the remount).
    pub fn remount_readonly(target: impl Into<PathBuf>, extra: MsFlags) -> Self {
        Self {
            source: None,
            target: target.into(),
            fstype: None,
            flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra,
            data: None,
        }
    }
}

/// An overlay filesystem: `lowers` are listed top-most first, as overlayfs wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    pub lowers: Vec<PathBuf>,
    /// `(upper, work)`; `None` mounts a read-only view.
    pub upper: Option<(PathBuf, PathBuf)>,
    /// Skip syncing the upper filesystem (on umount and syncfs): for uppers that are
    /// thrown away or made durable by an explicit `syncfs` later. Linux 5.10+.
    pub volatile: bool,
}

/// Mount-table changes.
pub trait Mounter {
    /// Makes every mount under `path` private, so nothing propagates back to the host.
    fn make_rprivate(&self, path: &Path) -> Result<(), SysError>;
    fn mount(&self, mount: &Mount) -> Result<(), SysError>;
    /// Mounts an overlay on `target`, even when the lower list does not fit in one mount
    /// option page (then through the `fsconfig` `lowerdir+` interface).
    fn mount_overlay(&self, overlay: &Overlay, target: &Path) -> Result<(), SysError>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), SysError>;
    fn umount(&self, target: &Path, detach: bool) -> Result<(), SysError>;
    /// Creates the character device `major:minor` at `path` with permissions `mode`
    /// (whatever the umask).
    fn mknod_char(&self, path: &Path, major: u64, minor: u64, mode: u32) -> Result<(), SysError>;
}

/// Namespace-level state.
pub trait Namespaces {
    fn unshare(&self, flags: CloneFlags) -> Result<(), SysError>;
    fn set_hostname(&self, name: &str) -> Result<(), SysError>;
    /// Brings the loopback interface of the current network namespace up.
    fn loopback_up(&self) -> Result<(), SysError>;
    /// Joins the network namespace at `ns` (a pooled sandbox network, `setns`).
    fn join_network(&self, ns: &Path) -> Result<(), SysError>;
}

/// A resource limit for [`Process::set_rlimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_*` number.
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

/// Credentials and other per-process state of the sandboxed command.
pub trait Process {
    /// Keeps exactly `keep` in the effective, permitted and inheritable sets and the
    /// bounding set; clears the ambient set.
    fn drop_capabilities(&self, keep: &[Capability]) -> Result<(), SysError>;
    fn set_no_new_privs(&self) -> Result<(), SysError>;
    fn set_groups(&self, gids: &[u32]) -> Result<(), SysError>;
    fn set_gid(&self, gid: u32) -> Result<(), SysError>;
    fn set_uid(&self, uid: u32) -> Result<(), SysError>;
    fn set_rlimit(&self, limit: Rlimit) -> Result<(), SysError>;
    fn set_umask(&self, mask: u32) -> Result<(), SysError>;
    fn chdir(&self, path: &Path) -> Result<(), SysError>;
    /// Marks every descriptor from `first` up close-on-exec.
    fn close_fds_on_exec(&self, first: u32) -> Result<(), SysError>;
    fn set_dumpable(&self, dumpable: bool) -> Result<(), SysError>;
    /// Replaces the process image; returns only on failure.
    fn exec(&self, program: &Path, argv: &[String], env: &[String]) -> SysError;
}

/// Everything the sandbox init needs.
pub trait Sys: Mounter + Namespaces + Process {}

impl<T: Mounter + Namespaces + Process> Sys for T {}

/// The effective uid and gid of this process.
pub fn effective_ids() -> (u32, u32) {
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

/// Whether the effective uid is 0 (tests that need root check this and say why they skip).
pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub mod xattr;

/// A fresh network namespace, kept alive by the returned descriptor; made by a thread of
/// its own that unshares it and ends (`unshare(CLONE_NEWNET)` moves only the calling
/// thread, and the caller must stay in its own).
pub fn new_network_namespace() -> io::Result<std::os::fd::OwnedFd> {
    std::thread::spawn(|| {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
        Ok(std::os::fd::OwnedFd::from(std::fs::File::open(
            "/proc/thread-self/ns/net",
        )?))
    })
    .join()
    .map_err(|_| io::Error::other("network namespace thread panicked"))?
}

/// Moves the calling process into a mount namespace of its own from which nothing
/// propagates back (`unshare(CLONE_NEWNS)`, then `/` made recursively private), so
/// the overlays it mounts go away with it even when it is killed with SIGKILL instead
/// of staying mounted on the host. `unshare` moves only the calling thread: call it
/// before any thread starts. Returns false without the privilege (rootless), when the
/// mounts stay in the caller's namespace.
pub fn private_mount_namespace() -> bool {
    if nix::sched::unshare(CloneFlags::CLONE_NEWNS).is_err() {
        return false;
    }
    // If this fails, mounts propagate to the host as they did without the namespace.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .is_ok()
}

/// Flushes the filesystem holding `path` to disk (`syncfs`).
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    let dir = std::fs::File::open(path)?;
    nix::unistd::syncfs(&dir).map_err(io::Error::from)
}
