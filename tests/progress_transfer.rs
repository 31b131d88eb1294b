//! Byte progress of `rbuild push` and `pull` as `RBUILD_PROGRESS` selects it, against
//! Debian's real `docker-registry` (the `TestRegistry` fixture). Without the variable and
//! a terminal both commands stay silent on stderr (the other registry tests rely on it).

mod common;

use common::{Root, assert_success, import_busybox, text};
use rbuild_image::registry::testing::TestRegistry;

#[test]
fn push_and_pull_report_blob_transfers() {
    let registry = TestRegistry::start().expect("registry fixture");
    let name = format!("{}/progress:latest", registry.host());
    let src = Root::new();
    import_busybox(&src);
    src.ok(&["tag", "busybox", &name]);

    let out = src
        .cmd(&["push", &name])
        .env("RBUILD_PROGRESS", "plain")
        .output()
        .unwrap();
    assert_success(&out, &["push"]);
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains(": Pushed"), "{stdout}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("#1 pushing ") && first.ends_with("/progress:latest"),
        "{stderr}"
    );
    // The layer is read for its upload, with a final byte count, and finishes.
    let upload = stderr
        .lines()
        .find(|l| l.contains(" uploading sha256:"))
        .unwrap_or_else(|| panic!("no upload task in:\n{stderr}"));
    let number = upload.split_whitespace().next().unwrap();
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(number) && l.contains("B / ")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{number} DONE ")), "{stderr}");
    assert!(stderr.contains("#1 DONE "), "{stderr}");

    let dst = Root::new();
    let out = dst
        .cmd(&["pull", &name])
        .env("RBUILD_PROGRESS", "rawjson")
        .output()
        .unwrap();
    assert_success(&out, &["pull"]);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("Status: Downloaded newer image"),
        "{stdout}"
    );
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let download = events
        .iter()
        .find(|e| {
            e["event"] == "started"
                && e["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("downloading sha256:")
        })
        .unwrap_or_else(|| panic!("no download task in:\n{stderr}"));
    let id = &download["id"];
    let last_bytes = events
        .iter()
        .rfind(|e| e["id"] == *id && e["event"] == "progress")
        .unwrap();
    assert_eq!(last_bytes["current"], last_bytes["total"], "{stderr}");
    assert!(
        events
            .iter()
            .any(|e| e["id"] == *id && e["event"] == "done"),
        "{stderr}"
    );
    let finish = events.last().unwrap();
    assert_eq!(finish["event"], "finish");
    assert_eq!(finish["ok"], true);

    // Nothing on stderr by default (no terminal here), and a bad value is one clear error.
    let out = dst.run(&["pull", &name]);
    assert_success(&out, &["pull"]);
    assert_eq!(text(&out).1, "");
    let out = dst
        .cmd(&["pull", &name])
        .env("RBUILD_PROGRESS", "fancy")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(
        stderr.starts_with("error: RBUILD_PROGRESS=\"fancy\""),
        "{stderr}"
    );
}
