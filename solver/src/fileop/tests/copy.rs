//! Placement rules, directories, symlinks, hard links, modes, times and xattrs.

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};

use super::*;

#[test]
fn file_to_a_new_path_becomes_that_file() {
    let f = fx();
    write(&f.ctx, "a.txt", "A");
    f.copy(action(vec![ctx_src("/a.txt")], "/dst")).unwrap();
    assert_eq!(read(&f.d("/dst")), "A");
}

#[test]
fn trailing_slash_makes_a_directory() {
    let f = fx();
    write(&f.ctx, "a.txt", "A");
    f.copy(action(vec![ctx_src("/a.txt")], "/dst/")).unwrap();
    assert_eq!(read(&f.d("/dst/a.txt")), "A");
    assert_eq!(mode(&f.d("/dst")), 0o755);
}

#[test]
fn file_onto_an_existing_directory_goes_inside() {
    let f = fx();
    write(&f.ctx, "a.txt", "A");
    fs::create_dir(f.d("/dst")).unwrap();
    f.copy(action(vec![ctx_src("/a.txt")], "/dst")).unwrap();
    assert_eq!(read(&f.d("/dst/a.txt")), "A");
}

#[test]
fn file_replaces_an_existing_file() {
    let f = fx();
    write(&f.ctx, "a.txt", "new");
    write(&f.dest, "dst", "old");
    f.copy(action(vec![ctx_src("/a.txt")], "/dst")).unwrap();
    assert_eq!(read(&f.d("/dst")), "new");
}

#[test]
fn missing_parents_are_created_0755() {
    let f = fx();
    write(&f.ctx, "a.txt", "A");
    f.copy(action(vec![ctx_src("/a.txt")], "/x/y/z.txt"))
        .unwrap();
    assert_eq!(read(&f.d("/x/y/z.txt")), "A");
    assert_eq!(mode(&f.d("/x")), 0o755);
    assert_eq!(mode(&f.d("/x/y")), 0o755);
}

#[test]
fn directory_copies_its_contents_not_itself() {
    let f = fx();
    write(&f.ctx, "src/a.txt", "A");
    write(&f.ctx, "src/sub/b.txt", "B");
    f.copy(action(vec![ctx_src("/src")], "/app")).unwrap();
    assert_eq!(tree(&f.d("/app")), ["a.txt", "sub/", "sub/b.txt"]);
    // Same with the trailing slash, and into an existing directory.
    f.copy(action(vec![ctx_src("/src/")], "/app2/")).unwrap();
    assert_eq!(tree(&f.d("/app2")), ["a.txt", "sub/", "sub/b.txt"]);
    write(&f.dest, "app3/keep", "k");
    f.copy(action(vec![ctx_src("/src")], "/app3")).unwrap();
    assert_eq!(tree(&f.d("/app3")), ["a.txt", "keep", "sub/", "sub/b.txt"]);
}

#[test]
fn whole_context_copies_into_the_destination() {
    let f = fx();
    write(&f.ctx, "a", "1");
    write(&f.ctx, "d/b", "2");
    f.copy(action(vec![ctx_src("/")], "/app/")).unwrap();
    assert_eq!(tree(&f.d("/app")), ["a", "d/", "d/b"]);
}

#[test]
fn new_destination_directory_keeps_0755_but_takes_the_source_mtime() {
    let f = fx();
    write(&f.ctx, "src/a", "1");
    chmod(&f.ctx.join("src"), 0o700);
    set_mtime(&f.ctx.join("src"), 1_000_000);
    f.copy(action(vec![ctx_src("/src")], "/app")).unwrap();
    // BuildKit creates the destination itself as a parent (0755) and only restores the
    // source directory's times on it.
    assert_eq!(mode(&f.d("/app")), 0o755);
    assert_eq!(fs::metadata(f.d("/app")).unwrap().mtime(), 1_000_000);
}

#[test]
fn subdirectories_keep_their_modes_and_existing_ones_take_them() {
    let f = fx();
    write(&f.ctx, "src/sub/a", "1");
    chmod(&f.ctx.join("src/sub"), 0o750);
    fs::create_dir_all(f.d("/app/sub")).unwrap();
    chmod(&f.d("/app/sub"), 0o777);
    f.copy(action(vec![ctx_src("/src")], "/app")).unwrap();
    assert_eq!(mode(&f.d("/app/sub")), 0o750);
}

#[test]
fn file_modes_and_mtimes_are_preserved() {
    let f = fx();
    write(&f.ctx, "run.sh", "#!/bin/sh");
    chmod(&f.ctx.join("run.sh"), 0o4751);
    set_mtime(&f.ctx.join("run.sh"), 1_234_567_890);
    f.copy(action(vec![ctx_src("/run.sh")], "/bin/")).unwrap();
    let m = fs::metadata(f.d("/bin/run.sh")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4751);
    assert_eq!(m.mtime(), 1_234_567_890);
}

#[test]
fn directory_mtimes_survive_writing_their_children() {
    let f = fx();
    write(&f.ctx, "src/sub/deeper/a", "1");
    for d in ["src/sub", "src/sub/deeper"] {
        set_mtime(&f.ctx.join(d), 777);
    }
    f.copy(action(vec![ctx_src("/src")], "/app")).unwrap();
    for d in ["/app/sub", "/app/sub/deeper"] {
        assert_eq!(fs::metadata(f.d(d)).unwrap().mtime(), 777, "{d}");
    }
}

#[test]
fn symlinks_inside_a_tree_are_copied_as_links() {
    let f = fx();
    write(&f.ctx, "src/real", "R");
    symlink("real", f.ctx.join("src/rel")).unwrap();
    symlink("/etc/passwd", f.ctx.join("src/abs")).unwrap();
    symlink("missing", f.ctx.join("src/dangling")).unwrap();
    f.copy(action(vec![ctx_src("/src")], "/app")).unwrap();
    assert_eq!(fs::read_link(f.d("/app/rel")).unwrap(), Path::new("real"));
    assert_eq!(
        fs::read_link(f.d("/app/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(f.d("/app/dangling")).unwrap(),
        Path::new("missing")
    );
}

#[test]
fn a_symlink_source_is_followed_and_keeps_its_own_name() {
    let f = fx();
    write(&f.ctx, "real.txt", "R");
    symlink("real.txt", f.ctx.join("link.txt")).unwrap();
    write(&f.ctx, "dir/x", "X");
    symlink("dir", f.ctx.join("dirlink")).unwrap();
    f.copy(action(vec![ctx_src("/link.txt")], "/out/")).unwrap();
    let m = fs::symlink_metadata(f.d("/out/link.txt")).unwrap();
    assert!(m.is_file());
    assert_eq!(read(&f.d("/out/link.txt")), "R");
    f.copy(action(vec![ctx_src("/dirlink")], "/d")).unwrap();
    assert_eq!(tree(&f.d("/d")), ["x"]);
}

#[test]
fn without_follow_a_symlink_source_stays_a_link() {
    let f = fx();
    symlink("target", f.stage.join("l")).unwrap();
    let mut s = stage_src("/l");
    s.follow_symlinks = false;
    s.allow_wildcard = false;
    s.dir_contents_only = false;
    f.copy(action(vec![s], "/l2")).unwrap();
    assert_eq!(fs::read_link(f.d("/l2")).unwrap(), Path::new("target"));
}

#[test]
fn hard_links_within_one_copy_stay_linked() {
    let f = fx();
    write(&f.ctx, "src/a", "same");
    fs::hard_link(f.ctx.join("src/a"), f.ctx.join("src/b")).unwrap();
    write(&f.ctx, "src/sub/placeholder", "p");
    fs::hard_link(f.ctx.join("src/a"), f.ctx.join("src/sub/c")).unwrap();
    let stats = f.copy(action(vec![ctx_src("/src")], "/app")).unwrap();
    let ino = |p: &str| fs::metadata(f.d(p)).unwrap().ino();
    assert_eq!(ino("/app/a"), ino("/app/b"));
    assert_eq!(ino("/app/a"), ino("/app/sub/c"));
    assert_ne!(ino("/app/a"), ino("/app/sub/placeholder"));
    assert_eq!(stats.hardlinks, 2);
    assert_eq!(fs::metadata(f.d("/app/a")).unwrap().nlink(), 3);
}

#[test]
fn user_xattrs_are_copied() {
    let f = fx();
    write(&f.ctx, "a", "1");
    if let Err(e) = xattr::set(f.ctx.join("a"), "user.rbuild", b"v") {
        eprintln!("skipping user_xattrs_are_copied: filesystem has no user xattrs ({e})");
        return;
    }
    f.copy(action(vec![ctx_src("/a")], "/a")).unwrap();
    assert_eq!(
        xattr::get(f.d("/a"), "user.rbuild").unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

#[test]
fn several_sources_into_a_directory() {
    let f = fx();
    write(&f.ctx, "a", "1");
    write(&f.ctx, "b", "2");
    write(&f.ctx, "d/c", "3");
    f.copy(action(
        vec![ctx_src("/a"), ctx_src("/b"), ctx_src("/d")],
        "/out/",
    ))
    .unwrap();
    assert_eq!(tree(&f.d("/out")), ["a", "b", "c"]);
}

#[test]
fn several_files_need_a_directory_destination() {
    let f = fx();
    write(&f.ctx, "a", "1");
    write(&f.ctx, "b", "2");
    let err = f
        .copy(action(vec![ctx_src("/a"), ctx_src("/b")], "/out"))
        .unwrap_err();
    assert!(matches!(err, FileOpError::MultipleSources(_)), "{err}");
    assert!(
        err.to_string()
            .contains("must be a directory and end with a /")
    );
    assert!(!f.d("/out").exists(), "nothing written");
    // An existing directory is fine without the slash.
    fs::create_dir(f.d("/out")).unwrap();
    f.copy(action(vec![ctx_src("/a"), ctx_src("/b")], "/out"))
        .unwrap();
    assert_eq!(tree(&f.d("/out")), ["a", "b"]);
}

#[test]
fn several_directories_merge_into_a_new_destination() {
    // BuildKit's own exclude tests copy `dir*` onto a new path without a slash.
    let f = fx();
    write(&f.ctx, "dir1/a", "1");
    write(&f.ctx, "dir2/b", "2");
    f.copy(action(vec![ctx_src("/dir*")], "/5")).unwrap();
    assert_eq!(tree(&f.d("/5")), ["a", "b"]);
}

#[test]
fn missing_source_is_not_found_naming_the_path() {
    let f = fx();
    let err = f
        .copy(action(vec![ctx_src("/nope.txt")], "/x"))
        .unwrap_err();
    assert!(matches!(err, FileOpError::NotFound(_)));
    assert_eq!(err.to_string(), "\"/nope.txt\": not found");
}

#[test]
fn a_file_cannot_replace_a_directory() {
    let f = fx();
    write(&f.ctx, "a", "1");
    write(&f.dest, "out/a/keep", "k");
    let err = f.copy(action(vec![ctx_src("/a")], "/out/")).unwrap_err();
    assert!(matches!(err, FileOpError::ReplaceDirectory(_)), "{err}");
    assert!(err.to_string().contains("/out/a"), "{err}");
}

#[test]
fn a_directory_cannot_be_copied_onto_a_file() {
    let f = fx();
    write(&f.ctx, "d/x", "1");
    write(&f.dest, "out", "file");
    let err = f.copy(action(vec![ctx_src("/d")], "/out")).unwrap_err();
    assert!(matches!(err, FileOpError::NotADirectory(_)), "{err}");
    // Nor can a trailing-slash destination be a file.
    write(&f.ctx, "a", "1");
    let err = f.copy(action(vec![ctx_src("/a")], "/out/")).unwrap_err();
    assert!(matches!(err, FileOpError::NotADirectory(_)), "{err}");
}

#[test]
fn inline_document_copies_like_the_front_end_lowers_it() {
    // COPY <<EOF /etc/motd: a Mkfile in scratch, then a plain single-file copy.
    let f = fx();
    let mk = FileOp::Mkfile(rbuild_graph::MkfileAction {
        path: "/EOF".into(),
        mode: 0o644,
        data: "hello\n".into(),
        owner: None,
    });
    apply(
        &mk,
        &f.stage,
        &[FileSource {
            root: &f.stage,
            ignore: None,
            keep_owner: true,
        }],
        &CancelToken::new(),
    )
    .unwrap();
    let mut s = stage_src("/EOF");
    s.follow_symlinks = false;
    s.allow_wildcard = false;
    s.allow_empty_wildcard = false;
    s.dir_contents_only = false;
    let mut a = action(vec![s], "/etc/motd");
    a.chmod = Some("0600".into());
    f.copy(a).unwrap();
    assert_eq!(read(&f.d("/etc/motd")), "hello\n");
    assert_eq!(mode(&f.d("/etc/motd")), 0o600);
}

#[test]
fn stats_count_what_was_written() {
    let f = fx();
    write(&f.ctx, "src/a", "12345");
    write(&f.ctx, "src/d/b", "67");
    symlink("a", f.ctx.join("src/l")).unwrap();
    let s = f.copy(action(vec![ctx_src("/src")], "/app")).unwrap();
    assert_eq!((s.files, s.symlinks, s.bytes), (2, 1, 7));
    // `/app` is created as the destination, `d` as a copied directory.
    assert_eq!(s.dirs, 1);
}

#[test]
fn many_files_copy_in_one_walk() {
    // 600 files in 20 directories: the parallel path, checked for completeness (the
    // 20,000-file tree is a benchmark, not a test: creating it takes seconds here).
    let f = fx();
    for d in 0..20 {
        let dir = f.ctx.join(format!("tree/d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for i in 0..30 {
            fs::write(dir.join(format!("f{i:02}")), format!("{d}-{i}")).unwrap();
        }
    }
    let s = f.copy(action(vec![ctx_src("/tree")], "/t")).unwrap();
    assert_eq!(s.files, 600);
    assert_eq!(s.dirs, 20);
    for d in 0..20 {
        let dir = f.d(&format!("/t/d{d:02}"));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 30);
        assert_eq!(read(&dir.join("f29")), format!("{d}-29"));
    }
}

#[test]
fn cancellation_stops_the_copy_with_an_error() {
    let f = fx();
    write(&f.ctx, "a", "1");
    let cancel = CancelToken::new();
    cancel.cancel();
    let err = apply(
        &FileOp::Copy(action(vec![ctx_src("/a")], "/a")),
        &f.dest,
        &f.inputs(),
        &cancel,
    )
    .unwrap_err();
    assert!(matches!(err, FileOpError::Cancelled));
    assert!(!f.d("/a").exists());
}

#[test]
fn a_source_index_beyond_the_inputs_is_an_error() {
    let f = fx();
    let mut s = ctx_src("/a");
    s.input = 7;
    let err = f.copy(action(vec![s], "/a")).unwrap_err();
    assert!(matches!(err, FileOpError::MissingInput(7)));
}

pub(super) fn set_mtime(p: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

#[test]
fn large_file_contents_are_copied_exactly() {
    let f = fx();
    let data: Vec<u8> = (0..3_000_017u32).map(|i| (i % 251) as u8).collect();
    fs::write(f.ctx.join("big"), &data).unwrap();
    let s = f.copy(action(vec![ctx_src("/big")], "/big")).unwrap();
    assert_eq!(s.bytes, data.len() as u64);
    assert_eq!(fs::read(f.d("/big")).unwrap(), data);
}

#[test]
fn fifos_and_device_nodes_are_recreated() {
    use rustix::fs::{FileType, Mode, mknodat};
    let f = fx();
    fs::create_dir(f.stage.join("dev")).unwrap();
    mknodat(
        rustix::fs::CWD,
        f.stage.join("dev/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let root = is_root("fifos_and_device_nodes_are_recreated (device node)");
    if root {
        mknodat(
            rustix::fs::CWD,
            f.stage.join("dev/null"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
    }
    f.copy(action(vec![stage_src("/dev")], "/dev")).unwrap();
    let fifo = fs::symlink_metadata(f.d("/dev/fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
    assert_eq!(fifo.mode() & 0o7777, 0o640);
    if root {
        let null = fs::symlink_metadata(f.d("/dev/null")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &null.file_type()
        ));
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    }
}

#[test]
fn without_create_dest_path_the_parent_must_exist() {
    let f = fx();
    write(&f.ctx, "a", "1");
    let mut a = action(vec![ctx_src("/a")], "/missing/a");
    a.create_dest_path = false;
    let err = f.copy(a.clone()).unwrap_err();
    assert_eq!(err.to_string(), "\"/missing\": not found");
    fs::create_dir(f.d("/missing")).unwrap();
    f.copy(a).unwrap();
    assert_eq!(read(&f.d("/missing/a")), "1");
}
