//! `rbuild_image::export` end to end, checked with the real tools: `docker load` and
//! `docker run` (a private dockerd), `umoci`, `oci-image-tool`, `skopeo`, and a private
//! `docker-registry`. Needs root and the packages `docker.io`, `busybox-static`, `skopeo`,
//! `umoci`, `oci-image-tool` and `docker-registry` (`scripts/deps.sh`).

mod formats_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

use formats_support::dockerd::Dockerd;
use formats_support::*;
use rbuild_cache::{ContentStore, Digest};
use rbuild_image::export::{
    Destination, ExportReport, Exporter, Flavor, OutputError, OutputSpec, Progress, distributable,
    save,
};
use rbuild_image::local::ImageStore;
use rbuild_image::oci::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, ImageConfig, Index, Manifest,
    RuntimeConfig, canonical_json, media,
};
use rbuild_image::registry::testing::TestRegistry;
use rbuild_image::registry::{RegistryClient, RegistryConfig};

const MOTD: &[u8] = b"hello from an exported image\n";

fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h
}

fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, owner: u64) {
    let mut h = header(tar::EntryType::Directory, mode, owner, owner, 0);
    b.append_data(&mut h, path, std::io::empty()).unwrap();
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, owner: u64, data: &[u8]) {
    let mut h = header(
        tar::EntryType::Regular,
        mode,
        owner,
        owner,
        data.len() as u64,
    );
    b.append_data(&mut h, path, data).unwrap();
}

fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, target: &str) {
    let mut h = header(kind, 0o777, 0, 0, 0);
    b.append_link(&mut h, path, target).unwrap();
}

/// Three layers: busybox; files with owners, modes, links and soon-deleted content; then
/// whiteouts, an opaque directory and new files.
fn layers() -> Vec<Vec<u8>> {
    let busybox = fs::read("/bin/busybox")
        .expect("/bin/busybox missing: install busybox-static with scripts/deps.sh");
    let mut b = tar::Builder::new(Vec::new());
    dir(&mut b, "bin/", 0o755, 0);
    file(&mut b, "bin/busybox", 0o755, 0, &busybox);
    for applet in ["sh", "cat", "ls"] {
        link(
            &mut b,
            tar::EntryType::Symlink,
            &format!("bin/{applet}"),
            "busybox",
        );
    }
    dir(&mut b, "etc/", 0o755, 0);
    file(
        &mut b,
        "etc/passwd",
        0o644,
        0,
        b"root:x:0:0:root:/root:/bin/sh\n",
    );
    dir(&mut b, "tmp/", 0o1777, 0);
    let base = b.into_inner().unwrap();

    let mut b = tar::Builder::new(Vec::new());
    dir(&mut b, "home/", 0o755, 0);
    dir(&mut b, "home/user/", 0o750, 1000);
    file(&mut b, "home/user/data", 0o640, 1000, b"user data\n");
    dir(&mut b, "usr/", 0o755, 0);
    dir(&mut b, "usr/bin/", 0o755, 0);
    file(&mut b, "usr/bin/setuid", 0o4755, 0, b"#!/bin/sh\n");
    dir(&mut b, "hard/", 0o755, 0);
    file(&mut b, "hard/a", 0o600, 0, b"linked\n");
    link(&mut b, tar::EntryType::Link, "hard/b", "hard/a");
    dir(&mut b, "links/", 0o755, 0);
    link(&mut b, tar::EntryType::Symlink, "links/rel", "../hard/a");
    link(
        &mut b,
        tar::EntryType::Symlink,
        "links/dangling",
        "/nowhere",
    );
    dir(&mut b, "gone/", 0o755, 0);
    file(&mut b, "gone/file", 0o644, 0, b"deleted later\n");
    file(&mut b, "etc/old.conf", 0o644, 0, b"deleted later\n");
    dir(&mut b, "opaque/", 0o755, 0);
    file(&mut b, "opaque/old", 0o644, 0, b"hidden later\n");
    let middle = b.into_inner().unwrap();

    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, ".wh.gone", 0o644, 0, b"");
    dir(&mut b, "etc/", 0o755, 0);
    file(&mut b, "etc/.wh.old.conf", 0o644, 0, b"");
    file(&mut b, "etc/motd", 0o644, 0, MOTD);
    dir(&mut b, "opaque/", 0o711, 0);
    file(&mut b, "opaque/.wh..wh..opq", 0o644, 0, b"");
    file(&mut b, "opaque/new", 0o644, 0, b"new\n");
    let top = b.into_inner().unwrap();
    vec![base, middle, top]
}

/// How a fixture image's layers are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Gzip layers, OCI manifest (as pulled from a registry).
    Gzip,
    /// Uncompressed layers, OCI manifest.
    OciTar,
    /// Uncompressed layers, Docker manifest: what `rbuild build -t` stores.
    DockerTar,
}

/// Stores the fixture image (gzip layers, OCI manifest) as `export-test:1`.
fn fixture(store: &ImageStore) -> (Digest, Vec<Vec<u8>>) {
    fixture_as(store, Stored::Gzip, "export-test:1")
}

/// Stores the fixture image with its layers as `stored` under `tag`. The config, and with it
/// the image id, is the same whatever the layers' compression.
fn fixture_as(store: &ImageStore, stored: Stored, tag: &str) -> (Digest, Vec<Vec<u8>>) {
    let layers = layers();
    let mut config: ImageConfig = config_for(&layers, "2024-05-06T07:08:09Z");
    config.architecture = rbuild_image::oci::host_platform().architecture;
    config.config = Some(RuntimeConfig {
        cmd: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "cat /etc/motd; ls /opaque".into(),
        ]),
        env: vec!["PATH=/usr/bin:/bin".into()],
        ..RuntimeConfig::default()
    });
    let content = store.store().content();
    let (layer_type, config_type) = match stored {
        Stored::Gzip => (media::OCI_LAYER_GZIP, media::OCI_CONFIG),
        Stored::OciTar => (media::OCI_LAYER_TAR, media::OCI_CONFIG),
        Stored::DockerTar => (media::DOCKER_LAYER_TAR, media::DOCKER_CONFIG),
    };
    let descriptors = layers
        .iter()
        .map(|l| {
            let blob = if stored == Stored::Gzip {
                gzip(l)
            } else {
                l.clone()
            };
            let d = content.ingest(None, blob.as_slice()).unwrap();
            Descriptor::new(layer_type, d.digest, d.size)
        })
        .collect();
    let config = canonical_json("config", &config).unwrap();
    let mut manifest = Manifest::oci(
        Descriptor::new(config_type, Digest::sha256_of(&config), config.len() as u64),
        descriptors,
    );
    if stored == Stored::DockerTar {
        manifest.media_type = Some(media::DOCKER_MANIFEST.to_owned());
    }
    let manifest = canonical_json("manifest", &manifest).unwrap();
    let recorded = store.put_image(&manifest, &config, &[tag.into()]).unwrap();
    (recorded.manifest, layers)
}

fn export(store: &ImageStore, manifest: &Digest, output: &str) -> ExportReport {
    let spec = OutputSpec::parse(output).unwrap();
    Exporter::new(store)
        .tags(&["export-test:1".into()])
        .export(manifest, &spec)
        .unwrap_or_else(|e| panic!("{output}: {e}"))
}

fn tool(name: &str, args: &[&str]) -> Output {
    Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name} ({e}): install it with scripts/deps.sh"))
}

fn tool_ok(name: &str, args: &[&str]) -> String {
    let out = tool(name, args);
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A tree as comparable text: one line per entry with type, mode, owner, size, content
/// digest or link target, and for hard links the first path sharing the inode.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
    inodes: &mut BTreeMap<(u64, u64), String>,
) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let m = fs::symlink_metadata(&path).unwrap();
        let owner = format!("{}:{}", m.uid(), m.gid());
        let line = if m.file_type().is_symlink() {
            format!(
                "link {owner} -> {}",
                fs::read_link(&path).unwrap().display()
            )
        } else if m.is_dir() {
            format!("dir {:o} {owner}", m.permissions().mode() & 0o7777)
        } else {
            let first = inodes
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| rel.clone())
                .clone();
            let data = fs::read(&path).unwrap();
            format!(
                "file {:o} {owner} {} {} first={first}",
                m.permissions().mode() & 0o7777,
                data.len(),
                Digest::sha256_of(&data)
            )
        };
        out.insert(rel, line);
        if m.is_dir() {
            walk(root, &path, out, inodes);
        }
    }
}

/// What the fixture's final filesystem must look like, checked entry by entry.
fn check_rootfs(t: &BTreeMap<String, String>) {
    let get = |p: &str| {
        t.get(p)
            .unwrap_or_else(|| panic!("{p} missing from {t:#?}"))
    };
    assert!(get("home/user").starts_with("dir 750 1000:1000"));
    assert!(get("home/user/data").starts_with("file 640 1000:1000 10 "));
    assert!(get("usr/bin/setuid").starts_with("file 4755 0:0"));
    assert!(get("tmp").starts_with("dir 1777 0:0"));
    assert!(get("opaque").starts_with("dir 711 0:0"));
    assert_eq!(get("links/rel"), "link 0:0 -> ../hard/a");
    assert_eq!(get("links/dangling"), "link 0:0 -> /nowhere");
    assert_eq!(get("bin/sh"), "link 0:0 -> busybox");
    assert!(get("hard/b").ends_with("first=hard/a"), "{}", get("hard/b"));
    assert!(get("hard/a").starts_with("file 600 0:0 7 "));
    for gone in ["gone", "gone/file", "etc/old.conf", "opaque/old"] {
        assert!(!t.contains_key(gone), "{gone} should be deleted");
    }
    assert!(t.keys().all(|k| !k.contains(".wh.")), "{t:#?}");
    assert!(t.contains_key("opaque/new") && t.contains_key("etc/motd"));
}

#[test]
fn local_output_is_the_final_filesystem_and_matches_umoci() {
    let (dir, store) = new_store();
    let (manifest, _) = fixture(&store);
    let out = dir.path().join("rootfs");
    export(
        &store,
        &manifest,
        &format!("type=local,dest={}", out.display()),
    );
    let local = tree(&out);
    check_rootfs(&local);
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    // No temp directory is left beside the destination.
    let siblings: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        siblings.iter().all(|s| !s.starts_with(".rbuild-export")),
        "{siblings:?}"
    );

    // umoci unpacks the same image (from our OCI layout) to the same tree.
    let layout = dir.path().join("layout/");
    export(
        &store,
        &manifest,
        &format!("type=oci,dest={}", layout.display()),
    );
    let bundle = dir.path().join("bundle");
    let image = format!("{}:1", layout.display());
    tool_ok(
        "umoci",
        &["unpack", "--image", &image, bundle.to_str().unwrap()],
    );
    let mut theirs = tree(&bundle.join("rootfs"));
    // umoci keeps the root's own entry out of the tree like we do; nothing to drop.
    theirs.retain(|k, _| !k.is_empty());
    assert_eq!(local, theirs);

    // Shorthand `-o DIR` into a non-empty directory: merged, other files kept.
    let busy = dir.path().join("busy");
    fs::create_dir_all(busy.join("etc")).unwrap();
    fs::write(busy.join("keep.txt"), b"mine").unwrap();
    fs::write(busy.join("etc/motd"), b"old motd").unwrap();
    fs::create_dir(busy.join("gone")).unwrap();
    export(&store, &manifest, busy.to_str().unwrap());
    assert_eq!(fs::read(busy.join("etc/motd")).unwrap(), MOTD);
    assert_eq!(fs::read(busy.join("keep.txt")).unwrap(), b"mine");
    let mut merged = tree(&busy);
    merged.remove("keep.txt");
    merged.remove("gone");
    assert_eq!(merged, local);

    // A symlink to an empty directory is followed, and stays a symlink.
    let target = dir.path().join("target");
    fs::create_dir(&target).unwrap();
    let via = dir.path().join("via");
    std::os::unix::fs::symlink(&target, &via).unwrap();
    export(
        &store,
        &manifest,
        &format!("type=local,dest={}", via.display()),
    );
    assert!(fs::symlink_metadata(&via).unwrap().file_type().is_symlink());
    assert_eq!(tree(&target), local);
    assert_eq!(
        fs::read_dir(&target).unwrap().count(),
        local.keys().filter(|k| !k.contains('/')).count()
    );

    // A file is not a directory.
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    let spec = OutputSpec::parse("type=local,dest=placeholder").unwrap();
    let spec = OutputSpec {
        kind: rbuild_image::export::OutputKind::Local(file.clone()),
        ..spec
    };
    let err = Exporter::new(&store).export(&manifest, &spec).unwrap_err();
    assert!(matches!(err, OutputError::NotADirectory(_)), "{err}");
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[test]
fn failed_exports_leave_nothing_behind() {
    let (dir, store) = new_store();
    let (manifest, _) = fixture(&store);
    let image = store.read_manifest(&manifest).unwrap();
    // Damage the top layer's blob: the export must fail with the destination untouched.
    let top = &image.layers[2].digest;
    let path = store.store().layout().blob_path(top);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, b"not a layer").unwrap();
    let out = dir.path().join("rootfs");
    let spec = OutputSpec::parse(&format!("type=local,dest={}", out.display())).unwrap();
    let err = Exporter::new(&store).export(&manifest, &spec).unwrap_err();
    assert!(matches!(err, OutputError::Apply { .. }), "{err}");
    assert!(!out.exists());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the store"
    );

    // File outputs: nothing under the name, no temp file beside it or in the store root.
    for output in [
        "type=tar,dest={}/fs.tar",
        "type=oci,dest={}/oci.tar",
        "type=docker,dest={}/d.tar",
    ] {
        let output = output.replace("{}", &dir.path().display().to_string());
        let spec = OutputSpec::parse(&output).unwrap();
        let err = Exporter::new(&store).export(&manifest, &spec).unwrap_err();
        assert!(!err.to_string().is_empty());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "{output}: {err}"
        );
        let leftovers: Vec<_> = fs::read_dir(store.store().root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".export-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

/// Entries of a tar: name → (type, mode, uid, gid, size, link target).
fn tar_listing(data: &[u8]) -> Vec<(String, char, u32, u64, u64, u64, String)> {
    let mut archive = tar::Archive::new(data);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.entry_type().as_byte() as char,
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.size().unwrap(),
                e.link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn tar_output_is_deterministic_and_has_no_whiteouts() {
    let (dir, store) = new_store();
    let (manifest, _) = fixture(&store);
    let a = dir.path().join("a.tar");
    let b = dir.path().join("b.tar");
    export(&store, &manifest, &format!("type=tar,dest={}", a.display()));
    export(&store, &manifest, &format!("type=tar,dest={}", b.display()));
    let (a, b) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    assert_eq!(a, b, "same image, same bytes");

    let listing = tar_listing(&a);
    let names: Vec<&str> = listing.iter().map(|e| e.0.trim_end_matches('/')).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted");
    assert!(names.iter().all(|n| !n.contains(".wh.")), "{names:?}");
    for gone in ["gone", "gone/file", "etc/old.conf", "opaque/old"] {
        assert!(!names.contains(&gone), "{gone}");
    }
    let find = |n: &str| {
        listing
            .iter()
            .find(|e| e.0.trim_end_matches('/') == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert_eq!(find("home/user/data").2 & 0o7777, 0o640);
    assert_eq!(
        (find("home/user/data").3, find("home/user/data").4),
        (1000, 1000)
    );
    assert_eq!(find("usr/bin/setuid").2 & 0o7777, 0o4755);
    assert_eq!(find("hard/b").1, '1', "a hard link entry");
    assert_eq!(find("hard/b").6, "hard/a");
    assert_eq!(find("links/rel").6, "../hard/a");

    // Unpacked by GNU tar, it is the same tree as the local output.
    let unpacked = dir.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    let tarball = dir.path().join("c.tar");
    fs::write(&tarball, &a).unwrap();
    tool_ok(
        "tar",
        &[
            "-xpf",
            tarball.to_str().unwrap(),
            "-C",
            unpacked.to_str().unwrap(),
            "--numeric-owner",
        ],
    );
    let local = dir.path().join("local");
    export(
        &store,
        &manifest,
        &format!("type=local,dest={}", local.display()),
    );
    assert_eq!(tree(&unpacked), tree(&local));
}

/// `oci-image-tool validate` of one ref of a layout (it reads every blob).
fn validate(layout: &Path, reference: &str) {
    let out = tool_ok(
        "oci-image-tool",
        &[
            "validate",
            "--type",
            "image",
            "--ref",
            &format!("name={reference}"),
            layout.to_str().unwrap(),
        ],
    );
    assert!(out.contains("Validation succeeded"), "{out}");
}

fn layer_types(layout: &Path) -> (Index, Manifest) {
    let index = Index::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = &index.manifests[0];
    let manifest =
        Manifest::from_slice(&fs::read(layout.join("blobs/sha256").join(m.digest.hex())).unwrap())
            .unwrap();
    (index, manifest)
}

#[test]
fn oci_layouts_pass_the_oci_tools() {
    let (dir, store) = new_store();
    let (manifest, _) = fixture(&store);
    let id = store.resolve("export-test:1").unwrap().id;

    // A directory (trailing slash), checked by oci-image-tool, umoci and skopeo.
    let layout = dir.path().join("oci/");
    let report = export(
        &store,
        &manifest,
        &format!("type=oci,dest={},name=example.com/app:v2", layout.display()),
    );
    assert_eq!(report.manifest.digest, manifest, "nothing converted");
    assert_eq!(report.config, id);
    assert_eq!(report.names, ["example.com/app:v2"]);
    let (index, _) = layer_types(&layout);
    let annotations = &index.manifests[0].annotations;
    assert_eq!(annotations[ANNOTATION_REF_NAME], "v2");
    assert_eq!(annotations[ANNOTATION_IMAGE_NAME], "example.com/app:v2");
    validate(&layout, "v2");
    let listed = tool_ok("umoci", &["ls", "--layout", layout.to_str().unwrap()]);
    assert_eq!(listed.trim(), "v2");
    let inspected = tool_ok(
        "skopeo",
        &["inspect", &format!("oci:{}:v2", layout.display())],
    );
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["Digest"], manifest.to_string());
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3);

    // A tar (no name: the tags are used), read by skopeo as an oci-archive.
    let tarball = dir.path().join("oci.tar");
    let report = export(
        &store,
        &manifest,
        &format!("type=oci,dest={}", tarball.display()),
    );
    assert_eq!(report.names, ["docker.io/library/export-test:1"]);
    let inspected = tool_ok(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", tarball.display())],
    );
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["Digest"], manifest.to_string());
    // The tar holds the same layout as a directory would.
    let entries = tar_entries(&fs::read(&tarball).unwrap());
    assert!(entries.contains(&"oci-layout".to_owned()));
    assert!(entries.contains(&"index.json".to_owned()));
    assert!(
        !entries.contains(&"manifest.json".to_owned()),
        "OCI, not docker"
    );

    // tar=false with a path that does not exist yet: a directory.
    let plain = dir.path().join("plain");
    export(
        &store,
        &manifest,
        &format!("type=oci,dest={},tar=false", plain.display()),
    );
    assert!(plain.join("index.json").is_file());
}

/// Records phases with their totals and the bytes reported in each.
#[derive(Default)]
struct Recorder {
    phases: Mutex<Vec<(String, Option<u64>, u64)>>,
    bytes: Mutex<u64>,
}

impl Progress for Recorder {
    fn start(&self, phase: &str, total: Option<u64>) {
        self.phases
            .lock()
            .unwrap()
            .push((phase.to_owned(), total, 0));
    }

    fn advance(&self, bytes: u64) {
        *self.bytes.lock().unwrap() += bytes;
        if let Some(last) = self.phases.lock().unwrap().last_mut() {
            last.2 += bytes;
        }
    }
}

#[test]
fn recompression_keeps_diff_ids_and_is_remembered() {
    let (dir, store) = new_store();
    let (manifest, layers) = fixture(&store);
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::sha256_of(l)).collect();
    let id = store.resolve("export-test:1").unwrap().id;
    let stored = store.read_manifest(&manifest).unwrap();

    for (compression, layer_type) in [
        ("zstd", media::OCI_LAYER_ZSTD),
        ("uncompressed", media::OCI_LAYER_TAR),
        ("gzip", media::OCI_LAYER_GZIP),
    ] {
        let layout = dir.path().join(format!("{compression}/"));
        let recorder = Recorder::default();
        let spec = OutputSpec::parse(&format!(
            "type=oci,dest={},name=x:1,compression={compression},force-compression=true,compression-level=1",
            layout.display()
        ))
        .unwrap();
        let report = Exporter::new(&store)
            .progress(&recorder)
            .export(&manifest, &spec)
            .unwrap();
        assert_eq!(report.config, id, "{compression}: the image id stays");
        assert_ne!(report.manifest.digest, manifest, "{compression}");
        let (_, written) = layer_types(&layout);
        assert_eq!(written.config, stored.config);
        for (layer, diff_id) in written.layers.iter().zip(&diff_ids) {
            assert_eq!(layer.media_type, layer_type);
            let blob = fs::read(layout.join("blobs/sha256").join(layer.digest.hex())).unwrap();
            let mut plain = Vec::new();
            std::io::copy(
                &mut rbuild_image::compress::decompressed_reader(blob.as_slice()).unwrap(),
                &mut plain,
            )
            .unwrap();
            assert_eq!(Digest::sha256_of(&plain), *diff_id, "{compression}");
        }
        // This oci-image-tool and umoci predate zstd: skopeo here, docker in the docker test.
        if compression != "zstd" {
            validate(&layout, "1");
        }
        let inspected = tool_ok("skopeo", &["inspect", &format!("oci:{}", layout.display())]);
        assert!(inspected.contains(&report.manifest.digest.to_string()));
        let phases = recorder.phases.lock().unwrap();
        assert_eq!(phases.len(), 2, "{phases:?}");
        assert_eq!(phases[0].0, "converting layers");
        assert!(phases[0].2 > 0, "{phases:?}");
        // Every blob written is reported, coalesced or not.
        assert_eq!(phases[1].0, "writing oci");
        assert_eq!(Some(phases[1].2), phases[1].1, "{phases:?}");
    }

    // Docker media types have no zstd layer type.
    let spec = OutputSpec::parse(&format!(
        "type=docker,dest={}/bad.tar,compression=zstd,oci-mediatypes=false",
        dir.path().display()
    ))
    .unwrap();
    let err = Exporter::new(&store).export(&manifest, &spec).unwrap_err();
    assert!(matches!(err, OutputError::ZstdDockerMediaTypes), "{err}");
    assert!(!dir.path().join("bad.tar").exists());

    // Without force, gzip layers asked for as gzip stay as they are.
    let same = export(
        &store,
        &manifest,
        &format!(
            "type=oci,dest={}/same.tar,compression=gzip",
            dir.path().display()
        ),
    );
    assert_eq!(same.manifest.digest, manifest);

    // A second zstd export reads no source layer: the converted blobs are remembered in the
    // database, and they survive prune because the records own them.
    let zstd = format!(
        "type=oci,dest={}/z1.tar,compression=zstd",
        dir.path().display()
    );
    let first = export(&store, &manifest, &zstd);
    store.store().prune(&BTreeSet::new(), None).unwrap();
    for layer in &stored.layers {
        assert!(store.store().content().delete(&layer.digest).unwrap());
    }
    let second = export(&store, &manifest, &zstd);
    assert_eq!(first.manifest, second.manifest);
    let gzip_again =
        OutputSpec::parse(&format!("type=oci,dest={}/g.tar", dir.path().display())).unwrap();
    assert!(
        Exporter::new(&store)
            .export(&manifest, &gzip_again)
            .is_err()
    );
}

/// Gzip layers from uncompressed ones: each blob starts with the gzip magic and unpacks to
/// its diffID.
fn assert_gzip_layers(blobs: &[Vec<u8>], diff_ids: &[Digest]) {
    assert_eq!(blobs.len(), diff_ids.len());
    for (blob, diff_id) in blobs.iter().zip(diff_ids) {
        assert_eq!(&blob[..2], [0x1f, 0x8b]);
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(blob.as_slice()),
            &mut plain,
        )
        .unwrap();
        assert_eq!(Digest::sha256_of(&plain), *diff_id);
    }
}

/// What `rbuild build -t` stores (uncompressed layers) leaves the store gzipped: layouts,
/// archives and `save` convert, once (the blobs are remembered), while the local store and
/// `compression=uncompressed` keep the layers as they are; the image id never changes.
#[test]
fn uncompressed_layers_leave_the_store_gzipped() {
    let (dir, store) = new_store();
    let (manifest, layers) = fixture_as(&store, Stored::OciTar, "plain:1");
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::sha256_of(l)).collect();
    let id = store.resolve("plain:1").unwrap().id;

    let layout = dir.path().join("oci/");
    let report = export(
        &store,
        &manifest,
        &format!("type=oci,dest={},name=plain:1", layout.display()),
    );
    assert_eq!(report.config, id);
    assert_ne!(report.manifest.digest, manifest);
    let (_, written) = layer_types(&layout);
    assert!(
        written
            .layers
            .iter()
            .all(|l| l.media_type == media::OCI_LAYER_GZIP)
    );
    let blobs: Vec<Vec<u8>> = written
        .layers
        .iter()
        .map(|l| fs::read(layout.join("blobs/sha256").join(l.digest.hex())).unwrap())
        .collect();
    assert_gzip_layers(&blobs, &diff_ids);
    validate(&layout, "1");

    let kept = export(&store, &manifest, "type=image,name=kept:1");
    assert_eq!(kept.manifest.digest, manifest);
    let plain = export(
        &store,
        &manifest,
        &format!(
            "type=oci,dest={}/u.tar,compression=uncompressed",
            dir.path().display()
        ),
    );
    assert_eq!(plain.manifest.digest, manifest);

    // Pushes and `save` get the same variant.
    let pushable = distributable(&store, &manifest, &|_: u64| {}).unwrap();
    assert_eq!(pushable, report.manifest.digest);
    let archive = dir.path().join("saved.tar");
    save(
        &store,
        &["plain:1".into()],
        Flavor::Docker,
        &Destination::File(archive.clone()),
    )
    .unwrap();
    let data = fs::read(&archive).unwrap();
    let index = Index::from_slice(&tar_file(&data, "index.json").unwrap()).unwrap();
    assert_eq!(index.manifests[0].digest, pushable);
    let docker: serde_json::Value =
        serde_json::from_slice(&tar_file(&data, "manifest.json").unwrap()).unwrap();
    let saved: Vec<Vec<u8>> = docker[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| tar_file(&data, l.as_str().unwrap()).unwrap())
        .collect();
    assert_gzip_layers(&saved, &diff_ids);

    // Converted once: with the uncompressed blobs gone, the variant is still made.
    for layer in &store.read_manifest(&manifest).unwrap().layers {
        assert!(store.store().content().delete(&layer.digest).unwrap());
    }
    assert_eq!(
        distributable(&store, &manifest, &|_: u64| {}).unwrap(),
        pushable
    );
    // Layers already compressed go as they are.
    let (gzipped, _) = fixture(&store);
    assert_eq!(
        distributable(&store, &gzipped, &|_: u64| {}).unwrap(),
        gzipped
    );
}

#[test]
fn docker_archives_load_and_run_in_docker() {
    let (dir, store) = new_store();
    let (manifest, layers) = fixture(&store);
    let id = store.resolve("export-test:1").unwrap().id;
    let docker_dir = dir.path().join("docker");
    fs::create_dir(&docker_dir).unwrap();
    let daemon = Dockerd::start(&docker_dir);

    let cases = [
        ("", "stored:1"),
        ("compression=uncompressed,", "plain:1"),
        ("compression=zstd,", "zstd:1"),
        (
            "compression=gzip,force-compression=true,oci-mediatypes=false,",
            "dockertypes:1",
        ),
    ];
    for (options, name) in cases {
        let archive = dir.path().join(format!("{}.tar", name.replace(':', "-")));
        let report = export(
            &store,
            &manifest,
            &format!(
                "type=docker,{options}dest={},name={name}",
                archive.display()
            ),
        );
        let entries = tar_entries(&fs::read(&archive).unwrap());
        assert!(entries.contains(&"manifest.json".to_owned()), "{entries:?}");
        assert!(entries.contains(&"repositories".to_owned()));
        if options.contains("oci-mediatypes=false") {
            assert_eq!(report.manifest.media_type, media::DOCKER_MANIFEST);
        }
        let loaded = daemon.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert!(loaded.contains(name), "{loaded}");
        let their_id = daemon.ok(&["image", "inspect", "--format", "{{.Id}}", name]);
        assert_eq!(their_id.trim(), id.as_str(), "{name}: same image id");
        let ran = daemon.ok(&["run", "--rm", "--network", "none", name]);
        assert_eq!(ran.as_bytes(), [MOTD, b"new\n"].concat(), "{name}: {ran}");
        let diff_ids = daemon.ok(&[
            "image",
            "inspect",
            "--format",
            "{{range .RootFS.Layers}}{{println .}}{{end}}",
            name,
        ]);
        let want: Vec<String> = layers
            .iter()
            .map(|l| Digest::sha256_of(l).to_string())
            .collect();
        assert_eq!(diff_ids.split_whitespace().collect::<Vec<_>>(), want);
    }

    // What `rbuild build -t` stores: uncompressed layers under Docker media types. The
    // archive has them gzipped, and docker loads the same image.
    let (built, _) = fixture_as(&store, Stored::DockerTar, "built:1");
    let archive = dir.path().join("built.tar");
    let report = export(
        &store,
        &built,
        &format!("type=docker,dest={},name=built:1", archive.display()),
    );
    let written = store.read_manifest(&report.manifest.digest).unwrap();
    assert_eq!(written.media_type(), media::DOCKER_MANIFEST);
    assert!(
        written
            .layers
            .iter()
            .all(|l| l.media_type == media::DOCKER_LAYER_GZIP)
    );
    daemon.ok(&["load", "-i", archive.to_str().unwrap()]);
    let their_id = daemon.ok(&["image", "inspect", "--format", "{{.Id}}", "built:1"]);
    assert_eq!(their_id.trim(), id.as_str());
    let ran = daemon.ok(&["run", "--rm", "--network", "none", "built:1"]);
    assert_eq!(ran.as_bytes(), [MOTD, b"new\n"].concat());
}

/// The engine may spawn a push on its runtime.
fn assert_send<T: Send>(_: &T) {}

#[test]
fn push_to_a_registry_and_skopeo_reads_it() {
    let (dir, store) = new_store();
    let (manifest, _) = fixture(&store);
    let registry = TestRegistry::start().unwrap();
    let client = RegistryClient::anonymous(RegistryConfig::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let host = registry.host();

    let name = format!("{host}/export/app:1");
    let recorder = Recorder::default();
    let spec = OutputSpec::parse(&format!("type=image,name={name},push=true")).unwrap();
    let exporter = Exporter::new(&store).progress(&recorder);
    let push = exporter.export_or_push(&client, &manifest, &spec);
    assert_send(&push);
    let report = runtime.block_on(push).unwrap();
    assert_eq!(report.pushed.len(), 1);
    assert_eq!(report.pushed[0].digest, manifest);
    assert_eq!(report.names, [name.as_str()]);
    let pushed: u64 = store
        .read_manifest(&manifest)
        .unwrap()
        .layers
        .iter()
        .map(|l| l.size)
        .sum();
    assert!(
        *recorder.bytes.lock().unwrap() >= pushed,
        "progress counts uploads"
    );
    // The name is tagged locally too.
    assert_eq!(store.resolve(&name).unwrap().manifest_digest, manifest);
    let inspected = tool_ok(
        "skopeo",
        &["inspect", "--tls-verify=false", &format!("docker://{name}")],
    );
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["Digest"], manifest.to_string());

    // type=registry with zstd: a variant manifest under two names.
    let names = format!("{host}/export/zstd:1,{host}/export/zstd:2");
    let spec =
        OutputSpec::parse(&format!("type=registry,\"name={names}\",compression=zstd")).unwrap();
    let report = runtime
        .block_on(Exporter::new(&store).push(&client, &manifest, &spec))
        .unwrap();
    assert_eq!(report.pushed.len(), 2);
    assert_ne!(report.manifest.digest, manifest);
    for tag in ["1", "2"] {
        let raw = tool_ok(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{host}/export/zstd:{tag}"),
            ],
        );
        let m = Manifest::from_slice(raw.as_bytes()).unwrap();
        assert!(
            m.layers
                .iter()
                .all(|l| l.media_type == media::OCI_LAYER_ZSTD)
        );
        assert_eq!(Digest::sha256_of(raw.as_bytes()), report.manifest.digest);
    }

    // An image stored uncompressed goes out gzipped under Docker media types, same id.
    let (built, layers) = fixture_as(&store, Stored::DockerTar, "built:1");
    let name = format!("{host}/export/built:1");
    let spec = OutputSpec::parse(&format!("type=registry,name={name}")).unwrap();
    let report = runtime
        .block_on(Exporter::new(&store).push(&client, &built, &spec))
        .unwrap();
    assert_eq!(report.config, store.resolve("built:1").unwrap().id);
    let raw = tool_ok(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ],
    );
    let m = Manifest::from_slice(raw.as_bytes()).unwrap();
    assert_eq!(Digest::sha256_of(raw.as_bytes()), report.manifest.digest);
    assert_eq!(m.media_type(), media::DOCKER_MANIFEST);
    assert!(
        m.layers
            .iter()
            .all(|l| l.media_type == media::DOCKER_LAYER_GZIP)
    );
    // skopeo copies it, checking every blob's digest.
    let copied = dir.path().join("copied");
    tool_ok(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{name}"),
            &format!("dir:{}", copied.display()),
        ],
    );
    let blobs: Vec<Vec<u8>> = m
        .layers
        .iter()
        .map(|l| fs::read(copied.join(l.digest.hex())).unwrap())
        .collect();
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::sha256_of(l)).collect();
    assert_gzip_layers(&blobs, &diff_ids);

    // A push without any name is an error, and `export` refuses pushes.
    let bare = OutputSpec::parse("type=registry").unwrap();
    let err = runtime
        .block_on(Exporter::new(&store).push(&client, &manifest, &bare))
        .unwrap_err();
    assert!(matches!(err, OutputError::NoName), "{err}");
    assert!(matches!(
        Exporter::new(&store).export(&manifest, &spec),
        Err(OutputError::NeedsPush(_))
    ));
}

#[test]
fn iidfile_and_metadata_file() {
    let (dir, store) = new_store();
    let (manifest, _) = fixture(&store);
    let id = store.resolve("export-test:1").unwrap().id;
    let spec = OutputSpec::parse(&format!(
        "type=docker,dest={}/i.tar,\"name=a:1,b:2\"",
        dir.path().display()
    ))
    .unwrap();
    let report = Exporter::new(&store).export(&manifest, &spec).unwrap();

    // Without an output, the stored image under the tags.
    let described = Exporter::new(&store)
        .tags(&["export-test:1".into()])
        .describe(&manifest)
        .unwrap();
    assert_eq!(described.manifest.digest, manifest);
    assert_eq!(described.config, id);
    assert_eq!(described.names, ["docker.io/library/export-test:1"]);

    let iid = dir.path().join("iid");
    rbuild_image::export::write_iidfile(&iid, &report).unwrap();
    assert_eq!(fs::read_to_string(&iid).unwrap(), id.to_string());
    assert!(fs::read_to_string(&iid).unwrap().starts_with("sha256:"));

    let meta = dir.path().join("meta.json");
    let mut extra = BTreeMap::new();
    extra.insert(
        "rbuild.build.steps".to_owned(),
        serde_json::json!({"cached": 2, "executed": 1}),
    );
    // Caller keys cannot replace the image's.
    extra.insert(
        "containerimage.digest".to_owned(),
        serde_json::json!("bogus"),
    );
    rbuild_image::export::write_metadata_file(&meta, &report, &extra).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
    let size = store.store().content().info(&manifest).unwrap().size;
    assert_eq!(
        value,
        serde_json::json!({
            "containerimage.config.digest": id.to_string(),
            "containerimage.digest": manifest.to_string(),
            "containerimage.descriptor": {
                "mediaType": media::OCI_MANIFEST,
                "digest": manifest.to_string(),
                "size": size,
            },
            "image.name": "docker.io/library/a:1,docker.io/library/b:2",
            "rbuild.build.steps": {"cached": 2, "executed": 1},
        })
    );
}
