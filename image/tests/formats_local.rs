//! The local image store: resolve, list, tag, rmi, inspect, history, import.

mod formats_support;

use std::collections::BTreeSet;

use formats_support::*;
use rbuild_cache::{ContentStore, Digest};
use rbuild_image::compress::Compression;
use rbuild_image::local::{
    ImportError, ImportOptions, LocalError, RemoveEvent, import_rootfs, short_id,
};

#[test]
fn resolve_by_name_id_prefix_and_digest() {
    let (_dir, store) = new_store();
    let img = make_image(
        &store,
        &["busybox", "localhost:5000/app:v1"],
        &[layer("a")],
        false,
    );
    assert_eq!(
        img.tags,
        ["docker.io/library/busybox:latest", "localhost:5000/app:v1"]
    );
    let hex = img.id.hex().to_owned();
    for name in [
        "busybox".to_owned(),
        "busybox:latest".to_owned(),
        "docker.io/library/busybox".to_owned(),
        "localhost:5000/app:v1".to_owned(),
        img.id.to_string(),
        hex.clone(),
        hex[..12].to_owned(),
        format!("sha256:{}", &hex[..5]),
        format!("busybox@{}", img.manifest),
    ] {
        let found = store
            .resolve(&name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(found.id, img.id, "{name}");
        assert_eq!(found.manifest_digest, img.manifest);
    }
    for missing in [
        "busybox:1.0",
        "other",
        "ffffffffffff",
        "sha256:",
        "Bad Name",
    ] {
        let err = store.resolve(missing).unwrap_err();
        assert!(matches!(err, LocalError::NotFound(_)), "{missing}: {err}");
        assert_eq!(err.to_string(), format!("no such image: {missing}"));
    }
}

#[test]
fn ambiguous_id_prefix_is_an_error() {
    let (_dir, store) = new_store();
    // Seventeen images are enough for two ids to share a first hex digit.
    let mut seen = std::collections::BTreeMap::new();
    let shared = (0..17)
        .find_map(|i| {
            let img = make_image(&store, &[], &[layer(&format!("amb{i}"))], false);
            let first = img.id.hex()[..1].to_owned();
            seen.insert(first.clone(), img.id.clone()).map(|_| first)
        })
        .unwrap();
    let err = store.resolve(&shared).unwrap_err();
    assert!(matches!(err, LocalError::Ambiguous(_)), "{err}");
}

#[test]
fn put_image_rejects_missing_layers_and_bad_documents() {
    let (_dir, store) = new_store();
    let l = layer("x");
    let config = rbuild_image::oci::canonical_json(
        "config",
        &config_for(std::slice::from_ref(&l), "2024-01-01T00:00:00Z"),
    )
    .unwrap();
    let manifest = rbuild_image::oci::Manifest::oci(
        rbuild_image::oci::Descriptor::new(
            rbuild_image::oci::media::OCI_CONFIG,
            Digest::sha256_of(&config),
            config.len() as u64,
        ),
        vec![rbuild_image::oci::Descriptor::new(
            rbuild_image::oci::media::OCI_LAYER_TAR,
            Digest::sha256_of(&l),
            l.len() as u64,
        )],
    );
    let manifest = rbuild_image::oci::canonical_json("manifest", &manifest).unwrap();
    let err = store
        .put_image(&manifest, &config, &["app".into()])
        .unwrap_err();
    assert!(
        matches!(err, LocalError::MissingBlob { what: "layer", .. }),
        "{err}"
    );
    assert!(store.put_image(b"{}", &config, &[]).is_err());
    assert!(
        store
            .put_image(&manifest, &config, &["UPPER".into()])
            .is_err()
    );
    assert!(store.list().unwrap().is_empty());
    assert!(store.store().meta().list_tags().unwrap().is_empty());
}

#[test]
fn list_shows_tags_and_untagged_images_newest_first() {
    let (_dir, store) = new_store();
    let old = make_image_at(
        &store,
        &["app:1", "user/app"],
        &[layer("o")],
        true,
        "2020-01-01T00:00:00Z",
    );
    let new = make_image_at(
        &store,
        &["app:2"],
        &[layer("n"), layer("m")],
        false,
        "2024-01-01T00:00:00Z",
    );
    let dangling = make_image_at(&store, &[], &[layer("d")], false, "2022-01-01T00:00:00Z");
    let rows = store.list().unwrap();
    let summary: Vec<_> = rows
        .iter()
        .map(|r| (r.repository.as_str(), r.tag.as_str(), r.id.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("app", "2", new.id.clone()),
            ("<none>", "<none>", dangling.id.clone()),
            ("app", "1", old.id.clone()),
            ("user/app", "latest", old.id.clone()),
        ]
    );
    assert_eq!(rows[0].created.as_deref(), Some("2024-01-01T00:00:00Z"));
    assert_eq!(rows[0].created_unix, Some(1_704_067_200));
    let blobs_of_new: u64 = store
        .resolve("app:2")
        .map(|i| i.manifest.layers.iter().map(|l| l.size).sum::<u64>() + i.manifest.config.size)
        .unwrap();
    assert!(
        rows[0].size > blobs_of_new,
        "size includes manifest, config and layers"
    );
}

#[test]
fn tag_moves_and_leaves_old_image_dangling() {
    let (_dir, store) = new_store();
    let a = make_image(&store, &["app"], &[layer("a")], false);
    let b = make_image(&store, &[], &[layer("b")], false);
    assert_eq!(
        store.tag(short_id(&a.id), "app:copy").unwrap(),
        "docker.io/library/app:copy"
    );
    assert_eq!(store.resolve("app:copy").unwrap().id, a.id);
    store.tag(b.id.as_str(), "app").unwrap();
    assert_eq!(store.resolve("app").unwrap().id, b.id);
    assert!(matches!(
        store.tag("nope", "x").unwrap_err(),
        LocalError::NotFound(_)
    ));
    assert!(matches!(
        store.tag("app", "Bad:tag").unwrap_err(),
        LocalError::Reference(_)
    ));
    let tags: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|r| format!("{}:{}", r.repository, r.tag))
        .collect();
    assert_eq!(tags.len(), 2);
}

#[test]
fn rmi_untags_then_deletes_and_prune_frees_blobs() {
    let (_dir, store) = new_store();
    let img = make_image(&store, &["app:1", "app:2", "other"], &[layer("r")], true);
    let keep = make_image(&store, &["keep"], &[layer("k")], false);
    let blobs_with_both = blobs(&store);

    // By id with several tags: refused without force.
    let results = store.remove(&[short_id(&img.id).to_owned()], false);
    let err = results[0].1.as_ref().unwrap_err();
    assert!(matches!(err, LocalError::MultipleReferences(_)));
    assert!(err.to_string().contains("must be forced"));

    // By tag: untag only while other tags remain.
    let results = store.remove(&["app:1".into(), "missing".into()], false);
    assert_eq!(
        results[0].1.as_ref().unwrap(),
        &[RemoveEvent::Untagged("app:1".into())]
    );
    assert!(matches!(results[1].1, Err(LocalError::NotFound(_))));
    assert!(store.resolve("app:2").is_ok());

    // Force by id removes every remaining tag and the image.
    let results = store.remove(&[img.id.hex()[..8].to_owned()], true);
    assert_eq!(
        results[0].1.as_ref().unwrap(),
        &[
            RemoveEvent::Untagged("app:2".into()),
            RemoveEvent::Untagged("other:latest".into()),
            RemoveEvent::Deleted(img.id.clone()),
        ]
    );
    assert!(store.resolve(img.id.as_str()).is_err());

    // The removed image's blobs are garbage now; the other image's are kept.
    let report = store.store().prune(&BTreeSet::new(), None).unwrap();
    let deleted: BTreeSet<_> = report.deleted.into_iter().map(|d| d.digest).collect();
    assert!(deleted.contains(&img.manifest) && deleted.contains(&img.id));
    let left = blobs(&store);
    assert!(left.len() < blobs_with_both.len());
    let keep_image = store.resolve("keep").unwrap();
    for l in &keep_image.manifest.layers {
        assert!(store.store().content().contains(&l.digest).unwrap());
    }
    assert_eq!(keep_image.id, keep.id);

    // Last tag by name deletes the image.
    let results = store.remove(&["keep".into()], false);
    assert_eq!(
        results[0].1.as_ref().unwrap(),
        &[
            RemoveEvent::Untagged("keep:latest".into()),
            RemoveEvent::Deleted(keep.id.clone())
        ]
    );
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn inspect_is_shaped_like_docker() {
    let (_dir, store) = new_store();
    let layers = [layer("i1"), layer("i2")];
    let img = make_image(
        &store,
        &["busybox", "registry.example:5000/team/bb:1"],
        &layers,
        true,
    );
    let info = store.inspect("busybox").unwrap();
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["Id"], img.id.as_str());
    assert_eq!(
        json["RepoTags"],
        serde_json::json!(["busybox:latest", "registry.example:5000/team/bb:1"])
    );
    assert_eq!(
        json["RepoDigests"],
        serde_json::json!([
            format!("busybox@{}", img.manifest),
            format!("registry.example:5000/team/bb@{}", img.manifest)
        ])
    );
    assert_eq!(json["Created"], "2024-05-06T07:08:09Z");
    assert_eq!(json["Architecture"], "amd64");
    assert_eq!(json["Os"], "linux");
    assert_eq!(json["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(json["RootFS"]["Type"], "layers");
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| Digest::sha256_of(l).to_string())
        .collect();
    assert_eq!(json["RootFS"]["Layers"], serde_json::json!(diff_ids));
    let image = store.resolve("busybox").unwrap();
    let layer_bytes: u64 = image.manifest.layers.iter().map(|l| l.size).sum();
    assert_eq!(json["Size"], layer_bytes);
    assert!(
        json["Metadata"]["LastTagTime"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    for key in ["Parent", "Comment", "DockerVersion", "Author"] {
        assert_eq!(json[key], "", "{key}");
    }
    assert!(matches!(
        store.inspect("nothing").unwrap_err(),
        LocalError::NotFound(_)
    ));
}

#[test]
fn history_rows_newest_first_with_missing_ids() {
    let (_dir, store) = new_store();
    let img = make_image(&store, &["hist"], &[layer("h1"), layer("h2")], false);
    let rows = store.history("hist").unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].id, img.id.to_string());
    assert_eq!(rows[0].tags, ["hist:latest"]);
    assert!(rows[0].empty_layer);
    assert_eq!(rows[0].size, 0);
    assert_eq!(rows[0].created_by, "/bin/sh -c #(nop)  CMD [\"sh\"]");
    assert_eq!(rows[1].id, "<missing>");
    assert_eq!(rows[1].created_by, "/bin/sh -c step 1");
    assert_eq!(rows[1].size, layer("h2").len() as u64);
    assert_eq!(rows[2].size, layer("h1").len() as u64);
    assert_eq!(rows[2].created.as_deref(), Some("2024-05-06T07:08:09Z"));
}

#[test]
fn import_with_changes_makes_a_one_layer_image() {
    let (_dir, store) = new_store();
    let rootfs = tar_of(&[
        ("bin/sh", b"#!fake"),
        ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
    ]);
    let options = ImportOptions {
        changes: vec![
            r#"CMD ["/bin/sh"]"#.into(),
            "ENV A=1 B=\"two words\"".into(),
            "EXPOSE 8080".into(),
            "WORKDIR /srv".into(),
            "USER 1000".into(),
            "LABEL version=1.0".into(),
            "VOLUME /data".into(),
            "STOPSIGNAL SIGINT".into(),
            "ENTRYPOINT [\"/init\"]".into(),
        ],
        created: Some(1_700_000_000),
        ..ImportOptions::default()
    };
    let img = import_rootfs(
        &store,
        gzip(&rootfs).as_slice(),
        Some("imported:v1"),
        &options,
    )
    .unwrap();
    assert_eq!(img.tags, ["docker.io/library/imported:v1"]);
    let image = store.resolve("imported:v1").unwrap();
    assert_eq!(image.config.rootfs.diff_ids, [Digest::sha256_of(&rootfs)]);
    assert_eq!(image.manifest.layers.len(), 1);
    assert_eq!(
        image.manifest.layers[0].media_type,
        rbuild_image::oci::media::OCI_LAYER_GZIP
    );
    assert_eq!(
        image.config.created.as_deref(),
        Some("2023-11-14T22:13:20Z")
    );
    assert_eq!(
        image.config.history[0].comment.as_deref(),
        Some("Imported from -")
    );
    let rc = image.config.config.clone().unwrap();
    assert_eq!(rc.cmd.unwrap(), ["/bin/sh"]);
    assert_eq!(rc.entrypoint.unwrap(), ["/init"]);
    assert_eq!(rc.env, ["A=1", "B=two words"]);
    assert!(rc.exposed_ports.contains_key("8080/tcp"));
    assert_eq!(rc.working_dir.as_deref(), Some("/srv"));
    assert_eq!(rc.user.as_deref(), Some("1000"));
    assert_eq!(rc.labels["version"], "1.0");
    assert!(rc.volumes.contains_key("/data"));
    assert_eq!(rc.stop_signal.as_deref(), Some("SIGINT"));

    // The stored layer decompresses to exactly the input tar.
    let mut plain = Vec::new();
    let blob = store
        .store()
        .content()
        .open(&image.manifest.layers[0].digest)
        .unwrap();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(blob), &mut plain).unwrap();
    assert_eq!(plain, rootfs);

    // Same input and time, uncompressed: the layer digest is the diffID; deterministic.
    let plain_opts = ImportOptions {
        compression: Compression::None,
        ..options.clone()
    };
    let a = import_rootfs(&store, rootfs.as_slice(), None, &plain_opts).unwrap();
    let b = import_rootfs(&store, rootfs.as_slice(), None, &plain_opts).unwrap();
    assert_eq!(a, b);
    let untagged = store.read_manifest(&a.manifest).unwrap();
    assert_eq!(untagged.layers[0].digest, Digest::sha256_of(&rootfs));
    // It shares the config (the image id) with the gzip variant; the tagged one wins.
    assert_eq!(a.id, img.id);
    assert_eq!(
        store.resolve(a.id.as_str()).unwrap().manifest_digest,
        img.manifest
    );
}

#[test]
fn bad_imports_change_nothing() {
    let (_dir, store) = new_store();
    make_image(&store, &["base"], &[layer("base")], false);
    let snap = snapshot(&store);
    let before = blobs(&store);
    let rootfs = tar_of(&[("a", b"a")]);
    let opts = ImportOptions::default();
    let cases: Vec<(Vec<u8>, Option<&str>, ImportOptions)> = vec![
        (
            b"this is not a tar archive, just some text that is long enough".repeat(20),
            Some("x"),
            opts.clone(),
        ),
        (Vec::new(), Some("x"), opts.clone()),
        (rootfs[..700].to_vec(), Some("x"), opts.clone()),
        (gzip(&rootfs)[..20].to_vec(), Some("x"), opts.clone()),
        (rootfs.clone(), Some("Bad Name"), opts.clone()),
        (
            rootfs.clone(),
            Some("x"),
            ImportOptions {
                changes: vec!["RUN rm -rf /".into()],
                ..opts.clone()
            },
        ),
    ];
    for (i, (input, name, options)) in cases.into_iter().enumerate() {
        let err = import_rootfs(&store, input.as_slice(), name, &options).unwrap_err();
        match i {
            0 | 2 => assert!(matches!(err, ImportError::NotATar(_)), "{i}: {err}"),
            1 => assert!(matches!(err, ImportError::Empty), "{i}: {err}"),
            4 => assert!(matches!(err, ImportError::Reference(_)), "{i}: {err}"),
            5 => assert!(matches!(err, ImportError::Change(_)), "{i}: {err}"),
            _ => {}
        }
        assert_unchanged_after_prune(&store, &snap, &before);
    }
}
