//! `rbuild push`/`pull`/`login`/`logout` against Debian's real `docker-registry` (the
//! `TestRegistry` fixture), read back with `skopeo`.

mod common;

use std::path::Path;

use common::{Root, assert_one_line_error, assert_success, import_busybox, text, tool};
use rbuild_image::registry::testing::{PASSWORD, TestRegistry, USER};

/// The digest `rbuild push` printed (`<tag>: digest: sha256:... size: N`).
fn pushed_digest(out: &str, tag: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{tag}: digest: ")))
        .unwrap_or_else(|| panic!("no digest line in:\n{out}"));
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts[3], "size:", "{line}");
    assert!(parts[4].parse::<u64>().is_ok(), "{line}");
    parts[2].to_owned()
}

fn skopeo_digest(image: &str, authfile: Option<&Path>) -> String {
    let mut args = vec!["inspect", "--tls-verify=false"];
    let auth;
    if let Some(path) = authfile {
        auth = format!("--authfile={}", path.display());
        args.push(&auth);
    }
    args.push(image);
    let out = tool("skopeo", &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "skopeo inspect {image}: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    v["Digest"].as_str().unwrap().to_owned()
}

fn id_of(root: &Root, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&root.ok(&["inspect", name])).unwrap();
    v[0]["Id"].as_str().unwrap().to_owned()
}

#[test]
fn push_then_pull_into_another_root() {
    let registry = TestRegistry::start().expect("registry fixture");
    let name = format!("{}/bb:latest", registry.host());
    let src = Root::new();
    let id = import_busybox(&src);
    src.ok(&["tag", "busybox", &name]);
    let out = src.ok(&["push", &name]);
    assert!(
        out.starts_with(&format!(
            "The push refers to repository [{}/bb]",
            registry.host()
        )),
        "{out}"
    );
    let digest = pushed_digest(&out, "latest");
    assert_eq!(
        out.lines().filter(|l| l.ends_with(": Pushed")).count(),
        1,
        "one layer uploaded:\n{out}"
    );
    // Pushing again finds everything there.
    let again = src.ok(&["push", &name]);
    assert!(again.contains(": Layer already exists"), "{again}");
    assert_eq!(pushed_digest(&again, "latest"), digest);
    assert_eq!(
        skopeo_digest(&format!("docker://{name}"), None),
        digest,
        "skopeo reads what we pushed"
    );

    let dst = Root::new();
    let out = dst.ok(&["pull", &name]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");
    assert_eq!(id_of(&dst, &name), id);
    // By digest too, and a second pull is up to date.
    let by_digest = format!("{}/bb@{digest}", registry.host());
    assert!(dst.ok(&["pull", &by_digest]).contains(&digest));
    assert!(
        dst.ok(&["pull", &name])
            .contains("Status: Image is up to date")
    );

    // Unknown tag: one clear error, exit 1.
    let err = dst.fails(&["pull", &format!("{}/bb:nope", registry.host())]);
    assert!(err.contains("bb"), "{err}");
    // Bad flags are one clear error each.
    assert!(
        dst.fails(&["pull", "--platform", "bogus", &name])
            .contains("bogus")
    );
    assert!(
        dst.fails(&["pull", "--registry-mirror", "not a url", &name])
            .contains("not a url")
    );
    // An image we do not have cannot be pushed.
    assert!(
        dst.fails(&["push", &format!("{}/other:1", registry.host())])
            .contains("other")
    );
}

#[test]
fn auth_registry_needs_login() {
    let registry = TestRegistry::start_with_auth().expect("registry fixture");
    let host = registry.host();
    let name = format!("{host}/bb:latest");
    let docker_config = tempfile::tempdir().unwrap();
    let src = Root::new();
    import_busybox(&src);
    src.ok(&["tag", "busybox", &name]);
    let with_config = |args: &[&str]| {
        let mut cmd = src.cmd(args);
        cmd.env("DOCKER_CONFIG", docker_config.path());
        cmd
    };

    // Without credentials: a clear 401, exit 1.
    let out = with_config(&["push", &name]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let err = stderr.lines().last().unwrap_or_default();
    assert!(err.starts_with("error: "), "{stderr}");
    assert!(
        err.contains("denied") || err.contains("401") || err.contains("unauthorized"),
        "{err}"
    );
    assert!(err.contains("bb"), "{err}");

    // A wrong password is refused and nothing is written.
    let out = src.run_with(
        with_config(&["login", "-u", USER, "--password-stdin", &host]),
        b"wrong\n",
    );
    assert_one_line_error(&out, &["login"]);
    assert!(!docker_config.path().join("config.json").exists());

    let out = src.run_with(
        with_config(&["login", "-u", USER, "--password-stdin", &host]),
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_success(&out, &["login"]);
    assert_eq!(text(&out).0, "Login Succeeded\n");
    let config_json = docker_config.path().join("config.json");
    let cfg = std::fs::read_to_string(&config_json).unwrap();
    assert!(cfg.contains(&host), "{cfg}");

    let out = with_config(&["push", &name]).output().unwrap();
    assert_success(&out, &["push"]);
    let digest = pushed_digest(&text(&out).0, "latest");
    assert_eq!(
        skopeo_digest(&format!("docker://{name}"), Some(&config_json)),
        digest
    );

    // Pull into another root with the same credentials.
    let dst = Root::new();
    let mut pull = dst.cmd(&["pull", &name]);
    pull.env("DOCKER_CONFIG", docker_config.path());
    assert_success(&pull.output().unwrap(), &["pull"]);

    // After logout the registry refuses again.
    let out = with_config(&["logout", &host]).output().unwrap();
    assert_eq!(
        text(&out).0,
        format!("Removing login credentials for {host}\n")
    );
    let out = with_config(&["push", &name]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn docker_archive_load_push_skopeo_copy_keeps_digests() {
    let registry = TestRegistry::start().expect("registry fixture");
    let work = tempfile::tempdir().unwrap();
    let src = Root::new();
    let id = import_busybox(&src);
    let name = format!("{}/arch/bb:v1", registry.host());
    src.ok(&["tag", "busybox", &name]);
    let archive = work.path().join("bb.tar");
    src.ok(&["save", "-o", archive.to_str().unwrap(), &name]);

    // The manifest digest the archive carries (docker save archives are OCI layouts too).
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    let mut index = None;
    let mut has_manifest_json = false;
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        has_manifest_json |= path == "manifest.json";
        if path == "index.json" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
            index = Some(s);
        }
    }
    assert!(has_manifest_json, "a docker save archive has manifest.json");
    let index: serde_json::Value = serde_json::from_str(&index.unwrap()).unwrap();
    let archived = index["manifests"][0]["digest"].as_str().unwrap().to_owned();

    let mid = Root::new();
    assert_eq!(
        mid.ok(&["load", "-i", archive.to_str().unwrap()]),
        format!("Loaded image: {name}\n")
    );
    assert_eq!(id_of(&mid, &name), id);
    let pushed = pushed_digest(&mid.ok(&["push", &name]), "v1");
    assert_eq!(pushed, archived, "push keeps the archived manifest digest");

    let layout = work.path().join("copied");
    let out = tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{name}"),
            &format!("oci:{}:v1", layout.display()),
        ],
    );
    assert!(out.status.success(), "skopeo copy: {}", text(&out).1);
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], pushed.as_str());
    // The copied manifest names our config, so the image id survives too.
    let hex = pushed.strip_prefix("sha256:").unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    assert_eq!(manifest["config"]["digest"], id.as_str());
}

#[test]
fn docker_hub_names_pull_from_a_mirror() {
    let registry = TestRegistry::start().expect("registry fixture");
    let src = Root::new();
    let id = import_busybox(&src);
    // What a mirror of Docker Hub serves for `busybox`.
    let on_mirror = format!("{}/library/busybox:latest", registry.host());
    src.ok(&["tag", "busybox", &on_mirror]);
    src.ok(&["push", &on_mirror]);

    let mirror = format!("http://{}", registry.host());
    // Docker Hub itself is never contacted from tests: --no-hub-fallback.
    let dst = Root::new();
    let out = dst.ok(&[
        "pull",
        "--no-hub-fallback",
        "--registry-mirror",
        &mirror,
        "busybox",
    ]);
    assert!(out.ends_with("docker.io/library/busybox:latest\n"), "{out}");
    assert_eq!(id_of(&dst, "busybox"), id);

    // The same through RBUILD_REGISTRY_MIRRORS (a comma list; empty items are skipped).
    let env_dst = Root::new();
    let mut cmd = env_dst.cmd(&["pull", "--no-hub-fallback", "busybox"]);
    cmd.env("RBUILD_REGISTRY_MIRRORS", format!(",{mirror},"));
    assert_success(&cmd.output().unwrap(), &["pull"]);
    assert_eq!(id_of(&env_dst, "busybox"), id);

    // And from the config file ($RBUILD_CONFIG), docker daemon.json style.
    let file_dst = Root::new();
    let config = file_dst.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "registry-mirrors = [\"{mirror}\"]\ninsecure-registries = [\"{}\"]\n",
            registry.host()
        ),
    )
    .unwrap();
    let mut cmd = file_dst.cmd(&["pull", "--no-hub-fallback", "busybox:latest"]);
    cmd.env("RBUILD_CONFIG", &config);
    let out = cmd.output().unwrap();
    assert_success(&out, &["pull"]);
    assert!(
        text(&out).0.ends_with("docker.io/library/busybox:latest\n"),
        "{}",
        text(&out).0
    );
    assert_eq!(id_of(&file_dst, "busybox"), id);

    // A config file with a typo is a one-line error naming the file.
    std::fs::write(&config, "registry-mirror = []\n").unwrap();
    let mut cmd = file_dst.cmd(&["pull", "--no-hub-fallback", "busybox"]);
    cmd.env("RBUILD_CONFIG", &config);
    let err = assert_one_line_error(&cmd.output().unwrap(), &["pull"]);
    assert!(err.contains(&config.display().to_string()), "{err}");
    assert!(err.contains("unknown field `registry-mirror`"), "{err}");
}
