//! The sandbox that runs `RUN` steps: Linux namespaces, `pivot_root`, a minimal `/dev`,
//! dropped capabilities, and the overlayfs snapshotter (prepare, commit, view, remove).
//!
//! Every syscall lives in [`sys`], behind small traits with recording fakes for unit tests;
//! `unsafe` is denied everywhere else.

pub mod cgroup;
pub mod container;
mod init;
pub mod rootfs;
mod sandbox;
pub mod snapshot;
mod spec;
pub mod sys;
pub mod user;

pub use init::sandbox_init_main;
pub use sandbox::{CancelHandle, ExitStatus, Helper, RunSpec, Sandbox, SandboxError, Stream};
pub use spec::{
    DEFAULT_CAPABILITIES, DEFAULT_PATH, ExtraMount, InitSpec, Message, MountKind, Network, Rootfs,
};
