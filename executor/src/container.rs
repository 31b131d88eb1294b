//! The container setup sequence run by the sandbox's PID 1, written against the
//! [`Sys`] traits so its exact order is unit-tested with the recording fake:
//!
//! mounts private → rootfs (bind or overlay) → `/proc` (+ masked and read-only paths) →
//! `/dev` → `/sys` → generated `/etc` files → `pivot_root` → old root detached → hostname →
//! loopback; then, in the command's process: rlimits → capabilities → `no_new_privs` →
//! groups/gid/uid → umask → cwd → every fd but stdio close-on-exec → exec.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::rootfs::{read_in_root, resolve_in_root};
use crate::spec::{DEFAULT_CAPABILITIES, DEFAULT_PATH, ExtraMount, InitSpec, MountKind, Network};
use crate::sys::{CloneFlags, Mount, MsFlags, Overlay, Sys, SysError};
use crate::user::{self, Credentials, UserError};

/// Devices of the fresh `/dev`, with their numbers: created with `mknod` (cheaper than a
/// bind mount each), or bind-mounted from the host in a rootless user namespace, where
/// `mknod` is not allowed.
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Paths hidden from the container, as Docker does (`/dev/null` over files, an empty
/// read-only tmpfs over directories).
const MASKED_PATHS: [&str; 12] = [
    "proc/asound",
    "proc/acpi",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Paths of `/proc` made read-only, as Docker does.
const READONLY_PATHS: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} in the rootfs is a symlink")]
    Symlink(PathBuf),
    #[error(transparent)]
    User(#[from] UserError),
    #[error("exec: \"{0}\": executable file not found in $PATH")]
    NotFound(String),
    #[error("rootless runs can only be root inside (no subordinate ids are mapped), not {0:?}")]
    RootlessUser(String),
    #[error("empty command")]
    EmptyCommand,
    #[error("mount at {0}: {1}")]
    Unresolved(String, &'static str),
}

impl ContainerError {
    /// The exit status a shell would give for this failure to run the command.
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::NotFound(_) => 127,
            ContainerError::Sys(e) if e.raw_os_error() == Some(libc::ENOENT) => 127,
            _ => 126,
        }
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The namespaces PID 1 unshares for itself (the helper creates it in a new pid
/// namespace). The helper must stay in the host's mount namespace (a `pivot_root` moves
/// every process of the namespace) and network namespace (slirp4netns, which it starts,
/// must reach the outside).
pub fn namespace_flags(network: Network) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if network != Network::Host {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

/// Moves PID 1 into its own namespaces (the first step of the setup). With `pooled`, a
/// pooled sandbox network is joined instead of making one: only the other namespaces are
/// made, as for the host network.
pub fn enter_namespaces<S: Sys>(
    sys: &S,
    network: Network,
    pooled: Option<&Path>,
) -> Result<(), ContainerError> {
    match pooled {
        Some(ns) => {
            sys.join_network(ns)?;
            Ok(sys.unshare(namespace_flags(Network::Host))?)
        }
        None => Ok(sys.unshare(namespace_flags(network))?),
    }
}

/// A directory directly under the rootfs that we mount on: created if missing, refused
/// if it is a symlink (it would point the mount at the host).
fn mountpoint_dir(root: &Path, name: &str) -> Result<PathBuf, ContainerError> {
    let p = root.join(name);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.file_type().is_symlink() => Err(ContainerError::Symlink(p)),
        Ok(_) => Ok(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&p)
                .map_err(io_err("create", &p))?;
            Ok(p)
        }
        Err(e) => Err(io_err("stat", &p)(e)),
    }
}

fn touch(path: &Path) -> Result<(), ContainerError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
        .map_err(io_err("create", path))
}

fn mkdir(path: &Path) -> Result<(), ContainerError> {
    match std::fs::DirBuilder::new().mode(0o755).create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_err("create", path)(e)),
        _ => Ok(()),
    }
}

fn mount_proc<S: Sys>(sys: &S, root: &Path) -> Result<(), ContainerError> {
    let proc_dir = mountpoint_dir(root, "proc")?;
    let safe = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    sys.mount(&Mount::fs("proc", &proc_dir, safe, None))?;
    for rel in READONLY_PATHS {
        let p = root.join(rel);
        if std::fs::symlink_metadata(&p).is_ok() {
            sys.mount(&Mount::bind(&p, &p, true))?;
            sys.mount(&Mount::remount_readonly(&p, safe))?;
        }
    }
    Ok(())
}

fn mask_paths<S: Sys>(sys: &S, root: &Path, prefix: &str) -> Result<(), ContainerError> {
    for rel in MASKED_PATHS.iter().filter(|p| p.starts_with(prefix)) {
        let p = root.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => sys.mount(&Mount::fs(
                "tmpfs",
                &p,
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None,
            ))?,
            Ok(_) => sys.mount(&Mount::bind("/dev/null", &p, false))?,
            Err(_) => {}
        }
    }
    Ok(())
}

fn mount_dev<S: Sys>(
    sys: &S,
    root: &Path,
    rootless: bool,
    subids: bool,
) -> Result<(), ContainerError> {
    let dev = mountpoint_dir(root, "dev")?;
    sys.mount(&Mount::fs(
        "tmpfs",
        &dev,
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    ))?;
    for (name, major, minor) in DEVICES {
        let target = dev.join(name);
        if rootless {
            touch(&target)?;
            sys.mount(&Mount::bind(Path::new("/dev").join(name), &target, false))?;
        } else {
            sys.mknod_char(&target, major, minor, 0o666)?;
        }
    }
    let pts = dev.join("pts");
    mkdir(&pts)?;
    sys.mount(&Mount::fs(
        "devpts",
        &pts,
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        // gid 5 (tty) is not mapped in a rootless user namespace without subordinate ids.
        Some(if rootless && !subids {
            "newinstance,ptmxmode=0666,mode=0620"
        } else {
            "newinstance,ptmxmode=0666,mode=0620,gid=5"
        }),
    ))?;
    let shm = dev.join("shm");
    mkdir(&shm)?;
    sys.mount(&Mount::fs(
        "tmpfs",
        &shm,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    ))?;
    let mqueue = dev.join("mqueue");
    mkdir(&mqueue)?;
    sys.mount(&Mount::fs(
        "mqueue",
        &mqueue,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    ))?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        let l = dev.join(link);
        match symlink(target, &l) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(io_err("symlink", &l)(e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The generated files (`/etc/hosts`...): each is written on the fresh `/dev` tmpfs
/// (mounted just before, private to the sandbox), bound read-only onto its target and
/// unlinked from `/dev` again — the bind mount keeps it. So a run writes nothing on the
/// host's disk for them (no per-run temporary directory to create and delete), and
/// nothing of them shows in `/dev` or reaches a layer.
fn etc_files<S: Sys>(sys: &S, root: &Path, spec: &InitSpec) -> Result<(), ContainerError> {
    for (i, (dest, content)) in spec.etc_files.iter().enumerate() {
        let target = resolve_in_root(root, Path::new(dest)).map_err(io_err("resolve", root))?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        if std::fs::symlink_metadata(&target).is_err() {
            touch(&target)?;
        }
        let source = root.join("dev").join(format!(".rbuild-etc-{i}"));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&source)
            .and_then(|mut f| f.write_all(content.as_bytes()))
            .map_err(io_err("write", &source))?;
        sys.mount(&Mount::bind(&source, &target, false))?;
        sys.mount(&Mount::remount_readonly(
            &target,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        ))?;
        std::fs::remove_file(&source).map_err(io_err("remove", &source))?;
    }
    Ok(())
}

/// Resolves `target` inside `root` and makes sure something exists there to mount on: a
/// directory, or an empty file when `file` is set.
fn mount_target(root: &Path, target: &str, file: bool) -> Result<PathBuf, ContainerError> {
    let t = resolve_in_root(root, Path::new(target)).map_err(io_err("resolve", root))?;
    if std::fs::symlink_metadata(&t).is_err() {
        if file {
            if let Some(parent) = t.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(io_err("create", parent))?;
            }
            touch(&t)?;
        } else {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&t)
                .map_err(io_err("create", &t))?;
        }
    }
    Ok(t)
}

fn extra_mount<S: Sys>(
    sys: &S,
    root: &Path,
    m: &ExtraMount,
    scratch: &Path,
) -> Result<(), ContainerError> {
    match &m.kind {
        MountKind::Bind { source, readonly } => {
            let is_dir = std::fs::metadata(source)
                .map_err(io_err("stat", source))?
                .is_dir();
            let t = mount_target(root, &m.target, !is_dir)?;
            sys.mount(&Mount::bind(source, &t, true))?;
            if *readonly {
                sys.mount(&Mount::remount_readonly(
                    &t,
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                ))?;
            }
        }
        MountKind::BindDiscard { source } => {
            let t = mount_target(root, &m.target, false)?;
            let (upper, work) = (scratch.join("upper"), scratch.join("work"));
            for d in [&upper, &work] {
                std::fs::create_dir_all(d).map_err(io_err("create", d))?;
            }
            let overlay = Overlay {
                lowers: vec![source.clone()],
                upper: Some((upper, work)),
                // Thrown away after the run: never worth a sync.
                volatile: true,
            };
            sys.mount_overlay(&overlay, &t)?;
        }
        MountKind::Secret {
            source,
            uid,
            gid,
            mode,
        } => {
            let t = mount_target(root, &m.target, true)?;
            // The copy lives on a tmpfs in the sandbox's own mount namespace: never on
            // disk, gone with the sandbox.
            std::fs::create_dir_all(scratch).map_err(io_err("create", scratch))?;
            sys.mount(&Mount::fs(
                "tmpfs",
                scratch,
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("mode=700"),
            ))?;
            let copy = scratch.join("secret");
            std::fs::copy(source, &copy).map_err(io_err("read secret", source))?;
            std::os::unix::fs::chown(&copy, Some(*uid), Some(*gid))
                .map_err(io_err("chown secret", &copy))?;
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(*mode))
                .map_err(io_err("chmod secret", &copy))?;
            sys.mount(&Mount::bind(&copy, &t, false))?;
            sys.mount(&Mount::remount_readonly(
                &t,
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            ))?;
        }
        // The caller turns these into binds before the sandbox starts.
        MountKind::Cache(_) => {
            return Err(ContainerError::Unresolved(
                m.target.clone(),
                "cache not taken",
            ));
        }
        MountKind::Ssh { .. } => {
            return Err(ContainerError::Unresolved(
                m.target.clone(),
                "ssh agent not forwarded",
            ));
        }
        MountKind::Tmpfs { size } => {
            let t = mount_target(root, &m.target, false)?;
            let data = match size {
                Some(n) => format!("mode=1777,size={n}"),
                None => "mode=1777".to_owned(),
            };
            sys.mount(&Mount::fs(
                "tmpfs",
                &t,
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(&data),
            ))?;
        }
    }
    Ok(())
}

/// Builds the container around the current process (PID 1 of fresh namespaces) and
/// returns the credentials the command will run with.
pub fn setup_container<S: Sys>(sys: &S, spec: &InitSpec) -> Result<Credentials, ContainerError> {
    let root = spec.rootfs.path();
    sys.make_rprivate(Path::new("/"))?;
    match spec.rootfs.overlay() {
        Some(ov) => sys.mount_overlay(&ov, root)?,
        // pivot_root needs the new root to be a mount point.
        None => sys.mount(&Mount::bind(root, root, true))?,
    }
    mount_proc(sys, root)?;
    mask_paths(sys, root, "proc/")?;
    let rootless = spec.rootless.is_some();
    mount_dev(sys, root, rootless, spec.subids.is_some())?;
    let sys_dir = mountpoint_dir(root, "sys")?;
    let safe = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if rootless && spec.network == Network::Host {
        // sysfs needs a network namespace of our own user namespace: bind the host's.
        sys.mount(&Mount::bind("/sys", &sys_dir, true))?;
        sys.mount(&Mount::remount_readonly(&sys_dir, safe))?;
    } else {
        sys.mount(&Mount::fs(
            "sysfs",
            &sys_dir,
            MsFlags::MS_RDONLY | safe,
            None,
        ))?;
    }
    mask_paths(sys, root, "sys/")?;
    etc_files(sys, root, spec)?;
    for (i, m) in spec.mounts.iter().enumerate() {
        extra_mount(sys, root, m, &spec.scratch.join(i.to_string()))?;
    }

    // Everything read from the rootfs is read before pivot_root, with symlinks resolved
    // inside it, so the rest needs no filesystem access outside the traits.
    let cwd = resolve_in_root(root, Path::new(&spec.cwd)).map_err(io_err("resolve", root))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&cwd)
        .map_err(io_err("create", &cwd))?;
    let passwd = read_in_root(root, "/etc/passwd").map_err(io_err("read", root))?;
    let group = read_in_root(root, "/etc/group").map_err(io_err("read", root))?;
    let creds = user::resolve(&spec.user, passwd.as_deref(), group.as_deref())?;
    if rootless && spec.subids.is_none() && (creds.uid != 0 || creds.gid != 0) {
        return Err(ContainerError::RootlessUser(spec.user.clone()));
    }

    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
    // no path to the host filesystem (and no need for a put_old directory in the image).
    sys.chdir(root)?;
    sys.pivot_root(Path::new("."), Path::new("."))?;
    sys.umount(Path::new("."), true)?;
    sys.chdir(Path::new("/"))?;

    sys.set_hostname(&spec.hostname)?;
    if spec.network != Network::Host {
        sys.loopback_up()?;
    }
    Ok(creds)
}

/// Finds `name` like `execvp` does, in the `PATH` of the command's environment.
fn find_program(name: &str, env: &[String]) -> Result<PathBuf, ContainerError> {
    if name.is_empty() {
        return Err(ContainerError::EmptyCommand);
    }
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let path = env
        .iter()
        .rev()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if let Ok(m) = std::fs::metadata(&candidate)
            && m.is_file()
        {
            return Ok(candidate);
        }
    }
    Err(ContainerError::NotFound(name.to_owned()))
}

/// Turns the current process into the command: only returns on failure.
pub fn exec_command<S: Sys>(sys: &S, spec: &InitSpec, creds: &Credentials) -> ContainerError {
    let run = || -> Result<ContainerError, ContainerError> {
        let first = spec.argv.first().ok_or(ContainerError::EmptyCommand)?;
        for limit in &spec.rlimits {
            sys.set_rlimit(*limit)?;
        }
        sys.drop_capabilities(&DEFAULT_CAPABILITIES)?;
        sys.set_no_new_privs()?;
        // A rootless user namespace without subordinate ids denies setgroups.
        if spec.rootless.is_none() || spec.subids.is_some() {
            sys.set_groups(&creds.additional_gids)?;
        }
        sys.set_gid(creds.gid)?;
        sys.set_uid(creds.uid)?;
        sys.set_umask(0o022)?;
        sys.chdir(Path::new(&spec.cwd))?;
        let program = find_program(first, &spec.env)?;
        // As runc does: HOME from passwd unless the environment sets it.
        let mut env = spec.env.clone();
        if !env.iter().any(|kv| kv.starts_with("HOME=")) {
            env.push(format!("HOME={}", creds.home));
        }
        // The command inherits nothing but stdio (the runc CVE-2024-21626 class).
        sys.close_fds_on_exec(3)?;
        Ok(ContainerError::Sys(sys.exec(&program, &spec.argv, &env)))
    };
    match run() {
        Ok(e) | Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Rootfs;
    use crate::sys::{Call, Overlay, RecordingSys};

    fn spec(root: &Path, network: Network) -> InitSpec {
        InitSpec {
            rootfs: Rootfs::Dir(root.to_owned()),
            argv: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/work/dir".into(),
            user: "app".into(),
            hostname: "box".into(),
            network,
            etc_files: vec![("/etc/hosts".into(), "127.0.0.1\tlocalhost box\n".into())],
            slirp4netns: None,
            netns: None,
            mounts: vec![ExtraMount {
                target: "/run/cache".into(),
                kind: MountKind::Tmpfs { size: None },
            }],
            rootless: None,
            cgroup_procs: vec![],
            scratch: "/tmp/scratch".into(),
            rlimits: vec![],
            tty: false,
            subids: None,
        }
    }

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "staff:x:50:app\n").unwrap();
        dir
    }

    /// A short name per call, so the expected order reads like the module docs.
    fn label(c: &Call) -> String {
        match c {
            Call::Mount(m) => format!(
                "mount {} {}",
                m.fstype.as_deref().unwrap_or("bind"),
                m.target.display()
            ),
            Call::MakeRprivate(p) => format!("rprivate {}", p.display()),
            Call::MountOverlay(_, t) => format!("overlay {}", t.display()),
            Call::PivotRoot(a, b) => format!("pivot_root {} {}", a.display(), b.display()),
            Call::Umount(p, d) => format!("umount {} {d}", p.display()),
            Call::MknodChar(p, major, minor, _) => {
                format!("mknod {} {major}:{minor}", p.display())
            }
            Call::Chdir(p) => format!("chdir {}", p.display()),
            Call::SetHostname(h) => format!("hostname {h}"),
            Call::SetGroups(g) => format!("setgroups {g:?}"),
            Call::SetGid(g) => format!("setgid {g}"),
            Call::SetUid(u) => format!("setuid {u}"),
            Call::SetUmask(m) => format!("umask {m:o}"),
            Call::CloseFdsOnExec(f) => format!("cloexec {f}"),
            Call::Exec(p, _, _) => format!("exec {}", p.display()),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_pooled_network_is_joined_before_the_other_namespaces_are_made() {
        let sys = RecordingSys::new();
        let ns = Path::new("/proc/self/fd/7");
        enter_namespaces(&sys, Network::Sandbox, Some(ns)).unwrap();
        assert_eq!(
            sys.calls(),
            vec![
                Call::JoinNetwork(ns.to_owned()),
                Call::Unshare(
                    CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC
                ),
            ]
        );
    }

    #[test]
    fn setup_and_exec_happen_in_order() {
        let dir = fixture();
        let root = dir.path();
        let r = root.display();
        let sys = RecordingSys::new();
        let spec = spec(root, Network::None);
        enter_namespaces(&sys, spec.network, None).unwrap();
        let creds = setup_container(&sys, &spec).unwrap();
        assert_eq!(creds.uid, 1000);
        let err = exec_command(&sys, &spec, &creds);
        assert!(err.to_string().contains("fake"), "{err}");

        let got: Vec<String> = sys.calls().iter().map(label).collect();
        let mut want: Vec<String> = vec![
            format!(
                "Unshare({:?})",
                CloneFlags::CLONE_NEWNS
                    | CloneFlags::CLONE_NEWUTS
                    | CloneFlags::CLONE_NEWIPC
                    | CloneFlags::CLONE_NEWNET
            ),
            "rprivate /".into(),
            format!("mount bind {r}"),
            format!("mount proc {r}/proc"),
            format!("mount tmpfs {r}/dev"),
        ];
        for (d, major, minor) in DEVICES {
            want.push(format!("mknod {r}/dev/{d} {major}:{minor}"));
        }
        want.extend([
            format!("mount devpts {r}/dev/pts"),
            format!("mount tmpfs {r}/dev/shm"),
            format!("mount mqueue {r}/dev/mqueue"),
            format!("mount sysfs {r}/sys"),
            format!("mount bind {r}/etc/hosts"),
            format!("mount bind {r}/etc/hosts"),
            format!("mount tmpfs {r}/run/cache"),
            format!("chdir {r}"),
            "pivot_root . .".into(),
            "umount . true".into(),
            "chdir /".into(),
            "hostname box".into(),
            "LoopbackUp".into(),
            format!("DropCapabilities({:?})", DEFAULT_CAPABILITIES.to_vec()),
            "SetNoNewPrivs".into(),
            "setgroups [50]".into(),
            "setgid 1000".into(),
            "setuid 1000".into(),
            "umask 22".into(),
            "chdir /work/dir".into(),
            "cloexec 3".into(),
            "exec /bin/sh".into(),
        ]);
        assert_eq!(got, want);
        let Some(Call::Exec(_, argv, env)) = sys.calls().last().cloned() else {
            panic!("no exec")
        };
        assert_eq!(argv, spec.argv);
        assert_eq!(env, ["PATH=/bin", "HOME=/home/app"]);
        // The generated /etc/hosts goes on a stub, made read-only by a remount.
        let Call::Mount(remount) = &sys.calls()[16] else {
            panic!("not a mount")
        };
        assert!(
            remount
                .flags
                .contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY)
        );
        // The generated /etc/hosts was written on /dev (a tmpfs in a real run) and
        // unlinked after its bind mount, which keeps it.
        let Call::Mount(bind) = &sys.calls()[15] else {
            panic!("not a mount")
        };
        assert_eq!(
            bind.source.as_deref(),
            Some(&*root.join("dev/.rbuild-etc-0"))
        );
        assert!(!root.join("dev/.rbuild-etc-0").exists());
        // The working directory was created in the rootfs, not on the host.
        assert!(root.join("work/dir").is_dir());
    }

    #[test]
    fn host_network_does_not_touch_loopback_or_unshare_net() {
        let dir = fixture();
        let sys = RecordingSys::new();
        setup_container(&sys, &spec(dir.path(), Network::Host)).unwrap();
        assert!(!sys.calls().contains(&Call::LoopbackUp));
        assert!(!namespace_flags(Network::Host).contains(CloneFlags::CLONE_NEWNET));
        assert!(namespace_flags(Network::None).contains(CloneFlags::CLONE_NEWNET));
        assert!(namespace_flags(Network::Sandbox).contains(CloneFlags::CLONE_NEWNET));
    }

    #[test]
    fn overlay_rootfs_is_mounted_inside() {
        let dir = fixture();
        let sys = RecordingSys::new();
        let mut s = spec(dir.path(), Network::Host);
        let ov = Overlay {
            lowers: vec!["/l1".into()],
            upper: Some(("/u".into(), "/w".into())),
            volatile: false,
        };
        s.rootfs = Rootfs::Overlay {
            lowers: ov.lowers.clone(),
            upper: ov.upper.clone(),
            target: dir.path().to_owned(),
        };
        setup_container(&sys, &s).unwrap();
        assert_eq!(
            sys.calls()[1],
            Call::MountOverlay(ov, dir.path().to_owned())
        );
    }

    #[test]
    fn symlinked_mountpoint_is_refused() {
        let dir = fixture();
        std::os::unix::fs::symlink("/", dir.path().join("proc")).unwrap();
        let sys = RecordingSys::new();
        let err = setup_container(&sys, &spec(dir.path(), Network::Host)).unwrap_err();
        assert!(matches!(err, ContainerError::Symlink(_)), "{err}");
    }

    #[test]
    fn unknown_user_fails_before_pivot_root() {
        let dir = fixture();
        let sys = RecordingSys::new();
        let mut s = spec(dir.path(), Network::Host);
        s.user = "nobody".into();
        let err = setup_container(&sys, &s).unwrap_err();
        assert!(matches!(err, ContainerError::User(_)), "{err}");
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::PivotRoot(..))));
    }

    #[test]
    fn missing_program_is_127() {
        let err = find_program("no-such-program-here", &["PATH=/nonexistent".into()]).unwrap_err();
        assert_eq!(err.exit_code(), 127);
        assert!(matches!(
            find_program("", &[]),
            Err(ContainerError::EmptyCommand)
        ));
    }
}
