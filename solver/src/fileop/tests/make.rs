//! `Mkdir` (`WORKDIR`) and `Mkfile` (inline documents).

use std::fs;
use std::os::unix::fs::symlink;

use rbuild_graph::{MkdirAction, MkfileAction};

use super::*;

fn mkdir(path: &str, parents: bool, owner: Option<&str>) -> FileOp {
    FileOp::Mkdir(MkdirAction {
        path: path.into(),
        mode: 0o755,
        parents,
        owner: owner.map(Into::into),
    })
}

fn mkfile(path: &str, mode: u32, data: &str, owner: Option<&str>) -> FileOp {
    FileOp::Mkfile(MkfileAction {
        path: path.into(),
        mode,
        data: data.into(),
        owner: owner.map(Into::into),
    })
}

#[test]
fn mkdir_creates_parents_with_the_mode() {
    let f = fx();
    let s = f.run(&mkdir("/srv/app/data", true, None)).unwrap();
    assert_eq!(s.dirs, 3);
    for p in ["/srv", "/srv/app", "/srv/app/data"] {
        assert_eq!(mode(&f.d(p)), 0o755, "{p}");
    }
    // Again: nothing to do.
    assert_eq!(f.run(&mkdir("/srv/app/data", true, None)).unwrap().dirs, 0);
}

#[test]
fn mkdir_leaves_an_existing_directory_alone() {
    let f = fx();
    fs::create_dir(f.d("/srv")).unwrap();
    chmod(&f.d("/srv"), 0o700);
    f.run(&mkdir("/srv", true, None)).unwrap();
    assert_eq!(mode(&f.d("/srv")), 0o700);
}

#[test]
fn mkdir_onto_a_file_is_an_error() {
    let f = fx();
    write(&f.dest, "srv", "file");
    let err = f.run(&mkdir("/srv/app", true, None)).unwrap_err();
    assert!(matches!(err, FileOpError::NotADirectory(_)), "{err}");
}

#[test]
fn mkdir_without_parents_needs_the_parent() {
    let f = fx();
    assert!(f.run(&mkdir("/a/b", false, None)).is_err());
    f.run(&mkdir("/a", false, None)).unwrap();
    assert!(f.d("/a").is_dir());
}

#[test]
fn mkdir_follows_symlinks_inside_the_root() {
    let f = fx();
    fs::create_dir(f.d("/real")).unwrap();
    symlink("/real", f.d("/app")).unwrap();
    f.run(&mkdir("/app/data", true, None)).unwrap();
    assert!(f.d("/real/data").is_dir());
    symlink("../../../../..", f.d("/up")).unwrap();
    f.run(&mkdir("/up/top", true, None)).unwrap();
    assert!(f.d("/top").is_dir());
}

#[test]
fn mkdir_owner_from_the_workdir_user() {
    if !is_root("mkdir_owner_from_the_workdir_user") {
        return;
    }
    let f = fx();
    write(
        &f.dest,
        "etc/passwd",
        "app:x:1000:1001::/home/app:/bin/sh\n",
    );
    f.run(&mkdir("/home/app/work", true, Some("app"))).unwrap();
    assert_eq!(owner(&f.d("/home/app/work")), (1000, 1001));
    assert_eq!(owner(&f.d("/home")), (1000, 1001));
    // A USER that does not exist (yet): BuildKit makes the directory root's.
    f.run(&mkdir("/w2", true, Some("ghost"))).unwrap();
    assert_eq!(owner(&f.d("/w2")), (0, 0));
}

#[test]
fn mkfile_writes_content_and_mode() {
    let f = fx();
    let s = f
        .run(&mkfile("/EOF", 0o755, "#!/bin/sh\necho hi\n", None))
        .unwrap();
    assert_eq!(s.bytes, 18);
    assert_eq!(read(&f.d("/EOF")), "#!/bin/sh\necho hi\n");
    assert_eq!(mode(&f.d("/EOF")), 0o755);
    // Overwrites, and takes the new mode.
    f.run(&mkfile("/EOF", 0o600, "x", None)).unwrap();
    assert_eq!(read(&f.d("/EOF")), "x");
    assert_eq!(mode(&f.d("/EOF")), 0o600);
}

#[test]
fn mkfile_onto_a_directory_or_without_parent_is_an_error() {
    let f = fx();
    fs::create_dir(f.d("/d")).unwrap();
    let err = f.run(&mkfile("/d", 0o644, "x", None)).unwrap_err();
    assert!(matches!(err, FileOpError::ReplaceDirectory(_)), "{err}");
    assert!(f.run(&mkfile("/missing/x", 0o644, "x", None)).is_err());
}

#[test]
fn mkfile_through_a_link_stays_inside() {
    let f = fx();
    let h = tempfile::tempdir().unwrap();
    let victim = h.path().join("victim");
    fs::write(&victim, "host").unwrap();
    symlink(&victim, f.d("/f")).unwrap();
    let parent = victim.parent().unwrap().strip_prefix("/").unwrap();
    fs::create_dir_all(f.dest.join(parent)).unwrap();
    f.run(&mkfile("/f", 0o644, "image", None)).unwrap();
    assert_eq!(read(&victim), "host");
    assert_eq!(read(&f.dest.join(parent).join("victim")), "image");
}

#[test]
fn mkfile_owner() {
    if !is_root("mkfile_owner") {
        return;
    }
    let f = fx();
    f.run(&mkfile("/x", 0o644, "x", Some("12:34"))).unwrap();
    assert_eq!(owner(&f.d("/x")), (12, 34));
}
