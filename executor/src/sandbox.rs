//! The caller's side of the sandbox: start the helper, hand it the spec, stream its
//! output to a callback, enforce cancel and timeout, and turn its report into a result.
//!
//! The caller may be a multi-threaded tokio process, so it never forks with code of its
//! own: it starts the helper with `posix_spawn` ([`launch::spawn`]), passing stdio and the
//! spec socket as fd 3, and then reads the helper's output and reports with one `poll`
//! in the calling thread. The helper is exec'd through a read-only bind
//! mount of its binary (or a sealed memfd copy) made once per [`Helper`], so nothing
//! running in the sandbox can write to the binary on the host through `/proc/<pid>/exe`
//! (the runc CVE-2019-5736 class).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

use crate::cgroup::{Cgroup, Limits};
use crate::init::{SPEC_FD, SPEC_FD_ENV};
use crate::mounts::{AgentProxy, CacheLease, acquire_cache};
use crate::rootfs::resolve_in_root;
use crate::spec::{
    ExtraMount, InitSpec, Message, MountKind, Network, Rootfs, parse_message, write_spec,
};
use crate::sys::Rlimit;
use crate::sys::launch::{self, Pidfd};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("prepare sandbox helper {path}")]
    Helper {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("start sandbox")]
    Spawn(#[source] io::Error),
    #[error("write sandbox files")]
    Files(#[source] io::Error),
    #[error(transparent)]
    Mount(#[from] crate::mounts::MountError),
    #[error("read secret {path} for ${name}")]
    SecretEnv {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    #[error("{message}")]
    Exec { message: String, code: i32 },
    #[error("sandbox helper ended without a report ({0})")]
    NoReport(String),
    #[error(
        "network mode \"sandbox\" needs slirp4netns, which is not installed; install it or use network mode \"host\" or \"none\""
    )]
    NoSandboxNetwork,
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error("cancelled")]
    Cancelled,
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

/// How the sandbox helper is started: a program and leading arguments that end up in
/// [`crate::sandbox_init_main`] (the `rbuild` binary with its hidden subcommand, or the
/// crate's `rbuild-sandbox-init`).
#[derive(Debug)]
pub struct Helper {
    program: PathBuf,
    args: Vec<OsString>,
    /// What is actually exec'd: the binary on a read-only mount, or a sealed copy.
    exe: OwnedFd,
}

impl Helper {
    /// Exec's `program` through a read-only bind mount of it (root), else from a sealed
    /// memfd copy: either way nothing in a sandbox can write to the file.
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>) -> Result<Self, SandboxError> {
        let program = program.into();
        let exe = unwritable(&program)?;
        Ok(Self { program, args, exe })
    }

    /// The running binary itself (through `/proc/self/exe`, so a binary replaced on disk
    /// since start is still the one run), started with `args` — for the `rbuild`
    /// binary's hidden subcommand.
    pub fn current_exe(args: Vec<OsString>) -> Result<Self, SandboxError> {
        let exe = unwritable(Path::new("/proc/self/exe"))?;
        let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("rbuild"));
        Ok(Self { program, args, exe })
    }

    /// Whether the exec'd file cannot be written (always, unless the kernel lied).
    pub fn is_sealed(&self) -> bool {
        launch::is_write_sealed(&self.exe)
    }
}

/// A descriptor of `program` that cannot be written through: a read-only bind mount when
/// the kernel and our privileges allow (no copy: the rbuild binary is tens of MB, a copy
/// per `rbuild run` cost more than the run), else a sealed memfd copy.
fn unwritable(program: &Path) -> Result<OwnedFd, SandboxError> {
    if let Ok(fd) = launch::readonly_bind(program)
        && launch::is_write_sealed(&fd)
    {
        return Ok(fd);
    }
    launch::sealed_copy(program, c"rbuild-sandbox-init").map_err(|source| SandboxError::Helper {
        path: program.to_owned(),
        source,
    })
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The status a shell would report (`128 + n` for signal `n`).
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// One command to run in a sandbox.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The root filesystem. Mount targets it lacks (`/proc`, `/etc/hosts`, extra mount
    /// points...) are created for the run and removed after it for a [`Rootfs::Dir`];
    /// in a [`Rootfs::Overlay`] they stay in the upper dir.
    pub rootfs: Rootfs,
    pub argv: Vec<String>,
    /// `KEY=value` strings, given to the command as they are.
    pub env: Vec<String>,
    /// Working directory inside; created (owned by root) if missing.
    pub cwd: String,
    /// A `USER` value, resolved inside the rootfs; empty means root.
    pub user: String,
    pub hostname: String,
    pub network: Network,
    /// Extra mounts, made in order after the rootfs's own.
    pub mounts: Vec<ExtraMount>,
    pub rlimits: Vec<Rlimit>,
    /// Kill the sandbox after this long.
    pub timeout: Option<Duration>,
    /// Memory, CPU and process limits (a cgroup made for the run).
    pub limits: Limits,
    /// Pass the caller's stdin to the command (`rbuild run -i`); otherwise `/dev/null`.
    pub stdin_inherit: bool,
    /// Secrets given to the command as environment variables (`RUN
    /// --mount=type=secret,env=NAME`): `(NAME, host file)`, read at the start of the run.
    pub secret_env: Vec<(String, PathBuf)>,
    /// Give the command a terminal (`rbuild run -t`): its output then goes straight to
    /// the caller's stdout (a terminal, usually), not through the output callback.
    pub tty: bool,
    /// With [`Network::Sandbox`]: join this network namespace, already served by its
    /// slirp4netns (a [`crate::NetLease`], held by the caller until the run ends),
    /// instead of making a namespace and starting slirp4netns for this run.
    pub netns: Option<PathBuf>,
}

impl RunSpec {
    /// A spec with Docker's defaults: root, `/`, hostname `sandbox`, no network.
    pub fn new(rootfs: Rootfs, argv: Vec<String>) -> Self {
        Self {
            rootfs,
            argv,
            env: vec![format!("PATH={}", crate::spec::DEFAULT_PATH)],
            cwd: "/".to_owned(),
            user: String::new(),
            hostname: "sandbox".to_owned(),
            network: Network::None,
            mounts: Vec::new(),
            rlimits: Vec::new(),
            timeout: None,
            stdin_inherit: false,
            limits: Limits::default(),
            secret_env: Vec::new(),
            tty: false,
            netns: None,
        }
    }
}

#[derive(Debug, Default)]
struct CancelInner {
    cancelled: AtomicBool,
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, Pidfd>>,
}

/// Cancels runs from any thread: kills the helper, whose death kills PID 1 of the
/// sandbox (`PR_SET_PDEATHSIG`), whose death makes the kernel kill the whole namespace.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<CancelInner>);

impl CancelHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every run using this handle, now and later.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        let running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        for pidfd in running.values() {
            let _ = pidfd.signal(Signal::SIGKILL);
        }
    }

    /// Passes `signal` (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH) on
    /// to the command of every run using this handle, as `docker run` proxies signals:
    /// the command may handle it (a `trap` in a shell); nothing is killed by force.
    /// `signal` is a raw number (`libc::SIGTERM`...); one that is not a signal is ignored.
    pub fn forward(&self, signal: i32) {
        let Ok(signal) = Signal::try_from(signal) else {
            return;
        };
        let running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        for pidfd in running.values() {
            // The helper passes it to PID 1, which passes it to the command.
            let _ = pidfd.signal(signal);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    fn attach(&self, pidfd: Pidfd) -> u64 {
        let id = self.0.next.fetch_add(1, Ordering::SeqCst);
        let mut running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock, so a concurrent cancel() either sees the entry or has
        // already set the flag.
        if self.is_cancelled() {
            let _ = pidfd.signal(Signal::SIGKILL);
        }
        running.insert(id, pidfd);
        id
    }

    fn kill(&self, id: u64) {
        let running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pidfd) = running.get(&id) {
            let _ = pidfd.signal(Signal::SIGKILL);
        }
    }

    fn detach(&self, id: u64) {
        let mut running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(&id);
    }
}

/// Runs commands in sandboxes through one [`Helper`].
#[derive(Debug)]
pub struct Sandbox {
    helper: Helper,
}

/// What the caller reads from a running sandbox.
enum Source {
    /// The helper's socket: one JSON report a line.
    Messages(UnixStream),
    Output(Stream, File),
}

impl Source {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Source::Messages(s) => s.as_fd(),
            Source::Output(_, f) => f.as_fd(),
        }
    }
}

/// Relays the sandbox's output to `output` and collects the first report, in the calling
/// thread, from one `poll` over every source (no thread per stream: each costs a
/// spawn, a join and a wake-up per chunk), until every source is at its end; calls
/// `kill` once if `timeout` runs out first. Returns the report and whether it timed out.
fn relay(
    mut sources: Vec<Source>,
    timeout: Option<Duration>,
    started: Instant,
    kill: impl Fn(),
    output: &mut dyn FnMut(Stream, &[u8]),
) -> (Option<Message>, bool) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut lines: Vec<u8> = Vec::new();
    let mut report = None;
    let mut timed_out = false;
    // The first report is the cause: an exec failure is followed by PID 1's report of
    // the exit it caused.
    let take = |line: &[u8], report: &mut Option<Message>| {
        let msg = parse_message(line)
            .unwrap_or_else(|e| Message::SetupFailed(format!("bad report from sandbox: {e}")));
        report.get_or_insert(msg);
    };
    while !sources.is_empty() {
        let wait = match timeout {
            Some(t) if !timed_out => {
                let left = t.saturating_sub(started.elapsed());
                // Rounded up, so it never wakes just before the deadline and spins.
                let ms = left.as_nanos().div_ceil(1_000_000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
            _ => PollTimeout::NONE,
        };
        let mut fds: Vec<PollFd<'_>> = sources
            .iter()
            .map(|s| PollFd::new(s.fd(), PollFlags::POLLIN))
            .collect();
        let ready: Vec<bool> = match poll(&mut fds, wait) {
            Ok(0) => {
                timed_out = true;
                kill();
                continue;
            }
            Ok(_) => fds.iter().map(|f| f.any().unwrap_or(true)).collect(),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => {
                // Cannot happen with valid descriptors; never leave a sandbox behind.
                kill();
                break;
            }
        };
        drop(fds);
        let mut ended = Vec::new();
        for (i, source) in sources.iter_mut().enumerate().filter(|(i, _)| ready[*i]) {
            let n = match source {
                Source::Messages(s) => s.read(&mut buf),
                Source::Output(_, f) => f.read(&mut buf),
            };
            match (n, &*source) {
                (Ok(0), _) => ended.push(i),
                (Ok(n), Source::Output(stream, _)) => output(*stream, &buf[..n]),
                (Ok(n), Source::Messages(_)) => {
                    lines.extend_from_slice(&buf[..n]);
                    while let Some(end) = lines.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = lines.drain(..=end).collect();
                        take(&line[..end], &mut report);
                    }
                }
                (Err(e), _) if e.kind() == io::ErrorKind::Interrupted => {}
                (Err(_), _) => ended.push(i),
            }
        }
        for i in ended.into_iter().rev() {
            sources.remove(i);
        }
    }
    if !lines.is_empty() {
        take(&lines, &mut report);
    }
    (report, timed_out)
}

/// The generated files bound at `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, as
/// `(path inside, content)`.
fn etc_files(spec: &RunSpec) -> Vec<(String, String)> {
    let hosts = format!(
        "127.0.0.1\tlocalhost {h}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        h = spec.hostname
    );
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv: String = match spec.network {
        Network::Host => host_resolv,
        // Loopback resolvers of the host are not reachable from another namespace.
        Network::None | Network::Sandbox => host_resolv
            .lines()
            .filter(|l| {
                let mut w = l.split_whitespace();
                !(w.next() == Some("nameserver")
                    && w.next()
                        .is_some_and(|a| a.starts_with("127.") || a == "::1"))
            })
            .map(|l| format!("{l}\n"))
            .collect(),
    };
    let resolv = if spec.network == Network::Sandbox && !resolv.contains("nameserver") {
        // slirp4netns's own DNS forwarder.
        format!("{resolv}nameserver 10.0.2.3\n")
    } else {
        resolv
    };
    vec![
        ("/etc/hosts".to_owned(), hosts),
        ("/etc/resolv.conf".to_owned(), resolv),
        ("/etc/hostname".to_owned(), format!("{}\n", spec.hostname)),
    ]
}

/// Whether some mount needs a host directory of the run: a scratch dir (throwaway
/// overlay uppers, the mount point of a secret's tmpfs) or an agent proxy's socket.
fn needs_run_dir(mounts: &[ExtraMount]) -> bool {
    mounts.iter().any(|m| {
        matches!(
            m.kind,
            MountKind::BindDiscard { .. } | MountKind::Secret { .. } | MountKind::Ssh { .. }
        )
    })
}

/// The caller's subordinate ids, when it has some and the setuid mappers are installed
/// (Debian's `uidmap`); without them a rootless sandbox has root only.
fn caller_subids() -> Option<crate::spec::SubIds> {
    let (uid, _) = crate::sys::effective_ids();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid.to_string()).then(|| name.to_owned())
    });
    let subuid = std::fs::read_to_string("/etc/subuid").ok()?;
    let subgid = std::fs::read_to_string("/etc/subgid").ok()?;
    let (uid_start, uid_count, gid_start, gid_count) =
        crate::spec::SubIds::parse(uid, name.as_deref(), &subuid, &subgid)?;
    let find = |n: &str| {
        find_host_program(n).or_else(|| {
            let p = Path::new("/usr/bin").join(n);
            p.is_file().then_some(p)
        })
    };
    Some(crate::spec::SubIds {
        uid_start,
        uid_count,
        gid_start,
        gid_count,
        newuidmap: find("newuidmap")?,
        newgidmap: find("newgidmap")?,
    })
}

/// Finds `name` in the caller's `PATH`.
fn find_host_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Mount targets (and their parents) the sandbox will create because the image lacks
/// them; removed after the run (if still empty) so they never end up in a layer.
fn missing_stubs(rootfs: &Rootfs, targets: &[&str]) -> Vec<PathBuf> {
    let Rootfs::Dir(root) = rootfs else {
        return Vec::new();
    };
    let mut stubs: Vec<PathBuf> = Vec::new();
    for target in targets {
        let Ok(resolved) = resolve_in_root(root, Path::new(target)) else {
            continue;
        };
        let Ok(rel) = resolved.strip_prefix(root) else {
            continue;
        };
        let mut cur = root.clone();
        for c in rel.components() {
            cur.push(c);
            if std::fs::symlink_metadata(&cur).is_err() && !stubs.contains(&cur) {
                stubs.push(cur.clone());
            }
        }
    }
    stubs
}

/// Locks a directory rootfs for the run: shared when it has every mount target, else
/// exclusive, so the stubs one run creates and removes never pull the floor from under
/// another run on the same tree (such runs take turns). Returns the stubs to remove.
fn lock_rootfs(
    rootfs: &Rootfs,
    targets: &[&str],
) -> Result<(Vec<PathBuf>, Option<std::fs::File>), SandboxError> {
    let Rootfs::Dir(root) = rootfs else {
        return Ok((Vec::new(), None));
    };
    let dir = std::fs::File::open(root).map_err(SandboxError::Files)?;
    dir.lock_shared().map_err(SandboxError::Files)?;
    if missing_stubs(rootfs, targets).is_empty() {
        return Ok((Vec::new(), Some(dir)));
    }
    dir.unlock().map_err(SandboxError::Files)?;
    dir.lock().map_err(SandboxError::Files)?;
    // Another run may have come and gone meanwhile: look again under the lock.
    Ok((missing_stubs(rootfs, targets), Some(dir)))
}

/// What the caller holds while a run uses it: cache locks and agent proxies.
type Held = (Vec<CacheLease>, Vec<AgentProxy>);

/// Turns the mounts that need the caller's help into binds: cache directories taken for
/// the run, agent proxies started in `dir`. Returns the mounts for the sandbox and what
/// must be held until it ends.
fn resolve_mounts(
    mounts: &[ExtraMount],
    dir: &Path,
    env: &mut Vec<String>,
) -> Result<(Vec<ExtraMount>, Held), SandboxError> {
    let mut leases = Vec::new();
    let mut proxies = Vec::new();
    let mut out = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter().enumerate() {
        let kind = match &m.kind {
            MountKind::Cache(c) => {
                let lease = acquire_cache(c)?;
                let kind = MountKind::Bind {
                    source: lease.dir().to_owned(),
                    readonly: c.readonly,
                };
                leases.push(lease);
                kind
            }
            MountKind::Ssh {
                agent,
                uid,
                gid,
                mode,
            } => {
                let proxy = AgentProxy::start(
                    agent,
                    &dir.join(format!("ssh-{i}.sock")),
                    *uid,
                    *gid,
                    *mode,
                )?;
                if !env.iter().any(|kv| kv.starts_with("SSH_AUTH_SOCK=")) {
                    env.push(format!("SSH_AUTH_SOCK={}", m.target));
                }
                let kind = MountKind::Bind {
                    source: proxy.path().to_owned(),
                    readonly: false,
                };
                proxies.push(proxy);
                kind
            }
            other => other.clone(),
        };
        out.push(ExtraMount {
            target: m.target.clone(),
            kind,
        });
    }
    Ok((out, (leases, proxies)))
}

/// The access and modification times of the existing directories the stubs are made
/// in: creating and removing an entry changes them, and they are put back after the
/// run (as BuildKit does), so a directory the run did not touch looks untouched.
fn stub_parent_times(stubs: &[PathBuf]) -> Vec<(PathBuf, std::fs::FileTimes)> {
    let mut out: Vec<(PathBuf, std::fs::FileTimes)> = Vec::new();
    for s in stubs {
        let Some(parent) = s.parent() else { continue };
        if stubs.iter().any(|x| x == parent) || out.iter().any(|(p, _)| p == parent) {
            continue;
        }
        if let Ok(m) = std::fs::symlink_metadata(parent)
            && let (Ok(a), Ok(t)) = (m.accessed(), m.modified())
        {
            let times = std::fs::FileTimes::new().set_accessed(a).set_modified(t);
            out.push((parent.to_owned(), times));
        }
    }
    out
}

fn restore_times(times: &[(PathBuf, std::fs::FileTimes)]) {
    for (p, t) in times {
        if let Ok(f) = std::fs::File::open(p) {
            let _ = f.set_times(*t);
        }
    }
}

fn remove_stubs(stubs: &[PathBuf]) {
    // Files before the directories that may hold them.
    for p in stubs.iter().rev() {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(p);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(p);
            }
            _ => {}
        }
    }
}

impl Sandbox {
    pub fn new(helper: Helper) -> Self {
        Self { helper }
    }

    /// Runs `spec`, calling `output` with each chunk of stdout/stderr as it arrives, and
    /// returns how the command ended. Blocks the calling thread (use `spawn_blocking`).
    pub fn run(
        &self,
        spec: &RunSpec,
        cancel: &CancelHandle,
        output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExitStatus, SandboxError> {
        let netns = spec
            .netns
            .clone()
            .filter(|_| spec.network == Network::Sandbox);
        let slirp4netns = match spec.network {
            Network::Sandbox if netns.is_none() => {
                Some(find_host_program("slirp4netns").ok_or(SandboxError::NoSandboxNetwork)?)
            }
            _ => None,
        };
        // Most runs need no host directory at all (creating and deleting one costs
        // milliseconds on a busy ext4): only some extra mounts do.
        let files = if needs_run_dir(&spec.mounts) {
            let dir = tempfile::Builder::new()
                .prefix("rbuild-run-")
                .tempdir()
                .map_err(SandboxError::Files)?;
            Some(dir)
        } else {
            None
        };
        let etc_files = etc_files(spec);
        let targets: Vec<&str> = ["/proc", "/dev", "/sys"]
            .into_iter()
            .chain(etc_files.iter().map(|(d, _)| d.as_str()))
            .chain(spec.mounts.iter().map(|m| m.target.as_str()))
            .collect();
        let (stubs, _rootfs_lock) = lock_rootfs(&spec.rootfs, &targets)?;
        let parent_times = stub_parent_times(&stubs);
        let mut env = spec.env.clone();
        // Held until the run ends: the cache locks and the agent proxies.
        let run_dir = files.as_ref().map_or(Path::new(""), |d| d.path());
        let (mounts, _held) = resolve_mounts(&spec.mounts, run_dir, &mut env)?;
        for (name, path) in &spec.secret_env {
            let value =
                std::fs::read_to_string(path).map_err(|source| SandboxError::SecretEnv {
                    name: name.clone(),
                    path: path.clone(),
                    source,
                })?;
            env.push(format!("{name}={value}"));
        }
        let scratch = match &files {
            Some(d) => d.path().join("scratch"),
            None => PathBuf::new(),
        };
        // Dropped (removed) after the run, when every process in it is gone.
        let cgroup = if spec.limits.is_empty() {
            None
        } else {
            Some(Cgroup::create(&spec.limits)?)
        };
        let init = InitSpec {
            rootfs: spec.rootfs.clone(),
            argv: spec.argv.clone(),
            env,
            cwd: spec.cwd.clone(),
            user: spec.user.clone(),
            hostname: spec.hostname.clone(),
            network: spec.network,
            etc_files,
            slirp4netns,
            netns,
            mounts,
            rootless: (!crate::sys::running_as_root()).then(crate::sys::effective_ids),
            cgroup_procs: cgroup.as_ref().map(Cgroup::procs_files).unwrap_or_default(),
            scratch,
            rlimits: spec.rlimits.clone(),
            tty: spec.tty,
            subids: if crate::sys::running_as_root() {
                None
            } else {
                caller_subids()
            },
        };
        let result = self.run_init(&init, spec.timeout, spec.stdin_inherit, cancel, output);
        remove_stubs(&stubs);
        restore_times(&parent_times);
        result
    }

    fn run_init(
        &self,
        init: &InitSpec,
        timeout: Option<Duration>,
        stdin_inherit: bool,
        cancel: &CancelHandle,
        output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExitStatus, SandboxError> {
        let (ours, theirs) = UnixStream::pair().map_err(SandboxError::Spawn)?;
        let null = if stdin_inherit {
            None
        } else {
            Some(File::open("/dev/null").map_err(SandboxError::Spawn)?)
        };
        // With a terminal, PID 1 relays it on the caller's own stdout.
        let (out, err) = if init.tty {
            (None, None)
        } else {
            let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
            let out = nix::unistd::pipe2(cloexec).map_err(|e| SandboxError::Spawn(e.into()))?;
            let err = nix::unistd::pipe2(cloexec).map_err(|e| SandboxError::Spawn(e.into()))?;
            (Some(out), Some(err))
        };
        let theirs = OwnedFd::from(theirs);
        let mut fds = vec![(theirs.as_fd(), SPEC_FD)];
        fds.extend(null.as_ref().map(|n| (n.as_fd(), 0)));
        fds.extend(out.as_ref().map(|(_, w)| (w.as_fd(), 1)));
        fds.extend(err.as_ref().map(|(_, w)| (w.as_fd(), 2)));
        let mut argv = vec![self.helper.program.clone().into_os_string()];
        argv.extend(self.helper.args.iter().cloned());
        let env = [OsString::from(format!("{SPEC_FD_ENV}={SPEC_FD}"))];
        let exe = PathBuf::from(format!("/proc/self/fd/{}", self.helper.exe.as_raw_fd()));
        let pid = launch::spawn(&exe, &argv, &env, &fds).map_err(SandboxError::Spawn)?;
        drop(fds);
        drop((theirs, null));
        // Only our ends stay open here, so their end of file is the helper's (and the
        // sandbox's) end.
        let mut sources = vec![Source::Messages(
            ours.try_clone().map_err(SandboxError::Spawn)?,
        )];
        for (stream, pipe) in [(Stream::Stdout, out), (Stream::Stderr, err)] {
            if let Some((r, w)) = pipe {
                drop(w);
                sources.push(Source::Output(stream, File::from(r)));
            }
        }
        // Until the child is waited for, its pid cannot be reused.
        let id = match Pidfd::open(pid.as_raw() as u32) {
            Ok(pidfd) => cancel.attach(pidfd),
            Err(e) => {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = launch::wait_child(pid);
                return Err(SandboxError::Spawn(e));
            }
        };
        let started = Instant::now();
        // A helper that died early shows up below as a missing report.
        let _ = write_spec(&mut &ours, init);

        let (report, timed_out) = relay(sources, timeout, started, || cancel.kill(id), output);
        let status = launch::wait_child(pid);
        cancel.detach(id);
        match report {
            Some(Message::Exited {
                signal: Some(s), ..
            }) => Ok(ExitStatus::Signal(s)),
            Some(Message::Exited { code, .. }) => Ok(ExitStatus::Code(code.unwrap_or(0))),
            Some(Message::ExecFailed { message, code }) => {
                Err(SandboxError::Exec { message, code })
            }
            Some(Message::SetupFailed(m)) => Err(SandboxError::Setup(m)),
            None if timed_out => Err(SandboxError::TimedOut(timeout.unwrap_or_default())),
            None if cancel.is_cancelled() => Err(SandboxError::Cancelled),
            None => Err(SandboxError::NoReport(match status {
                Ok(WaitStatus::Exited(_, code)) => format!("exit status: {code}"),
                Ok(WaitStatus::Signaled(_, signal, _)) => format!("killed by {signal}"),
                Ok(other) => format!("{other:?}"),
                Err(e) => e.to_string(),
            })),
        }
    }
}
