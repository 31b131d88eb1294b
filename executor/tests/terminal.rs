//! `-t`: a terminal of the sandbox's own devpts, made the command's controlling
//! terminal, with the caller's window size — driven through a real pty from the test.
//! Signals passed on to the command (a `trap` sees them).

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{busybox_rootfs, can_run, sandbox, sh};
use rbuild_executor::sys::tty;
use rbuild_executor::{CancelHandle, ExitStatus, Stream};

/// Reads `master` until the other side is closed (EIO) or `want` shows up.
fn read_until(master: OwnedFd, want: &str) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut f = File::from(master);
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            let _ = tx.send(String::from_utf8_lossy(&all).replace('\r', ""));
        }
    });
    let mut last = String::new();
    // Bounded: a hang is a failure.
    while let Ok(text) = rx.recv_timeout(std::time::Duration::from_secs(60)) {
        last = text;
        if last.contains(want) {
            break;
        }
    }
    last
}

#[test]
fn tty_is_the_sandboxes_own_with_the_callers_window_size() {
    if !can_run() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    busybox_rootfs(root.path());
    std::os::unix::fs::symlink("busybox", root.path().join("bin/tty")).unwrap();
    std::os::unix::fs::symlink("busybox", root.path().join("bin/stty")).unwrap();
    let (master, slave) = tty::open_pty(Path::new("/dev/ptmx")).unwrap();
    tty::set_window_size(&master, (41, 101)).unwrap();
    let run = env!("CARGO_BIN_EXE_rbuild-sandbox-run");
    let mut child = Command::new(run)
        .args(["--tty", "--interactive", "--user", "app"])
        .arg(root.path())
        .args([
            "sh",
            "-c",
            "tty; stty size; id -u; read line; echo \"got $line\"",
        ])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    // What is typed reaches the command through its terminal.
    let mut w = File::from(master.try_clone().unwrap());
    w.write_all(b"typed\n").unwrap();
    let out = read_until(master, "got typed");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {out}");
    assert!(out.contains("/dev/pts/0\n41 101\n1000\n"), "{out:?}");
    assert!(out.contains("got typed\n"), "{out:?}");
}

#[test]
fn without_tty_stdio_is_not_a_terminal() {
    if !can_run() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    busybox_rootfs(root.path());
    std::os::unix::fs::symlink("busybox", root.path().join("bin/tty")).unwrap();
    let spec = sh(root.path(), "tty || echo no");
    let out = common::run(&sandbox(), &spec);
    assert_eq!(out.stdout, "not a tty\nno\n", "{out:?}");
}

#[test]
fn sigterm_is_passed_to_the_command_and_a_trap_sees_it() {
    if !can_run() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    busybox_rootfs(root.path());
    let spec = sh(
        root.path(),
        "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.05; done",
    );
    let cancel = CancelHandle::new();
    let sb = sandbox();
    let mut stdout = String::new();
    let status = sb.run(&spec, &cancel, &mut |stream, data| {
        if stream == Stream::Stdout {
            stdout.push_str(&String::from_utf8_lossy(data));
            if stdout == "ready\n" {
                cancel.forward(libc::SIGTERM);
            }
        }
    });
    assert_eq!(status.unwrap(), ExitStatus::Code(7), "{stdout}");
    assert_eq!(stdout, "ready\ngot TERM\n");
}
