//! The sandbox helper: the entry point the caller starts (through [`crate::Helper`]) as a
//! fresh, single-threaded process.
//!
//! 1. The *helper* reads its [`InitSpec`] from the inherited socket (fd 3), closes every
//!    other inherited descriptor, blocks the signals it handles and forks PID 1 into a new
//!    pid namespace (starting slirp4netns, in the host's namespaces, for the sandbox
//!    network once PID 1 has its network namespace). It stays outside, forwards SIGTERM/SIGINT, kills the sandbox if the caller goes
//!    away (socket EOF) and exits with PID 1's status.
//! 2. The child is *PID 1* of the new pid namespace: it dies with the helper
//!    (`PR_SET_PDEATHSIG`), unshares its other namespaces, builds the container ([`setup_container`]), makes itself
//!    non-dumpable, forks the command, forwards signals to it, reaps every zombie, reports
//!    the command's status on the socket and exits — the kernel then kills whatever is
//!    left in the namespace.
//! 3. The command's process drops privileges and execs ([`exec_command`]).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::container::{enter_namespaces, exec_command, setup_container};
use crate::slirp::Slirp;
use crate::spec::{InitSpec, Message, SubIds, read_spec, write_message};
use crate::sys::launch::{self, Forked};
use crate::sys::{Process, RealSys, tty};

/// The descriptor the caller passes the socket on.
pub(crate) const SPEC_FD: i32 = 3;
/// Set by the caller so a helper started by hand explains itself instead of misbehaving.
pub(crate) const SPEC_FD_ENV: &str = "RBUILD_SANDBOX_FD";

/// Exit status when the sandbox could not be set up (as `docker run` uses 125).
const SETUP_FAILED: i32 = 125;

/// Signals the helper and PID 1 pass on to the command.
/// With a terminal, PID 1 answers SIGWINCH by copying its own terminal's window size to
/// the sandbox's.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Entry point of the sandbox helper; the `rbuild` binary calls it from a hidden
/// subcommand before starting any thread. Never returns.
pub fn sandbox_init_main() -> ! {
    let code = match helper_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rbuild sandbox init: {e}");
            SETUP_FAILED
        }
    };
    std::process::exit(code)
}

fn helper_main() -> io::Result<i32> {
    if std::env::var(SPEC_FD_ENV).ok().as_deref() != Some("3") {
        return Err(io::Error::other(
            "not started by rbuild (this is an internal entry point)",
        ));
    }
    let mut sock = UnixStream::from(launch::take_inherited_fd(SPEC_FD)?);
    // Nothing the caller leaked may reach the sandbox.
    launch::close_fds_from(SPEC_FD as u32 + 1)?;
    let spec = read_spec(&mut sock)?;
    match start(&spec, &sock) {
        Ok(code) => Ok(code),
        Err(e) => {
            report(&sock, &Message::SetupFailed(e.to_string()));
            Ok(SETUP_FAILED)
        }
    }
}

fn report(mut sock: &UnixStream, msg: &Message) {
    // If the caller is gone there is nobody to tell.
    let _ = write_message(&mut sock, msg);
    let _ = sock.flush();
}

fn signal_fd() -> io::Result<SignalFd> {
    let mut handled = FORWARDED.to_vec();
    handled.push(Signal::SIGCHLD);
    let mask = launch::block_signals(&handled)?;
    Ok(SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)?)
}

fn exit_code(status: WaitStatus) -> Option<(Option<i32>, Option<i32>, i32)> {
    match status {
        WaitStatus::Exited(_, code) => Some((Some(code), None, code)),
        WaitStatus::Signaled(_, sig, _) => Some((None, Some(sig as i32), 128 + sig as i32)),
        _ => None,
    }
}

/// The helper: fork PID 1 into its namespaces (writing its id maps, starting slirp4netns
/// as needed), then supervise it.
fn start(spec: &InitSpec, sock: &UnixStream) -> io::Result<i32> {
    let sfd = signal_fd()?;
    // PID 1 polls this pipe once after PR_SET_PDEATHSIG to catch a helper that died first.
    let (alive_r, alive_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // With the sandbox network, PID 1 says on `ns` when its network namespace exists, and
    // waits on `net` for the helper's "1" (network configured) before the command starts.
    let (ns_r, ns_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (net_r, net_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // Rootless: PID 1 waits on this pipe until the helper has written its id maps.
    let (maps_r, maps_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    match launch::fork_into_new_pid_namespace(spec.rootless.is_some())? {
        Forked::Child => {
            drop(alive_w);
            drop(net_w);
            drop(ns_r);
            drop(maps_w);
            let net = spec.starts_slirp().then_some((ns_w, net_r));
            let maps = spec.rootless.is_some().then_some(maps_r);
            let code = pid1(spec, sock, &sfd, alive_r, net, maps);
            launch::exit_now(code)
        }
        Forked::Parent(child) => {
            drop(alive_r);
            drop(net_r);
            drop(ns_w);
            drop(maps_r);
            if let Some(ids) = spec.rootless {
                match write_id_maps(child, ids, spec.subids.as_ref()) {
                    Ok(()) => {
                        let _ = nix::unistd::write(&maps_w, b"1");
                    }
                    Err(e) => {
                        report(sock, &Message::SetupFailed(format!("user namespace: {e}")));
                        let _ = kill(child, Signal::SIGKILL);
                    }
                }
            }
            drop(maps_w);
            let slirp = if spec.starts_slirp() {
                let mut unshared = [0u8; 1];
                let started = match std::fs::File::from(ns_r).read(&mut unshared) {
                    Ok(1) => start_slirp(spec, child),
                    _ => Err(io::Error::other("sandbox init ended early")),
                };
                match started {
                    Ok(s) => {
                        let _ = nix::unistd::write(&net_w, b"1");
                        Some(s)
                    }
                    Err(e) => {
                        report(sock, &Message::SetupFailed(format!("sandbox network: {e}")));
                        let _ = kill(child, Signal::SIGKILL);
                        None
                    }
                }
            } else {
                None
            };
            drop(net_w);
            let code = supervise(child, sock, &sfd);
            if let Some(s) = slirp {
                s.stop();
            }
            drop(alive_w);
            code
        }
    }
}

/// Maps the caller's ids to root in PID 1's user namespace: with subordinate ids through
/// the setuid `newuidmap`/`newgidmap` (ids 1 and up from the ranges), else by writing
/// the one mapping an unprivileged process may write for itself (`setgroups` denied).
fn write_id_maps(child: Pid, (uid, gid): (u32, u32), subids: Option<&SubIds>) -> io::Result<()> {
    if let Some(s) = subids {
        for (tool, id, start, count) in [
            (&s.newuidmap, uid, s.uid_start, s.uid_count),
            (&s.newgidmap, gid, s.gid_start, s.gid_count),
        ] {
            let out = std::process::Command::new(tool)
                .arg(child.to_string())
                .args(["0", &id.to_string(), "1", "1", &start.to_string()])
                .arg(count.to_string())
                .stdin(std::process::Stdio::null())
                .output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "{} failed ({}): {}",
                    tool.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        return Ok(());
    }
    let proc = std::path::PathBuf::from(format!("/proc/{child}"));
    std::fs::write(proc.join("setgroups"), "deny")?;
    std::fs::write(proc.join("uid_map"), format!("0 {uid} 1\n"))?;
    std::fs::write(proc.join("gid_map"), format!("0 {gid} 1\n"))
}

/// slirp4netns for this run's own network namespace (found through PID 1's pid; with
/// a user namespace, joined through that namespace).
fn start_slirp(spec: &InitSpec, target: Pid) -> io::Result<Slirp> {
    let path = spec
        .slirp4netns
        .as_ref()
        .ok_or_else(|| io::Error::other("no slirp4netns given"))?;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if spec.rootless.is_some() {
        args.push(format!("--userns-path=/proc/{target}/ns/user").into());
    }
    args.push(target.to_string().into());
    args.push("tap0".into());
    Slirp::start(path, &args, &[])
}

fn supervise(child: Pid, sock: &UnixStream, sfd: &SignalFd) -> io::Result<i32> {
    let mut caller_alive = true;
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if caller_alive {
            fds.push(PollFd::new(sock.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let sock_ready = caller_alive && fds[1].any().unwrap_or(false);
        let sig_ready = fds[0].any().unwrap_or(false);
        drop(fds);
        if sock_ready {
            let mut byte = [0u8; 1];
            let mut s = sock;
            if matches!(s.read(&mut byte), Ok(0) | Err(_)) {
                // The caller is gone: nobody can collect the output, kill the sandbox.
                caller_alive = false;
                let _ = kill(child, Signal::SIGKILL);
            }
        }
        if sig_ready && let Some(info) = sfd.read_signal()? {
            let sig = Signal::try_from(info.ssi_signo as i32).map_err(io::Error::from)?;
            if sig == Signal::SIGCHLD {
                match waitpid(child, Some(WaitPidFlag::WNOHANG))? {
                    WaitStatus::StillAlive => {}
                    status => {
                        if let Some((_, _, code)) = exit_code(status) {
                            return Ok(code);
                        }
                    }
                }
            } else {
                let _ = kill(child, sig);
            }
        }
    }
}

/// PID 1 of the sandbox. Returns its exit status.
fn pid1(
    spec: &InitSpec,
    sock: &UnixStream,
    sfd: &SignalFd,
    alive: OwnedFd,
    net: Option<(OwnedFd, OwnedFd)>,
    maps: Option<OwnedFd>,
) -> i32 {
    if launch::set_parent_death_signal(Signal::SIGKILL).is_err() {
        return SETUP_FAILED;
    }
    if let Some(fd) = maps {
        let mut done = [0u8; 1];
        if !matches!(std::fs::File::from(fd).read(&mut done), Ok(1)) {
            // The helper reported why (or died).
            return SETUP_FAILED;
        }
    }
    let mut fds = [PollFd::new(alive.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::ZERO).map_or(true, |_| fds[0].any().unwrap_or(false)) {
        // The helper died before PR_SET_PDEATHSIG took effect.
        return SETUP_FAILED;
    }
    drop(alive);

    // Joined while still seeing the host's cgroupfs; every later process inherits it.
    if let Err(e) = crate::cgroup::join(&spec.cgroup_procs) {
        report(sock, &Message::SetupFailed(e.to_string()));
        return SETUP_FAILED;
    }
    if let Err(e) = enter_namespaces(&RealSys, spec.network, spec.netns.as_deref()) {
        report(sock, &Message::SetupFailed(e.to_string()));
        return SETUP_FAILED;
    }
    let net_ready = match net {
        Some((ns_w, net_r)) => {
            // The helper may start slirp4netns on our network namespace now.
            if nix::unistd::write(&ns_w, b"1").is_err() {
                return SETUP_FAILED;
            }
            Some(net_r)
        }
        None => None,
    };
    let creds = match setup_container(&RealSys, spec) {
        Ok(c) => c,
        Err(e) => {
            report(sock, &Message::SetupFailed(e.to_string()));
            return SETUP_FAILED;
        }
    };
    if let Some(fd) = net_ready {
        let mut ready = [0u8; 1];
        if !matches!(std::fs::File::from(fd).read(&mut ready), Ok(1)) {
            // The helper reported why.
            return SETUP_FAILED;
        }
    }
    // Nothing in the sandbox may open /proc/1/{exe,fd,mem} of this process.
    if let Err(e) = RealSys.set_dumpable(false) {
        report(sock, &Message::SetupFailed(e.to_string()));
        return SETUP_FAILED;
    }
    let tty = if spec.tty {
        match open_terminal(spec, &creds) {
            Ok(t) => Some(t),
            Err(e) => {
                report(sock, &Message::SetupFailed(format!("terminal: {e}")));
                return SETUP_FAILED;
            }
        }
    } else {
        None
    };
    let command = match launch::fork() {
        Ok(Forked::Child) => {
            let ready = launch::unblock_all_signals().and_then(|()| match &tty {
                Some((_, slave)) => tty::make_controlling(slave),
                None => Ok(()),
            });
            let err = match ready {
                Ok(()) => exec_command(&RealSys, spec, &creds),
                Err(e) => crate::container::ContainerError::Sys(crate::sys::SysError::new(
                    "prepare the command's process",
                    e,
                )),
            };
            let code = err.exit_code();
            report(
                sock,
                &Message::ExecFailed {
                    message: err.to_string(),
                    code,
                },
            );
            launch::exit_now(code)
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => {
            report(sock, &Message::SetupFailed(format!("fork: {e}")));
            return SETUP_FAILED;
        }
    };
    let master = tty.map(|(master, slave)| {
        drop(slave);
        master
    });
    reap(command, sock, sfd, master)
}

/// A pseudo-terminal of the sandbox's own devpts (so `tty` names a device that exists
/// inside), owned by the command's user, with PID 1's terminal's window size.
fn open_terminal(
    spec: &InitSpec,
    creds: &crate::user::Credentials,
) -> io::Result<(OwnedFd, OwnedFd)> {
    let (master, slave) = tty::open_pty(std::path::Path::new("/dev/pts/ptmx"))?;
    if spec.rootless.is_none() {
        nix::unistd::fchown(
            &slave,
            Some(nix::unistd::Uid::from_raw(creds.uid)),
            Some(nix::unistd::Gid::from_raw(TTY_GID)),
        )?;
    }
    copy_window_size(&master);
    Ok((master, slave))
}

/// Group `tty`, the owner group of terminals (as Docker's devpts `gid=5`).
const TTY_GID: u32 = 5;

fn copy_window_size(master: &OwnedFd) {
    if let Some(size) = tty::window_size(1).or_else(|| tty::window_size(0)) {
        let _ = tty::set_window_size(master, size);
    }
}

/// Copies what is readable on `from` to `to`; false at end of file or on an error.
fn relay_once(from: &impl AsFd, to: &mut impl Write) -> bool {
    let mut buf = [0u8; 16 * 1024];
    match nix::unistd::read(from, &mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => to.write_all(&buf[..n]).and_then(|()| to.flush()).is_ok(),
    }
}

/// PID 1's loop: forward signals to the command, reap every child, relay the terminal
/// (when there is one), and end when the command ends.
fn reap(command: Pid, sock: &UnixStream, sfd: &SignalFd, master: Option<OwnedFd>) -> i32 {
    let stdin = io::stdin();
    // What the caller types goes to the terminal through its own handle.
    let mut to_master = master
        .as_ref()
        .and_then(|m| m.try_clone().ok())
        .map(std::fs::File::from);
    let mut stdin_open = to_master.is_some();
    let mut master_open = master.is_some();
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = master.as_ref().filter(|_| master_open) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return SETUP_FAILED,
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        let mut k = 1;
        if let Some(m) = master.as_ref().filter(|_| master_open) {
            if ready[k] {
                master_open = relay_once(m, &mut io::stdout().lock());
            }
            k += 1;
        }
        if stdin_open
            && ready[k]
            && let Some(w) = to_master.as_mut()
        {
            stdin_open = relay_once(&stdin, w);
        }
        if !ready[0] {
            continue;
        }
        let info = match sfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return SETUP_FAILED,
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        if sig == Signal::SIGWINCH
            && let Some(m) = &master
        {
            copy_window_size(m);
            continue;
        }
        if sig != Signal::SIGCHLD {
            let _ = kill(command, sig);
            continue;
        }
        // One SIGCHLD may stand for several children: reap until none is waiting.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) if status.pid() == Some(command) => {
                    if let Some((code, signal, exit)) = exit_code(status) {
                        if let Some(m) = master.as_ref().filter(|_| master_open) {
                            drain(m);
                        }
                        report(sock, &Message::Exited { code, signal });
                        return exit;
                    }
                }
                Ok(_) => {}
            }
        }
    }
}

/// Relays what the command left in the terminal after it ended.
fn drain(master: &OwnedFd) {
    loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            return;
        }
        if !relay_once(master, &mut io::stdout().lock()) {
            return;
        }
    }
}
