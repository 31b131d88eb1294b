//! `rbuild run` end to end: a busybox image imported into a fresh store, run through the
//! real binary. Needs root (namespaces, overlay mounts); skipped with a reason otherwise.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Output, Stdio};
use std::time::{Duration, Instant};

use common::{rbuild, text};
use rbuild_cache::Store;
use rbuild_image::local::ImageStore;

const BUSYBOX: &str = "/bin/busybox";

/// Returns false (after saying why) when these tests cannot run here.
fn can_run() -> bool {
    if !std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    }) {
        eprintln!("skipping: rbuild run tests need root (CI runs them as root)");
        return false;
    }
    if !Path::new(BUSYBOX).is_file() {
        eprintln!("skipping: {BUSYBOX} missing (apt-get install busybox-static)");
        return false;
    }
    true
}

/// A root filesystem tar: busybox and its applet links, `root` and `app` (1000) users,
/// `root` and `staff` (50, with app) groups.
fn busybox_tar() -> Vec<u8> {
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    let applets = String::from_utf8(list.stdout).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let header = || {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    };
    let dir = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32| {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32, data: &[u8]| {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    dir(&mut b, "bin", 0o755);
    dir(&mut b, "etc", 0o755);
    dir(&mut b, "tmp", 0o1777);
    file(
        &mut b,
        "bin/busybox",
        0o755,
        &std::fs::read(BUSYBOX).unwrap(),
    );
    for applet in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    );
    file(
        &mut b,
        "etc/group",
        0o644,
        b"root:x:0:\nstaff:x:50:app\napp:x:1000:\n",
    );
    b.into_inner().unwrap()
}

/// A fresh store holding the busybox image as `bb` (with `changes` applied).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// Imports through the real `rbuild import`, as a user would.
    fn new(changes: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("rootfs.tar");
        std::fs::write(&tar, busybox_tar()).unwrap();
        let mut cmd = rbuild();
        cmd.arg("--root").arg(dir.path().join("root")).arg("import");
        for c in changes {
            cmd.args(["--change", c]);
        }
        let out = cmd.arg(&tar).arg("bb").output().unwrap();
        assert!(out.status.success(), "import: {:?}", text(&out));
        Fixture { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = rbuild();
        cmd.arg("run")
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Starts `sh -c SCRIPT` in a `--network none` sandbox and waits until the script
    /// prints its first line, which must be `ready`; returns the child and its stdout.
    fn spawn_ready(&self, script: &str) -> (std::process::Child, BufReader<ChildStdout>) {
        let mut child = self
            .command(&["--network", "none", "bb", "sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        (child, out)
    }

    /// `rbuild run --root ROOT ARGS...`, killed if it hangs.
    fn run(&self, args: &[&str]) -> Output {
        wait_bounded(
            self.command(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
    }

    fn entries(&self, sub: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.root().join("snapshots-v1").join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }
}

fn wait_bounded(cmd: &mut std::process::Command) -> Output {
    let child = cmd.spawn().expect("start rbuild");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("rbuild run hung");
        }
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("rbuild exited, not killed")
}

/// Runs and expects exit 0, returning stdout.
fn ok(f: &Fixture, args: &[&str]) -> String {
    let out = f.run(args);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        code(&out),
        0,
        "args {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

#[test]
fn output_and_exit_codes() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&[]);
    assert_eq!(ok(&f, &["--network", "none", "bb", "echo", "hi"]), "hi\n");
    let out = f.run(&["--network", "none", "bb", "sh", "-c", "exit 3"]);
    assert_eq!(code(&out), 3);
    let out = f.run(&[
        "--network",
        "none",
        "bb",
        "sh",
        "-c",
        "echo err >&2; kill -9 $$",
    ]);
    assert_eq!(code(&out), 137);
    assert_eq!(text(&out).1, "err\n");
    let out = f.run(&["--network", "none", "bb", "/no/such/program"]);
    assert_eq!(code(&out), 127, "{:?}", text(&out));
    let out = f.run(&["--network", "none", "no-such-image", "true"]);
    assert_eq!(code(&out), 125);
    assert!(text(&out).1.contains("no-such-image"), "{:?}", text(&out));
}

#[test]
fn env_user_workdir_hostname() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["ENV FOO=image BAR=keep", "WORKDIR /srv", "USER app"]);
    let net = ["--network", "none"];
    let run = |args: &[&str]| ok(&f, &[&net[..], args].concat());
    assert_eq!(
        run(&["-e", "FOO=bar", "bb", "sh", "-c", "echo $FOO $BAR"]),
        "bar keep\n"
    );
    let env_file = f.dir.path().join("env");
    std::fs::write(&env_file, "# comment\nFOO=file\n\nBAZ=z\n").unwrap();
    let env_file = env_file.to_str().unwrap();
    assert_eq!(
        run(&["--env-file", env_file, "bb", "sh", "-c", "echo $FOO $BAZ"]),
        "file z\n"
    );
    // The image's USER and WORKDIR apply unless overridden.
    assert_eq!(run(&["bb", "id", "-u"]), "1000\n");
    assert_eq!(run(&["bb", "pwd"]), "/srv\n");
    let id = run(&["-u", "1000:50", "bb", "id"]);
    assert!(id.starts_with("uid=1000(app) gid=50(staff)"), "{id}");
    // By name: supplementary groups from /etc/group.
    let id = run(&["-u", "app", "bb", "id"]);
    assert!(
        id.starts_with("uid=1000(app) gid=1000(app)") && id.contains("50(staff)"),
        "{id}"
    );
    assert_eq!(run(&["-u", "root", "bb", "id", "-u"]), "0\n");
    assert_eq!(run(&["-w", "/tmp", "bb", "pwd"]), "/tmp\n");
    assert_eq!(run(&["--hostname", "h1", "bb", "hostname"]), "h1\n");
    assert_eq!(
        run(&["--hostname", "h1", "bb", "sh", "-c", "echo $HOSTNAME"]),
        "h1\n"
    );
}

#[test]
fn network_none_has_only_loopback() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&[]);
    let dev = ok(&f, &["--network", "none", "bb", "cat", "/proc/net/dev"]);
    let names: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(names, ["lo"], "{dev}");
}

#[test]
fn sandbox_network_is_the_default_and_needs_slirp4netns() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&[]);
    // Without slirp4netns on PATH the default mode must refuse, naming it.
    let out = wait_bounded(
        f.command(&["bb", "true"])
            .env("PATH", "/nonexistent")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert_eq!(code(&out), 125);
    assert!(text(&out).1.contains("slirp4netns"), "{:?}", text(&out));
    // Another mode picked by the user still works.
    let out = wait_bounded(
        f.command(&["--network", "none", "bb", "true"])
            .env("PATH", "/nonexistent")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    if !std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("slirp4netns").is_file())
    {
        eprintln!("skipping the sandbox-network half: slirp4netns not installed");
        return;
    }
    // With it, the default gives an interface besides loopback.
    let dev = ok(&f, &["bb", "cat", "/proc/net/dev"]);
    let names: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert!(names.contains(&"lo") && names.len() > 1, "{dev}");
}

#[test]
fn volumes_read_only_and_read_write() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&[]);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "host data\n").unwrap();
    let ro = format!("{}:/data:ro", host.path().display());
    let rw = format!("{}:/data", host.path().display());
    let net = ["--network", "none"];
    assert_eq!(
        ok(
            &f,
            &[&net[..], &["-v", &ro, "bb", "cat", "/data/in"]].concat()
        ),
        "host data\n"
    );
    let out = f.run(
        &[
            &net[..],
            &["-v", &ro, "bb", "sh", "-c", "echo x > /data/new"],
        ]
        .concat(),
    );
    assert_ne!(code(&out), 0);
    assert!(!host.path().join("new").exists());
    ok(
        &f,
        &[
            &net[..],
            &["-v", &rw, "bb", "sh", "-c", "echo x > /data/new"],
        ]
        .concat(),
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("new")).unwrap(),
        "x\n"
    );
}

#[test]
fn image_cmd_and_entrypoint() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&[r#"CMD ["echo","from-cmd"]"#]);
    let net = ["--network", "none"];
    assert_eq!(ok(&f, &[&net[..], &["bb"]].concat()), "from-cmd\n");
    assert_eq!(
        ok(&f, &[&net[..], &["bb", "echo", "args"]].concat()),
        "args\n"
    );
    // --entrypoint drops the image's CMD unless arguments are given.
    assert_eq!(
        ok(&f, &[&net[..], &["--entrypoint", "echo", "bb"]].concat()),
        "\n"
    );
    assert_eq!(
        ok(
            &f,
            &[&net[..], &["--entrypoint", "echo", "bb", "a", "b"]].concat()
        ),
        "a b\n"
    );
}

#[test]
fn second_run_reuses_layer_snapshots_and_leaves_no_container() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&[]);
    // Each run writes into its own snapshot, never into the image's layers.
    ok(
        &f,
        &["--network", "none", "bb", "sh", "-c", "echo 1 > /tmp/mark"],
    );
    let layers = f.entries("layers");
    assert_eq!(layers.len(), 1, "{layers:?}");
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let first = ino(&layers[0]);
    let out = ok(
        &f,
        &[
            "--network",
            "none",
            "bb",
            "sh",
            "-c",
            "cat /tmp/mark || echo none",
        ],
    );
    assert_eq!(out, "none\n");
    assert_eq!(f.entries("layers"), layers);
    assert_eq!(ino(&layers[0]), first, "the layer was unpacked again");
    let active: Vec<PathBuf> = f
        .entries("active")
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(active.is_empty(), "container snapshots left: {active:?}");
}

#[test]
fn sigterm_cancels_the_sandbox() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&[]);
    let (mut child, _out) = f.spawn_ready("echo ready; sleep 1000");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    // Bounded wait: a hang is a failure, not a slow pass.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rbuild run did not end after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143));
    let active: Vec<PathBuf> = f
        .entries("active")
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(active.is_empty(), "container snapshots left: {active:?}");
}

#[test]
fn sandbox_network_cannot_reach_host_loopback() {
    if !can_run() {
        return;
    }
    if !std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("slirp4netns").is_file())
    {
        eprintln!("skipping: slirp4netns not installed");
        return;
    }
    let f = Fixture::new(&[]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    // 127.0.0.1 is the sandbox's own loopback; 10.0.2.2 is slirp's alias of the host's.
    for addr in ["127.0.0.1", "10.0.2.2"] {
        let script = format!("echo x | nc -w 2 {addr} {port}");
        let out = f.run(&["bb", "sh", "-c", &script]);
        assert_ne!(code(&out), 0, "{addr}: {:?}", text(&out));
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the host listener was reached: {other:?}"),
    }
}

#[test]
fn a_killed_unpack_is_cleaned_up_by_the_next_run() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&[]);
    let images = ImageStore::new(Store::open(&f.root()).unwrap());
    let diff_id = images.resolve("bb").unwrap().config.rootfs.diff_ids[0].clone();
    // What an unpack killed half-way leaves: an active snapshot under the layer's key.
    let snapshots = rbuild_image::unpack::open_snapshotter(&f.root()).unwrap();
    let stale = snapshots.prepare(diff_id.as_str(), &[]).unwrap();
    std::fs::write(stale.path().join("half-written"), "x").unwrap();
    std::mem::forget(stale);
    let ls = ok(&f, &["--network", "none", "bb", "ls", "/"]);
    assert!(ls.contains("bin") && !ls.contains("half-written"), "{ls}");
    assert_eq!(f.entries("layers").len(), 1);
}

/// Snapshot mounts under `root` in this mount namespace.
fn mounts_under(root: &Path) -> Vec<String> {
    let prefix = root.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_killed_run_is_cleaned_up_by_the_next_run() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&[]);
    let (mut child, _out) = f.spawn_ready("echo ready; sleep 1000");
    child.kill().unwrap();
    child.wait().unwrap();
    let left = |f: &Fixture| -> Vec<PathBuf> {
        f.entries("active")
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("run-"))
            .collect()
    };
    assert_eq!(left(&f).len(), 1, "the killed run left its snapshot");
    ok(&f, &["--network", "none", "bb", "true"]);
    assert!(left(&f).is_empty(), "{:?}", left(&f));
    assert!(f.entries("containers").is_empty());
    assert!(
        mounts_under(&f.root()).is_empty(),
        "{:?}",
        mounts_under(&f.root())
    );
}

#[test]
fn stdin_only_with_i_and_limits_and_rm_accepted() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&[]);
    let with_stdin = |args: &[&str]| {
        let mut child = f
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Without -i rbuild may be gone before the write: a broken pipe is not a failure.
        let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"from stdin\n");
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{:?}", text(&out));
        text(&out).0
    };
    assert_eq!(
        with_stdin(&["--rm", "-i", "--network", "none", "bb", "cat"]),
        "from stdin\n"
    );
    assert_eq!(with_stdin(&["--network", "none", "bb", "cat"]), "");
    let out = ok(
        &f,
        &[
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--network",
            "none",
            "bb",
            "echo",
            "limited",
        ],
    );
    assert_eq!(out, "limited\n");
    let out = f.run(&["--memory", "lots", "--network", "none", "bb", "true"]);
    assert_eq!(code(&out), 125);
    assert!(text(&out).1.contains("invalid size"), "{:?}", text(&out));

    // The memory limit is enforced (cgroup v1 or v2, whichever holds the memory
    // controller here): a shell that holds a 64 MiB string in a 16 MiB cgroup is
    // OOM-killed (128 + SIGKILL), and the same shell with a 16 MiB string in 256 MiB lives.
    let hog = |limit: &str, bytes: u32| {
        f.run(&[
            "--rm",
            "--memory",
            limit,
            "--network",
            "none",
            "bb",
            "sh",
            "-c",
            &format!("x=$(head -c {bytes} /dev/zero | tr '\\0' a); echo kept ${{#x}}"),
        ])
    };
    let out = hog("16m", 64 << 20);
    assert_eq!(code(&out), 137, "{:?}", text(&out));
    assert!(!text(&out).0.contains("kept"), "{:?}", text(&out));
    let out = hog("256m", 16 << 20);
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    assert_eq!(text(&out).0, format!("kept {}\n", 16 << 20));
}

/// Waits (bounded) for `child` to end.
fn wait_child(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rbuild run did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_is_passed_to_the_command_and_its_trap_decides() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&[]);
    let (mut child, mut out) = f.spawn_ready(
        "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.05; done",
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_child(&mut child);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(status.code(), Some(7));
}

#[test]
fn tty_gives_the_command_a_terminal_with_this_ones_size() {
    if !can_run() {
        return;
    }
    use rbuild_executor::sys::tty;
    use std::io::{Read, Write};
    let f = Fixture::new(&[]);
    let (master, slave) = tty::open_pty(Path::new("/dev/ptmx")).unwrap();
    tty::set_window_size(&master, (41, 101)).unwrap();
    let mut child = f
        .command(&[
            "-t",
            "-i",
            "--network",
            "none",
            "bb",
            "sh",
            "-c",
            "tty; stty size; read l; echo \"got $l\"",
        ])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let mut w = std::fs::File::from(master.try_clone().unwrap());
    w.write_all(b"typed\r").unwrap();
    // Read until the other side closes (EIO) or the answer is there; bounded.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = std::fs::File::from(master);
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            let _ = tx.send(String::from_utf8_lossy(&all).replace('\r', ""));
        }
    });
    let mut got = String::new();
    while let Ok(text) = rx.recv_timeout(Duration::from_secs(60)) {
        got = text;
        if got.contains("got typed\n") {
            break;
        }
    }
    let status = wait_child(&mut child);
    assert_eq!(status.code(), Some(0), "{got:?}");
    assert!(got.contains("/dev/pts/0\n41 101\n"), "{got:?}");
    assert!(got.contains("got typed\n"), "{got:?}");
}

/// The `Snapshots` row of `rbuild df`: `[TOTAL, ACTIVE]`.
fn snapshot_counts(f: &Fixture) -> (String, String) {
    let out = rbuild()
        .arg("--root")
        .arg(f.root())
        .arg("df")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("Snapshots"))
        .unwrap_or_else(|| panic!("no Snapshots row: {stdout} {stderr}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    (cols[1].to_owned(), cols[2].to_owned())
}

fn prune(f: &Fixture) -> String {
    let out = rbuild()
        .arg("--root")
        .arg(f.root())
        .args(["prune", "-f"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    text(&out).0
}

#[test]
fn df_counts_snapshots_and_prune_frees_them_unless_a_container_runs_on_them() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&[]);
    assert_eq!(snapshot_counts(&f), ("0".to_owned(), "0".to_owned()));
    assert_eq!(ok(&f, &["--network", "none", "bb", "true"]), "");
    assert_eq!(snapshot_counts(&f), ("1".to_owned(), "1".to_owned()));
    // The image still uses its layer: nothing to prune.
    assert!(!prune(&f).contains("Deleted snapshots"));
    assert_eq!(f.entries("layers").len(), 1);

    // A container running on the layer keeps it after the image is gone...
    let (mut child, _out) = f.spawn_ready("echo ready; sleep 1000");
    let out = rbuild()
        .arg("--root")
        .arg(f.root())
        .args(["rmi", "bb"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(snapshot_counts(&f), ("1".to_owned(), "1".to_owned()));
    assert!(!prune(&f).contains("Deleted snapshots"));
    assert_eq!(f.entries("layers").len(), 1);
    let _ = child.kill();
    let _ = child.wait();

    // ...and once it is gone, the prune frees it.
    assert_eq!(snapshot_counts(&f), ("1".to_owned(), "0".to_owned()));
    let out = prune(&f);
    assert!(out.contains("Deleted snapshots:\nsha256:"), "{out}");
    assert!(f.entries("layers").is_empty());
    assert_eq!(snapshot_counts(&f), ("0".to_owned(), "0".to_owned()));
}
