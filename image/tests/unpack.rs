//! Unpacking an imported image into layer snapshots, with the copy backend (works for
//! any user) and, as root, overlayfs.

use std::path::Path;

use rbuild_cache::Store;
use rbuild_executor::snapshot::{Backend, Snapshotter};
use rbuild_image::local::{ImageStore, ImportOptions, import_rootfs};
use rbuild_image::unpack::{chain_ids, prepare_container, unpack};

fn rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    b.append_data(&mut h, "etc", std::io::empty()).unwrap();
    let data = b"hello\n";
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, "etc/greeting", &data[..]).unwrap();
    b.into_inner().unwrap()
}

fn check(snapshots: &Snapshotter, root: &Path) {
    let images = ImageStore::new(Store::open(&root.join("store")).unwrap());
    import_rootfs(
        &images,
        rootfs_tar().as_slice(),
        Some("t"),
        &ImportOptions::default(),
    )
    .unwrap();
    let image = images.resolve("t").unwrap();
    let first = unpack(&images, snapshots, &image).unwrap();
    assert_eq!(first.unpacked, 1);
    assert_eq!(first.layers.len(), 1);
    assert_eq!(
        first.layers[0].key(),
        chain_ids(&image.config.rootfs.diff_ids)[0].as_str()
    );
    assert_eq!(
        std::fs::read_to_string(first.layers[0].dir().join("etc/greeting")).unwrap(),
        "hello\n"
    );
    let again = unpack(&images, snapshots, &image).unwrap();
    assert_eq!(again.unpacked, 0);
    assert_eq!(again.layers, first.layers);

    let container = prepare_container(snapshots, &again.layers, "c1").unwrap();
    let tree = container.snapshot().path().to_owned();
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/greeting")).unwrap(),
        "hello\n"
    );
    std::fs::write(tree.join("etc/greeting"), "changed\n").unwrap();
    container.remove(snapshots).unwrap();
    assert!(!tree.exists());
    // The layer is untouched by the container's writes.
    assert_eq!(
        std::fs::read_to_string(first.layers[0].dir().join("etc/greeting")).unwrap(),
        "hello\n"
    );
}

#[test]
fn unpack_with_copies() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = Snapshotter::with_backend(
        dir.path().join("snapshots"),
        Backend::Copy {
            reason: "test".into(),
        },
    )
    .unwrap();
    check(&snapshots, dir.path());
}

#[test]
fn unpack_with_overlay() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: overlay snapshots need root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let snapshots = Snapshotter::open(dir.path().join("snapshots")).unwrap();
    if let Backend::Copy { reason } = snapshots.backend() {
        eprintln!("skipping: no overlayfs here ({reason})");
        return;
    }
    check(&snapshots, dir.path());
}
