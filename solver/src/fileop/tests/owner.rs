//! Owners: context files become 0:0, stage files keep theirs, `--chown` through the
//! destination's passwd and group.

use std::os::unix::fs::lchown;

use super::*;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:1001:\nstaff:x:50:app\n";

fn with_users(f: &Fx) {
    write(&f.dest, "etc/passwd", PASSWD);
    write(&f.dest, "etc/group", GROUP);
}

fn chown_action(src: CopySource, dest: &str, spec: &str) -> CopyAction {
    let mut a = action(vec![src], dest);
    a.chown = Some(spec.to_owned());
    a
}

#[test]
fn context_files_become_root_owned() {
    if !is_root("context_files_become_root_owned") {
        return;
    }
    let f = fx();
    write(&f.ctx, "d/a", "1");
    lchown(f.ctx.join("d/a"), Some(1234), Some(5678)).unwrap();
    lchown(f.ctx.join("d"), Some(1234), Some(5678)).unwrap();
    write(&f.ctx, "d/sub/b", "2");
    lchown(f.ctx.join("d/sub"), Some(42), Some(42)).unwrap();
    f.copy(action(vec![ctx_src("/d")], "/o")).unwrap();
    assert_eq!(owner(&f.d("/o/a")), (0, 0));
    assert_eq!(owner(&f.d("/o/sub")), (0, 0));
}

#[test]
fn stage_files_keep_their_owners() {
    if !is_root("stage_files_keep_their_owners") {
        return;
    }
    let f = fx();
    write(&f.stage, "d/a", "1");
    lchown(f.stage.join("d/a"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::symlink("a", f.stage.join("d/l")).unwrap();
    lchown(f.stage.join("d/l"), Some(7), Some(8)).unwrap();
    f.copy(action(vec![stage_src("/d")], "/o")).unwrap();
    assert_eq!(owner(&f.d("/o/a")), (1234, 5678));
    assert_eq!(owner(&f.d("/o/l")), (7, 8));
}

#[test]
fn chown_numeric_user_is_also_the_group() {
    if !is_root("chown_numeric_user_is_also_the_group") {
        return;
    }
    let f = fx();
    write(&f.ctx, "a", "1");
    f.copy(chown_action(ctx_src("/a"), "/a", "1500")).unwrap();
    assert_eq!(owner(&f.d("/a")), (1500, 1500));
    f.copy(chown_action(ctx_src("/a"), "/b", "1500:77"))
        .unwrap();
    assert_eq!(owner(&f.d("/b")), (1500, 77));
}

#[test]
fn chown_names_resolve_through_the_destination() {
    if !is_root("chown_names_resolve_through_the_destination") {
        return;
    }
    let f = fx();
    with_users(&f);
    write(&f.ctx, "a", "1");
    f.copy(chown_action(ctx_src("/a"), "/a", "app")).unwrap();
    assert_eq!(owner(&f.d("/a")), (1000, 1001));
    f.copy(chown_action(ctx_src("/a"), "/b", "app:staff"))
        .unwrap();
    assert_eq!(owner(&f.d("/b")), (1000, 50));
    f.copy(chown_action(ctx_src("/a"), "/c", "app:")).unwrap();
    assert_eq!(owner(&f.d("/c")), (1000, 1001));
    f.copy(chown_action(ctx_src("/a"), "/e", "0:staff"))
        .unwrap();
    assert_eq!(owner(&f.d("/e")), (0, 50));
}

#[test]
fn chown_reads_passwd_through_symlinks_inside_the_root() {
    if !is_root("chown_reads_passwd_through_symlinks_inside_the_root") {
        return;
    }
    let f = fx();
    write(&f.dest, "real/passwd", PASSWD);
    std::fs::create_dir(f.d("/etc")).unwrap();
    // An absolute target is taken inside the root, not from the host.
    std::os::unix::fs::symlink("/real/passwd", f.d("/etc/passwd")).unwrap();
    write(&f.ctx, "a", "1");
    f.copy(chown_action(ctx_src("/a"), "/a", "app")).unwrap();
    assert_eq!(owner(&f.d("/a")), (1000, 1001));
}

#[test]
fn unknown_chown_names_are_errors() {
    let f = fx();
    with_users(&f);
    write(&f.ctx, "a", "1");
    let err = f
        .copy(chown_action(ctx_src("/a"), "/a", "nobody"))
        .unwrap_err();
    assert!(matches!(err, FileOpError::Chown { .. }), "{err}");
    let err = f
        .copy(chown_action(ctx_src("/a"), "/a", "app:nogroup"))
        .unwrap_err();
    assert!(matches!(err, FileOpError::Chown { .. }), "{err}");
    // No passwd at all: a name cannot resolve.
    let g = fx();
    write(&g.ctx, "a", "1");
    assert!(g.copy(chown_action(ctx_src("/a"), "/a", "app")).is_err());
    let err = g
        .copy(chown_action(ctx_src("/a"), "/a", "99999999999"))
        .unwrap_err();
    assert!(matches!(err, FileOpError::Chown { .. }), "{err}");
}

#[test]
fn chown_applies_to_the_tree_and_the_created_parents() {
    if !is_root("chown_applies_to_the_tree_and_the_created_parents") {
        return;
    }
    let f = fx();
    write(&f.ctx, "d/sub/a", "1");
    std::fs::create_dir(f.d("/existing")).unwrap();
    f.copy(chown_action(
        ctx_src("/d"),
        "/existing/new/deeper",
        "1000:1000",
    ))
    .unwrap();
    for p in [
        "/existing/new",
        "/existing/new/deeper",
        "/existing/new/deeper/sub",
        "/existing/new/deeper/sub/a",
    ] {
        assert_eq!(owner(&f.d(p)), (1000, 1000), "{p}");
    }
    // A directory that was already there keeps its owner.
    assert_eq!(owner(&f.d("/existing")), (0, 0));
}
