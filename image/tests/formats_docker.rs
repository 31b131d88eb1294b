//! Against a real Docker daemon: `save` → `docker load` → `docker run`, and `docker save` →
//! `load` with ids and diffIDs unchanged, then on to a registry (`push`) that `skopeo` reads
//! back with every digest unchanged. Each test starts its own `dockerd` (private data root
//! and socket, no networking) and stops it afterwards; they need root and the packages
//! `docker.io`, `busybox-static`, `docker-registry` and `skopeo`, which `scripts/deps.sh`
//! installs.

mod formats_support;

use formats_support::dockerd::Dockerd;
use std::process::Command;
use std::sync::Arc;

use formats_support::*;
use rbuild_cache::Digest;
use rbuild_image::archive::{load, save};
use rbuild_image::local::{ImportOptions, import_rootfs};
use rbuild_image::registry::testing::TestRegistry;
use rbuild_image::registry::{Reference, RegistryClient, RegistryConfig};

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

fn tool(name: &str, args: &[&str]) -> String {
    let out = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e} (install it with scripts/deps.sh)"));
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sha256_hex_digest(bytes: &[u8]) -> String {
    Digest::sha256_of(bytes).to_string()
}

/// The issue's second end-to-end check: `docker save` → `load` → `push` → `skopeo inspect`
/// and `skopeo copy`; the manifest digest, config digest (image id), layer digests and
/// diffIDs docker wrote are the ones the registry serves.
#[test]
fn docker_save_loads_then_pushes_and_skopeo_reads_the_same_digests() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Dockerd::start(dir.path());
    let registry = TestRegistry::start().expect("registry fixture");

    let rootfs = dir.path().join("rootfs.tar");
    std::fs::write(&rootfs, busybox_rootfs()).unwrap();
    // Changes with variables: `docker import` expands them in ENV, LABEL, WORKDIR, USER...
    // but not in CMD; ours must agree.
    let changes = [
        "ENV A=1 U=nobody",
        r#"ENV B=$A C="${A}x y" A=2 D=${A:-none}"#,
        "LABEL l=$B q='$A'",
        "WORKDIR /srv/$U",
        "USER $U",
        "EXPOSE ${P:-8080}",
        r#"CMD ["sh", "-c", "echo $A"]"#,
    ];
    let mut args = vec!["import"];
    for c in &changes {
        args.extend(["--change", c]);
    }
    args.extend([rootfs.to_str().unwrap(), "dm2:1"]);
    daemon.ok(&args);
    let docker_config: serde_json::Value = serde_json::from_str(&daemon.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        "dm2:1",
    ]))
    .unwrap();
    let (_i, imported) = new_store();
    let options = ImportOptions {
        changes: changes.iter().map(|c| c.to_string()).collect(),
        ..ImportOptions::default()
    };
    import_rootfs(
        &imported,
        busybox_rootfs().as_slice(),
        Some("ours:1"),
        &options,
    )
    .unwrap();
    let ours = imported.resolve("ours:1").unwrap().config.config.unwrap();
    let env: Vec<String> = docker_config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .filter(|e| !e.starts_with("PATH="))
        .collect();
    assert_eq!(ours.env, env);
    assert_eq!(
        ours.labels,
        serde_json::from_value(docker_config["Labels"].clone()).unwrap()
    );
    assert_eq!(
        ours.working_dir.as_deref(),
        docker_config["WorkingDir"].as_str()
    );
    assert_eq!(ours.user.as_deref(), docker_config["User"].as_str());
    let ports: Vec<&String> = ours.exposed_ports.keys().collect();
    let docker_ports: Vec<&String> = docker_config["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(ports, docker_ports);
    let cmd: Vec<String> = serde_json::from_value(docker_config["Cmd"].clone()).unwrap();
    assert_eq!(ours.cmd.unwrap(), cmd);
    let docker_id = daemon
        .ok(&["image", "inspect", "--format", "{{.Id}}", "dm2:1"])
        .trim()
        .to_owned();
    let docker_layers: Vec<String> = serde_json::from_str(&daemon.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        "dm2:1",
    ]))
    .unwrap();
    let saved = dir.path().join("saved.tar");
    daemon.ok(&["save", "-o", saved.to_str().unwrap(), "dm2:1"]);

    // What docker wrote: `manifest.json` names the config (the image id) and the layer
    // files; an archive with an OCI index (containerd image store) also has the manifest.
    let archive = std::fs::read(&saved).unwrap();
    let entries: serde_json::Value =
        serde_json::from_slice(&tar_file(&archive, "manifest.json").expect("manifest.json"))
            .unwrap();
    let config_path = entries[0]["Config"].as_str().unwrap();
    let config_bytes = tar_file(&archive, config_path).expect("config in the archive");
    assert_eq!(sha256_hex_digest(&config_bytes), docker_id);
    let docker_layer_digests: Vec<String> = entries[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| sha256_hex_digest(&tar_file(&archive, p.as_str().unwrap()).expect("layer file")))
        .collect();
    let docker_manifest = tar_file(&archive, "index.json").map(|bytes| {
        let index: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        index["manifests"][0]["digest"].as_str().unwrap().to_owned()
    });

    let (_s, store) = new_store();
    load(&store, std::fs::File::open(&saved).unwrap()).unwrap();
    let image = store.resolve("dm2:1").unwrap();
    assert_eq!(image.id.to_string(), docker_id);
    if let Some(docker_manifest) = &docker_manifest {
        assert_eq!(&image.manifest_digest.to_string(), docker_manifest);
    }
    // Without an index the manifest is ours, over docker's config and layer blobs.
    let manifest_digest = image.manifest_digest.to_string();
    let layer_digests: Vec<String> = image
        .manifest
        .layers
        .iter()
        .map(|l| l.digest.to_string())
        .collect();
    assert_eq!(layer_digests, docker_layer_digests);
    let diff_ids: Vec<String> = image
        .config
        .rootfs
        .diff_ids
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(diff_ids, docker_layers);

    let name = format!("{}/dm2:1", registry.host());
    let reference = Reference::parse(&name).unwrap();
    let client = RegistryClient::anonymous(RegistryConfig::default()).unwrap();
    let content = Arc::new(store.store().content().clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pushed = rt
        .block_on(client.push_image(&reference, &image.manifest_digest, &content, None))
        .unwrap();
    assert_eq!(pushed.digest.to_string(), manifest_digest);

    let src = format!("docker://{name}");
    let inspect: serde_json::Value =
        serde_json::from_str(&tool("skopeo", &["inspect", "--tls-verify=false", &src])).unwrap();
    assert_eq!(inspect["Digest"].as_str().unwrap(), manifest_digest);
    assert_eq!(
        inspect["Layers"].as_array().unwrap().len(),
        docker_layer_digests.len()
    );
    for (got, want) in inspect["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&docker_layer_digests)
    {
        assert_eq!(got.as_str().unwrap(), want);
    }
    let raw = tool("skopeo", &["inspect", "--tls-verify=false", "--raw", &src]);
    assert_eq!(sha256_hex_digest(raw.as_bytes()), manifest_digest);
    let config = tool(
        "skopeo",
        &["inspect", "--tls-verify=false", "--config", "--raw", &src],
    );
    assert_eq!(sha256_hex_digest(config.as_bytes()), docker_id);

    // skopeo copy fetches every blob (and verifies it) into an OCI layout, unchanged.
    let copied = dir.path().join("copied");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--preserve-digests",
            &src,
            &format!("oci:{}:dm2", copied.display()),
        ],
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copied.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"].as_str().unwrap(),
        manifest_digest
    );
    for digest in docker_layer_digests.iter().chain([&docker_id]) {
        let blob = copied
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        assert_eq!(sha256_hex_digest(&std::fs::read(&blob).unwrap()), *digest);
    }
}
