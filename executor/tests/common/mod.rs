//! Shared fixtures: a tiny busybox rootfs and a sandbox started through the crate's
//! `rbuild-sandbox-init` binary.
#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::Path;

use rbuild_executor::{
    CancelHandle, ExitStatus, Helper, Rootfs, RunSpec, Sandbox, SandboxError, Stream,
};

/// Applets linked into the fixture rootfs.
const APPLETS: [&str; 29] = [
    "sh", "echo", "cat", "id", "ls", "sleep", "hostname", "mount", "ip", "true", "false", "touch",
    "ps", "mkdir", "unshare", "nsenter", "readlink", "wc", "grep", "umask", "insmod", "ping", "nc",
    "dd", "seq", "stat", "rm", "test", "rmdir",
];

/// Returns false (after saying why) when the test cannot run here.
pub fn can_run() -> bool {
    if !rbuild_executor::sys::running_as_root() {
        eprintln!("skipping: sandbox tests need root (CI runs them as root)");
        return false;
    }
    if !Path::new("/bin/busybox").is_file() {
        eprintln!("skipping: /bin/busybox missing (apt-get install busybox-static)");
        return false;
    }
    true
}

/// A busybox rootfs with `root`, user `app` (1000) and group `staff` (50, app a member).
pub fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("mnt")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nstaff:x:50:app\napp:x:1000:\n",
    )
    .unwrap();
}

pub fn sandbox() -> Sandbox {
    Sandbox::new(Helper::new(env!("CARGO_BIN_EXE_rbuild-sandbox-init"), Vec::new()).unwrap())
}

pub fn sh(root: &Path, script: &str) -> RunSpec {
    RunSpec::new(
        Rootfs::Dir(root.to_owned()),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    )
}

/// Output of one run.
#[derive(Debug)]
pub struct Outcome {
    pub status: Result<ExitStatus, SandboxError>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(sandbox: &Sandbox, spec: &RunSpec) -> Outcome {
    run_with(sandbox, spec, &CancelHandle::new())
}

pub fn run_with(sandbox: &Sandbox, spec: &RunSpec, cancel: &CancelHandle) -> Outcome {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let status = sandbox.run(spec, cancel, &mut |stream, data| match stream {
        Stream::Stdout => stdout.extend_from_slice(data),
        Stream::Stderr => stderr.extend_from_slice(data),
    });
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `script` and returns its stdout, asserting it succeeded.
pub fn output_of(sandbox: &Sandbox, spec: &RunSpec) -> String {
    let out = run(sandbox, spec);
    match &out.status {
        Ok(s) if s.success() => out.stdout,
        other => panic!("{other:?}\nstdout: {}\nstderr: {}", out.stdout, out.stderr),
    }
}
