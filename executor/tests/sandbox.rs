//! The sandbox on a busybox rootfs (needs root; skips with a reason otherwise).

mod common;

use common::*;
use rbuild_executor::{CancelHandle, ExitStatus, Network, SandboxError, Stream};

/// A busybox rootfs in a fresh tempdir.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(dir.path());
    dir
}

/// The value of `key:` in a /proc status dump.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("{key} not in {status}"))
        .trim()
}

/// Host processes whose command line is exactly `argv`.
fn host_processes_running(argv: &[&str]) -> usize {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        .count()
}

#[test]
fn echo_and_exit_codes() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(dir.path());
    let sb = sandbox();
    let out = run(&sb, &sh(dir.path(), "echo hi; echo err >&2"));
    assert_eq!(out.status.unwrap(), ExitStatus::Code(0), "{}", out.stderr);
    assert_eq!(out.stdout, "hi\n");
    assert_eq!(out.stderr, "err\n");
    let out = run(&sb, &sh(dir.path(), "exit 3"));
    assert_eq!(out.status.unwrap(), ExitStatus::Code(3));
}

#[test]
fn env_cwd_and_umask() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let mut spec = sh(dir.path(), "echo $FOO; pwd; umask; touch f; ls -l f");
    spec.env.push("FOO=bar baz".into());
    spec.cwd = "/work/new/dir".into();
    let out = output_of(&sandbox(), &spec);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["bar baz", "/work/new/dir", "0022"]);
    assert!(lines[3].starts_with("-rw-r--r--"), "{out}");
    // The working directory was created in the rootfs.
    assert!(dir.path().join("work/new/dir/f").is_file());
}

#[test]
fn users_and_groups() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let sb = sandbox();
    for (user, want) in [
        ("", "0 0 0"),
        ("app", "1000 1000 1000 50"),
        ("1000:50", "1000 50 50"),
        ("app:staff", "1000 50 50"),
        ("4242:4343", "4242 4343 4343"),
    ] {
        let mut spec = sh(dir.path(), "echo $(id -u) $(id -g) $(id -G)");
        spec.user = user.into();
        assert_eq!(output_of(&sb, &spec).trim(), want, "USER {user:?}");
    }
    let mut spec = sh(dir.path(), "id");
    spec.user = "app".into();
    assert_eq!(
        output_of(&sb, &spec).trim(),
        "uid=1000(app) gid=1000(app) groups=50(staff)"
    );
    let mut spec = sh(dir.path(), "true");
    spec.user = "nobody".into();
    let out = run(&sb, &spec);
    assert!(
        matches!(&out.status, Err(SandboxError::Setup(m)) if m.contains("nobody")),
        "{out:?}"
    );
}

#[test]
fn hostname_and_etc_files() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let host_before = nix::unistd::gethostname().unwrap();
    let mut spec = sh(
        dir.path(),
        "hostname; cat /etc/hostname; cat /etc/hosts; echo x >> /etc/hosts || echo ro; \
         hostname evil || echo denied; echo evil > /proc/sys/kernel/hostname || echo denied",
    );
    spec.hostname = "buildbox".into();
    let out = output_of(&sandbox(), &spec);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "buildbox");
    assert_eq!(lines[1], "buildbox");
    assert!(out.contains("127.0.0.1\tlocalhost buildbox"), "{out}");
    assert!(out.ends_with("ro\ndenied\ndenied\n"), "{out}");
    assert_eq!(nix::unistd::gethostname().unwrap(), host_before);
    // The generated files were bind-mounted, never written into the rootfs: the stubs
    // made for them (and for /proc, /dev, /sys) are gone again.
    for stub in [
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
        "proc",
        "dev",
        "sys",
    ] {
        assert!(!dir.path().join(stub).exists(), "{stub} left in the rootfs");
    }
    // Even a missing /etc is created only for the run.
    std::fs::remove_dir_all(dir.path().join("etc")).unwrap();
    output_of(&sandbox(), &sh(dir.path(), "cat /etc/hostname"));
    assert!(!dir.path().join("etc").exists());
}

#[test]
fn home_comes_from_passwd() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let mut spec = sh(dir.path(), "echo $HOME");
    spec.user = "app".into();
    assert_eq!(output_of(&sandbox(), &spec), "/home/app\n");
    spec.env.push("HOME=/elsewhere".into());
    assert_eq!(output_of(&sandbox(), &spec), "/elsewhere\n");
}

#[test]
fn orphans_are_reaped() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    // The subshell exits at once, so `sleep` is re-parented to PID 1, which must reap it
    // when it ends; a second later no zombie may remain.
    let out = output_of(
        &sandbox(),
        &sh(
            dir.path(),
            "(sleep 0.1 &); sleep 1; grep -l 'State:.*Z' /proc/[0-9]*/status; true",
        ),
    );
    assert_eq!(out, "");
}

#[test]
fn pid_namespace_is_its_own() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let out = output_of(
        &sandbox(),
        &sh(
            dir.path(),
            "echo $$; ls /proc | grep -E '^[0-9]+$'; cat /proc/1/cmdline",
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    // sh is PID 2, the child of the sandbox init; besides them only the pipeline's
    // processes exist, no host process.
    assert_eq!(lines[0], "2");
    let pids: Vec<u32> = lines[1..lines.len() - 1]
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(pids[..2], [1, 2], "{out}");
    assert!(pids.iter().all(|p| *p < 10), "{out}");
    assert!(
        lines[lines.len() - 1].contains("rbuild-sandbox-init"),
        "{out}"
    );
}

#[test]
fn network_none_has_only_loopback_up() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let out = output_of(
        &sandbox(),
        &sh(dir.path(), "ls /sys/class/net; cat /sys/class/net/lo/flags"),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo");
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up: {out}");
    assert_eq!(lines.len(), 2);
}

#[test]
fn network_host_shares_interfaces() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let mut spec = sh(dir.path(), "ls /sys/class/net");
    spec.network = Network::Host;
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let inside: Vec<String> = output_of(&sandbox(), &spec)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(inside, host);
}

#[test]
fn capabilities_and_no_new_privs() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let sb = sandbox();
    let status = output_of(&sb, &sh(dir.path(), "cat /proc/self/status"));
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(&status, set), "00000000a80425fb", "{set}");
    }
    assert_eq!(status_field(&status, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&status, "CapAmb"), "0000000000000000");
    // A non-root user keeps only the bounding set, as with Docker.
    let mut spec = sh(dir.path(), "cat /proc/self/status");
    spec.user = "app".into();
    let status = output_of(&sb, &spec);
    assert_eq!(status_field(&status, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&status, "CapBnd"), "00000000a80425fb");
}

#[test]
fn escapes_fail() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secret");
    std::fs::write(&secret, "host secret").unwrap();
    let root = dir.path().display().to_string();
    let checks = [
        format!("cat {}", secret.display()),
        format!("ls {root}/bin"),
        "mount -t tmpfs none /mnt".to_owned(),
        "mount -o remount,rw /sys".to_owned(),
        "echo 1 > /proc/sys/kernel/hostname".to_owned(),
        "echo 1 > /proc/sysrq-trigger".to_owned(),
        "touch /sys/kernel/x".to_owned(),
        "cat /proc/kcore | wc -c | grep -v '^0$'".to_owned(),
        "unshare -m true".to_owned(),
        "nsenter -t 1 -m true".to_owned(),
        "cat /proc/1/exe > /dev/null".to_owned(),
        "echo x > /proc/1/exe".to_owned(),
        "readlink /proc/1/fd/0".to_owned(),
        "cat /proc/1/fd/3".to_owned(),
        "ls /proc/1/root/".to_owned(),
        "cat /proc/1/environ".to_owned(),
    ];
    let sb = sandbox();
    for check in checks {
        let out = run(&sb, &sh(dir.path(), &check));
        match out.status {
            Ok(status) => assert!(!status.success(), "succeeded: {check}\n{}", out.stdout),
            Err(e) => panic!("{check}: {e}"),
        }
    }
}

#[test]
fn only_stdio_reaches_the_command() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    // A descriptor the caller leaks (no close-on-exec) to a host directory: the runc
    // CVE-2024-21626 class, where such an fd let the container reach the host.
    let leaked = std::fs::File::open("/").unwrap();
    nix::fcntl::fcntl(
        &leaked,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    // `; true` keeps sh from exec'ing ls, so ls lists the shell's descriptors.
    let out = output_of(&sandbox(), &sh(dir.path(), "ls /proc/$$/fd; true"));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"]);
    drop(leaked);
}

#[test]
fn helper_is_a_sealed_copy() {
    if !can_run() {
        return;
    }
    let helper =
        rbuild_executor::Helper::new(env!("CARGO_BIN_EXE_rbuild-sandbox-init"), vec![]).unwrap();
    assert!(helper.is_sealed());
}

#[test]
fn exec_failures_are_reported() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let sb = sandbox();
    let spec = rbuild_executor::RunSpec::new(
        rbuild_executor::Rootfs::Dir(dir.path().to_owned()),
        vec!["no-such-command".into()],
    );
    let out = run(&sb, &spec);
    match out.status {
        Err(SandboxError::Exec { message, code }) => {
            assert_eq!(code, 127);
            assert!(message.contains("no-such-command"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let out = run(&sb, &sh(dir.path(), "kill -TERM $$"));
    assert_eq!(out.status.unwrap(), ExitStatus::Signal(15));
}

#[test]
fn cancel_kills_the_tree() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let argv = ["sleep", "1000"];
    let cancel = CancelHandle::new();
    let trigger = cancel.clone();
    let sb = sandbox();
    // A child of a child of PID 1: the whole tree must go.
    let spec = sh(dir.path(), "sh -c 'sleep 1000; true' & echo started; wait");
    let status = sb.run(&spec, &cancel, &mut |stream, data| {
        if stream == Stream::Stdout && data.starts_with(b"started") {
            trigger.cancel();
        }
    });
    assert!(matches!(status, Err(SandboxError::Cancelled)), "{status:?}");
    assert_eq!(host_processes_running(&argv), 0);
}

#[test]
fn timeout_kills_the_tree() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let mut spec = sh(dir.path(), "sleep 1001");
    spec.timeout = Some(std::time::Duration::from_millis(200));
    let out = run(&sandbox(), &spec);
    assert!(
        matches!(out.status, Err(SandboxError::TimedOut(_))),
        "{out:?}"
    );
    assert_eq!(host_processes_running(&["sleep", "1001"]), 0);
}

#[test]
fn devices_work() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let out = output_of(
        &sandbox(),
        &sh(
            dir.path(),
            "echo x > /dev/null && cat /dev/null | wc -c && \
             ls /dev | grep -cE '^(null|zero|full|random|urandom|tty|pts|shm|mqueue)$'",
        ),
    );
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "9"]);
}

#[test]
fn modules_cannot_be_loaded() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    std::fs::write(dir.path().join("m.ko"), "not a module").unwrap();
    let out = run(&sandbox(), &sh(dir.path(), "insmod /m.ko"));
    assert!(!out.status.unwrap().success());
    // Refused for lack of CAP_SYS_MODULE, before the file is even looked at (a kernel
    // built without modules says ENOSYS to everyone).
    if std::path::Path::new("/proc/modules").exists() {
        assert!(out.stderr.contains("not permitted"), "{}", out.stderr);
    } else {
        eprintln!("kernel without module support: only the failure is checked");
    }
}

#[test]
fn network_none_reaches_nothing() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "ping -c 1 -W 1 127.0.0.1 >/dev/null && echo lo-ok; \
         nc 127.0.0.1 {port} </dev/null && echo host-reached; \
         ping -c 1 -W 1 192.0.2.1 2>&1 | grep -q 'unreachable' && echo no-route"
    );
    let out = output_of(&sandbox(), &sh(dir.path(), &script));
    // Raw sockets work on the sandbox's own loopback, but nothing else is reachable:
    // not the host's loopback services, not any route out.
    assert_eq!(out, "lo-ok\nno-route\n");
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}

#[test]
fn extra_mounts() {
    if !can_run() {
        return;
    }
    use rbuild_executor::{ExtraMount, MountKind};
    let dir = fixture();
    let host = tempfile::tempdir().unwrap();
    let ro = host.path().join("ro");
    let rw = host.path().join("rw");
    let discard = host.path().join("discard");
    for d in [&ro, &rw, &discard] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("f"), "host").unwrap();
    }
    let secret = host.path().join("secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let bind = |target: &str, source: &std::path::Path, readonly: bool| ExtraMount {
        target: target.into(),
        kind: MountKind::Bind {
            source: source.to_owned(),
            readonly,
        },
    };
    let mut spec = sh(
        dir.path(),
        "cat /ro/f; echo; echo x > /ro/f || echo ro-refused; \
         echo inside > /rw/f; \
         echo inside > /discard/f && cat /discard/f; touch /discard/new; \
         cat /run/secrets/s; echo; \
         echo t > /scratch/t && cat /scratch/t",
    );
    spec.mounts = vec![
        bind("/ro", &ro, true),
        bind("/rw", &rw, false),
        ExtraMount {
            target: "/discard".into(),
            kind: MountKind::BindDiscard {
                source: discard.clone(),
            },
        },
        bind("/run/secrets/s", &secret, true),
        ExtraMount {
            target: "/scratch".into(),
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
            },
        },
    ];
    let out = output_of(&sandbox(), &spec);
    assert_eq!(out, "host\nro-refused\ninside\ns3cret\nt\n");
    assert_eq!(std::fs::read_to_string(ro.join("f")).unwrap(), "host");
    assert_eq!(std::fs::read_to_string(rw.join("f")).unwrap(), "inside\n");
    // Changes to a discarded bind never reach the host.
    assert_eq!(std::fs::read_to_string(discard.join("f")).unwrap(), "host");
    assert!(!discard.join("new").exists());
    // Mount targets the image lacked leave nothing behind.
    for stub in ["ro", "rw", "discard", "run", "scratch"] {
        assert!(!dir.path().join(stub).exists(), "{stub} left in the rootfs");
    }
}

#[test]
fn one_sandbox_runs_steps_concurrently() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let sb = sandbox();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (sb, root) = (&sb, dir.path());
                s.spawn(move || output_of(sb, &sh(root, &format!("echo {i}; hostname"))))
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), format!("{i}\nsandbox\n"));
        }
    });
}

#[test]
fn helper_from_the_running_binary() {
    if !can_run() {
        return;
    }
    // The test binary is not a sandbox helper: it must be copied and sealed all the same.
    let helper = rbuild_executor::Helper::current_exe(vec![]).unwrap();
    assert!(helper.is_sealed());
}

#[test]
fn network_sandbox_has_its_own_stack_but_not_the_hosts_loopback() {
    if !can_run() {
        return;
    }
    if std::process::Command::new("slirp4netns")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: slirp4netns not installed (apt-get install slirp4netns)");
        return;
    }
    let dir = fixture();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Only addresses of the sandbox itself and of slirp's host-loopback alias are tried:
    // nothing outside this machine is contacted.
    let script = format!(
        "ls /sys/class/net; ip -4 addr show tap0 | grep -o 'inet [0-9./]*'; \
         nc 127.0.0.1 {port} </dev/null && echo reached-own-lo; \
         nc 10.0.2.2 {port} </dev/null && echo reached-host-lo; \
         grep -c nameserver /etc/resolv.conf; \
         cat /proc/[0-9]*/comm | grep slirp"
    );
    let mut spec = sh(dir.path(), &script);
    spec.network = Network::Sandbox;
    // The last grep fails: slirp4netns runs in the host's pid namespace, unseen.
    let out = run(&sandbox(), &spec);
    assert_eq!(out.status.unwrap(), ExitStatus::Code(1), "{}", out.stderr);
    let out = out.stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["lo", "tap0", "inet 10.0.2.100/24"], "{out}");
    assert!(!out.contains("reached"), "{out}");
    assert!(lines[3].parse::<u32>().unwrap() >= 1, "{out}");
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}

#[test]
fn pooled_sandbox_networks_are_reused_serially_and_keep_the_hosts_loopback_out() {
    if !can_run() {
        return;
    }
    let Some(slirp) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("slirp4netns"))
            .find(|p| p.is_file())
    }) else {
        eprintln!("skipping: slirp4netns not installed (apt-get install slirp4netns)");
        return;
    };
    let pool = rbuild_executor::NetPool::new(slirp).expect("root gets a pool");
    let dir = fixture();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Only addresses of the sandbox itself and of slirp's host-loopback alias are tried.
    let script = format!(
        "readlink /proc/self/ns/net; ls /sys/class/net; \
         ip -4 addr show tap0 | grep -o 'inet [0-9./]*'; \
         nc 10.0.2.2 {port} </dev/null && echo reached-host-lo; \
         nc 127.0.0.1 {port} </dev/null && echo reached-own-lo; true"
    );
    let sb = sandbox();
    let mut namespaces = Vec::new();
    for _ in 0..2 {
        let lease = pool.lease().unwrap();
        let mut spec = sh(dir.path(), &script);
        spec.network = Network::Sandbox;
        spec.netns = Some(lease.path().to_owned());
        let out = run(&sb, &spec);
        assert_eq!(out.status.unwrap(), ExitStatus::Code(0), "{}", out.stderr);
        drop(lease);
        let lines: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
        assert_eq!(
            lines[1..4],
            ["lo", "tap0", "inet 10.0.2.100/24"],
            "{lines:?}"
        );
        assert!(!out.stdout.contains("reached"), "{}", out.stdout);
        namespaces.push(lines[0].clone());
        assert_eq!(pool.idle(), 1);
    }
    // The second run joined the first one's namespace.
    assert_eq!(namespaces[0], namespaces[1]);
    assert!(namespaces[0].starts_with("net:["), "{namespaces:?}");
    // Two runs at once never share one.
    let (a, b) = (pool.lease().unwrap(), pool.lease().unwrap());
    assert_ne!(
        std::fs::read_link(a.path()).unwrap(),
        std::fs::read_link(b.path()).unwrap()
    );
    drop((a, b));
    assert_eq!(pool.idle(), 2);
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}

#[test]
fn resource_limits() {
    if !can_run() {
        return;
    }
    use rbuild_executor::cgroup::Limits;
    let dir = fixture();
    let sb = sandbox();
    // PID 1, sh and three sleeps fill a limit of 5: the fourth sleep cannot start.
    let mut spec = sh(
        dir.path(),
        "for i in 1 2 3 4; do sleep 1 & done; wait; echo done",
    );
    spec.limits = Limits {
        pids: Some(5),
        ..Limits::default()
    };
    let out = run(&sb, &spec);
    assert!(!out.status.as_ref().unwrap().success(), "{out:?}");
    assert!(out.stderr.contains("fork"), "{out:?}");
    spec.limits = Limits::default();
    assert_eq!(output_of(&sb, &spec), "done\n");
    // A 256 MiB buffer does not fit in 32 MiB: the kernel kills the process.
    let mut spec = sh(
        dir.path(),
        "dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null && echo fitted",
    );
    spec.limits = Limits {
        memory: Some(32 << 20),
        cpus: Some(0.5),
        ..Limits::default()
    };
    let out = run(&sb, &spec);
    assert!(!out.stdout.contains("fitted"), "{out:?}");
    // Without limits the same command fits.
    spec.limits = Limits::default();
    assert_eq!(output_of(&sb, &spec), "fitted\n");
}

/// The runc CVE-2019-5736 attack itself: a command whose interpreter is `/proc/self/exe`
/// makes the kernel run the helper binary inside the sandbox; the attacker keeps its
/// `/proc/<pid>/exe` open and writes through it once the process is gone. The write
/// fails and the binary on the host is untouched (the helper is exec'd through a
/// read-only bind mount or a sealed copy, and PID 1 still runs it besides).
#[test]
fn helper_binary_cannot_be_overwritten_through_proc_exe() {
    if !can_run() {
        return;
    }
    let dir = fixture();
    let helper = std::path::Path::new(env!("CARGO_BIN_EXE_rbuild-sandbox-init"));
    let before = std::fs::read(helper).unwrap();
    let script = "printf '#!/proc/self/exe\\n' > /evil; busybox chmod 755 /evil; \
        for i in $(seq 200); do \
          /evil 2>/dev/null & pid=$!; \
          if exec 5< /proc/$pid/exe; then wait $pid; \
            if echo pwned >> /proc/self/fd/5; then echo WROTE; else echo refused; fi; exit 0; \
          fi 2>/dev/null; wait $pid; \
        done; echo never-opened";
    let out = output_of(&sandbox(), &sh(dir.path(), script));
    assert_eq!(out, "refused\n");
    assert!(
        std::fs::read(helper).unwrap() == before,
        "the helper binary changed"
    );
}
