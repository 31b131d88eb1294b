//! `docker save` archives: save, load (legacy and Docker 25+ layouts, OCI layout tars),
//! and bad input that must leave the store as it was.

mod formats_support;

use std::io::Read;

use formats_support::*;
use rbuild_cache::{ContentStore, Digest};
use rbuild_image::archive::{LoadError, load, save};
use rbuild_image::local::ImageStore;
use rbuild_image::oci::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, Index, Manifest, Platform,
    canonical_json, media,
};

/// Every regular file of a tar, in order.
fn files_of(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(data);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.push((name, bytes));
    }
    out
}

fn tar_from(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    tar_of(&refs)
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn two_images(store: &ImageStore) {
    make_image(
        store,
        &["app:1", "app:latest"],
        &[layer("a1"), layer("a2")],
        true,
    );
    make_image(store, &["busybox"], &[layer("bb")], false);
}

#[test]
fn save_writes_docker_and_oci_layout_and_is_deterministic() {
    let (_dir, store) = new_store();
    two_images(&store);
    let names = vec!["app:1".to_owned(), "busybox".to_owned()];
    let data = save(&store, &names, Vec::new()).unwrap();
    assert_eq!(
        save(&store, &names, Vec::new()).unwrap(),
        data,
        "same images, same bytes"
    );

    let entries = tar_entries(&data);
    assert_eq!(&entries[..3], ["oci-layout", "blobs/", "blobs/sha256/"]);
    assert_eq!(
        &entries[entries.len() - 3..],
        ["manifest.json", "repositories", "index.json"]
    );
    let app = store.resolve("app:1").unwrap();
    let bb = store.resolve("busybox").unwrap();
    for d in [&app.manifest_digest, &app.id, &bb.manifest_digest, &bb.id]
        .into_iter()
        .chain(app.manifest.layers.iter().map(|l| &l.digest))
    {
        assert!(entries.contains(&blob_name(d)), "{d}");
    }

    let manifest: serde_json::Value =
        serde_json::from_slice(&tar_file(&data, "manifest.json").unwrap()).unwrap();
    assert_eq!(manifest[0]["Config"], blob_name(&app.id));
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["app:1"]));
    let layers: Vec<String> = app
        .manifest
        .layers
        .iter()
        .map(|l| blob_name(&l.digest))
        .collect();
    assert_eq!(manifest[0]["Layers"], serde_json::json!(layers));
    assert_eq!(
        manifest[1]["RepoTags"],
        serde_json::json!(["busybox:latest"])
    );

    let repositories: serde_json::Value =
        serde_json::from_slice(&tar_file(&data, "repositories").unwrap()).unwrap();
    assert_eq!(
        repositories["busybox"]["latest"],
        bb.manifest.layers[0].digest.hex()
    );

    let index = Index::from_slice(&tar_file(&data, "index.json").unwrap()).unwrap();
    assert_eq!(index.manifests.len(), 2);
    assert_eq!(index.manifests[0].digest, app.manifest_digest);
    assert_eq!(index.manifests[0].annotations[ANNOTATION_REF_NAME], "1");
    assert_eq!(
        index.manifests[0].annotations[ANNOTATION_IMAGE_NAME],
        "docker.io/library/app:1"
    );
    assert_eq!(
        String::from_utf8(tar_file(&data, "oci-layout").unwrap()).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );

    // A repository without a tag saves every tag of it, as docker does.
    let all = save(&store, &["app".into()], Vec::new()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&tar_file(&all, "manifest.json").unwrap()).unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["app:1", "app:latest"])
    );
    assert_eq!(manifest.as_array().unwrap().len(), 1);

    // By id: no names anywhere.
    let by_id = save(&store, &[app.id.to_string()], Vec::new()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&tar_file(&by_id, "manifest.json").unwrap()).unwrap();
    assert!(manifest[0]["RepoTags"].is_null());
    assert!(tar_file(&by_id, "repositories").is_none());
    assert!(save(&store, &["nothing".into()], Vec::new()).is_err());
    assert!(save(&store, &[], Vec::new()).is_err());
}

#[test]
fn save_load_roundtrip_keeps_ids_and_digests() {
    let (_a, src) = new_store();
    two_images(&src);
    let data = save(&src, &["app:1".into(), "busybox".into()], Vec::new()).unwrap();

    let (_b, dst) = new_store();
    let report = load(&dst, data.as_slice()).unwrap();
    assert_eq!(report.images.len(), 2);
    for name in ["app:1", "busybox"] {
        let want = src.resolve(name).unwrap();
        let got = dst.resolve(name).unwrap();
        assert_eq!(got.id, want.id);
        assert_eq!(got.manifest_digest, want.manifest_digest);
        assert_eq!(got.manifest.layers, want.manifest.layers);
    }
    assert!(
        dst.resolve("app:latest").is_err(),
        "only the saved tag travels"
    );

    // Loading again is idempotent; a gzip-compressed archive loads too.
    let again = load(&dst, data.as_slice()).unwrap();
    assert_eq!(again, report);
    let (_c, third) = new_store();
    load(&third, gzip(&data).as_slice()).unwrap();
    assert_eq!(
        third.resolve("busybox").unwrap().id,
        src.resolve("busybox").unwrap().id
    );
}

const LEGACY_CONFIG_TEMPLATE: &str = r#"{"architecture":"amd64","config":{"Hostname":"","Env":["PATH=/bin"],"Cmd":["sh"],"ArgsEscaped":true,"OnBuild":null},"created":"2023-05-01T00:00:00.5Z","docker_version":"20.10.0","history":[{"created":"2023-05-01T00:00:00Z","created_by":"/bin/sh -c #(nop) ADD file:x in / "},{"created":"2023-05-01T00:00:00Z","created_by":"/bin/sh -c echo"},{"created":"2023-05-01T00:00:00Z","created_by":"/bin/sh -c cp"}],"os":"linux","rootfs":{"type":"layers","diff_ids":DIFF_IDS}}"#;

fn legacy_config(diff_ids: &[Digest]) -> Vec<u8> {
    LEGACY_CONFIG_TEMPLATE
        .replace("DIFF_IDS", &serde_json::to_string(diff_ids).unwrap())
        .into_bytes()
}

/// A classic `docker save` archive: `<id>/layer.tar`, `<hex>.json`, a symlinked duplicate.
fn legacy_archive(second_layer_gzipped: bool, diff_ids: Option<Vec<Digest>>) -> (Vec<u8>, Vec<u8>) {
    let (l1, l2) = (layer("legacy1"), layer("legacy2"));
    let diff_ids = diff_ids.unwrap_or_else(|| {
        vec![
            Digest::sha256_of(&l1),
            Digest::sha256_of(&l2),
            Digest::sha256_of(&l1),
        ]
    });
    let config = legacy_config(&diff_ids);
    let config_hex = Digest::sha256_of(&config).hex().to_owned();
    let l2_file = if second_layer_gzipped { gzip(&l2) } else { l2 };
    let (id1, id2, id3) = ("1".repeat(64), "2".repeat(64), "3".repeat(64));
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["legacy:1.0"],
        "Layers": [format!("{id1}/layer.tar"), format!("{id2}/layer.tar"), format!("{id3}/layer.tar")],
    }]);
    let mut builder = tar::Builder::new(Vec::new());
    for id in [&id1, &id2, &id3] {
        append_file(&mut builder, &format!("{id}/VERSION"), b"1.0");
        append_file(&mut builder, &format!("{id}/json"), b"{}");
    }
    append_file(&mut builder, &format!("{id1}/layer.tar"), &l1);
    append_file(&mut builder, &format!("{id2}/layer.tar"), &l2_file);
    append_symlink(
        &mut builder,
        &format!("{id3}/layer.tar"),
        &format!("../{id1}/layer.tar"),
    );
    append_file(&mut builder, &format!("{config_hex}.json"), &config);
    append_file(
        &mut builder,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    append_file(
        &mut builder,
        "repositories",
        format!(r#"{{"legacy":{{"1.0":"{id3}"}}}}"#).as_bytes(),
    );
    (builder.into_inner().unwrap(), config)
}

#[test]
fn loads_legacy_docker_save_archives() {
    for gzipped in [false, true] {
        let (_dir, store) = new_store();
        let (data, config) = legacy_archive(gzipped, None);
        let report = load(&store, data.as_slice()).unwrap();
        assert_eq!(report.images.len(), 1);
        assert_eq!(report.images[0].tags, ["docker.io/library/legacy:1.0"]);
        let image = store.resolve("legacy:1.0").unwrap();
        assert_eq!(
            image.id,
            Digest::sha256_of(&config),
            "config bytes kept as they were"
        );
        let (l1, l2) = (layer("legacy1"), layer("legacy2"));
        let layers = &image.manifest.layers;
        assert_eq!(layers.len(), 3);
        assert_eq!(
            layers[0].digest,
            Digest::sha256_of(&l1),
            "uncompressed: digest is diffID"
        );
        assert_eq!(layers[2].digest, layers[0].digest);
        assert_eq!(layers[0].media_type, media::OCI_LAYER_TAR);
        if gzipped {
            assert_eq!(layers[1].media_type, media::OCI_LAYER_GZIP);
            assert_eq!(layers[1].digest, Digest::sha256_of(&gzip(&l2)));
        } else {
            assert_eq!(layers[1].digest, Digest::sha256_of(&l2));
        }
        assert_eq!(image.config.config.unwrap().args_escaped, Some(true));
    }
}

/// A Docker 25+ archive built by hand, with Docker media types and a gzip layer, so the
/// original manifest (and its digest) must be kept.
#[test]
fn loads_docker_25_archive_keeping_the_manifest_digest() {
    let l = layer("d25");
    let gz = gzip(&l);
    let config = legacy_config(&[Digest::sha256_of(&l)]);
    let config_digest = Digest::sha256_of(&config);
    let mut manifest = Manifest::oci(
        Descriptor::new(
            media::DOCKER_CONFIG,
            config_digest.clone(),
            config.len() as u64,
        ),
        vec![Descriptor::new(
            media::DOCKER_LAYER_GZIP,
            Digest::sha256_of(&gz),
            gz.len() as u64,
        )],
    );
    manifest.media_type = Some(media::DOCKER_MANIFEST.to_owned());
    // Pretty-printed: the digest is of these exact bytes.
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let manifest_digest = Digest::sha256_of(&manifest_bytes);
    let mut entry = Descriptor::new(
        media::DOCKER_MANIFEST,
        manifest_digest.clone(),
        manifest_bytes.len() as u64,
    );
    entry.annotations.insert(
        ANNOTATION_IMAGE_NAME.into(),
        "docker.io/library/d25:latest".into(),
    );
    entry
        .annotations
        .insert(ANNOTATION_REF_NAME.into(), "latest".into());
    let index = canonical_json("index", &Index::oci(vec![entry])).unwrap();
    let docker_manifest = serde_json::json!([{
        "Config": blob_name(&config_digest),
        "RepoTags": ["d25:latest"],
        "Layers": [blob_name(&Digest::sha256_of(&gz))],
    }]);
    let data = tar_from(&[
        ("index.json".into(), index),
        (
            "manifest.json".into(),
            serde_json::to_vec(&docker_manifest).unwrap(),
        ),
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (blob_name(&Digest::sha256_of(&gz)), gz.clone()),
        (blob_name(&config_digest), config),
        (blob_name(&manifest_digest), manifest_bytes),
    ]);
    let (_dir, store) = new_store();
    load(&store, data.as_slice()).unwrap();
    let image = store.resolve("d25").unwrap();
    assert_eq!(image.manifest_digest, manifest_digest);
    assert_eq!(image.id, config_digest);
    assert_eq!(image.manifest.media_type(), media::DOCKER_MANIFEST);
}

#[test]
fn loads_oci_layout_tar_choosing_the_host_platform() {
    let (_a, src) = new_store();
    let host = make_image(&src, &[], &[layer("host")], true);
    let other = make_image(&src, &[], &[layer("other")], true);
    let size_of = |d: &Digest| src.read_document("m", d).unwrap().len() as u64;
    let mut host_desc = Descriptor::new(
        media::OCI_MANIFEST,
        host.manifest.clone(),
        size_of(&host.manifest),
    );
    host_desc.platform = Some(rbuild_image::oci::host_platform());
    let mut other_desc = Descriptor::new(
        media::OCI_MANIFEST,
        other.manifest.clone(),
        size_of(&other.manifest),
    );
    other_desc.platform = Some(Platform {
        architecture: "s390x".into(),
        os: "linux".into(),
        ..Platform::default()
    });
    let nested = canonical_json("index", &Index::oci(vec![other_desc, host_desc])).unwrap();
    let nested_digest = Digest::sha256_of(&nested);
    let mut top = Descriptor::new(media::OCI_INDEX, nested_digest.clone(), nested.len() as u64);
    top.annotations.insert(
        ANNOTATION_IMAGE_NAME.into(),
        "localhost:5000/multi:2".into(),
    );
    let mut bare = Descriptor::new(
        media::OCI_MANIFEST,
        other.manifest.clone(),
        size_of(&other.manifest),
    );
    bare.annotations
        .insert(ANNOTATION_REF_NAME.into(), "latest".into());
    let index = canonical_json("index", &Index::oci(vec![top, bare])).unwrap();

    let mut files = vec![
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_owned(), index),
        (blob_name(&nested_digest), nested),
    ];
    for img in [&host, &other] {
        let image = src.resolve(img.id.as_str()).unwrap();
        for d in [&image.manifest_digest, &image.id]
            .into_iter()
            .chain(image.manifest.layers.iter().map(|l| &l.digest))
        {
            files.push((
                format!("./{}", blob_name(d)),
                src.read_document("blob", d).unwrap(),
            ));
        }
    }
    let (_b, dst) = new_store();
    let report = load(&dst, tar_from(&files).as_slice()).unwrap();
    assert_eq!(report.images.len(), 2);
    assert_eq!(dst.resolve("localhost:5000/multi:2").unwrap().id, host.id);
    // The bare `latest` ref names nothing: that image is loaded untagged.
    let rows = dst.list().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .any(|r| r.id == other.id && r.repository == "<none>")
    );
}

type ErrorCheck = fn(&LoadError) -> bool;

/// Every corrupt input fails with a clear error and leaves the store as it was: tags, images
/// and blobs (the blobs a failed load ingested are removed again at once).
#[test]
fn bad_archives_leave_the_store_unchanged() {
    let (_a, src) = new_store();
    two_images(&src);
    let good = save(&src, &["app:1".into()], Vec::new()).unwrap();
    let good_files = files_of(&good);
    let app = src.resolve("app:1").unwrap();
    let layer_path = blob_name(&app.manifest.layers[0].digest);

    let replace = |path: &str, bytes: Vec<u8>| -> Vec<u8> {
        let files: Vec<_> = good_files
            .iter()
            .map(|(n, b)| (n.clone(), if n == path { bytes.clone() } else { b.clone() }))
            .collect();
        tar_from(&files)
    };
    let without = |path: &str| -> Vec<u8> {
        let files: Vec<_> = good_files
            .iter()
            .filter(|(n, _)| n != path)
            .cloned()
            .collect();
        tar_from(&files)
    };
    let mut tampered_layer = src
        .read_document("layer", &app.manifest.layers[0].digest)
        .unwrap();
    let last = tampered_layer.len() - 9;
    tampered_layer[last] ^= 0xff;
    let (bad_diff_legacy, _) = legacy_archive(false, Some(vec![Digest::sha256_of(b"x"); 3]));

    let cases: Vec<(&str, Vec<u8>, ErrorCheck)> = vec![
        (
            "not a tar",
            b"definitely not a tar archive\n".repeat(40),
            |e| matches!(e, LoadError::Tar(_)),
        ),
        ("empty", Vec::new(), |e| matches!(e, LoadError::Empty)),
        ("only end blocks", vec![0; 1024], |e| {
            matches!(e, LoadError::NoManifest)
        }),
        ("no manifest", tar_of(&[("hello.txt", b"hi")]), |e| {
            matches!(e, LoadError::NoManifest)
        }),
        ("no images", tar_of(&[("manifest.json", b"[]")]), |e| {
            matches!(e, LoadError::NoImages)
        }),
        ("truncated", good[..good.len() / 2].to_vec(), |e| {
            matches!(e, LoadError::Truncated { .. } | LoadError::NoEndMarker)
        }),
        ("cut at a block", good[..1024].to_vec(), |e| {
            matches!(e, LoadError::NoEndMarker)
        }),
        ("wrong digest", replace(&layer_path, tampered_layer), |e| {
            matches!(e, LoadError::Blob { .. })
        }),
        ("missing layer", without(&layer_path), |e| {
            matches!(e, LoadError::MissingFile { .. })
        }),
        (
            "bad manifest.json",
            replace("manifest.json", b"[{".to_vec()),
            |e| matches!(e, LoadError::Document { .. }),
        ),
        (
            "bad tag",
            replace(
                "manifest.json",
                String::from_utf8(
                    good_files
                        .iter()
                        .find(|(n, _)| n == "manifest.json")
                        .unwrap()
                        .1
                        .clone(),
                )
                .unwrap()
                .replace("app:1", "App:1")
                .into_bytes(),
            ),
            |e| matches!(e, LoadError::Name(_)),
        ),
        ("diffID mismatch", bad_diff_legacy, |e| {
            matches!(e, LoadError::DiffId { .. })
        }),
        ("bad gzip", gzip(&good)[..200].to_vec(), |e| {
            matches!(e, LoadError::Tar(_))
        }),
    ];

    let (_b, store) = new_store();
    make_image(&store, &["existing"], &[layer("existing")], false);
    let snap = snapshot(&store);
    let before = blobs(&store);
    for (what, data, expected) in cases {
        let err = load(&store, data.as_slice()).unwrap_err();
        assert!(expected(&err), "{what}: unexpected error {err:?}");
        assert!(!err.to_string().is_empty());
        assert_unchanged(&store, &snap, &before);
    }
    // And the good archive still loads afterwards.
    load(&store, good.as_slice()).unwrap();
    assert_eq!(store.resolve("app:1").unwrap().id, app.id);
}

/// A failed load removes only what it added and nothing references: blobs that were there
/// before, and blobs a concurrent load of the same content is recording, stay.
#[test]
fn failed_loads_never_take_blobs_that_others_use() {
    let (_a, src) = new_store();
    two_images(&src);
    let good = save(&src, &["app:1".into(), "busybox".into()], Vec::new()).unwrap();
    // The same blobs, but a manifest.json that does not parse: every blob is ingested
    // before the load fails.
    let bad = tar_from(
        &files_of(&good)
            .into_iter()
            .map(|(n, b)| {
                let b = if n == "manifest.json" {
                    b"[{".to_vec()
                } else {
                    b
                };
                (n, b)
            })
            .collect::<Vec<_>>(),
    );

    // Blobs already present (one layer shared with an existing image) survive a failure.
    let (_b, store) = new_store();
    let app = src.resolve("app:1").unwrap();
    let shared = &app.manifest.layers[0];
    let shared_bytes = src.read_document("layer", &shared.digest).unwrap();
    let d = store
        .store()
        .content()
        .ingest(None, shared_bytes.as_slice())
        .unwrap();
    assert_eq!(d.digest, shared.digest);
    let snap = snapshot(&store);
    let before = blobs(&store);
    assert!(load(&store, bad.as_slice()).is_err());
    assert_unchanged(&store, &snap, &before);

    // Good and bad loads of the same blobs at once: the good images are complete after.
    for _ in 0..3 {
        let (_c, store) = new_store();
        std::thread::scope(|s| {
            let loads: Vec<_> = [&good, &bad, &good, &bad]
                .into_iter()
                .map(|data| s.spawn(|| load(&store, data.as_slice()).is_ok()))
                .collect();
            let ok: Vec<bool> = loads.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(ok, [true, false, true, false]);
        });
        for name in ["app:1", "busybox"] {
            let image = store.resolve(name).unwrap();
            for blob in image.manifest.layers.iter().chain([&image.manifest.config]) {
                store.store().content().verify(&blob.digest).unwrap();
            }
            store
                .store()
                .content()
                .verify(&image.manifest_digest)
                .unwrap();
        }
        // And nothing unreferenced is left.
        assert!(
            store
                .store()
                .prune(&Default::default(), None)
                .unwrap()
                .deleted
                .is_empty()
        );
    }
}

#[test]
fn zstd_layers_roundtrip_with_diff_ids_checked() {
    let (_a, src) = new_store();
    let rootfs = tar_of(&[("etc/hostname", b"zstd\n")]);
    let options = rbuild_image::local::ImportOptions {
        compression: rbuild_image::compress::Compression::DEFAULT_ZSTD,
        created: Some(0),
        ..Default::default()
    };
    let img =
        rbuild_image::local::import_rootfs(&src, rootfs.as_slice(), Some("z:1"), &options).unwrap();
    let layer = &src.resolve("z:1").unwrap().manifest.layers[0];
    assert_eq!(layer.media_type, media::OCI_LAYER_ZSTD);
    let data = save(&src, &["z:1".into()], Vec::new()).unwrap();
    let (_b, dst) = new_store();
    load(&dst, data.as_slice()).unwrap();
    let back = dst.resolve("z:1").unwrap();
    assert_eq!((back.id, back.manifest_digest), (img.id, img.manifest));
    assert_eq!(back.config.rootfs.diff_ids, [Digest::sha256_of(&rootfs)]);
}

#[test]
fn concurrent_loads_into_one_store_all_succeed() {
    let (_a, src) = new_store();
    two_images(&src);
    let data = save(&src, &["app".into(), "busybox".into()], Vec::new()).unwrap();
    let (_b, dst) = new_store();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| load(&dst, data.as_slice())))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap().images.len(), 2);
        }
    });
    let rows = dst.list().unwrap();
    assert_eq!(rows.len(), 3, "app:1, app:latest, busybox:latest");
    // Every blob is referenced: nothing to prune.
    assert!(
        dst.store()
            .prune(&Default::default(), None)
            .unwrap()
            .deleted
            .is_empty()
    );
}
