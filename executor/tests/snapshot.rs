//! The snapshotter with the sandbox on top (needs root; skips with a reason otherwise).

mod common;

use std::path::Path;

use common::*;
use rbuild_executor::snapshot::{Backend, Committed, Snapshotter};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn is_whiteout(p: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

/// A base layer holding the busybox rootfs, with every mount target the sandbox needs
/// already present (as in real images), so a step's layer holds only its own changes.
fn base_layer(s: &Snapshotter) -> Committed {
    let active = s.prepare("base", &[]).unwrap();
    busybox_rootfs(active.path());
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir(active.path().join(d)).unwrap();
    }
    for f in ["hosts", "resolv.conf", "hostname"] {
        std::fs::write(active.path().join("etc").join(f), "").unwrap();
    }
    s.commit(active).unwrap()
}

fn overlay_available() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("\toverlay\n"))
}

fn touch_commit_and_delete(s: &Snapshotter) {
    let base = base_layer(s);
    let sb = sandbox();
    let step = s
        .prepare("sha256:step", std::slice::from_ref(&base))
        .unwrap();
    output_of(&sb, &sh(step.path(), "touch /x && rm /etc/group"));
    let step = s.commit(step).unwrap();
    // Only the step's changes are in its layer; the base is untouched.
    assert_eq!(names(step.dir()), ["etc", "x"]);
    assert_eq!(names(&step.dir().join("etc")), ["group"]);
    assert!(is_whiteout(&step.dir().join("etc/group")));
    assert!(!base.dir().join("x").exists());
    assert!(base.dir().join("etc/group").is_file());

    s.sync().unwrap();
    let next = s.prepare("next", &[base.clone(), step.clone()]).unwrap();
    let out = output_of(
        &sb,
        &sh(next.path(), "ls /x; ls /etc/group || echo no-group"),
    );
    assert_eq!(out, "/x\nno-group\n");
    s.remove_active(next).unwrap();
}

#[test]
fn overlay_touch_lands_in_upper_only() {
    if !can_run() {
        return;
    }
    if !overlay_available() {
        eprintln!("skipping: no overlayfs in this kernel");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(dir.path()).unwrap();
    assert_eq!(s.backend(), &Backend::Overlay);
    touch_commit_and_delete(&s);
}

#[test]
fn copy_backend_gives_the_same_layers() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::with_backend(
        dir.path(),
        Backend::Copy {
            reason: "forced by test".into(),
        },
    )
    .unwrap();
    touch_commit_and_delete(&s);
}

/// Layers made directly in the store: `count` layers, layer `i` holding file `f<i>` and
/// a `top` file saying which layer wrote it last.
fn many_layers(s: &Snapshotter, root: &Path, count: usize, key_len: usize) -> Vec<Committed> {
    (0..count)
        .map(|i| {
            let key = format!("{i:0>key_len$}");
            let dir = root.join("layers").join(&key);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("f{i}")), "").unwrap();
            std::fs::write(dir.join("top"), i.to_string()).unwrap();
            s.committed(&key).unwrap()
        })
        .collect()
}

#[test]
fn lowers_beyond_one_option_page() {
    if !can_run() || !overlay_available() {
        eprintln!("skipping: needs root and overlayfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(dir.path()).unwrap();
    // 60 lowers of ~150 bytes each: far more than one 4 KiB page of mount options.
    let layers = many_layers(&s, dir.path(), 60, 120);
    let active = s.prepare("many", &layers).unwrap();
    assert_eq!(names(active.path()).len(), 61);
    assert_eq!(
        std::fs::read_to_string(active.path().join("top")).unwrap(),
        "59"
    );
    std::fs::write(active.path().join("new"), "n").unwrap();
    let layer = s.commit(active).unwrap();
    assert_eq!(names(layer.dir()), ["new"]);
}

#[test]
fn lowers_beyond_overlay_stack_are_flattened() {
    if !can_run() || !overlay_available() {
        eprintln!("skipping: needs root and overlayfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(dir.path()).unwrap();
    let layers = many_layers(&s, dir.path(), 501, 4);
    let active = s.prepare("deep", &layers).unwrap();
    assert_eq!(names(active.path()).len(), 502);
    assert_eq!(
        std::fs::read_to_string(active.path().join("top")).unwrap(),
        "500"
    );
    std::fs::write(active.path().join("new"), "n").unwrap();
    let layer = s.commit(active).unwrap();
    assert_eq!(names(layer.dir()), ["new"]);
}

#[test]
fn views_are_read_only() {
    if !can_run() || !overlay_available() {
        eprintln!("skipping: needs root and overlayfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(dir.path()).unwrap();
    let layers = many_layers(&s, dir.path(), 3, 2);
    for parents in [&layers[..], &layers[..1], &[]] {
        let view = s.view("v", parents).unwrap();
        assert_eq!(
            names(view.path()).len(),
            parents.len() + usize::from(!parents.is_empty())
        );
        let err = std::fs::write(view.path().join("w"), "").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        drop(view);
    }
}
