//! [`RecordingSys`]: a fake system that records every call instead of making it, so the
//! order of the sandbox setup can be unit-tested without root.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};

use caps::Capability;
use nix::sched::CloneFlags;

use super::{Mount, Mounter, Namespaces, Overlay, Process, Rlimit, SysError};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    MakeRprivate(PathBuf),
    Mount(Mount),
    MountOverlay(Overlay, PathBuf),
    PivotRoot(PathBuf, PathBuf),
    Umount(PathBuf, bool),
    MknodChar(PathBuf, u64, u64, u32),
    Unshare(CloneFlags),
    SetHostname(String),
    LoopbackUp,
    JoinNetwork(PathBuf),
    DropCapabilities(Vec<Capability>),
    SetNoNewPrivs,
    SetGroups(Vec<u32>),
    SetGid(u32),
    SetUid(u32),
    SetRlimit(Rlimit),
    SetUmask(u32),
    Chdir(PathBuf),
    CloseFdsOnExec(u32),
    SetDumpable(bool),
    Exec(PathBuf, Vec<String>, Vec<String>),
}

/// Records calls in order; every call succeeds except `exec`, which reports that it is fake.
#[derive(Debug, Default)]
pub struct RecordingSys {
    calls: RefCell<Vec<Call>>,
}

impl RecordingSys {
    pub fn new() -> Self {
        Self::default()
    }

    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn record(&self, call: Call) -> Result<(), SysError> {
        self.calls.borrow_mut().push(call);
        Ok(())
    }
}

impl Mounter for RecordingSys {
    fn make_rprivate(&self, path: &Path) -> Result<(), SysError> {
        self.record(Call::MakeRprivate(path.to_owned()))
    }
    fn mount(&self, mount: &Mount) -> Result<(), SysError> {
        self.record(Call::Mount(mount.clone()))
    }
    fn mount_overlay(&self, overlay: &Overlay, target: &Path) -> Result<(), SysError> {
        self.record(Call::MountOverlay(overlay.clone(), target.to_owned()))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), SysError> {
        self.record(Call::PivotRoot(new_root.to_owned(), put_old.to_owned()))
    }
    fn umount(&self, target: &Path, detach: bool) -> Result<(), SysError> {
        self.record(Call::Umount(target.to_owned(), detach))
    }
    fn mknod_char(&self, path: &Path, major: u64, minor: u64, mode: u32) -> Result<(), SysError> {
        self.record(Call::MknodChar(path.to_owned(), major, minor, mode))
    }
}

impl Namespaces for RecordingSys {
    fn unshare(&self, flags: CloneFlags) -> Result<(), SysError> {
        self.record(Call::Unshare(flags))
    }
    fn set_hostname(&self, name: &str) -> Result<(), SysError> {
        self.record(Call::SetHostname(name.to_owned()))
    }
    fn loopback_up(&self) -> Result<(), SysError> {
        self.record(Call::LoopbackUp)
    }
    fn join_network(&self, ns: &Path) -> Result<(), SysError> {
        self.record(Call::JoinNetwork(ns.to_owned()))
    }
}

impl Process for RecordingSys {
    fn drop_capabilities(&self, keep: &[Capability]) -> Result<(), SysError> {
        self.record(Call::DropCapabilities(keep.to_vec()))
    }
    fn set_no_new_privs(&self) -> Result<(), SysError> {
        self.record(Call::SetNoNewPrivs)
    }
    fn set_groups(&self, gids: &[u32]) -> Result<(), SysError> {
        self.record(Call::SetGroups(gids.to_vec()))
    }
    fn set_gid(&self, gid: u32) -> Result<(), SysError> {
        self.record(Call::SetGid(gid))
    }
    fn set_uid(&self, uid: u32) -> Result<(), SysError> {
        self.record(Call::SetUid(uid))
    }
    fn set_rlimit(&self, limit: Rlimit) -> Result<(), SysError> {
        self.record(Call::SetRlimit(limit))
    }
    fn set_umask(&self, mask: u32) -> Result<(), SysError> {
        self.record(Call::SetUmask(mask))
    }
    fn chdir(&self, path: &Path) -> Result<(), SysError> {
        self.record(Call::Chdir(path.to_owned()))
    }
    fn close_fds_on_exec(&self, first: u32) -> Result<(), SysError> {
        self.record(Call::CloseFdsOnExec(first))
    }
    fn set_dumpable(&self, dumpable: bool) -> Result<(), SysError> {
        self.record(Call::SetDumpable(dumpable))
    }
    fn exec(&self, program: &Path, argv: &[String], env: &[String]) -> SysError {
        self.calls
            .borrow_mut()
            .push(Call::Exec(program.to_owned(), argv.to_vec(), env.to_vec()));
        SysError::new(
            "exec",
            io::Error::new(io::ErrorKind::Unsupported, "recording fake does not exec"),
        )
    }
}
