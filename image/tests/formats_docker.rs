//! Against a real Docker daemon: `save` → `docker load` → `docker run`, and `docker save` →
//! `load` with ids and diffIDs unchanged. The test starts its own `dockerd` (private data
//! root and socket, no networking) and stops it afterwards; it needs root and the packages
//! `docker.io` and `busybox-static`, which `scripts/deps.sh` installs.

mod formats_support;

use formats_support::dockerd::Dockerd;
use formats_support::*;
use rbuild_cache::Digest;
use rbuild_image::archive::{load, save};
use rbuild_image::local::{ImportOptions, import_rootfs};

/// A root filesystem with a static busybox as `/bin/sh`.
fn busybox_rootfs() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox missing: install busybox-static with scripts/deps.sh");
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    builder
        .append_data(&mut dir, "bin/", std::io::empty())
        .unwrap();
    let mut file = tar::Header::new_ustar();
    file.set_entry_type(tar::EntryType::Regular);
    file.set_mode(0o755);
    file.set_size(busybox.len() as u64);
    builder
        .append_data(&mut file, "bin/busybox", busybox.as_slice())
        .unwrap();
    append_symlink(&mut builder, "bin/sh", "busybox");
    builder.into_inner().unwrap()
}

#[test]
fn docker_loads_and_runs_what_we_save_and_we_load_what_it_saves() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Dockerd::start(dir.path());
    let (_s, store) = new_store();
    let rootfs = busybox_rootfs();
    let options = ImportOptions {
        changes: vec![
            r#"CMD ["/bin/sh", "-c", "echo hello from $GREETER"]"#.into(),
            "ENV GREETER=rbuild".into(),
        ],
        created: Some(1_700_000_000),
        ..ImportOptions::default()
    };
    let img = import_rootfs(&store, rootfs.as_slice(), Some("rbuild-test:1"), &options).unwrap();

    let saved = dir.path().join("saved.tar");
    save(
        &store,
        &["rbuild-test:1".into()],
        std::fs::File::create(&saved).unwrap(),
    )
    .unwrap();
    let loaded = daemon.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(loaded.contains("rbuild-test:1"), "{loaded}");
    let id = daemon.ok(&["image", "inspect", "--format", "{{.Id}}", "rbuild-test:1"]);
    assert_eq!(id.trim(), img.id.as_str(), "docker keeps the image id");
    let ran = daemon.ok(&["run", "--rm", "--network", "none", "rbuild-test:1"]);
    assert_eq!(ran, "hello from rbuild\n");

    // Back the other way: docker's own archive (legacy layout in this version).
    daemon.ok(&["tag", "rbuild-test:1", "from-docker:2"]);
    let exported = dir.path().join("docker-saved.tar");
    daemon.ok(&["save", "-o", exported.to_str().unwrap(), "from-docker:2"]);
    let (_t, fresh) = new_store();
    let report = load(&fresh, std::fs::File::open(&exported).unwrap()).unwrap();
    assert_eq!(report.images.len(), 1);
    let back = fresh.resolve("from-docker:2").unwrap();
    assert_eq!(back.id, img.id);
    assert_eq!(back.config.rootfs.diff_ids, [Digest::sha256_of(&rootfs)]);
    assert_eq!(back.config.config.unwrap().env, ["GREETER=rbuild"]);
}
