//! `ADD` of local archives: detection by content, every compression Docker reads, and
//! extraction that never leaves the destination.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use super::super::unpack::{Compression, detect};
use super::*;

/// A tar entry: name bytes as they go into the header (unchecked), type, data, link.
struct Ent<'a> {
    name: &'a str,
    kind: tar::EntryType,
    data: &'a [u8],
    link: Option<&'a str>,
    mode: u32,
    uid: u64,
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Ent<'a> {
    Ent {
        name,
        kind: tar::EntryType::Regular,
        data,
        link: None,
        mode: 0o644,
        uid: 0,
    }
}

fn dir(name: &str) -> Ent<'_> {
    Ent {
        name,
        kind: tar::EntryType::Directory,
        data: b"",
        link: None,
        mode: 0o755,
        uid: 0,
    }
}

fn link<'a>(name: &'a str, kind: tar::EntryType, target: &'a str) -> Ent<'a> {
    Ent {
        name,
        kind,
        data: b"",
        link: Some(target),
        mode: 0o777,
        uid: 0,
    }
}

/// A plain tar of `entries`, names written raw so hostile ones can be made.
fn tar_of(entries: &[Ent<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let bytes = h.as_mut_bytes();
            bytes[..100].fill(0);
            bytes[..e.name.len()].copy_from_slice(e.name.as_bytes());
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.uid);
        h.set_mtime(1_600_000_000);
        if let Some(l) = e.link {
            let bytes = h.as_mut_bytes();
            bytes[157..257].fill(0);
            bytes[157..157 + l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

fn compress(kind: Compression, data: &[u8]) -> Vec<u8> {
    match kind {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Xz => {
            let mut e =
                lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1))
                    .unwrap();
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(data, 1).unwrap(),
    }
}

fn add_src(path: &str) -> CopySource {
    let mut s = ctx_src(path);
    s.unpack = true;
    s
}

const ALL: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Bzip2,
    Compression::Xz,
    Compression::Zstd,
];

#[test]
fn every_compression_is_detected_and_extracted() {
    let tar = tar_of(&[dir("pkg/"), file("pkg/a.txt", b"A"), file("pkg/b/c", b"C")]);
    for kind in ALL {
        let f = fx();
        let bytes = compress(kind, &tar);
        assert_eq!(detect(&bytes), kind);
        fs::write(f.ctx.join("vendor.archive"), &bytes).unwrap();
        let stats = f
            .copy(action(vec![add_src("/vendor.archive")], "/opt/vendor/"))
            .unwrap();
        assert_eq!(stats.archives, 1, "{kind:?}");
        assert_eq!(read(&f.d("/opt/vendor/pkg/a.txt")), "A", "{kind:?}");
        assert_eq!(read(&f.d("/opt/vendor/pkg/b/c")), "C", "{kind:?}");
        // A parent the archive does not list is created 0755.
        assert_eq!(mode(&f.d("/opt/vendor/pkg/b")), 0o755);
    }
}

#[test]
fn extraction_goes_into_the_destination_even_without_a_slash() {
    let f = fx();
    fs::write(f.ctx.join("a.tar"), tar_of(&[file("x", b"1")])).unwrap();
    f.copy(action(vec![add_src("/a.tar")], "/dst")).unwrap();
    assert_eq!(read(&f.d("/dst/x")), "1");
}

#[test]
fn entry_metadata_comes_from_the_archive() {
    let f = fx();
    let mut e = file("bin/tool", b"#!");
    e.mode = 0o750;
    e.uid = 1234;
    fs::write(f.ctx.join("a.tar"), tar_of(&[dir("bin/"), e])).unwrap();
    f.copy(action(vec![add_src("/a.tar")], "/")).unwrap();
    let m = fs::metadata(f.d("/bin/tool")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o750);
    assert_eq!(m.mtime(), 1_600_000_000);
    assert_eq!(fs::metadata(f.d("/bin")).unwrap().mtime(), 1_600_000_000);
    if is_root("entry_metadata_comes_from_the_archive (owners)") {
        assert_eq!(owner(&f.d("/bin/tool")), (1234, 1234));
    }
}

#[test]
fn chown_overrides_archive_owners() {
    if !is_root("chown_overrides_archive_owners") {
        return;
    }
    let f = fx();
    let mut e = file("t", b"1");
    e.uid = 1234;
    fs::write(f.ctx.join("a.tar"), tar_of(&[e])).unwrap();
    let mut a = action(vec![add_src("/a.tar")], "/x/");
    a.chown = Some("55:66".into());
    f.copy(a).unwrap();
    assert_eq!(owner(&f.d("/x/t")), (55, 66));
    assert_eq!(owner(&f.d("/x")), (55, 66));
}

#[test]
fn whiteout_names_are_plain_files() {
    let f = fx();
    write(&f.dest, "d/victim", "v");
    fs::write(f.ctx.join("a.tar"), tar_of(&[file("d/.wh.victim", b"w")])).unwrap();
    f.copy(action(vec![add_src("/a.tar")], "/")).unwrap();
    assert_eq!(read(&f.d("/d/victim")), "v");
    assert_eq!(read(&f.d("/d/.wh.victim")), "w");
}

#[test]
fn symlinks_and_hard_links_in_archives() {
    let f = fx();
    fs::write(
        f.ctx.join("a.tar"),
        tar_of(&[
            file("a", b"A"),
            link("l", tar::EntryType::Symlink, "a"),
            link("h", tar::EntryType::Link, "a"),
        ]),
    )
    .unwrap();
    f.copy(action(vec![add_src("/a.tar")], "/x/")).unwrap();
    assert_eq!(fs::read_link(f.d("/x/l")).unwrap(), Path::new("a"));
    let ino = |p: &str| fs::metadata(f.d(p)).unwrap().ino();
    assert_eq!(ino("/x/a"), ino("/x/h"));
}

#[test]
fn existing_directories_merge_and_files_are_replaced() {
    let f = fx();
    write(&f.dest, "x/keep", "k");
    write(&f.dest, "x/f", "old");
    fs::write(
        f.ctx.join("a.tar"),
        tar_of(&[dir("x/"), file("x/f", b"new")]),
    )
    .unwrap();
    f.copy(action(vec![add_src("/a.tar")], "/")).unwrap();
    assert_eq!(read(&f.d("/x/keep")), "k");
    assert_eq!(read(&f.d("/x/f")), "new");
}

#[test]
fn a_file_that_is_not_an_archive_is_copied() {
    let f = fx();
    write(&f.ctx, "notes.tar.gz", "not really");
    fs::write(f.ctx.join("fake.gz"), [0x1f, 0x8b, 0x08, 0, 1, 2]).unwrap();
    f.copy(action(
        vec![add_src("/notes.tar.gz"), add_src("/fake.gz")],
        "/o/",
    ))
    .unwrap();
    assert_eq!(read(&f.d("/o/notes.tar.gz")), "not really");
    assert_eq!(fs::read(f.d("/o/fake.gz")).unwrap().len(), 6);
}

#[test]
fn copy_never_extracts() {
    let f = fx();
    fs::write(f.ctx.join("a.tar"), tar_of(&[file("x", b"1")])).unwrap();
    f.copy(action(vec![ctx_src("/a.tar")], "/o/")).unwrap();
    assert!(f.d("/o/a.tar").is_file());
    assert!(!f.d("/o/x").exists());
}

#[test]
fn dotdot_entries_are_refused() {
    let f = fx();
    fs::write(
        f.ctx.join("evil.tar"),
        tar_of(&[file("../../escape", b"x")]),
    )
    .unwrap();
    let err = f
        .copy(action(vec![add_src("/evil.tar")], "/x/"))
        .unwrap_err();
    assert!(matches!(err, FileOpError::UnsafeEntry { .. }), "{err}");
    assert!(!f.dest.parent().unwrap().join("escape").exists());
}

#[test]
fn symlink_entries_cannot_lead_writes_outside() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap();
    // A link to an absolute host path, then a file through it: the link is taken as
    // inside the destination, never the host.
    let f = fx();
    fs::write(
        f.ctx.join("evil.tar"),
        tar_of(&[
            link("up", tar::EntryType::Symlink, target),
            file("up/pwned", b"x"),
        ]),
    )
    .unwrap();
    f.copy(action(vec![add_src("/evil.tar")], "/x/")).unwrap();
    assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
    assert_eq!(
        read(&f.d(&format!("/x{target}/pwned"))),
        "x",
        "written below the destination"
    );
    // A relative link climbing out is an error.
    let g = fx();
    fs::write(
        g.ctx.join("evil.tar"),
        tar_of(&[
            link("up", tar::EntryType::Symlink, "../../../../../.."),
            file("up/pwned", b"x"),
        ]),
    )
    .unwrap();
    let err = g
        .copy(action(vec![add_src("/evil.tar")], "/x/"))
        .unwrap_err();
    assert!(matches!(err, FileOpError::UnsafeEntry { .. }), "{err}");
}

#[test]
fn hard_links_to_outside_are_refused() {
    let f = fx();
    fs::write(
        f.ctx.join("evil.tar"),
        tar_of(&[link("h", tar::EntryType::Link, "../../etc/passwd")]),
    )
    .unwrap();
    let err = f
        .copy(action(vec![add_src("/evil.tar")], "/x/"))
        .unwrap_err();
    assert!(matches!(err, FileOpError::UnsafeEntry { .. }), "{err}");
}

#[test]
fn a_corrupt_archive_after_a_good_header_is_an_error() {
    let f = fx();
    let mut tar = tar_of(&[file("a", &[7u8; 2000])]);
    tar.truncate(1024);
    let gz = compress(Compression::Gzip, &tar);
    fs::write(f.ctx.join("cut.tgz"), gz).unwrap();
    let err = f
        .copy(action(vec![add_src("/cut.tgz")], "/x/"))
        .unwrap_err();
    assert!(matches!(err, FileOpError::Archive { .. }), "{err}");
}

#[test]
fn detection_table() {
    assert_eq!(detect(b"BZh91AY"), Compression::Bzip2);
    assert_eq!(detect(&[0x1f, 0x8b, 0x08, 0]), Compression::Gzip);
    assert_eq!(detect(&[0x1f, 0x8b, 0x07, 0]), Compression::None);
    assert_eq!(detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Compression::Xz);
    assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
    assert_eq!(detect(&[0x5e, 0x2a, 0x4d, 0x18]), Compression::Zstd);
    assert_eq!(detect(b"ustar"), Compression::None);
    assert_eq!(detect(b""), Compression::None);
}
