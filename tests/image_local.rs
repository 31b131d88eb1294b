//! The local image commands end to end through the real binary: import → images → inspect
//! → tag → history → save → load (into a second root) → rmi → prune → df, and errors that
//! must leave the store as it was.

mod common;

use common::{Root, small_rootfs, text};

fn write_temp(dir: &std::path::Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path.to_str().unwrap().to_owned()
}

fn inspect(root: &Root, name: &str) -> serde_json::Value {
    let out = root.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{out}");
    v[0].clone()
}

#[test]
fn import_list_inspect_tag_history_save_load_rmi_prune_df() {
    let root = Root::new();
    let work = tempfile::tempdir().unwrap();
    let rootfs = write_temp(work.path(), "rootfs.tar", &small_rootfs());

    // import prints the image id.
    let id = root
        .ok(&[
            "import",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            "--change",
            "ENV GREETING=hi",
            &rootfs,
            "demo:1",
        ])
        .trim()
        .to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let short = &id[7..19];

    // images: the table, -q and JSON.
    let table = root.ok(&["images"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{table}");
    }
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], &["demo", "1", short], "{table}");
    // SOURCE_DATE_EPOCH (2023) is years ago.
    assert!(table.contains("years ago"), "{table}");
    assert!(row.last().unwrap().ends_with('B'), "{table}");
    assert_eq!(root.ok(&["images", "-q"]), format!("{short}\n"));
    let json: serde_json::Value =
        serde_json::from_str(root.ok(&["images", "--format", "json"]).trim()).unwrap();
    assert_eq!(json["Repository"], "demo");
    assert_eq!(json["Tag"], "1");
    assert_eq!(json["ID"], short);

    // inspect shows the changes, the layer and the tags.
    let info = inspect(&root, "demo:1");
    assert_eq!(info["Id"], id.as_str());
    assert_eq!(info["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert!(
        info["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("GREETING=hi")),
        "{info}"
    );
    assert_eq!(info["RepoTags"], serde_json::json!(["demo:1"]));
    assert_eq!(info["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(info["Created"], "2023-11-14T22:13:20Z");
    // By id and id prefix too.
    assert_eq!(inspect(&root, short)["Id"], id.as_str());

    // tag, then both names list the same id.
    root.ok(&["tag", "demo:1", "example.com/team/demo:v2"]);
    let listed = root.ok(&["images"]);
    assert!(listed.contains("example.com/team/demo"), "{listed}");
    assert_eq!(
        inspect(&root, "example.com/team/demo:v2")["RepoTags"],
        serde_json::json!(["demo:1", "example.com/team/demo:v2"])
    );

    // A repository filter keeps that repository's rows; with a tag, that tag's.
    assert!(!root.ok(&["images", "demo"]).contains("example.com"));
    assert!(root.ok(&["images", "demo"]).contains("demo "));
    assert_eq!(
        root.ok(&["images", "-q", "example.com/team/demo:v2"]),
        format!("{short}\n")
    );
    assert_eq!(root.ok(&["images", "-q", "demo:nope"]), "");

    // history: one imported layer.
    let history = root.ok(&["history", "demo:1"]);
    let hl: Vec<&str> = history.lines().collect();
    assert!(hl[0].starts_with("IMAGE"), "{history}");
    assert_eq!(hl.len(), 2, "{history}");
    assert!(hl[1].starts_with(short), "{history}");
    assert!(hl[1].contains("Imported from -"), "{history}");
    assert!(root.ok(&["history", "--no-trunc", "demo:1"]).contains(&id));

    // save → load into a second root keeps the id and the names.
    let archive = work.path().join("demo.tar");
    root.ok(&["save", "-o", archive.to_str().unwrap(), "demo:1"]);
    let other = Root::new();
    let loaded = other.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(loaded, "Loaded image: demo:1\n");
    assert_eq!(inspect(&other, "demo:1")["Id"], id.as_str());
    // Saved by id: loads unnamed.
    let by_id = work.path().join("by-id.tar");
    root.ok(&["save", "-o", by_id.to_str().unwrap(), &id]);
    let third = Root::new();
    assert_eq!(
        third.ok(&["load", "-i", by_id.to_str().unwrap()]),
        format!("Loaded image ID: {id}\n")
    );
    // OCI layout tar and directory.
    let oci = work.path().join("demo-oci.tar");
    root.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        oci.to_str().unwrap(),
        "demo:1",
    ]);
    let fourth = Root::new();
    assert_eq!(
        fourth.ok(&["load", "-i", oci.to_str().unwrap()]),
        "Loaded image: demo:1\n"
    );
    let dir = work.path().join("layout");
    root.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        dir.to_str().unwrap(),
        "demo:1",
    ]);
    let index = std::fs::read_to_string(dir.join("index.json")).unwrap();
    assert!(
        index.contains("org.opencontainers.image.ref.name"),
        "{index}"
    );
    // Stdout when redirected, loaded from stdin.
    let out = root.run(&["save", "demo:1"]);
    assert!(out.status.success());
    let fifth = Root::new();
    let out = fifth.run_with(fifth.cmd(&["load"]), &out.stdout);
    assert_eq!(text(&out).0, "Loaded image: demo:1\n", "{}", text(&out).1);

    // rmi: two tags need -f by id; by name untags one at a time.
    let err = root.fails(&["rmi", short]);
    assert!(err.contains("must be forced"), "{err}");
    assert_eq!(
        root.ok(&["rmi", "example.com/team/demo:v2"]),
        "Untagged: example.com/team/demo:v2\n"
    );
    let before = df_blob_bytes(&root);
    assert_eq!(
        root.ok(&["rmi", "demo:1"]),
        format!("Untagged: demo:1\nDeleted: {id}\n")
    );
    assert_eq!(root.ok(&["images", "-q"]), "");

    // prune frees the blobs (layer, config, manifest).
    let pruned = root.ok(&["prune", "-f"]);
    assert!(pruned.contains("Deleted blobs:"), "{pruned}");
    assert_eq!(
        pruned.lines().filter(|l| l.starts_with("sha256:")).count(),
        3,
        "{pruned}"
    );
    assert!(!pruned.contains("Total reclaimed space: 0B"), "{pruned}");
    assert!(before != "0B");
    assert_eq!(df_blob_bytes(&root), "0B");
    // Nothing left to free the second time.
    assert!(
        root.ok(&["prune", "-f"])
            .contains("Total reclaimed space: 0B")
    );
}

/// The SIZE of the `Blobs` row of `rbuild df`.
fn df_blob_bytes(root: &Root) -> String {
    let df = root.ok(&["df"]);
    assert!(df.starts_with("TYPE"), "{df}");
    for kind in ["Images", "Blobs", "Build Cache", "Metadata"] {
        assert!(df.contains(kind), "{df}");
    }
    let row: Vec<&str> = df
        .lines()
        .find(|l| l.starts_with("Blobs"))
        .unwrap()
        .split_whitespace()
        .collect();
    row[3].to_owned()
}

#[test]
fn df_counts_images_and_prune_all_removes_untagged() {
    let root = Root::new();
    let work = tempfile::tempdir().unwrap();
    let rootfs = write_temp(work.path(), "rootfs.tar", &small_rootfs());
    root.ok(&["import", &rootfs, "a:1"]);
    let df = root.ok(&["df"]);
    let images: Vec<&str> = df
        .lines()
        .find(|l| l.starts_with("Images"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&images[1..3], &["1", "1"], "{df}");
    // An untagged import: --all removes it, plain prune keeps it.
    let id = root
        .ok(&["import", "-m", "other", &rootfs])
        .trim()
        .to_owned();
    assert!(root.ok(&["images"]).contains("<none>"));
    root.ok(&["prune", "-f"]);
    assert!(root.ok(&["images"]).contains("<none>"));
    // Under the --keep-storage limit nothing is deleted, not even the untagged image's
    // blobs once its record is gone.
    let out = root.ok(&["prune", "-f", "--all", "--keep-storage", "1GB"]);
    assert!(out.contains(&format!("deleted: {id}")), "{out}");
    assert!(out.contains("Total reclaimed space: 0B"), "{out}");
    assert!(!root.ok(&["images"]).contains("<none>"));
    // Re-import gives the same untagged image again (the blobs are still there).
    assert_eq!(root.ok(&["import", "-m", "other", &rootfs]).trim(), id);
    let out = root.ok(&["prune", "-f", "--all"]);
    assert!(out.contains(&format!("deleted: {id}")), "{out}");
    assert!(!root.ok(&["images"]).contains("<none>"));
    // The tagged image survives with its blobs.
    let check = root.ok(&[
        "save",
        "-o",
        work.path().join("a.tar").to_str().unwrap(),
        "a:1",
    ]);
    assert_eq!(check, "");
    // Without -f and no "y" on stdin, nothing happens.
    let out = root.run_with(root.cmd(&["prune", "--all"]), b"n\n");
    assert!(out.status.success());
    assert!(root.ok(&["images"]).contains("a "));
}

#[test]
fn bad_input_is_one_error_line_and_leaves_the_store_alone() {
    let root = Root::new();
    let work = tempfile::tempdir().unwrap();
    let rootfs = write_temp(work.path(), "rootfs.tar", &small_rootfs());
    root.ok(&["import", &rootfs, "keep:1"]);
    let images = root.ok(&["images"]);
    let df = root.ok(&["df"]);

    let junk = write_temp(
        work.path(),
        "junk.tar",
        b"this is not an image archive at all\n",
    );
    let err = root.fails(&["load", "-i", &junk]);
    assert!(err.contains("junk.tar"), "{err}");
    // A rootfs tar is a tar but no image archive.
    let err = root.fails(&["load", "-i", &rootfs]);
    assert!(err.contains("rootfs.tar"), "{err}");
    let err = root.fails(&[
        "load",
        "-i",
        work.path().join("missing.tar").to_str().unwrap(),
    ]);
    assert!(err.contains("missing.tar"), "{err}");

    let out = root.run(&["inspect", "nope:1"]);
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = text(&out);
    assert_eq!(stdout.trim(), "[]");
    assert_eq!(stderr.trim(), "error: no such image: nope:1");
    assert!(root.fails(&["history", "nope"]).contains("nope"));
    assert!(root.fails(&["tag", "nope", "x:1"]).contains("nope"));
    assert!(root.fails(&["rmi", "nope:2"]).contains("nope:2"));
    assert!(
        root.fails(&[
            "save",
            "-o",
            work.path().join("s.tar").to_str().unwrap(),
            "nope"
        ])
        .contains("nope")
    );
    assert!(!work.path().join("s.tar").exists());
    assert!(root.fails(&["import", &junk, "bad:1"]).contains("junk.tar"));
    assert!(
        root.fails(&["import", "--change", "RUN echo", &rootfs, "bad:2"])
            .contains("change")
    );
    assert!(
        root.fails(&["prune", "-f", "--keep-storage", "lots"])
            .contains("lots")
    );
    assert!(
        root.fails(&["tag", "keep:1", "Bad Name"])
            .contains("Bad Name")
    );

    assert_eq!(root.ok(&["images"]), images);
    // A failed load may leave blobs it streamed in before it found the input bad; nothing
    // references them, so they are garbage for the next prune and the store is otherwise
    // as it was.
    root.ok(&["prune", "-f"]);
    assert_eq!(root.ok(&["df"]), df);
    assert_eq!(root.ok(&["images"]), images);
}

#[test]
fn root_comes_from_flag_then_rbuild_root() {
    let work = tempfile::tempdir().unwrap();
    let rootfs = write_temp(work.path(), "rootfs.tar", &small_rootfs());
    let env_root = work.path().join("env-root");
    let flag_root = work.path().join("flag-root");
    let run = |args: &[&str], flag: Option<&std::path::Path>| {
        let mut cmd = common::rbuild();
        if let Some(flag) = flag {
            cmd.arg("--root").arg(flag);
        }
        let out = cmd
            .args(args)
            .env("RBUILD_ROOT", &env_root)
            .output()
            .unwrap();
        common::assert_success(&out, args);
        text(&out).0
    };
    run(&["import", &rootfs, "from-env:1"], None);
    assert!(env_root.join("layout-version").is_file());
    // The flag wins over the environment, also after the subcommand.
    run(&["images", "--root", flag_root.to_str().unwrap()], None);
    assert!(flag_root.join("layout-version").is_file());
    assert!(!run(&["images"], Some(&flag_root)).contains("from-env"));
    assert!(run(&["images"], None).contains("from-env"));
}
