//! Hostile shapes: links in the destination image and the sources never lead a read or a
//! write outside their root.

use std::fs;
use std::os::unix::fs::symlink;

use super::*;

/// A directory beside the roots standing for the host: nothing may appear in it.
fn host() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn host_is_untouched(h: &tempfile::TempDir) {
    let left: Vec<_> = fs::read_dir(h.path()).unwrap().collect();
    assert!(left.is_empty(), "host touched: {left:?}");
}

#[test]
fn destination_symlink_to_an_absolute_dir_is_followed_inside_the_root() {
    let f = fx();
    let h = host();
    write(&f.ctx, "a", "1");
    // `/dst -> /etc` in the image: the copy lands in the image's /etc.
    fs::create_dir(f.d("/etc")).unwrap();
    symlink("/etc", f.d("/dst")).unwrap();
    f.copy(action(vec![ctx_src("/a")], "/dst/")).unwrap();
    assert_eq!(read(&f.d("/etc/a")), "1");
    // The same with a link naming the host directory: taken inside the root.
    symlink(h.path(), f.d("/hostlink")).unwrap();
    f.copy(action(vec![ctx_src("/a")], "/hostlink/x")).unwrap();
    host_is_untouched(&h);
    assert_eq!(
        read(&f.dest.join(h.path().strip_prefix("/").unwrap()).join("x")),
        "1"
    );
}

#[test]
fn destination_symlink_climbing_out_stops_at_the_root() {
    let f = fx();
    write(&f.ctx, "a", "1");
    symlink("../../../../../../..", f.d("/up")).unwrap();
    symlink("/", f.d("/slash")).unwrap();
    f.copy(action(vec![ctx_src("/a")], "/up/a1")).unwrap();
    f.copy(action(vec![ctx_src("/a")], "/slash/a2")).unwrap();
    assert_eq!(read(&f.d("/a1")), "1");
    assert_eq!(read(&f.d("/a2")), "1");
    assert!(!f.dest.parent().unwrap().join("a1").exists());
}

#[test]
fn dotdot_in_the_destination_stops_at_the_root() {
    let f = fx();
    write(&f.ctx, "a", "1");
    f.copy(action(vec![ctx_src("/a")], "/../../../evil"))
        .unwrap();
    assert_eq!(read(&f.d("/evil")), "1");
    assert!(!f.dest.parent().unwrap().join("evil").exists());
}

#[test]
fn a_link_at_the_file_target_is_replaced_not_written_through() {
    let f = fx();
    let h = host();
    let victim = h.path().join("victim");
    fs::write(&victim, "host").unwrap();
    write(&f.ctx, "d/victim", "image");
    fs::create_dir(f.d("/out")).unwrap();
    // Inside a copied tree the link is replaced, never followed.
    symlink(&victim, f.d("/out/victim")).unwrap();
    f.copy(action(vec![ctx_src("/d")], "/out")).unwrap();
    assert_eq!(read(&victim), "host");
    assert!(fs::symlink_metadata(f.d("/out/victim")).unwrap().is_file());
}

#[test]
fn a_link_in_place_of_a_copied_directory_is_an_error_not_a_path() {
    let f = fx();
    let h = host();
    write(&f.ctx, "d/sub/x", "1");
    fs::create_dir(f.d("/out")).unwrap();
    symlink(h.path(), f.d("/out/sub")).unwrap();
    let err = f.copy(action(vec![ctx_src("/d")], "/out")).unwrap_err();
    assert!(matches!(err, FileOpError::NotADirectory(_)), "{err}");
    host_is_untouched(&h);
}

#[test]
fn source_links_resolve_inside_the_source_root() {
    let f = fx();
    let h = host();
    fs::write(h.path().join("secret"), "host secret").unwrap();
    // An absolute link in the context names a context path, not the host's.
    symlink(h.path().join("secret"), f.ctx.join("abs")).unwrap();
    let err = f.copy(action(vec![ctx_src("/abs")], "/x")).unwrap_err();
    assert!(matches!(err, FileOpError::NotFound(_)), "{err}");
    symlink("../../../../../../../../etc/passwd", f.ctx.join("climb")).unwrap();
    match f.copy(action(vec![ctx_src("/climb")], "/y")) {
        Err(FileOpError::NotFound(_)) => {}
        other => panic!("climbing link must stay in the context: {other:?}"),
    }
    // `..` in a source path stops at the root as well.
    write(&f.ctx, "inside", "in");
    f.copy(action(vec![ctx_src("/../../inside")], "/z"))
        .unwrap();
    assert_eq!(read(&f.d("/z")), "in");
}

#[test]
fn symlink_loops_are_errors() {
    let f = fx();
    symlink("l2", f.ctx.join("l1")).unwrap();
    symlink("l1", f.ctx.join("l2")).unwrap();
    write(&f.ctx, "a", "1");
    let err = f.copy(action(vec![ctx_src("/l1")], "/x")).unwrap_err();
    assert!(matches!(err, FileOpError::SymlinkLoop(_)), "{err}");
    symlink("d2", f.d("/d1")).unwrap();
    symlink("d1", f.d("/d2")).unwrap();
    let err = f.copy(action(vec![ctx_src("/a")], "/d1/")).unwrap_err();
    assert!(matches!(err, FileOpError::SymlinkLoop(_)), "{err}");
}
