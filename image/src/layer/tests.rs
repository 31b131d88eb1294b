//! Tests of diff and apply together: round trips, whiteouts, overlayfs, determinism and the
//! malicious-tar suite.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use super::fsmeta::set_mtime;
use super::tarfmt::{Entry, Kind, TarWriter};
use super::*;
use crate::compress::{CompressWriter, Compression};

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Everything a layer must preserve about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    content: Vec<u8>,
    link: Vec<u8>,
    rdev: u64,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// The first path (in sorted order) sharing this inode, for multiply linked files.
    hardlink_of: Option<String>,
}

fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<String, Node>,
        inodes: &mut BTreeMap<(u64, u64), String>,
    ) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let p = dir.join(&name);
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let mut hardlink_of = None;
            if ft.is_file() && m.nlink() > 1 {
                let key = (m.dev(), m.ino());
                match inodes.get(&key) {
                    Some(first) => hardlink_of = Some(first.clone()),
                    None => {
                        inodes.insert(key, rel.clone());
                    }
                }
            }
            let node = Node {
                kind: m.mode() & nix::libc::S_IFMT,
                mode: if ft.is_symlink() {
                    0
                } else {
                    m.mode() & 0o7777
                },
                uid: m.uid(),
                gid: m.gid(),
                mtime: if ft.is_dir() { 0 } else { m.mtime() },
                content: if ft.is_file() {
                    fs::read(&p).unwrap()
                } else {
                    Vec::new()
                },
                link: if ft.is_symlink() {
                    fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()
                } else {
                    Vec::new()
                },
                rdev: m.rdev(),
                xattrs: fsmeta::read_xattrs(&p).unwrap(),
                hardlink_of,
            };
            out.insert(rel, node);
            if ft.is_dir() {
                walk(root, &p, out, inodes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out, &mut BTreeMap::new());
    out
}

/// Directory mtimes, checked separately: they are set last by apply.
fn dir_mtimes(root: &Path) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (rel, node) in snapshot(root) {
        if node.kind == nix::libc::S_IFDIR {
            out.insert(
                rel.clone(),
                fs::symlink_metadata(root.join(&rel)).unwrap().mtime(),
            );
        }
    }
    out
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
}

fn chmod(root: &Path, rel: &str, mode: u32) {
    fs::set_permissions(root.join(rel), fs::Permissions::from_mode(mode)).unwrap();
}

/// Sets every mtime under `root` to a fixed value, deepest first.
fn fix_times(root: &Path, secs: i64) {
    let snap = snapshot(root);
    for rel in snap.keys().rev() {
        set_mtime(&root.join(rel), secs).unwrap();
    }
    set_mtime(root, secs).unwrap();
}

/// A tree with every kind of entry a layer can carry (devices and owners only as root).
fn build_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    write(root, "etc/hostname", b"rbuild\n");
    write(root, "etc/empty", b"");
    write(root, "bin/tool", &vec![7u8; 70_000]);
    chmod(root, "bin/tool", 0o4755);
    fs::create_dir_all(root.join("tmp")).unwrap();
    chmod(root, "tmp", 0o1777);
    let long = format!("deep/{}/{}", "d".repeat(120), "f".repeat(90));
    write(root, &long, b"long name");
    symlink("hostname", root.join("etc/hn")).unwrap();
    symlink("/etc/hostname", root.join("abs-link")).unwrap();
    symlink("t".repeat(150), root.join("long-link")).unwrap();
    fs::hard_link(root.join("bin/tool"), root.join("bin/tool-alias")).unwrap();
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    xattr::set(root.join("etc/hostname"), "user.rbuild.test", b"value").unwrap();
    xattr::set(root.join("etc"), "user.dir.attr", b"d").unwrap();
    fs::create_dir_all(root.join("ro")).unwrap();
    write(root, "ro/file", b"inside a read-only dir");
    chmod(root, "ro", 0o555);
    if is_root() {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        fs::create_dir_all(root.join("dev")).unwrap();
        mknod(
            &root.join("dev/null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(1, 3),
        )
        .unwrap();
        mknod(
            &root.join("dev/loop9"),
            SFlag::S_IFBLK,
            Mode::from_bits_truncate(0o660),
            makedev(7, 9),
        )
        .unwrap();
        write(root, "home/user/owned", b"mine");
        std::os::unix::fs::lchown(root.join("home/user/owned"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("home/user"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("etc/hn"), Some(42), Some(43)).unwrap();
        // setuid survives only if chmod comes after chown.
        std::os::unix::fs::lchown(root.join("bin/tool"), Some(1), Some(1)).unwrap();
        chmod(root, "bin/tool", 0o4755);
        xattr::set(root.join("bin/tool"), "trusted.rbuild", b"t").unwrap();
    } else {
        eprintln!("not root: devices and owners are left out of the tree");
    }
    fix_times(root, 1_600_000_000);
}

fn archive(root: &Path, opts: &DiffOptions) -> Vec<u8> {
    archive_tree(root, Vec::new(), opts).unwrap().0
}

fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(bytes);
    ar.entries()
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path().unwrap().to_string_lossy().into_owned();
            p.trim_end_matches('/').to_owned()
        })
        .collect()
}

#[test]
fn roundtrip_preserves_everything() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_tree(&src);
    let bytes = archive(&src, &DiffOptions::default());
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let stats = apply(&bytes[..], &dst, &ApplyOptions::default()).unwrap();
    assert_eq!(stats.whiteouts, 0);
    assert_eq!(stats.skipped, 0);
    assert_eq!(snapshot(&dst), snapshot(&src));
    assert_eq!(dir_mtimes(&dst), dir_mtimes(&src));
    assert_eq!(
        fs::symlink_metadata(dst.join("bin/tool")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::symlink_metadata(dst.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    // The hard link became a link entry, written after the file it points to.
    let names = tar_names(&bytes);
    assert!(
        names.iter().position(|n| n == "bin/tool").unwrap()
            < names.iter().position(|n| n == "bin/tool-alias").unwrap()
    );
}

#[test]
fn compressed_layers_apply_the_same() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_tree(&src);
    let plain = archive(&src, &DiffOptions::default());
    for c in [Compression::DEFAULT_GZIP, Compression::DEFAULT_ZSTD] {
        let mut w = CompressWriter::new(Vec::new(), c).unwrap();
        w.write_all(&plain).unwrap();
        let (blob, d) = w.finish().unwrap();
        assert_eq!(d.diff_id, crate::Sha256Digest::of(&plain));
        let dst = t.path().join(format!("dst-{c:?}"));
        fs::create_dir(&dst).unwrap();
        apply(&blob[..], &dst, &ApplyOptions::default()).unwrap();
        assert_eq!(snapshot(&dst), snapshot(&src), "{c:?}");
    }
}

#[test]
fn same_tree_gives_identical_bytes() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let b = t.path().join("b");
    build_tree(&a);
    build_tree(&b);
    let opts = DiffOptions::default();
    let ta = archive(&a, &opts);
    assert_eq!(ta, archive(&a, &opts));
    assert_eq!(ta, archive(&b, &opts));
    // A change anywhere changes the bytes.
    write(&b, "etc/empty", b"x");
    set_mtime(&b.join("etc/empty"), 1_600_000_000).unwrap();
    assert_ne!(ta, archive(&b, &opts));
}

#[test]
fn headers_are_normalised_and_epoch_clamps() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_tree(&src);
    let bytes = archive(
        &src,
        &DiffOptions {
            source_date_epoch: Some(1_000),
        },
    );
    let mut ar = tar::Archive::new(&bytes[..]);
    let mut paths = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(h.mtime().unwrap(), 1_000);
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        paths.push(e.path().unwrap().into_owned());
    }
    // Parents before children.
    for (i, p) in paths.iter().enumerate() {
        if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
            let pi = paths.iter().position(|q| q == parent).unwrap();
            assert!(pi < i, "{parent:?} after {p:?}");
        }
    }
}

/// Builds a tar from raw entries (names are written as given, `..` and all).
fn raw_tar(entries: &[(Entry, &[u8])]) -> Vec<u8> {
    let mut w = TarWriter::new(Vec::new());
    for (e, data) in entries {
        let mut e = e.clone();
        if e.kind == Kind::File {
            e.size = data.len() as u64;
        }
        let mut d: &[u8] = data;
        w.append(&e, Some(&mut d)).unwrap();
    }
    w.finish().unwrap()
}

fn file(path: &str) -> Entry {
    let mut e = Entry::new(path.as_bytes().to_vec(), Kind::File);
    e.mode = 0o644;
    e
}

fn dir(path: &str) -> Entry {
    let mut e = Entry::new(path.as_bytes().to_vec(), Kind::Dir);
    e.mode = 0o755;
    e
}

fn link(path: &str, kind: Kind, target: &str) -> Entry {
    let mut e = Entry::new(path.as_bytes().to_vec(), kind);
    e.mode = 0o777;
    e.link = target.as_bytes().to_vec();
    e
}

#[test]
fn whiteouts_and_opaque_dirs_apply() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    write(&root, "gone", b"x");
    write(&root, "gonedir/a/b", b"x");
    write(&root, "keep", b"x");
    write(&root, "opq/old", b"x");
    write(&root, "opq/sub/oldsub", b"x");
    write(&root, "opq/sub2/old", b"x");
    let layer = raw_tar(&[
        (file(".wh.gone"), b""),
        (file(".wh.gonedir"), b""),
        (file(".wh.never-existed"), b""),
        (file("missing-dir/.wh.x"), b""),
        (dir("opq"), b""),
        (file("opq/-early"), b"same layer, before the marker"),
        (file("opq/.wh..wh..opq"), b""),
        (file("opq/new"), b"new"),
        (dir("opq/sub"), b""),
        (file("opq/sub/newsub"), b"n"),
        (file("opq/sub2/implicit"), b"i"),
        (file("fresh"), b"f"),
        // A whiteout never hides an entry of its own layer.
        (file(".wh.fresh"), b""),
        (file(".wh..wh.plnk"), b""),
    ]);
    let stats = apply(&layer[..], &root, &ApplyOptions::default()).unwrap();
    assert_eq!(stats.whiteouts, 7);
    let names: Vec<String> = snapshot(&root).into_keys().collect();
    assert_eq!(
        names,
        [
            "fresh",
            "keep",
            "opq",
            "opq/-early",
            "opq/new",
            "opq/sub",
            "opq/sub/newsub",
            "opq/sub2",
            "opq/sub2/implicit"
        ]
    );
    assert!(!root.join(".wh.gone").exists());
}

#[test]
fn invalid_whiteouts_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    for name in [".wh.", "a/.wh..."] {
        let layer = raw_tar(&[(file(name), b"")]);
        assert!(
            matches!(
                apply(&layer[..], &root, &ApplyOptions::default()),
                Err(ApplyError::InvalidWhiteout(_))
            ),
            "{name}"
        );
    }
}

#[test]
fn entries_replace_lower_entries_of_another_type() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    write(&root, "was-file", b"x");
    write(&root, "was-dir/child", b"x");
    write(&root, "stays-dir/lower", b"lower");
    let layer = raw_tar(&[
        (dir("was-file"), b""),
        (file("was-dir"), b"now a file"),
        (dir("stays-dir"), b""),
        (file("stays-dir/upper"), b"upper"),
    ]);
    apply(&layer[..], &root, &ApplyOptions::default()).unwrap();
    assert!(root.join("was-file").is_dir());
    assert_eq!(fs::read(root.join("was-dir")).unwrap(), b"now a file");
    // Directories merge with the lower directory.
    assert!(root.join("stays-dir/lower").exists());
    assert!(root.join("stays-dir/upper").exists());
}

#[test]
fn corrupt_and_unsupported_input_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    let mut layer = raw_tar(&[(file("a"), b"data")]);
    layer[150] ^= 0x55; // header checksum no longer matches
    assert!(matches!(
        apply(&layer[..], &root, &ApplyOptions::default()),
        Err(ApplyError::Read(_))
    ));
    // Truncated gzip stream.
    let plain = raw_tar(&[(file("b"), &[1u8; 10_000])]);
    let mut w = CompressWriter::new(Vec::new(), Compression::DEFAULT_GZIP).unwrap();
    w.write_all(&plain).unwrap();
    let (blob, _) = w.finish().unwrap();
    assert!(apply(&blob[..blob.len() / 2], &root, &ApplyOptions::default()).is_err());
    // GNU sparse entries are refused.
    let mut h = tar::Header::new_gnu();
    h.set_path("sparse").unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(0);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(&[0u8; 1024]);
    assert!(matches!(
        apply(&raw[..], &root, &ApplyOptions::default()),
        Err(ApplyError::Unsupported { .. } | ApplyError::Read(_))
    ));
    assert!(matches!(
        apply(&raw[..], &root.join("nope"), &ApplyOptions::default()),
        Err(ApplyError::Destination(_))
    ));
}

#[test]
fn tree_diff_records_changes_and_applies_back() {
    let t = tempfile::tempdir().unwrap();
    let lower = t.path().join("lower");
    write(&lower, "same", b"same");
    write(&lower, "content", b"aaaa");
    write(&lower, "touched", b"unchanged bytes");
    write(&lower, "chmod", b"c");
    write(&lower, "deleted", b"d");
    write(&lower, "deleted-dir/x/y", b"d");
    write(&lower, "file-to-dir", b"f");
    write(&lower, "dir-to-file/x", b"f");
    write(&lower, "nested/deep/unchanged", b"u");
    write(&lower, "nested/deep/changed", b"1");
    symlink("a", lower.join("relink")).unwrap();
    fix_times(&lower, 1_500_000_000);
    let upper = t.path().join("upper");
    fs::create_dir(&upper).unwrap();
    copy_tree(&lower, &upper);
    fix_times(&upper, 1_500_000_000);
    // Changes.
    write(&upper, "content", b"bbbb"); // same size, new mtime
    set_mtime(&upper.join("touched"), 1_700_000_000).unwrap(); // new mtime, same bytes
    chmod(&upper, "chmod", 0o600);
    fs::remove_file(upper.join("deleted")).unwrap();
    fs::remove_dir_all(upper.join("deleted-dir")).unwrap();
    fs::remove_file(upper.join("file-to-dir")).unwrap();
    write(&upper, "file-to-dir/inner", b"i");
    fs::remove_dir_all(upper.join("dir-to-file")).unwrap();
    write(&upper, "dir-to-file", b"file now");
    write(&upper, "nested/deep/changed", b"2");
    write(&upper, "added/new", b"n");
    fs::remove_file(upper.join("relink")).unwrap();
    symlink("b", upper.join("relink")).unwrap();
    set_mtime(&upper.join("content"), 1_600_000_000).unwrap();

    let (bytes, stats) = diff_trees(&lower, &upper, Vec::new(), &DiffOptions::default()).unwrap();
    assert_eq!(stats.whiteouts, 2);
    let names = tar_names(&bytes);
    assert_eq!(
        names,
        [
            "added",
            "added/new",
            "chmod",
            "content",
            ".wh.deleted",
            ".wh.deleted-dir",
            "dir-to-file",
            "file-to-dir",
            "file-to-dir/inner",
            "nested",
            "nested/deep",
            "nested/deep/changed",
            "relink",
        ]
    );
    // Applying the diff onto a copy of lower gives upper (the touched file keeps its old mtime).
    let applied = t.path().join("applied");
    fs::create_dir(&applied).unwrap();
    copy_tree(&lower, &applied);
    fix_times(&applied, 1_500_000_000);
    apply(&bytes[..], &applied, &ApplyOptions::default()).unwrap();
    let mut want = snapshot(&upper);
    want.get_mut("touched").unwrap().mtime = 1_500_000_000;
    assert_eq!(snapshot(&applied), want);
    // No changes, no entries.
    let (bytes, stats) = diff_trees(&lower, &lower, Vec::new(), &DiffOptions::default()).unwrap();
    assert_eq!(stats.entries, 0);
    assert_eq!(bytes.len(), 1024);
}

/// Copies a tree with metadata by round-tripping it through a layer.
fn copy_tree(from: &Path, to: &Path) {
    let bytes = archive(from, &DiffOptions::default());
    apply(&bytes[..], to, &ApplyOptions::default()).unwrap();
}

#[test]
fn overlay_upper_becomes_a_layer() {
    if !is_root() {
        eprintln!("skipping overlay_upper_becomes_a_layer: needs root to mount overlayfs");
        return;
    }
    use nix::mount::{MsFlags, mount, umount};
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, work, merged) = (
        t.path().join("lower"),
        t.path().join("upper"),
        t.path().join("work"),
        t.path().join("merged"),
    );
    write(&lower, "keep", b"k");
    write(&lower, "delete-me", b"d");
    write(&lower, "modify", b"old");
    write(&lower, "opaque/old1", b"o");
    write(&lower, "opaque/old2/x", b"o");
    write(&lower, "sub/deleted", b"s");
    write(&lower, "sub/kept", b"s");
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .unwrap();
    let changes = (|| -> std::io::Result<()> {
        fs::remove_file(merged.join("delete-me"))?;
        fs::write(merged.join("modify"), b"new contents")?;
        fs::remove_dir_all(merged.join("opaque"))?;
        fs::create_dir(merged.join("opaque"))?;
        fs::write(merged.join("opaque/new"), b"n")?;
        fs::remove_file(merged.join("sub/deleted"))?;
        fs::write(merged.join("added"), b"a")?;
        xattr::set(merged.join("added"), "user.kept", b"1")?;
        Ok(())
    })();
    let merged_snap = snapshot(&merged);
    umount(&merged).unwrap();
    changes.unwrap();

    let (bytes, stats) = diff_overlay_upper(&upper, Vec::new(), &DiffOptions::default()).unwrap();
    assert_eq!(stats.whiteouts, 3);
    assert_eq!(
        tar_names(&bytes),
        [
            "added",
            ".wh.delete-me",
            "modify",
            "opaque",
            "opaque/.wh..wh..opq",
            "opaque/new",
            "sub",
            "sub/.wh.deleted"
        ]
    );
    // No overlay attribute leaks into the layer.
    let mut ar = tar::Archive::new(&bytes[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for ext in exts {
                assert!(!ext.unwrap().key().unwrap().contains("overlay"));
            }
        }
    }
    // lower + layer == what the merged mount showed.
    let applied = t.path().join("applied");
    fs::create_dir(&applied).unwrap();
    copy_tree(&lower, &applied);
    apply(&bytes[..], &applied, &ApplyOptions::default()).unwrap();
    let got = snapshot(&applied);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        merged_snap.keys().collect::<Vec<_>>()
    );
    for (k, v) in &merged_snap {
        let g = &got[k];
        assert_eq!(
            (g.kind, g.mode, g.uid, g.gid, &g.content, &g.xattrs),
            (v.kind, v.mode, v.uid, v.gid, &v.content, &v.xattrs),
            "{k}"
        );
    }
}

#[test]
fn overlay_features_without_tar_form_are_errors() {
    if !is_root() {
        eprintln!(
            "skipping overlay_features_without_tar_form_are_errors: trusted xattrs need root"
        );
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir_all(upper.join("renamed")).unwrap();
    xattr::set(upper.join("renamed"), "trusted.overlay.redirect", b"/orig").unwrap();
    assert!(matches!(
        diff_overlay_upper(&upper, Vec::new(), &DiffOptions::default()),
        Err(DiffError::UnsupportedOverlay {
            feature: "redirect_dir",
            ..
        })
    ));
}

/// The malicious-tar suite: each layer tries to reach `outside`, a sibling of the root.
mod malicious {
    use super::*;

    struct Case {
        _t: tempfile::TempDir,
        top: std::path::PathBuf,
        root: std::path::PathBuf,
        outside: std::path::PathBuf,
    }

    fn case() -> Case {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().to_owned();
        let root = top.join("root");
        let outside = top.join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"sentinel").unwrap();
        Case {
            _t: t,
            top,
            root,
            outside,
        }
    }

    impl Case {
        fn apply(&self, layer: &[u8]) -> Result<ApplyStats, ApplyError> {
            apply(layer, &self.root, &ApplyOptions::default())
        }

        /// Nothing outside the root changed: the top holds only root and outside, and outside
        /// only the untouched sentinel.
        fn assert_contained(&self) {
            let mut top: Vec<_> = fs::read_dir(&self.top)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            top.sort();
            assert_eq!(top, ["outside", "root"]);
            let inside: Vec<_> = fs::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(inside, ["keep"]);
            let m = fs::symlink_metadata(self.outside.join("keep")).unwrap();
            assert!(m.is_file());
            assert_eq!(m.nlink(), 1, "sentinel gained a hard link");
            assert_eq!(fs::read(self.outside.join("keep")).unwrap(), b"sentinel");
            assert_eq!(m.mode() & 0o7777, 0o644);
        }

        fn outside_abs(&self) -> String {
            self.outside.to_string_lossy().into_owned()
        }
    }

    fn assert_path_error(r: Result<ApplyStats, ApplyError>, want: fn(&PathError) -> bool) {
        match r {
            Err(ApplyError::Path { source, .. }) if want(&source) => {}
            other => panic!("expected a path error, got {other:?}"),
        }
    }

    #[test]
    fn dotdot_names() {
        for name in [
            "../outside/evil",
            "a/../../outside/evil",
            "./../x",
            "..",
            "a/..",
        ] {
            let c = case();
            assert_path_error(c.apply(&raw_tar(&[(file(name), b"evil")])), |e| {
                matches!(e, PathError::ParentComponent)
            });
            c.assert_contained();
        }
    }

    #[test]
    fn dotdot_in_long_pax_name() {
        let c = case();
        let name = format!("{}/../../../outside/evil", "a/".repeat(60));
        assert!(name.len() > 100);
        assert_path_error(c.apply(&raw_tar(&[(file(&name), b"evil")])), |e| {
            matches!(e, PathError::ParentComponent)
        });
        c.assert_contained();
    }

    #[test]
    fn absolute_names_stay_inside() {
        let c = case();
        let name = format!("{}/evil", c.outside_abs());
        c.apply(&raw_tar(&[(file(&name), b"evil")])).unwrap();
        c.assert_contained();
        assert_eq!(
            fs::read(c.root.join(name.trim_start_matches('/'))).unwrap(),
            b"evil"
        );
    }

    #[test]
    fn write_through_relative_symlink_parent() {
        let c = case();
        let layer = raw_tar(&[
            (link("esc", Kind::Symlink, "../outside"), b""),
            (file("esc/evil"), b"evil"),
        ]);
        assert_path_error(c.apply(&layer), |e| {
            matches!(e, PathError::SymlinkEscape(_))
        });
        c.assert_contained();
    }

    #[test]
    fn write_through_absolute_symlink_parent_lands_inside() {
        let c = case();
        let layer = raw_tar(&[
            (link("esc", Kind::Symlink, &c.outside_abs()), b""),
            (file("esc/evil"), b"evil"),
        ]);
        c.apply(&layer).unwrap();
        c.assert_contained();
        let inside = c
            .root
            .join(c.outside_abs().trim_start_matches('/'))
            .join("evil");
        assert_eq!(fs::read(inside).unwrap(), b"evil");
    }

    #[test]
    fn symlink_planted_in_lower_layer() {
        // The symlink comes from an earlier layer, already on disk.
        let c = case();
        symlink("../../outside", c.root.join("planted")).unwrap();
        assert_path_error(c.apply(&raw_tar(&[(file("planted/evil"), b"evil")])), |e| {
            matches!(e, PathError::SymlinkEscape(_))
        });
        c.assert_contained();
    }

    #[test]
    fn file_over_symlink_replaces_the_symlink() {
        let c = case();
        let keep = format!("{}/keep", c.outside_abs());
        let layer = raw_tar(&[
            (link("x", Kind::Symlink, &keep), b""),
            (file("x"), b"overwrite"),
        ]);
        c.apply(&layer).unwrap();
        c.assert_contained();
        assert!(fs::symlink_metadata(c.root.join("x")).unwrap().is_file());
        // Same with directories, fifos and links over a symlink.
        let layer = raw_tar(&[
            (link("y", Kind::Symlink, "../outside"), b""),
            (dir("y"), b""),
        ]);
        c.apply(&layer).unwrap();
        c.assert_contained();
        assert!(fs::symlink_metadata(c.root.join("y")).unwrap().is_dir());
    }

    #[test]
    fn hard_link_to_outside() {
        for target in ["../outside/keep", "a/../../outside/keep"] {
            let c = case();
            assert_path_error(
                c.apply(&raw_tar(&[(link("hl", Kind::HardLink, target), b"")])),
                |e| matches!(e, PathError::ParentComponent),
            );
            c.assert_contained();
        }
        // An absolute target is inside the root, where it does not exist.
        let c = case();
        let target = format!("{}/keep", c.outside_abs());
        assert!(matches!(
            c.apply(&raw_tar(&[(link("hl", Kind::HardLink, &target), b"")])),
            Err(ApplyError::LinkTarget { .. })
        ));
        c.assert_contained();
    }

    #[test]
    fn hard_link_through_escaping_symlink() {
        let c = case();
        let layer = raw_tar(&[
            (link("esc", Kind::Symlink, "../outside"), b""),
            (link("hl", Kind::HardLink, "esc/keep"), b""),
        ]);
        assert_path_error(c.apply(&layer), |e| {
            matches!(e, PathError::SymlinkEscape(_))
        });
        c.assert_contained();
    }

    #[test]
    fn hard_link_to_escaping_symlink_links_the_symlink() {
        let c = case();
        let layer = raw_tar(&[
            (link("esc", Kind::Symlink, "../outside/keep"), b""),
            (link("hl", Kind::HardLink, "esc"), b""),
            // Writing to the link's name replaces it rather than following it.
            (file("hl"), b"evil"),
        ]);
        c.apply(&layer).unwrap();
        c.assert_contained();
        assert!(
            fs::symlink_metadata(c.root.join("esc"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn symlink_chains_and_loops() {
        let c = case();
        let layer = raw_tar(&[
            (link("a", Kind::Symlink, "b"), b""),
            (link("b", Kind::Symlink, "sub/c"), b""),
            (dir("sub"), b""),
            (link("sub/c", Kind::Symlink, "../../outside"), b""),
            (file("a/evil"), b"evil"),
        ]);
        assert_path_error(c.apply(&layer), |e| {
            matches!(e, PathError::SymlinkEscape(_))
        });
        c.assert_contained();
        let c = case();
        let layer = raw_tar(&[
            (link("l1", Kind::Symlink, "l2"), b""),
            (link("l2", Kind::Symlink, "l1"), b""),
            (file("l1/evil"), b"evil"),
        ]);
        assert_path_error(c.apply(&layer), |e| matches!(e, PathError::Loop));
        c.assert_contained();
        // A chain that stays inside is followed.
        let c = case();
        let layer = raw_tar(&[
            (dir("real"), b""),
            (link("a", Kind::Symlink, "/b"), b""),
            (link("b", Kind::Symlink, "./real/../real"), b""),
            (file("a/ok"), b"ok"),
        ]);
        c.apply(&layer).unwrap();
        assert_eq!(fs::read(c.root.join("real/ok")).unwrap(), b"ok");
        c.assert_contained();
    }

    #[test]
    fn directory_and_device_entries_through_symlink() {
        let c = case();
        let mut fifo = Entry::new(b"esc/fifo".to_vec(), Kind::Fifo);
        fifo.mode = 0o644;
        for evil in [dir("esc/newdir"), fifo, link("esc/sl", Kind::Symlink, "/")] {
            let layer = raw_tar(&[(link("esc", Kind::Symlink, "../outside"), b""), (evil, b"")]);
            assert_path_error(c.apply(&layer), |e| {
                matches!(e, PathError::SymlinkEscape(_))
            });
            c.assert_contained();
        }
    }

    #[test]
    fn whiteouts_through_symlink() {
        let c = case();
        let layer = raw_tar(&[
            (link("esc", Kind::Symlink, "../outside"), b""),
            (file("esc/.wh.keep"), b""),
        ]);
        assert_path_error(c.apply(&layer), |e| {
            matches!(e, PathError::SymlinkEscape(_))
        });
        c.assert_contained();
        let layer = raw_tar(&[
            (link("esc2", Kind::Symlink, "../outside"), b""),
            (file("esc2/.wh..wh..opq"), b""),
        ]);
        assert_path_error(c.apply(&layer), |e| {
            matches!(e, PathError::SymlinkEscape(_))
        });
        c.assert_contained();
        // Absolute: resolved inside the root, where there is nothing to delete.
        let abs = format!("{}/.wh.keep", c.outside_abs());
        let layer = raw_tar(&[
            (link("esc3", Kind::Symlink, "/"), b""),
            (file(&format!("esc3{abs}")), b""),
        ]);
        c.apply(&layer).unwrap();
        c.assert_contained();
        let c = case();
        assert_path_error(
            c.apply(&raw_tar(&[(file("../outside/.wh.keep"), b"")])),
            |e| matches!(e, PathError::ParentComponent),
        );
        c.assert_contained();
    }

    #[test]
    fn setuid_and_owner_do_not_leak_through_symlink() {
        // chmod/chown/utimes of an entry never follow a symlink at its own name.
        let c = case();
        let keep = format!("{}/keep", c.outside_abs());
        let mut d = dir("d");
        d.mode = 0o777;
        let layer = raw_tar(&[(link("d", Kind::Symlink, &keep), b""), (d, b"")]);
        c.apply(&layer).unwrap();
        c.assert_contained();
    }
}
