//! Source wildcards: Go `filepath.Match` per path element.

use std::fs;
use std::os::unix::fs::symlink;

use super::*;

fn ctx_with(files: &[&str]) -> Fx {
    let f = fx();
    for p in files {
        write(&f.ctx, p, p);
    }
    f
}

#[test]
fn star_matches_within_one_element() {
    let f = ctx_with(&["a.sh", "b.sh", "c.txt", "sub/d.sh"]);
    f.copy(action(vec![ctx_src("/*.sh")], "/bin/")).unwrap();
    assert_eq!(tree(&f.d("/bin")), ["a.sh", "b.sh"]);
}

#[test]
fn question_mark_and_classes() {
    let f = ctx_with(&["f1", "f2", "f3", "fa", "f10"]);
    f.copy(action(vec![ctx_src("/f?")], "/q/")).unwrap();
    assert_eq!(tree(&f.d("/q")), ["f1", "f2", "f3", "fa"]);
    f.copy(action(vec![ctx_src("/f[1-2]")], "/r/")).unwrap();
    assert_eq!(tree(&f.d("/r")), ["f1", "f2"]);
    f.copy(action(vec![ctx_src("/f[^1-2a]")], "/s/")).unwrap();
    assert_eq!(tree(&f.d("/s")), ["f3"]);
}

#[test]
fn escapes_and_classes_match_literal_wildcard_characters() {
    let f = ctx_with(&["a*b", "axb", "a?c"]);
    // `\*` is a literal star inside a pattern that has another wildcard.
    f.copy(action(vec![ctx_src("/a\\*?")], "/e/")).unwrap();
    assert_eq!(tree(&f.d("/e")), ["a*b"]);
    f.copy(action(vec![ctx_src("/a[?]?")], "/g/")).unwrap();
    assert_eq!(tree(&f.d("/g")), ["a?c"]);
}

#[test]
fn wildcard_in_a_directory_element() {
    let f = ctx_with(&[
        "packages/a/package.json",
        "packages/b/package.json",
        "packages/b/other.json",
    ]);
    f.copy(action(vec![ctx_src("/packages/*/package.json")], "/p/"))
        .unwrap();
    // Each match lands under its base name: the second overwrites the first.
    assert_eq!(tree(&f.d("/p")), ["package.json"]);
    assert_eq!(read(&f.d("/p/package.json")), "packages/b/package.json");
}

#[test]
fn matched_directories_copy_their_contents() {
    let f = ctx_with(&["dir1/a", "dir2/b", "dirfile"]);
    f.copy(action(vec![ctx_src("/dir*")], "/o/")).unwrap();
    assert_eq!(tree(&f.d("/o")), ["a", "b", "dirfile"]);
}

#[test]
fn no_match_is_allowed_when_the_op_says_so() {
    let f = ctx_with(&["a"]);
    let stats = f.copy(action(vec![ctx_src("/*.none")], "/o/")).unwrap();
    assert_eq!(stats, FileStats::default());
    let mut s = ctx_src("/*.none");
    s.allow_empty_wildcard = false;
    let err = f.copy(action(vec![s], "/o/")).unwrap_err();
    assert_eq!(err.to_string(), "\"/*.none\": not found");
}

#[test]
fn bad_pattern_is_an_error() {
    let f = ctx_with(&["a"]);
    let err = f.copy(action(vec![ctx_src("/[a")], "/o/")).unwrap_err();
    assert!(matches!(err, FileOpError::Pattern { .. }), "{err}");
}

#[test]
fn symlinked_directories_are_not_entered_below_the_wildcard() {
    let f = ctx_with(&["real/x.txt"]);
    symlink("real", f.ctx.join("link")).unwrap();
    f.copy(action(vec![ctx_src("/*/x.txt")], "/o/")).unwrap();
    assert_eq!(tree(&f.d("/o")), ["x.txt"]);
    // A matched symlink itself is followed (the source path's last element).
    let g = ctx_with(&["t.txt"]);
    symlink("t.txt", g.ctx.join("l.txt")).unwrap();
    g.copy(action(vec![ctx_src("/l*")], "/o/")).unwrap();
    assert!(fs::symlink_metadata(g.d("/o/l.txt")).unwrap().is_file());
}

#[test]
fn wildcard_matching_one_file_may_name_the_file() {
    let f = ctx_with(&["target/app-1.0.jar"]);
    f.copy(action(vec![ctx_src("/target/*.jar")], "/app.jar"))
        .unwrap();
    assert_eq!(read(&f.d("/app.jar")), "target/app-1.0.jar");
}

#[test]
fn wildcard_matching_several_files_needs_a_directory() {
    let f = ctx_with(&["package.json", "package-lock.json"]);
    let err = f
        .copy(action(vec![ctx_src("/package*.json")], "/app/x"))
        .unwrap_err();
    assert!(matches!(err, FileOpError::MultipleSources(_)));
    f.copy(action(vec![ctx_src("/package*.json")], "/app/"))
        .unwrap();
    assert_eq!(tree(&f.d("/app")), ["package-lock.json", "package.json"]);
}
