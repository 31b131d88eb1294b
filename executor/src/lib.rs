//! The sandbox that runs `RUN` steps: Linux namespaces, `pivot_root`, a minimal `/dev`,
//! dropped capabilities, and the overlayfs snapshotter (prepare, commit, view, remove).
//!
//! Every syscall lives in [`sys`], behind small traits with recording fakes for unit tests;
//! `unsafe` is denied everywhere else.
//!
//! # How a run is started
//!
//! The caller (possibly a multi-threaded tokio process) never forks with code of its own:
//! [`Sandbox::run`] spawns a [`Helper`] — a program whose `main` is
//! [`sandbox_init_main`] (the crate's `rbuild-sandbox-init`, or the `rbuild` binary with a
//! hidden subcommand through [`Helper::current_exe`]) — with `posix_spawn` (a vfork: no
//! copy of the caller's memory), its stdio and the spec socket (fd 3) as its only
//! descriptors. The fresh,
//! single-threaded helper forks PID 1 into a new pid namespace; PID 1 unshares the mount,
//! UTS, IPC (and network) namespaces, builds the container ([`container`]), forks the
//! command, forwards signals and reaps zombies. Started by a non-root user, PID 1 also
//! gets a new user namespace with the caller mapped to root (rootless; root-only inside,
//! since no subordinate ids are mapped), and snapshots fall back to copies.
//!
//! # Guards against known runtime escapes
//!
//! - runc CVE-2019-5736 (overwriting the runtime binary through `/proc/<pid>/exe`): the
//!   helper is exec'd through a read-only, detached bind mount of its binary (as root;
//!   as runc 1.2 does, with no copy of a binary of tens of MB per process) or else from
//!   a sealed memfd copy (no writes, no resizes), so no writable path leads from the
//!   sandbox to the binary on disk; PID 1 is also non-dumpable, so its
//!   `/proc/1/{exe,fd,environ,root}` cannot be opened from inside.
//! - runc CVE-2024-21626 (a leaked host fd used as the working directory): the helper
//!   closes every inherited descriptor but the spec socket, every descriptor of the
//!   command but stdio is close-on-exec (`close_range`), and the working directory is
//!   entered by path after `pivot_root` and the detach of the old root.
//! - Symlinks in the image are resolved inside the rootfs ([`rootfs`]) for every mount
//!   target and every file read before `pivot_root`; symlinked mount points under `/` are
//!   refused.

pub mod cgroup;
pub mod container;
mod init;
pub mod mounts;
mod netpool;
pub mod rootfs;
mod sandbox;
mod slirp;
pub mod snapshot;
mod spec;
pub mod sys;
pub mod user;

pub use init::sandbox_init_main;
pub use netpool::{NetLease, NetPool};
pub use sandbox::{CancelHandle, ExitStatus, Helper, RunSpec, Sandbox, SandboxError, Stream};
pub use spec::{
    DEFAULT_CAPABILITIES, DEFAULT_PATH, ExtraMount, InitSpec, Message, MountKind, Network, Rootfs,
    SubIds,
};

#[cfg(test)]
mod tests {
    /// The solver shares one sandbox and snapshotter across worker threads.
    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::Sandbox>();
        check::<crate::CancelHandle>();
        check::<crate::snapshot::Snapshotter>();
        check::<crate::snapshot::ActiveSnapshot>();
        check::<crate::snapshot::Committed>();
    }
}
