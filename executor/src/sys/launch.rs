//! Process-control primitives for starting the sandbox: spawning the helper with chosen
//! descriptors (`posix_spawn`), passing descriptors to other children,
//! sealed in-memory copies of the helper binary, `fork` in the single-threaded helper,
//! pidfds, signal masks. These are not faked: they are what makes the fakes meaningful.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

/// Makes each `(fd, target)` appear as descriptor `target` in the child started by `cmd`,
/// whatever the numbers involved: the sources are first duplicated above every target,
/// so no `dup2` clobbers a source still to be moved. Keep the returned descriptors until
/// the child is spawned.
pub fn inherit_fds(cmd: &mut Command, fds: &[(&OwnedFd, RawFd)]) -> io::Result<Vec<OwnedFd>> {
    let mut high = Vec::with_capacity(fds.len());
    let mut moves = Vec::with_capacity(fds.len());
    for (fd, target) in fds {
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor >= 64 or -1.
        let h = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
        if h < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `h` was just returned by fcntl and is owned by nobody else.
        high.push(unsafe { OwnedFd::from_raw_fd(h) });
        moves.push((h, *target));
    }
    let hook = move || {
        for (src, target) in &moves {
            // SAFETY: dup2 between descriptors of the forked child; async-signal-safe.
            if unsafe { libc::dup2(*src, *target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook only calls dup2 (async-signal-safe) on integers it owns a copy of;
    // `moves` was allocated before the fork and is only read.
    unsafe {
        cmd.pre_exec(hook);
    }
    Ok(high)
}

/// A copy of `fd` at a descriptor >= 64, close-on-exec: clear of every target a child's
/// descriptors are moved to, so no move clobbers a source still to be moved.
fn dup_high(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a borrowed (open) descriptor returns a new one or -1.
    let h = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
    if h < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `h` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(h) })
}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Starts `program` with `argv` (`argv[0]` included) and exactly `env`, with each
/// `(source, target)` of `fds` at descriptor `target` and nothing else of ours (every
/// other descriptor of this crate and of std is close-on-exec), every signal unblocked
/// and at its default disposition (a `SIG_IGN` survives exec; std ignores SIGPIPE).
///
/// Through `posix_spawn`, which glibc runs as `clone(CLONE_VM | CLONE_VFORK)`: unlike
/// `std::process::Command` with a `pre_exec` hook — a real `fork` — it copies no page
/// tables of the caller (a multi-threaded process of hundreds of MB, for rbuild) and
/// is safe in a multi-threaded process; an exec failure is returned here.
pub fn spawn(
    program: &Path,
    argv: &[OsString],
    env: &[OsString],
    fds: &[(BorrowedFd<'_>, RawFd)],
) -> io::Result<Pid> {
    let argv = argv
        .iter()
        .map(|a| c_string(a))
        .collect::<io::Result<Vec<_>>>()?;
    let env = env
        .iter()
        .map(|a| c_string(a))
        .collect::<io::Result<Vec<_>>>()?;
    let high = fds
        .iter()
        .map(|(fd, _)| dup_high(*fd))
        .collect::<io::Result<Vec<_>>>()?;
    let mut actions = PosixSpawnFileActions::init()?;
    for (h, (_, target)) in high.iter().zip(fds) {
        // dup2 onto another number clears close-on-exec on the copy only.
        actions.add_dup2(h.as_raw_fd(), *target)?;
    }
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )?;
    attr.set_sigmask(&SigSet::empty())?;
    attr.set_sigdefault(&SigSet::all())?;
    let pid = nix::spawn::posix_spawn(program, &actions, &attr, &argv, &env)?;
    drop(high);
    Ok(pid)
}

/// Waits for the child `pid` to end (retrying on EINTR).
pub fn wait_child(pid: Pid) -> io::Result<WaitStatus> {
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Err(nix::errno::Errno::EINTR) => {}
            other => return other.map_err(io::Error::from),
        }
    }
}

/// Copies the executable at `path` into a sealed memfd (no write, grow, shrink or further
/// seal changes). A process exec'd from it cannot be used to overwrite the file on disk
/// through `/proc/<pid>/exe` (the runc CVE-2019-5736 class).
pub fn sealed_copy(path: &Path, name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid C string; memfd_create returns a new fd or -1.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut dst = File::from(fd);
    let mut src = File::open(path)?;
    io::copy(&mut src, &mut dst)?;
    let fd = OwnedFd::from(dst);
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS on a memfd we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fchmod on a memfd we own: executable, not writable by anyone.
    if unsafe { libc::fchmod(fd.as_raw_fd(), 0o500) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // Keep it clear of the low descriptors a child's stdio and fd 3 are dup'ed onto, so
    // `/proc/self/fd/N` still names this file when the child execs it.
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor >= 10 or -1.
    let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if high < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `high` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// A read-only, detached bind mount of the executable at `path` (the runc 1.2 answer to
/// CVE-2019-5736, without copying the binary): a process exec'd through it has its
/// `/proc/<pid>/exe` on a read-only mount, so opening it for writing fails with EROFS.
/// Needs `CAP_SYS_ADMIN` and Linux 5.12; callers fall back to [`sealed_copy`].
pub fn readonly_bind(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: open_tree takes a valid C string and flags; it returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by open_tree and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads one mount_attr of the size given through the pointer,
    // which outlives the call; the path is an empty C string with AT_EMPTY_PATH.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // As for sealed copies: clear of the low descriptors a child's stdio is dup'ed onto.
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor >= 10 or -1.
    let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if high < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `high` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

/// Whether the executable behind `fd` cannot be written: a memfd with the write seal, or
/// a file on a read-only mount (checked by trying to open it for writing).
pub fn is_write_sealed(fd: &impl AsRawFd) -> bool {
    // SAFETY: F_GET_SEALS only reads fd state.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 {
        return true;
    }
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    matches!(
        std::fs::OpenOptions::new().write(true).open(path),
        Err(e) if e.raw_os_error() == Some(libc::EROFS)
    )
}

/// Takes ownership of a descriptor inherited from the parent, marking it close-on-exec.
pub fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only checks that `fd` is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFD on an open descriptor.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open and, by the helper protocol, nothing else in this
    // process refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Closes every descriptor from `first` up (used by the helper to drop anything its
/// parent leaked before it enters the sandbox).
pub fn close_fds_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range takes plain integers; this process owns no Rust object holding
    // a descriptor >= `first` at the call sites (checked by the caller's protocol).
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The number of threads in this process.
fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Result of [`fork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Parent(Pid),
    Child,
}

/// Forks the current process, which must be single-threaded (checked): only then is the
/// child free to allocate and run arbitrary code.
pub fn fork() -> io::Result<Forked> {
    if thread_count()? != 1 {
        return Err(io::Error::other(
            "refusing to fork a multi-threaded process",
        ));
    }
    // SAFETY: the process has exactly one thread (checked above), so no lock can be held by
    // another thread at the time of the fork.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// Like [`fork`], but the child is PID 1 of a new pid namespace while the parent stays
/// where it is (with `unshare(CLONE_NEWPID)` every later child of the parent would land
/// in the namespace too, slirp4netns included).
///
/// With `user_namespace`, the child is also in a new user namespace (owning the pid
/// namespace), where it has no ids until the parent writes its maps.
pub fn fork_into_new_pid_namespace(user_namespace: bool) -> io::Result<Forked> {
    if thread_count()? != 1 {
        return Err(io::Error::other(
            "refusing to fork a multi-threaded process",
        ));
    }
    let mut flags = (libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_ulong;
    if user_namespace {
        flags |= libc::CLONE_NEWUSER as libc::c_ulong;
    }
    // SAFETY: clone without CLONE_VM and with a null stack is fork with extra flags: the
    // child gets a copy-on-write copy of the address space and continues from here. The
    // process is single-threaded (checked), so no lock is held by another thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match r {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as libc::pid_t))),
    }
}

/// Ends the process at once, without running destructors or atexit handlers (which belong
/// to the parent after a fork).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is always safe to call.
    unsafe { libc::_exit(code) }
}

/// Blocks `signals` for the calling thread; returns the set blocked.
pub fn block_signals(signals: &[Signal]) -> io::Result<SigSet> {
    let mut set = SigSet::empty();
    for s in signals {
        set.add(*s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(set)
}

/// Unblocks every signal (a blocked mask survives exec, so the command must not inherit it).
pub fn unblock_all_signals() -> io::Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}

/// Asks the kernel to send `signal` to this process when its parent dies.
pub fn set_parent_death_signal(signal: Signal) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(signal)?;
    Ok(())
}

/// A process handle that can be signalled without any pid-reuse race.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    pub fn open(pid: u32) -> io::Result<Self> {
        // SAFETY: pidfd_open takes plain integers and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    /// Sends `signal`; a process that already exited is not an error.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with a live pidfd and a null siginfo.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                return Err(err);
            }
        }
        Ok(())
    }
}
