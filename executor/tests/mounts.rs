//! `RUN --mount` mechanisms on real runs: bind (read-only, and rw with changes thrown
//! away), cache (persistence, owner/mode, the three sharing modes), tmpfs (size), secret
//! (file and env, never in the layer), ssh (a forwarded agent).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{busybox_rootfs, can_run, output_of, run, run_with, sandbox, sh};
use rbuild_executor::mounts::{CacheMount, Sharing};
use rbuild_executor::snapshot::Snapshotter;
use rbuild_executor::{CancelHandle, ExtraMount, MountKind, SandboxError};

fn mount(target: &str, kind: MountKind) -> ExtraMount {
    ExtraMount {
        target: target.into(),
        kind,
    }
}

#[test]
fn bind_is_readonly_unless_rw_and_rw_changes_are_discarded() {
    if !can_run() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    busybox_rootfs(root.path());
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), "host\n").unwrap();
    let sb = sandbox();

    let mut spec = sh(
        root.path(),
        "cat /src/f; echo inside > /src/f && echo wrote; cat /src/f",
    );
    spec.mounts = vec![mount(
        "/src",
        MountKind::Bind {
            source: src.path().into(),
            readonly: true,
        },
    )];
    let out = run(&sb, &spec);
    assert_eq!(out.stdout, "host\nhost\n", "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");

    spec.mounts = vec![mount(
        "/src",
        MountKind::BindDiscard {
            source: src.path().into(),
        },
    )];
    spec.argv[2] = "echo inside > /src/f && touch /src/new && cat /src/f && ls /src".into();
    assert_eq!(output_of(&sb, &spec), "inside\nf\nnew\n");
    // The host directory never saw the writes.
    assert_eq!(
        std::fs::read_to_string(src.path().join("f")).unwrap(),
        "host\n"
    );
    assert!(!src.path().join("new").exists());
    // Nor does the rootfs keep the mount point it lacked.
    assert!(!root.path().join("src").exists());
}

fn cache(root: &Path, id: &str, sharing: Sharing) -> CacheMount {
    let mut c = CacheMount::new(root, id);
    c.sharing = sharing;
    c
}

#[test]
fn cache_persists_and_gets_owner_and_mode_when_made() {
    if !can_run() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    busybox_rootfs(root.path());
    let caches = tempfile::tempdir().unwrap();
    let sb = sandbox();
    let mut c = cache(caches.path(), "/root/.cache/go-build", Sharing::Shared);
    c.uid = 1000;
    c.gid = 50;
    c.mode = 0o750;
    let mut spec = sh(
        root.path(),
        "stat -c '%u %g %a' /cache; echo one > /cache/f",
    );
    spec.mounts = vec![mount("/cache", MountKind::Cache(c.clone()))];
    assert_eq!(output_of(&sb, &spec), "1000 50 750\n");

    // Another run (another image even) finds the file; the owner stays as made.
    let other = tempfile::tempdir().unwrap();
    busybox_rootfs(other.path());
    c.uid = 0;
    c.mode = 0o700;
    let mut spec = sh(other.path(), "stat -c '%u %a' /cache; cat /cache/f");
    spec.mounts = vec![mount("/cache", MountKind::Cache(c.clone()))];
    assert_eq!(output_of(&sb, &spec), "1000 750\none\n");

    // Read-only.
    c.readonly = true;
    spec.argv[2] = "echo two > /cache/f || echo refused".into();
    spec.mounts = vec![mount("/cache", MountKind::Cache(c))];
    assert_eq!(output_of(&sb, &spec), "refused\n");
}

#[test]
fn cache_locked_serialises_concurrent_runs() {
    if !can_run() {
        return;
    }
    let caches = tempfile::tempdir().unwrap();
    let sb = sandbox();
    // A rootfs each: runs on one tree that lacks mount points take turns anyway.
    let roots: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let specs: Vec<_> = roots
        .iter()
        .map(|root| {
            busybox_rootfs(root.path());
            // Each run fails if it ever finds another inside the cache with it.
            let mut spec = sh(
                root.path(),
                "mkdir /cache/busy || exit 3; sleep 0.3; rmdir /cache/busy",
            );
            spec.mounts = vec![mount(
                "/cache",
                MountKind::Cache(cache(caches.path(), "l", Sharing::Locked)),
            )];
            spec
        })
        .collect();
    std::thread::scope(|s| {
        let runs: Vec<_> = specs
            .iter()
            .map(|spec| s.spawn(|| run(&sb, spec)))
            .collect();
        for r in runs {
            let out = r.join().unwrap();
            assert!(matches!(out.status, Ok(st) if st.success()), "{out:?}");
        }
    });
}

/// Waits (bounded) until `path` exists on the host.
fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cache_private_gives_a_concurrent_run_its_own_dir_and_shared_does_not() {
    if !can_run() {
        return;
    }
    // A rootfs each: runs on one tree that lacks mount points take turns anyway.
    let root = tempfile::tempdir().unwrap();
    busybox_rootfs(root.path());
    let other = tempfile::tempdir().unwrap();
    busybox_rootfs(other.path());
    let caches = tempfile::tempdir().unwrap();
    let sb = sandbox();
    for (sharing, seen) in [(Sharing::Private, "alone\n"), (Sharing::Shared, "A\n")] {
        let id = format!("{sharing:?}");
        let c = cache(caches.path(), &id, sharing);
        let mut holder = sh(root.path(), "touch /cache/A; sleep 1000");
        holder.mounts = vec![mount("/cache", MountKind::Cache(c.clone()))];
        let mut second = sh(other.path(), "ls /cache | grep A || echo alone");
        second.mounts = vec![mount("/cache", MountKind::Cache(c))];
        let cancel = CancelHandle::new();
        std::thread::scope(|s| {
            let held = s.spawn(|| run_with(&sb, &holder, &cancel));
            wait_for(&caches.path().join(&id).join("data/A"));
            assert_eq!(output_of(&sb, &second), seen, "{sharing:?}");
            cancel.cancel();
            let out = held.join().unwrap();
            assert!(
                matches!(out.status, Err(SandboxError::Cancelled)),
                "{out:?}"
            );
        });
    }
}

#[test]
fn tmpfs_has_the_size_asked() {
    if !can_run() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    busybox_rootfs(root.path());
    let mut spec = sh(
        root.path(),
        "grep ' /scratch ' /proc/mounts; echo x > /scratch/f && cat /scratch/f",
    );
    spec.mounts = vec![mount(
        "/scratch",
        MountKind::Tmpfs {
            size: Some(1 << 20),
        },
    )];
    let out = output_of(&sandbox(), &spec);
    assert!(out.starts_with("tmpfs /scratch tmpfs"), "{out}");
    assert!(out.contains("size=1024k"), "{out}");
    assert!(out.ends_with("\nx\n"), "{out}");
}

/// Every path under `dir`, relative to it.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().to_owned());
            if p.is_dir() && !p.is_symlink() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn secret_is_readable_as_asked_and_never_reaches_the_layer() {
    if !can_run() {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let snapshots = Snapshotter::open(store.path()).unwrap();
    let base = snapshots.prepare("base", &[]).unwrap();
    busybox_rootfs(base.path());
    for f in ["hosts", "resolv.conf", "hostname"] {
        std::fs::write(base.path().join("etc").join(f), "").unwrap();
    }
    let base = snapshots.commit(base).unwrap();
    let etc_mtime = std::fs::metadata(base.dir().join("etc")).unwrap().mtime();
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "s3cret").unwrap();

    let step = snapshots
        .prepare("step", std::slice::from_ref(&base))
        .unwrap();
    let mut spec = sh(
        step.path(),
        "cat /run/secrets/token; echo; stat -c '%a %u %g' /run/secrets/token /etc/key; \
         echo \"env=$TOKEN\"; echo x > /run/secrets/token || echo refused; touch /made",
    );
    spec.mounts = vec![
        mount(
            "/run/secrets/token",
            MountKind::Secret {
                source: token.clone(),
                uid: 0,
                gid: 0,
                mode: 0o400,
            },
        ),
        mount(
            "/etc/key",
            MountKind::Secret {
                source: token.clone(),
                uid: 1000,
                gid: 50,
                mode: 0o440,
            },
        ),
    ];
    spec.secret_env = vec![("TOKEN".into(), token.clone())];
    assert_eq!(
        output_of(&sandbox(), &spec),
        "s3cret\n400 0 0\n440 1000 50\nenv=s3cret\nrefused\n"
    );
    let layer = snapshots.commit(step).unwrap();
    // Only what the step made; the secrets' targets and the dirs made for them are gone,
    // and the existing dir that held one looks untouched.
    let paths = tree(layer.dir());
    assert!(paths.contains(&PathBuf::from("made")), "{paths:?}");
    for p in &paths {
        let s = p.to_string_lossy();
        assert!(
            !s.starts_with("run") && !s.contains("key") && !s.contains("secret"),
            "{paths:?}"
        );
    }
    if layer.dir().join("etc").exists() {
        let m = std::fs::metadata(layer.dir().join("etc")).unwrap();
        assert_eq!(m.mtime(), etc_mtime);
    }
}

#[test]
fn missing_secret_is_an_error() {
    if !can_run() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    busybox_rootfs(root.path());
    let mut spec = sh(root.path(), "true");
    spec.secret_env = vec![("TOKEN".into(), root.path().join("nope"))];
    let out = run(&sandbox(), &spec);
    assert!(
        matches!(out.status, Err(SandboxError::SecretEnv { .. })),
        "{out:?}"
    );
    spec.secret_env.clear();
    spec.mounts = vec![mount(
        "/run/secrets/x",
        MountKind::Secret {
            source: root.path().join("nope"),
            uid: 0,
            gid: 0,
            mode: 0o400,
        },
    )];
    let out = run(&sandbox(), &spec);
    assert!(matches!(out.status, Err(SandboxError::Setup(_))), "{out:?}");
    assert!(!root.path().join("run").exists());
}

/// Copies `program` and the shared libraries `ldd` lists into `root`.
fn install_with_libs(program: &Path, root: &Path) {
    let ldd = Command::new("ldd").arg(program).output().unwrap();
    let text = String::from_utf8_lossy(&ldd.stdout);
    let mut files = vec![program.to_owned()];
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        let path = line
            .split("=>")
            .last()
            .and_then(|r| r.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            files.push(PathBuf::from(p));
        }
    }
    for f in files {
        let dest = root.join(f.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dest).unwrap();
    }
}

#[test]
fn ssh_agent_is_forwarded() {
    if !can_run() {
        return;
    }
    let (Some(agent_bin), Some(add_bin)) = (find("ssh-agent"), find("ssh-add")) else {
        eprintln!("skipping: ssh-agent/ssh-add missing (apt-get install openssh-client)");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    busybox_rootfs(root.path());
    install_with_libs(&add_bin, root.path());
    let agent_dir = tempfile::tempdir().unwrap();
    let sock = agent_dir.path().join("agent.sock");
    let mut agent = Command::new(agent_bin)
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&sock);

    let target = "/run/buildkit/ssh_agent.0";
    let mut spec = sh(
        root.path(),
        &format!(
            "stat -c '%a %u' {target}; echo $SSH_AUTH_SOCK; {} -l; echo rc=$?",
            add_bin.display()
        ),
    );
    spec.mounts = vec![mount(
        target,
        MountKind::Ssh {
            agent: sock.clone(),
            uid: 0,
            gid: 0,
            mode: 0o600,
        },
    )];
    let out = output_of(&sandbox(), &spec);
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(
        out,
        format!("600 0\n{target}\nThe agent has no identities.\nrc=1\n")
    );
    assert!(!root.path().join("run").exists());

    // No agent listening: an error before anything starts.
    let out = run(&sandbox(), &spec);
    assert!(matches!(out.status, Err(SandboxError::Mount(_))), "{out:?}");
}

fn find(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
