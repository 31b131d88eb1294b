//! A `RUN /bin/true` step end to end: fresh snapshot on a busybox base, the sandbox, and
//! commit — against `unshare --mount --pid --fork chroot ROOT /bin/true` as the floor
//! (and `crun run` when installed). Needs root; says so and measures nothing otherwise.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use rbuild_executor::snapshot::Snapshotter;
use rbuild_executor::{CancelHandle, Helper, RunSpec, Sandbox};

fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    for f in ["hosts", "resolv.conf", "hostname", "passwd", "group"] {
        std::fs::write(dir.join("etc").join(f), "").unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    symlink("busybox", dir.join("bin/true")).unwrap();
}

fn bench(c: &mut Criterion) {
    if !rbuild_executor::sys::running_as_root() || !Path::new("/bin/busybox").is_file() {
        eprintln!("skipping: the run_step benchmark needs root and /bin/busybox");
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let snapshots = Snapshotter::open(store.path()).unwrap();
    eprintln!("snapshot backend: {:?}", snapshots.backend());
    let base = snapshots.prepare("base", &[]).unwrap();
    busybox_rootfs(base.path());
    let base = snapshots.commit(base).unwrap();
    let sandbox =
        Sandbox::new(Helper::new(env!("CARGO_BIN_EXE_rbuild-sandbox-init"), Vec::new()).unwrap());
    let cancel = CancelHandle::new();

    let mut group = c.benchmark_group("run_true");
    group.sample_size(100);
    let mut n = 0u64;
    group.bench_function("rbuild_snapshot_run_commit", |b| {
        b.iter(|| {
            n += 1;
            let active = snapshots
                .prepare(&format!("s{n}"), std::slice::from_ref(&base))
                .unwrap();
            let spec = RunSpec::new(active.rootfs(), vec!["/bin/true".into()]);
            let status = sandbox.run(&spec, &cancel, &mut |_, _| {}).unwrap();
            assert!(status.success());
            let layer = snapshots.commit(active).unwrap();
            snapshots.remove(layer).unwrap();
        })
    });
    let flat = tempfile::tempdir().unwrap();
    busybox_rootfs(flat.path());
    group.bench_function("unshare_chroot", |b| {
        b.iter(|| {
            let status = Command::new("unshare")
                .args(["--mount", "--pid", "--fork", "chroot"])
                .arg(flat.path())
                .arg("/bin/true")
                .status()
                .unwrap();
            assert!(status.success());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
