//! OCI image layouts: directory and tar, read back, and checked with `umoci`, `skopeo` and
//! `oci-image-tool`.

mod formats_support;

use std::path::Path;
use std::process::Command;

use formats_support::*;
use rbuild_image::archive::{load, save};
use rbuild_image::layout::{Flavor, plan, read_dir, write_dir, write_tar};
use rbuild_image::local::ImageStore;
use rbuild_image::oci::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Index};

fn sample(store: &ImageStore) {
    make_image(store, &["app:1"], &[layer("l1"), layer("l2")], true);
    make_image(
        store,
        &["localhost:5000/tools:stable"],
        &[layer("t1")],
        false,
    );
}

fn names() -> Vec<String> {
    vec!["app:1".into(), "localhost:5000/tools:stable".into()]
}

#[test]
fn layout_dir_roundtrip() {
    let (dir, src) = new_store();
    sample(&src);
    let out = dir.path().join("layout");
    let images = plan(&src, &names()).unwrap();
    write_dir(&src, &images, &out).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert!(!out.join("manifest.json").exists());
    let index = Index::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let refs: Vec<(&str, &str)> = index
        .manifests
        .iter()
        .map(|m| {
            (
                m.annotations[ANNOTATION_REF_NAME].as_str(),
                m.annotations[ANNOTATION_IMAGE_NAME].as_str(),
            )
        })
        .collect();
    assert_eq!(
        refs,
        [
            ("1", "docker.io/library/app:1"),
            ("stable", "localhost:5000/tools:stable")
        ]
    );
    for entry in &index.manifests {
        let blob = out.join("blobs/sha256").join(entry.digest.hex());
        assert_eq!(std::fs::metadata(blob).unwrap().len(), entry.size);
        assert_eq!(entry.platform.as_ref().unwrap().os, "linux");
    }

    // Writing again into the same directory keeps it valid.
    write_dir(&src, &images, &out).unwrap();

    let (_d2, dst) = new_store();
    let report = read_dir(&dst, &out).unwrap();
    assert_eq!(report.images.len(), 2);
    for name in names() {
        let (a, b) = (src.resolve(&name).unwrap(), dst.resolve(&name).unwrap());
        assert_eq!((a.id, a.manifest_digest), (b.id, b.manifest_digest));
    }
}

#[test]
fn layout_tar_roundtrip_and_missing_blob() {
    let (dir, src) = new_store();
    sample(&src);
    let images = plan(&src, &names()).unwrap();
    let data = write_tar(&src, &images, Flavor::Oci, Vec::new()).unwrap();
    assert!(tar_file(&data, "manifest.json").is_none());
    assert!(tar_file(&data, "index.json").is_some());
    let (_d2, dst) = new_store();
    load(&dst, data.as_slice()).unwrap();
    assert_eq!(
        dst.resolve("localhost:5000/tools:stable").unwrap().id,
        src.resolve("localhost:5000/tools:stable").unwrap().id
    );

    // A layout directory missing a blob is refused and records nothing.
    let out = dir.path().join("broken");
    write_dir(&src, &images, &out).unwrap();
    let layer = &src.resolve("app:1").unwrap().manifest.layers[0];
    std::fs::remove_file(out.join("blobs/sha256").join(layer.digest.hex())).unwrap();
    let (_d3, third) = new_store();
    assert!(read_dir(&third, &out).is_err());
    assert!(third.list().unwrap().is_empty());
    assert!(third.store().meta().list_tags().unwrap().is_empty());
    assert!(read_dir(&third, &dir.path().join("absent")).is_err());
}

/// Runs a tool that the test set-up (`scripts/deps.sh`) installs; a missing tool fails the
/// test with a message saying so.
fn run(tool: &str, args: &[&str]) -> String {
    let output = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): install it with scripts/deps.sh (apt-get install skopeo umoci oci-image-tool)"));
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn layout_for_tools(dir: &Path) -> (ImageStore, std::path::PathBuf) {
    let store = ImageStore::new(rbuild_cache::Store::open(&dir.join("root")).unwrap());
    sample(&store);
    let out = dir.join("layout");
    write_dir(&store, &plan(&store, &names()).unwrap(), &out).unwrap();
    (store, out)
}

#[test]
fn umoci_lists_and_unpacks_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, out) = layout_for_tools(dir.path());
    let layout = out.to_str().unwrap();
    let listed = run("umoci", &["ls", "--layout", layout]);
    let mut names: Vec<&str> = listed.lines().collect();
    names.sort();
    assert_eq!(names, ["1", "stable"]);
    // Unpacking checks every layer's digest and diffID and the config.
    let bundle = dir.path().join("bundle");
    run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{layout}:1"),
            bundle.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(bundle.join("rootfs/files/l2.txt")).unwrap();
    assert_eq!(text, "content of l2\n");
}

#[test]
fn skopeo_inspects_layout_and_docker_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = layout_for_tools(dir.path());
    let image = store.resolve("app:1").unwrap();
    let inspected: serde_json::Value = serde_json::from_str(&run(
        "skopeo",
        &["inspect", &format!("oci:{}:1", out.display())],
    ))
    .unwrap();
    assert_eq!(inspected["Digest"], image.manifest_digest.as_str());
    assert_eq!(inspected["Architecture"], "amd64");
    let layers: Vec<String> = image
        .manifest
        .layers
        .iter()
        .map(|l| l.digest.to_string())
        .collect();
    assert_eq!(inspected["Layers"], serde_json::json!(layers));

    // The docker-archive transport reads what `save` writes.
    let archive = dir.path().join("saved.tar");
    let file = std::fs::File::create(&archive).unwrap();
    save(&store, &["app:1".into()], file).unwrap();
    let config: serde_json::Value = serde_json::from_str(&run(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("docker-archive:{}", archive.display()),
        ],
    ))
    .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(image.config.rootfs.diff_ids)
    );
}

#[test]
fn oci_image_tool_validates_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = layout_for_tools(dir.path());
    let layout = out.to_str().unwrap();
    for name in ["1", "stable"] {
        let output = run(
            "oci-image-tool",
            &[
                "validate",
                "--type",
                "image",
                "--ref",
                &format!("name={name}"),
                layout,
            ],
        );
        assert!(output.contains("Validation succeeded"), "{output}");
    }
    // The validator does look at the blobs: a broken layout fails.
    let config = store.resolve("app:1").unwrap().id;
    std::fs::remove_file(out.join("blobs/sha256").join(config.hex())).unwrap();
    let status = Command::new("oci-image-tool")
        .args(["validate", "--type", "image", "--ref", "name=1", layout])
        .output()
        .unwrap();
    assert!(!status.status.success());
}

#[test]
fn reads_a_layout_written_by_skopeo() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _out) = layout_for_tools(dir.path());
    let archive = dir.path().join("saved.tar");
    save(
        &store,
        &["app:1".into()],
        std::fs::File::create(&archive).unwrap(),
    )
    .unwrap();
    let copied = dir.path().join("copied");
    run(
        "skopeo",
        &[
            "copy",
            &format!("docker-archive:{}", archive.display()),
            &format!("oci:{}:copied", copied.display()),
        ],
    );
    let (_d, fresh) = new_store();
    let report = read_dir(&fresh, &copied).unwrap();
    assert_eq!(report.images.len(), 1);
    // skopeo names it by tag only, which names nothing; the image itself is the same.
    assert!(report.images[0].tags.is_empty());
    assert_eq!(report.images[0].id, store.resolve("app:1").unwrap().id);
}
