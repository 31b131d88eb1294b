//! [`RealSys`]: the traits of [`super`] implemented with real syscalls.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use super::{Mount, Mounter, Namespaces, Overlay, Process, Rlimit, SysError};

/// The kernel accepts at most one page of mount options through `mount(2)`.
const MOUNT_DATA_MAX: usize = 4095;

// Constants of the new mount API (include/uapi/linux/mount.h), stable kernel ABI.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 4;

/// The real system: every call is a syscall on the current process.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSys;

fn cstring(what: &str, s: &OsStr) -> Result<CString, SysError> {
    CString::new(s.as_bytes()).map_err(|_| {
        SysError::new(
            what,
            io::Error::new(io::ErrorKind::InvalidInput, "nul byte in string"),
        )
    })
}

/// Overlay option values cannot contain `,` (option separator) or `:` (lower separator).
fn overlay_path(p: &Path) -> Result<&str, SysError> {
    match p.to_str() {
        Some(s) if !s.contains([',', ':', '\n']) => Ok(s),
        _ => Err(SysError::new(
            format!("overlay path {}", p.display()),
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "path not usable in overlay options",
            ),
        )),
    }
}

fn overlay_options(ov: &Overlay) -> Result<String, SysError> {
    let lowers = ov
        .lowers
        .iter()
        .map(|p| overlay_path(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut data = format!("lowerdir={}", lowers.join(":"));
    if let Some((upper, work)) = &ov.upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            overlay_path(upper)?,
            overlay_path(work)?
        ));
        if ov.volatile {
            data.push_str(",volatile");
        }
    }
    Ok(data)
}

/// Mounts an overlay through fsopen/fsconfig/fsmount/move_mount, adding lowers one at a
/// time with `lowerdir+` (Linux 6.8+), so no option page limit applies.
fn overlay_new_api(ov: &Overlay, target: &Path) -> Result<(), SysError> {
    let what = |s: &str| format!("overlay {s} for {}", target.display());
    let fstype = c"overlay";
    // SAFETY: fsopen takes a valid nul-terminated string and flags; it returns a new fd or -1.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    if fs < 0 {
        return Err(SysError::new(what("fsopen"), io::Error::last_os_error()));
    }
    // SAFETY: `fs` was just returned by fsopen and is owned by nobody else.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    let set = |key: &std::ffi::CStr, value: &Path| -> Result<(), SysError> {
        let v = cstring("overlay option", value.as_os_str())?;
        // SAFETY: fs is a live fs context fd; key and value are valid C strings for the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                v.as_ptr(),
                0,
            )
        };
        if r < 0 {
            return Err(SysError::new(
                what(&format!("fsconfig {}", key.to_string_lossy())),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    };
    for lower in &ov.lowers {
        set(c"lowerdir+", lower)?;
    }
    if let Some((upper, work)) = &ov.upper {
        set(c"upperdir", upper)?;
        set(c"workdir", work)?;
        if ov.volatile {
            // SAFETY: fs is a live fs context; SET_FLAG takes a key and a null value.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd(),
                    FSCONFIG_SET_FLAG,
                    c"volatile".as_ptr(),
                    std::ptr::null::<libc::c_char>(),
                    0,
                )
            };
            if r < 0 {
                return Err(SysError::new(
                    what("fsconfig volatile"),
                    io::Error::last_os_error(),
                ));
            }
        }
    }
    // SAFETY: fs is a live fs context; CMD_CREATE takes null key/value.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if r < 0 {
        return Err(SysError::new(what("create"), io::Error::last_os_error()));
    }
    // SAFETY: fs is a created fs context; fsmount returns a new mount fd or -1.
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mnt < 0 {
        return Err(SysError::new(what("fsmount"), io::Error::last_os_error()));
    }
    // SAFETY: `mnt` was just returned by fsmount and is owned by nobody else.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
    let t = cstring("overlay target", target.as_os_str())?;
    // SAFETY: mnt is a detached mount fd; the empty path with F_EMPTY_PATH names it; t is valid.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(SysError::new(
            what("move_mount"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

impl Mounter for RealSys {
    fn make_rprivate(&self, path: &Path) -> Result<(), SysError> {
        nix::mount::mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| SysError::errno(format!("make {} rprivate", path.display()), e))
    }

    fn mount(&self, m: &Mount) -> Result<(), SysError> {
        nix::mount::mount(
            m.source.as_deref(),
            &m.target,
            m.fstype.as_deref(),
            m.flags,
            m.data.as_deref(),
        )
        .map_err(|e| {
            SysError::errno(
                format!(
                    "mount {} on {}",
                    m.fstype
                        .as_deref()
                        .map(str::to_owned)
                        .or_else(|| m.source.as_ref().map(|s| s.display().to_string()))
                        .unwrap_or_default(),
                    m.target.display()
                ),
                e,
            )
        })
    }

    fn mount_overlay(&self, ov: &Overlay, target: &Path) -> Result<(), SysError> {
        let data = overlay_options(ov)?;
        if data.len() > MOUNT_DATA_MAX {
            return overlay_new_api(ov, target);
        }
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| SysError::errno(format!("mount overlay on {}", target.display()), e))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), SysError> {
        nix::unistd::pivot_root(new_root, put_old)
            .map_err(|e| SysError::errno(format!("pivot_root to {}", new_root.display()), e))
    }

    fn umount(&self, target: &Path, detach: bool) -> Result<(), SysError> {
        let flags = if detach {
            MntFlags::MNT_DETACH
        } else {
            MntFlags::empty()
        };
        nix::mount::umount2(target, flags)
            .map_err(|e| SysError::errno(format!("umount {}", target.display()), e))
    }

    fn mknod_char(&self, path: &Path, major: u64, minor: u64, mode: u32) -> Result<(), SysError> {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        use std::os::unix::fs::PermissionsExt;
        let what = || format!("mknod {}", path.display());
        let perm = Mode::from_bits_truncate(mode);
        mknod(path, SFlag::S_IFCHR, perm, makedev(major, minor))
            .map_err(|e| SysError::errno(what(), e))?;
        // mknod applies the umask; the device must have exactly `mode`.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| SysError::new(what(), e))
    }
}

impl Namespaces for RealSys {
    fn join_network(&self, ns: &Path) -> Result<(), SysError> {
        let file =
            std::fs::File::open(ns).map_err(|e| SysError::new("open network namespace", e))?;
        nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| SysError::errno("join network namespace", e))
    }

    fn unshare(&self, flags: CloneFlags) -> Result<(), SysError> {
        nix::sched::unshare(flags).map_err(|e| SysError::errno("unshare namespaces", e))
    }

    fn set_hostname(&self, name: &str) -> Result<(), SysError> {
        nix::unistd::sethostname(name).map_err(|e| SysError::errno("sethostname", e))
    }

    fn loopback_up(&self) -> Result<(), SysError> {
        // SAFETY: socket() takes no pointers; it returns a new fd or -1.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(SysError::new("socket for lo", io::Error::last_os_error()));
        }
        // SAFETY: `sock` was just returned by socket() and is owned by nobody else.
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS reads the interface named in `req` and fills ifru_flags.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(SysError::new("get lo flags", io::Error::last_os_error()));
        }
        // SAFETY: the union member was just written by SIOCGIFFLAGS.
        unsafe {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        // SAFETY: SIOCSIFFLAGS reads `req`, which names lo and holds the new flags.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
            return Err(SysError::new("set lo up", io::Error::last_os_error()));
        }
        Ok(())
    }
}

fn caps_err(what: &str, e: caps::errors::CapsError) -> SysError {
    SysError::new(what, io::Error::other(e.to_string()))
}

impl Process for RealSys {
    fn drop_capabilities(&self, keep: &[Capability]) -> Result<(), SysError> {
        let keep: CapsHashSet = keep.iter().copied().collect();
        // The bounding set first: dropping from it needs CAP_SETPCAP, still effective here.
        for cap in caps::all() {
            if !keep.contains(&cap) {
                match caps::drop(None, CapSet::Bounding, cap) {
                    Ok(()) => {}
                    // A capability this kernel does not know is not in any set anyway.
                    Err(_) if !caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) => {}
                    Err(e) => return Err(caps_err("drop bounding capabilities", e)),
                }
            }
        }
        caps::clear(None, CapSet::Ambient)
            .map_err(|e| caps_err("clear ambient capabilities", e))?;
        caps::clear(None, CapSet::Inheritable)
            .map_err(|e| caps_err("clear inheritable capabilities", e))?;
        // Effective before permitted: the kernel requires effective ⊆ permitted at every step.
        caps::set(None, CapSet::Effective, &keep)
            .map_err(|e| caps_err("set effective capabilities", e))?;
        caps::set(None, CapSet::Permitted, &keep)
            .map_err(|e| caps_err("set permitted capabilities", e))
    }

    fn set_no_new_privs(&self) -> Result<(), SysError> {
        nix::sys::prctl::set_no_new_privs().map_err(|e| SysError::errno("set no_new_privs", e))
    }

    fn set_groups(&self, gids: &[u32]) -> Result<(), SysError> {
        let gids: Vec<Gid> = gids.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&gids).map_err(|e| SysError::errno("setgroups", e))
    }

    fn set_gid(&self, gid: u32) -> Result<(), SysError> {
        let g = Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g).map_err(|e| SysError::errno(format!("setgid {gid}"), e))
    }

    fn set_uid(&self, uid: u32) -> Result<(), SysError> {
        let u = Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u).map_err(|e| SysError::errno(format!("setuid {uid}"), e))
    }

    fn set_rlimit(&self, limit: Rlimit) -> Result<(), SysError> {
        let value = libc::rlimit {
            rlim_cur: limit.soft,
            rlim_max: limit.hard,
        };
        // SAFETY: `value` is a valid rlimit for the duration of the call.
        let r = unsafe { libc::setrlimit(limit.resource as libc::__rlimit_resource_t, &value) };
        if r < 0 {
            return Err(SysError::new(
                format!("setrlimit {}", limit.resource),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn set_umask(&self, mask: u32) -> Result<(), SysError> {
        nix::sys::stat::umask(Mode::from_bits_truncate(mask));
        Ok(())
    }

    fn chdir(&self, path: &Path) -> Result<(), SysError> {
        nix::unistd::chdir(path)
            .map_err(|e| SysError::errno(format!("chdir {}", path.display()), e))
    }

    fn close_fds_on_exec(&self, first: u32) -> Result<(), SysError> {
        // SAFETY: close_range takes plain integers; with CLOEXEC it only sets fd flags.
        let r =
            unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
        if r == 0 {
            return Ok(());
        }
        if Errno::last() != Errno::ENOSYS && Errno::last() != Errno::EINVAL {
            return Err(SysError::new("close_range", io::Error::last_os_error()));
        }
        // Kernels before 5.11: walk the descriptor table instead.
        let max = nix::unistd::sysconf(nix::unistd::SysconfVar::OPEN_MAX)
            .ok()
            .flatten()
            .unwrap_or(1024) as i32;
        for fd in first as i32..max {
            // SAFETY: F_SETFD on a closed descriptor fails harmlessly with EBADF.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        Ok(())
    }

    fn set_dumpable(&self, dumpable: bool) -> Result<(), SysError> {
        nix::sys::prctl::set_dumpable(dumpable).map_err(|e| SysError::errno("set dumpable", e))
    }

    fn exec(&self, program: &Path, argv: &[String], env: &[String]) -> SysError {
        let conv = |s: &String| cstring("exec argument", OsStr::new(s));
        let prog = match cstring("exec path", program.as_os_str()) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let argv = match argv.iter().map(conv).collect::<Result<Vec<_>, _>>() {
            Ok(a) => a,
            Err(e) => return e,
        };
        let env = match env.iter().map(conv).collect::<Result<Vec<_>, _>>() {
            Ok(a) => a,
            Err(e) => return e,
        };
        match nix::unistd::execve(&prog, &argv, &env) {
            Err(e) => SysError::errno(format!("exec {}", program.display()), e),
            Ok(never) => match never {},
        }
    }
}
