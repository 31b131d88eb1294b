//! `rbuild save --format oci-dir` output read by the reference tools: `umoci ls` names the
//! tag and `oci-image-tool validate` accepts the layout.

mod common;

use common::{Root, import_busybox, text, tool};

#[test]
fn oci_dir_passes_umoci_and_oci_image_tool() {
    let root = Root::new();
    import_busybox(&root);
    root.ok(&["tag", "busybox", "example.com/tools/bb:v3"]);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    let dir_s = dir.to_str().unwrap();
    root.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        dir_s,
        "example.com/tools/bb:v3",
    ]);

    let out = tool("umoci", &["ls", "--layout", dir_s]);
    assert!(out.status.success(), "umoci ls: {}", text(&out).1);
    assert_eq!(text(&out).0.trim(), "v3");
    let out = tool("umoci", &["stat", "--image", &format!("{dir_s}:v3")]);
    assert!(out.status.success(), "umoci stat: {}", text(&out).1);
    assert!(text(&out).0.contains("Imported from -"), "{}", text(&out).0);

    let out = tool(
        "oci-image-tool",
        &["validate", "--type", "image", "--ref", "name=v3", dir_s],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "oci-image-tool: {stdout}{stderr}");
    assert!(stdout.contains("Validation succeeded"), "{stdout}");
}
