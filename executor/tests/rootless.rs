//! Rootless runs: the sandbox started by an unprivileged user (uid 65534 here), mapped to
//! root in a user namespace. Needs root to create the fixture and switch users, and
//! unprivileged user namespaces; skips with a reason otherwise.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::*;

const NOBODY: u32 = 65534;

fn userns_allowed() -> bool {
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let clone = std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone")
        .map(|s| s.trim() != "0")
        .unwrap_or(true);
    max > 0 && clone
}

fn chown_tree(p: &Path) {
    std::os::unix::fs::lchown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path());
        }
    }
}

/// Runs `script` through `rbuild-sandbox-run` as uid/gid 65534.
fn run_as_nobody(root: &Path, flags: &[&str], script: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild-sandbox-run"))
        .args(flags)
        .arg(root)
        .args(["/bin/sh", "-c", script])
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap()
}

#[test]
fn rootless_run_is_root_inside_and_sandboxed() {
    if !can_run() {
        return;
    }
    if !userns_allowed() {
        eprintln!("skipping: unprivileged user namespaces are disabled on this host");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(dir.path());
    chown_tree(dir.path());

    let out = run_as_nobody(
        dir.path(),
        &["--network", "none"],
        "id -u; hostname; cat /proc/self/uid_map; ls /sys/class/net; \
         grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; \
         mount -t tmpfs none /mnt || echo no-mount; exit 3",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(
        lines,
        [
            "0",
            "sandbox",
            "0 65534 1",
            "lo",
            "CapEff: 00000000a80425fb",
            "NoNewPrivs: 1",
            "no-mount",
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Stubs were made and removed by the unprivileged user, in its own rootfs.
    for stub in ["proc", "dev", "sys", "etc/hosts"] {
        assert!(!dir.path().join(stub).exists(), "{stub} left behind");
    }

    // The host network works rootless too (its /sys bound read-only from the host).
    let out = run_as_nobody(
        dir.path(),
        &["--network", "host"],
        "touch /sys/x || echo ro",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ro\n", "{out:?}");

    // Only root can be mapped without subordinate ids: another USER is refused clearly.
    let out = run_as_nobody(dir.path(), &["--user", "app"], "true");
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rootless"),
        "{out:?}"
    );
}
