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

fn chown_tree(p: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), (uid, gid));
        }
    }
}

/// Runs `script` through `rbuild-sandbox-run` as `(uid, gid)`.
fn run_as(
    (uid, gid): (u32, u32),
    root: &Path,
    flags: &[&str],
    script: &str,
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild-sandbox-run"))
        .args(flags)
        .arg(root)
        .args(["/bin/sh", "-c", script])
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap()
}

fn run_as_nobody(root: &Path, flags: &[&str], script: &str) -> std::process::Output {
    run_as((NOBODY, NOBODY), root, flags, script)
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
    chown_tree(dir.path(), (NOBODY, NOBODY));

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

/// The user the subordinate-id test runs as, made (with its ranges) when missing.
const SUBID_USER: &str = "rbuild-subids";
const SUBID_START: u32 = 300_000;

fn ensure_subid_user() -> Result<(u32, u32), String> {
    let id_of = |flag: &str, name: &str| {
        Command::new("id")
            .args([flag, name])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .ok()
            })
    };
    let id = |name: &str| id_of("-u", name);
    if id(SUBID_USER).is_none() {
        let made = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", SUBID_USER])
            .status()
            .map_err(|e| format!("useradd: {e}"))?;
        if !made.success() && id(SUBID_USER).is_none() {
            return Err(format!("useradd {SUBID_USER} failed ({made})"));
        }
    }
    let uid = id(SUBID_USER).ok_or("no uid after useradd")?;
    let gid = id_of("-g", SUBID_USER).ok_or("no gid after useradd")?;
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text
            .lines()
            .any(|l| l.starts_with(&format!("{SUBID_USER}:")))
        {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(file)
                .map_err(|e| format!("{file}: {e}"))?;
            std::io::Write::write_all(
                &mut f,
                format!("{SUBID_USER}:{SUBID_START}:65536\n").as_bytes(),
            )
            .map_err(|e| format!("{file}: {e}"))?;
        }
    }
    Ok((uid, gid))
}

#[test]
fn rootless_with_subordinate_ids_has_other_users_inside() {
    if !can_run() {
        return;
    }
    if !userns_allowed() {
        eprintln!("skipping: unprivileged user namespaces are disabled on this host");
        return;
    }
    if !Path::new("/usr/bin/newuidmap").is_file() || !Path::new("/usr/bin/newgidmap").is_file() {
        eprintln!("skipping: newuidmap/newgidmap missing (apt-get install uidmap)");
        return;
    }
    let (uid, gid) = match ensure_subid_user() {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!("skipping: cannot make the test user: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(dir.path());
    chown_tree(dir.path(), (uid, gid));
    let out = run_as(
        (uid, gid),
        dir.path(),
        &["--network", "none", "--user", "app"],
        "id -u; id -G; cat /proc/self/uid_map; touch /made-by-app 2>/dev/null || echo denied",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        lines,
        [
            "1000".to_owned(),
            "1000 50".to_owned(),
            format!("0 {uid} 1"),
            format!("1 {SUBID_START} 65536"),
            // The rootfs is root's inside (the caller's on the host): app may not write.
            "denied".to_owned(),
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
