use super::*;
use rbuild_cache::Digest;

const DOCKER_CONFIG: &str = r#"{
  "architecture": "amd64",
  "config": {
    "Hostname": "",
    "User": "app",
    "ExposedPorts": {"80/tcp": {}},
    "Env": ["PATH=/usr/bin"],
    "Cmd": ["sh"],
    "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000, "Retries": 3},
    "ArgsEscaped": true,
    "OnBuild": ["RUN echo hi"],
    "Shell": ["/bin/bash", "-c"],
    "Labels": {"b": "2", "a": "1"}
  },
  "created": "2024-01-02T03:04:05.123456789Z",
  "docker_version": "24.0.0",
  "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "/bin/sh -c #(nop) CMD [\"sh\"]", "empty_layer": true}],
  "os": "linux",
  "rootfs": {"type": "layers", "diff_ids": ["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}
}"#;

#[test]
fn docker_config_fields_parse() {
    let config = ImageConfig::from_slice(DOCKER_CONFIG.as_bytes()).unwrap();
    let rc = config.config.as_ref().unwrap();
    assert_eq!(rc.user.as_deref(), Some("app"));
    assert_eq!(rc.args_escaped, Some(true));
    assert_eq!(
        rc.on_build.as_deref(),
        Some(&["RUN echo hi".to_owned()][..])
    );
    assert_eq!(rc.shell.as_ref().unwrap()[0], "/bin/bash");
    let hc = rc.healthcheck.as_ref().unwrap();
    assert_eq!(
        (hc.interval, hc.retries, hc.timeout),
        (30_000_000_000, 3, 0)
    );
    assert!(config.history[0].empty_layer);
    assert_eq!(config.rootfs.diff_ids.len(), 1);
}

#[test]
fn canonical_json_is_stable_and_sorted() {
    let config = ImageConfig::from_slice(DOCKER_CONFIG.as_bytes()).unwrap();
    let a = canonical_json("config", &config).unwrap();
    let reparsed = ImageConfig::from_slice(&a).unwrap();
    assert_eq!(reparsed, config);
    assert_eq!(canonical_json("config", &reparsed).unwrap(), a);
    let text = String::from_utf8(a).unwrap();
    // Field order is declaration order; map keys sorted; unknown fields dropped.
    assert!(text.starts_with(r#"{"created":"2024-01-02T03:04:05.123456789Z","architecture":"amd64","os":"linux","config":{"User":"app""#), "{text}");
    assert!(text.contains(r#""Labels":{"a":"1","b":"2"}"#));
    assert!(text.contains(
        r#""Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,"Retries":3}"#
    ));
    assert!(!text.contains("Hostname") && !text.contains("docker_version"));
}

#[test]
fn manifest_and_index_roundtrip() {
    let config = Descriptor::new(media::OCI_CONFIG, rbuild_cache::Digest::sha256_of(b"c"), 1);
    let layer = Descriptor::new(
        media::OCI_LAYER_GZIP,
        rbuild_cache::Digest::sha256_of(b"l"),
        1,
    );
    let manifest = Manifest::oci(config, vec![layer]);
    let bytes = canonical_json("manifest", &manifest).unwrap();
    assert_eq!(Manifest::from_slice(&bytes).unwrap(), manifest);
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType""#));

    let mut entry = Descriptor::new(
        media::OCI_MANIFEST,
        Digest::sha256_of(text.as_bytes()),
        text.len() as u64,
    );
    entry
        .annotations
        .insert(ANNOTATION_REF_NAME.into(), "latest".into());
    entry.platform = Some(host_platform());
    let index = Index::oci(vec![entry]);
    let bytes = canonical_json("index", &index).unwrap();
    assert_eq!(Index::from_slice(&bytes).unwrap(), index);

    assert!(matches!(
        Manifest::from_slice(br#"{"schemaVersion":1,"config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}}"#),
        Err(SpecError::SchemaVersion { version: 1, .. })
    ));
    assert!(Manifest::from_slice(b"not json").is_err());
    assert!(Index::from_slice(br#"{"schemaVersion":2,"manifests":[{"digest":"md5:x"}]}"#).is_err());
}

#[test]
fn media_type_helpers() {
    use media::*;
    assert_eq!(
        layer_compression(DOCKER_LAYER_GZIP),
        Some(LayerCompression::Gzip)
    );
    assert_eq!(
        layer_compression(OCI_LAYER_ZSTD),
        Some(LayerCompression::Zstd)
    );
    assert_eq!(
        layer_compression(OCI_LAYER_TAR),
        Some(LayerCompression::None)
    );
    assert_eq!(layer_compression(OCI_CONFIG), None);
    assert!(is_foreign_layer(DOCKER_FOREIGN_LAYER_GZIP));
    assert!(!is_foreign_layer(OCI_LAYER_GZIP));
    assert!(is_manifest(DOCKER_MANIFEST) && is_index(DOCKER_MANIFEST_LIST) && is_index(OCI_INDEX));
    assert_eq!(oci_layer(LayerCompression::Gzip), OCI_LAYER_GZIP);
}

#[test]
fn rfc3339_roundtrips() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    for t in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
    }
    assert_eq!(
        parse_rfc3339("2023-11-14T22:13:20.999999Z"),
        Some(1_700_000_000)
    );
    assert_eq!(
        parse_rfc3339("2023-11-15T00:13:20+02:00"),
        Some(1_700_000_000)
    );
    for bad in [
        "",
        "2023-13-01T00:00:00Z",
        "yesterday",
        "2023-11-14T22:13:20",
        "1969-12-31T23:59:59Z",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
}

/// What `docker import` (Docker 20.10) writes: Go's nil maps and slices as `null`.
#[test]
fn docker_import_config_with_nulls_parses() {
    let text = r#"{"architecture":"amd64","config":{"Hostname":"","Env":["PATH=/bin"],"Cmd":["sh"],
        "Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null,"ExposedPorts":null},
        "container_config":{"Env":null,"Cmd":null},"os":"linux","os.features":null,"history":null,
        "rootfs":{"type":"layers","diff_ids":null}}"#;
    let config = ImageConfig::from_slice(text.as_bytes()).unwrap();
    let rc = config.config.as_ref().unwrap();
    assert!(rc.labels.is_empty() && rc.volumes.is_empty() && rc.exposed_ports.is_empty());
    assert_eq!(rc.entrypoint, None);
    assert_eq!(rc.cmd.as_deref(), Some(&["sh".to_owned()][..]));
    assert!(config.history.is_empty() && config.rootfs.diff_ids.is_empty());
}
