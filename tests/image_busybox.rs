//! The busybox base fixture: a reproducible rootfs from Debian's busybox-static, imported
//! as `busybox:latest`.

mod common;

use common::{Root, busybox_rootfs, import_busybox};

#[test]
fn busybox_fixture_is_reproducible() {
    let tar = busybox_rootfs();
    assert_eq!(
        tar,
        busybox_rootfs(),
        "the rootfs tar is byte-for-byte stable"
    );
    // Applets are symlinks to the binary; passwd and group hold root only.
    let mut archive = tar::Archive::new(&tar[..]);
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path == "bin/sh" {
            assert_eq!(entry.header().entry_type(), tar::EntryType::Symlink);
            assert_eq!(
                entry.link_name().unwrap().unwrap().to_str(),
                Some("busybox")
            );
        }
        if path == "etc/passwd" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
            assert_eq!(s, "root:x:0:0:root:/root:/bin/sh\n");
        }
        names.push(path);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted");
    for want in [
        "bin/busybox",
        "bin/sh",
        "bin/ls",
        "etc/group",
        "root",
        "tmp",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing");
    }

    let a = Root::new();
    let b = Root::new();
    let id = import_busybox(&a);
    assert_eq!(import_busybox(&b), id, "two imports give one image id");
    let info: serde_json::Value = serde_json::from_str(&a.ok(&["inspect", "busybox"])).unwrap();
    assert_eq!(info[0]["Id"], id.as_str());
    assert_eq!(info[0]["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(info[0]["RepoTags"], serde_json::json!(["busybox:latest"]));
}
