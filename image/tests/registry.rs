//! The registry client against Debian's real `docker-registry` (plain and with htpasswd
//! auth) and against a scripted fake server for misbehaviour a real registry will not show.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rbuild_cache::{ContentStore, Descriptor, Digest, FsContentStore, Layout};
use rbuild_image::registry::auth::{self, Credentials, DockerConfig, StaticCredentials};
use rbuild_image::registry::{
    BlobPush, Platform, Reference, RegistryClient, RegistryConfig, RegistryError, RetryPolicy,
};

use rbuild_image::registry::testing::{PASSWORD, TestRegistry, USER};
use support::fake::{FakeResponse, FakeServer};
use support::synth;

fn store() -> (Arc<FsContentStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create_or_open(dir.path()).unwrap();
    (Arc::new(FsContentStore::new(layout)), dir)
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

fn config() -> RegistryConfig {
    RegistryConfig {
        retry: fast_retry(),
        ..RegistryConfig::default()
    }
}

fn client() -> RegistryClient {
    RegistryClient::anonymous(config()).unwrap()
}

fn reference(host: &str, rest: &str) -> Reference {
    Reference::parse(&format!("{host}/{rest}")).unwrap()
}

fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

fn count(c: &RegistryClient, method: &str) -> u64 {
    c.request_counts().get(method).copied().unwrap_or(0)
}

/// Asserts `store` holds every blob of `img`, intact.
fn assert_has_image(store: &FsContentStore, img: &synth::SynthImage) {
    for blob in img.blobs() {
        assert_eq!(store.verify(&blob.digest).unwrap(), blob);
    }
    assert!(store.contains(&img.manifest_digest).unwrap());
}

#[tokio::test]
async fn push_then_pull_round_trip_keeps_digests() {
    let registry = TestRegistry::start().expect("registry fixture");
    let (src, _d1) = store();
    for docker in [false, true] {
        let img = synth::image(&*src, &format!("round-{docker}"), "amd64", docker);
        let r = reference(&registry.host(), &format!("synth/round-{docker}:v1"));
        let c = client();
        let pushed = c
            .push_image(&r, &img.manifest_digest, &src, None)
            .await
            .unwrap();
        assert_eq!(pushed.digest, img.manifest_digest);
        assert_eq!(
            pushed.to_string(),
            format!(
                "v1: digest: {} size: {}",
                img.manifest_digest,
                img.manifest.len()
            )
        );
        assert!(
            pushed
                .blobs
                .iter()
                .all(|(_, how)| *how == BlobPush::Uploaded),
            "{:?}",
            pushed.blobs
        );

        let (dst, _d2) = store();
        let pulled = c.pull_image(&r, &amd64(), &dst).await.unwrap();
        assert_eq!(pulled.manifest_digest, img.manifest_digest);
        assert_eq!(pulled.manifest, img.manifest);
        assert_eq!(pulled.manifest_media_type, img.media_type);
        assert_eq!(Descriptor::of(&pulled.config), img.config);
        let layers: Vec<Descriptor> = pulled.layers.iter().map(|l| l.descriptor()).collect();
        assert_eq!(layers, img.layers);
        assert!(pulled.index.is_none());
        assert_has_image(&dst, &img);

        // By digest too; layers already in the store are not fetched again (only the
        // manifest and the config are).
        let by_digest = r.with_digest(img.manifest_digest.clone());
        let gets = count(&c, "GET");
        let again = c.pull_image(&by_digest, &amd64(), &dst).await.unwrap();
        assert_eq!(again.manifest_digest, img.manifest_digest);
        assert_eq!(count(&c, "GET") - gets, 2);
        let mut sink = Vec::new();
        c.fetch_blob(&r, &img.layers[1], &mut sink).await.unwrap();
        assert_eq!(Descriptor::of(&sink), img.layers[1]);
    }
}

#[tokio::test]
async fn second_push_skips_existing_blobs_with_head() {
    let registry = TestRegistry::start().expect("registry fixture");
    let (src, _d) = store();
    let img = synth::image(&*src, "skip", "amd64", false);
    let r = reference(&registry.host(), "synth/skip:latest");
    let c = client();
    c.push_image(&r, &img.manifest_digest, &src, None)
        .await
        .unwrap();
    let before = c.request_counts();
    let again = c
        .push_image(&r, &img.manifest_digest, &src, None)
        .await
        .unwrap();
    assert!(again.blobs.iter().all(|(_, how)| *how == BlobPush::Exists));
    let after = c.request_counts();
    let delta = |m: &str| after.get(m).copied().unwrap_or(0) - before.get(m).copied().unwrap_or(0);
    assert_eq!(delta("HEAD"), 3, "{after:?}");
    assert_eq!(delta("POST"), 0);
    assert_eq!(delta("PATCH"), 0);
    // Only the manifest is put again.
    assert_eq!(delta("PUT"), 1);
}

#[tokio::test]
async fn cross_repository_mount() {
    let registry = TestRegistry::start().expect("registry fixture");
    let (src, _d) = store();
    let img = synth::image(&*src, "mount", "amd64", false);
    let c = client();
    let a = reference(&registry.host(), "team/a:1");
    c.push_image(&a, &img.manifest_digest, &src, None)
        .await
        .unwrap();
    let b = reference(&registry.host(), "team/b:1");
    let pushed = c
        .push_image(&b, &img.manifest_digest, &src, Some("team/a"))
        .await
        .unwrap();
    assert!(
        pushed
            .blobs
            .iter()
            .all(|(_, how)| *how == BlobPush::Mounted),
        "{:?}",
        pushed.blobs
    );
    let (dst, _d2) = store();
    let pulled = c.pull_image(&b, &amd64(), &dst).await.unwrap();
    assert_eq!(pulled.manifest_digest, img.manifest_digest);
    assert_has_image(&dst, &img);
}

#[tokio::test]
async fn chunked_upload_above_threshold() {
    let registry = TestRegistry::start().expect("registry fixture");
    let (src, _d) = store();
    let img = synth::image(&*src, "chunks", "amd64", false);
    let chunk_size = 7_000;
    let c = RegistryClient::anonymous(RegistryConfig {
        chunk_threshold: 1_000,
        chunk_size,
        ..config()
    })
    .unwrap();
    let r = reference(&registry.host(), "synth/chunks:1");
    let pushed = c
        .push_image(&r, &img.manifest_digest, &src, None)
        .await
        .unwrap();
    let mut patches = 0;
    for (digest, how) in &pushed.blobs {
        let size = img
            .blobs()
            .iter()
            .find(|b| &b.digest == digest)
            .unwrap()
            .size;
        if size > 1_000 {
            assert_eq!(
                *how,
                BlobPush::Chunked(size.div_ceil(chunk_size)),
                "{digest}"
            );
            patches += size.div_ceil(chunk_size);
        } else {
            assert_eq!(*how, BlobPush::Uploaded);
        }
    }
    assert!(patches > 2);
    assert_eq!(count(&c, "PATCH"), patches);
    let (dst, _d2) = store();
    let pulled = client().pull_image(&r, &amd64(), &dst).await.unwrap();
    assert_eq!(pulled.manifest_digest, img.manifest_digest);
    assert_has_image(&dst, &img);
}

#[tokio::test]
async fn index_selects_this_platform() {
    let registry = TestRegistry::start().expect("registry fixture");
    let (src, _d) = store();
    for docker in [false, true] {
        let amd = synth::image(&*src, &format!("idx-amd-{docker}"), "amd64", docker);
        let arm = synth::image(&*src, &format!("idx-arm-{docker}"), "arm64", docker);
        let index = synth::index(
            &*src,
            &[(&arm, "linux/arm64/v8"), (&amd, "linux/amd64")],
            docker,
        );
        let r = reference(&registry.host(), &format!("synth/multi-{docker}:1"));
        let c = client();
        let pushed = c.push_image(&r, &index, &src, None).await.unwrap();
        assert_eq!(pushed.digest, index);

        let (dst, _d2) = store();
        let pulled = c.pull_image(&r, &amd64(), &dst).await.unwrap();
        assert_eq!(pulled.manifest_digest, amd.manifest_digest);
        assert_eq!(pulled.index.as_ref().unwrap().digest, index);
        assert_has_image(&dst, &amd);
        assert!(dst.contains(&index).unwrap());
        assert!(!dst.contains(&arm.layers[0].digest).unwrap());

        let (m, _) = c
            .pull_manifest(&r, &Platform::parse("linux/arm64").unwrap())
            .await
            .unwrap();
        assert_eq!(m.digest, arm.manifest_digest);

        let err = c
            .pull_manifest(&r, &Platform::parse("linux/s390x").unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::NoMatchingPlatform { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("linux/s390x"), "{err}");
    }
}

#[tokio::test]
async fn unknown_manifest_error_names_the_image() {
    let registry = TestRegistry::start().expect("registry fixture");
    let r = reference(&registry.host(), "nothing/here");
    let (dst, _d) = store();
    let err = client().pull_image(&r, &amd64(), &dst).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("manifest unknown: {}/nothing/here:latest", registry.host())
    );
}

#[tokio::test]
async fn htpasswd_registry_refuses_anonymous_clients() {
    let registry = TestRegistry::start_with_auth().expect("registry fixture");
    let (src, _d) = store();
    let img = synth::image(&*src, "denied", "amd64", false);
    let r = reference(&registry.host(), "private/x:latest");
    let c = client();
    let err = c.pull_image(&r, &amd64(), &src).await.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "pull access denied for {}/private/x: unauthorized",
            registry.host()
        )),
        "{err}"
    );
    let err = c
        .push_image(&r, &img.manifest_digest, &src, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "push access denied for {}/private/x: unauthorized",
            registry.host()
        )),
        "{err}"
    );

    // Wrong credentials are refused the same way.
    let wrong = StaticCredentials::new().with(
        &registry.host(),
        Credentials::Basic {
            username: USER.into(),
            password: "wrong".into(),
        },
    );
    let c = RegistryClient::new(config(), Arc::new(wrong)).unwrap();
    let err = c.pull_image(&r, &amd64(), &src).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::AccessDenied { action: "pull", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn htpasswd_registry_with_credentials_from_docker_config() {
    let registry = TestRegistry::start_with_auth().expect("registry fixture");
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("config.json");
    fs::write(&cfg, r#"{"auths":{},"detachKeys":"ctrl-x"}"#).unwrap();
    auth::login(&cfg, &registry.host(), USER, PASSWORD).unwrap();

    let (src, _d) = store();
    let img = synth::image(&*src, "authed", "amd64", false);
    let r = reference(&registry.host(), "private/app:1");
    let c = RegistryClient::new(config(), Arc::new(DockerConfig::at(&cfg))).unwrap();
    c.ping(&registry.host()).await.unwrap();
    c.push_image(&r, &img.manifest_digest, &src, None)
        .await
        .unwrap();
    let (dst, _d2) = store();
    let pulled = c.pull_image(&r, &amd64(), &dst).await.unwrap();
    assert_eq!(pulled.manifest_digest, img.manifest_digest);
    assert_has_image(&dst, &img);

    // After logout the same config gives nothing and the registry refuses.
    assert!(auth::logout(&cfg, &registry.host()).unwrap());
    let text = fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("ctrl-x"), "{text}");
    let c = RegistryClient::new(config(), Arc::new(DockerConfig::at(&cfg))).unwrap();
    let err = c.pull_image(&r, &amd64(), &dst).await.unwrap_err();
    assert!(matches!(err, RegistryError::AccessDenied { .. }), "{err}");
}

/// Runs this test binary again for one test with extra environment, because `PATH` and
/// `DOCKER_CONFIG` are process-wide and changing them in a threaded test runner is unsound.
fn rerun_in_child(test: &str, envs: &[(&str, &std::ffi::OsStr)]) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env("RBUILD_REGISTRY_TEST_CHILD", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn credential_helper_on_path_and_docker_config_env() {
    if let Some(host) = std::env::var_os("RBUILD_REGISTRY_TEST_HOST") {
        // Child: everything comes from the environment, as for the CLI.
        let host = host.to_str().unwrap().to_owned();
        let c = RegistryClient::new(config(), Arc::new(DockerConfig::from_env())).unwrap();
        let (src, _d) = store();
        let img = synth::image(&*src, "helper", "amd64", false);
        let r = reference(&host, "helped/app:1");
        c.push_image(&r, &img.manifest_digest, &src, None)
            .await
            .unwrap();
        let (dst, _d2) = store();
        let pulled = c.pull_image(&r, &amd64(), &dst).await.unwrap();
        assert_eq!(pulled.manifest_digest, img.manifest_digest);
        // A registry the helper does not know gets no credentials, not an error.
        assert_eq!(
            DockerConfig::from_env().lookup("127.0.0.1:1").unwrap(),
            None
        );

        // login/logout go through the helper and keep config.json free of secrets.
        let cfg = auth::default_config_path().unwrap();
        assert_eq!(
            cfg,
            Path::new(&std::env::var_os("DOCKER_CONFIG").unwrap()).join("config.json")
        );
        auth::login(&cfg, "other.example:5000", "someone", "pw-xyz").unwrap();
        let stored = std::env::var_os("RBUILD_HELPER_STORE").unwrap();
        let seen = fs::read_to_string(&stored).unwrap();
        assert!(
            seen.contains("pw-xyz") && seen.contains("other.example:5000"),
            "{seen}"
        );
        let text = fs::read_to_string(&cfg).unwrap();
        assert!(
            text.contains("other.example:5000") && !text.contains("pw-xyz"),
            "{text}"
        );
        assert!(text.contains("rbtest"), "{text}");
        assert!(auth::logout(&cfg, "other.example:5000").unwrap());
        assert!(
            fs::read_to_string(&stored)
                .unwrap()
                .contains("erased other.example:5000")
        );
        assert!(
            !fs::read_to_string(&cfg)
                .unwrap()
                .contains("other.example:5000")
        );
        return;
    }
    assert!(
        std::env::var_os("RBUILD_REGISTRY_TEST_CHILD").is_none(),
        "child started without a registry host"
    );
    let registry = TestRegistry::start_with_auth().expect("registry fixture");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-rbtest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = store ]; then cat >> \"$RBUILD_HELPER_STORE\"; exit 0; fi\n\
             if [ \"$1\" = erase ]; then read s; echo \"erased $s\" >> \"$RBUILD_HELPER_STORE\"; exit 0; fi\n\
             [ \"$1\" = get ] || exit 2\nread server\n\
             if [ \"$server\" = \"{host}\" ]; then\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n\
             exit 0\nfi\necho 'credentials not found in native keychain'\nexit 1\n",
            host = registry.host()
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let cfg_dir = dir.path().join("docker");
    fs::create_dir(&cfg_dir).unwrap();
    fs::write(cfg_dir.join("config.json"), r#"{"credsStore":"rbtest"}"#).unwrap();
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let host = registry.host();
    rerun_in_child(
        "credential_helper_on_path_and_docker_config_env",
        &[
            ("PATH", path.as_os_str()),
            ("DOCKER_CONFIG", cfg_dir.as_os_str()),
            ("RBUILD_REGISTRY_TEST_HOST", std::ffi::OsStr::new(&host)),
            (
                "RBUILD_HELPER_STORE",
                dir.path().join("helper-store").as_os_str(),
            ),
        ],
    );
}

#[tokio::test]
async fn docker_hub_mirrors_are_tried_in_order() {
    let registry = TestRegistry::start().expect("registry fixture");
    let (src, _d) = store();
    let img = synth::image(&*src, "mirror", "amd64", false);
    // What a mirror of Docker Hub serves for `busybox`.
    let on_mirror = reference(&registry.host(), "library/busybox:latest");
    client()
        .push_image(&on_mirror, &img.manifest_digest, &src, None)
        .await
        .unwrap();

    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let c = RegistryClient::anonymous(RegistryConfig {
        mirrors: vec![
            dead_url.parse().unwrap(),
            format!("http://{}", registry.host()).parse().unwrap(),
        ],
        // Docker Hub itself is never contacted from tests.
        hub_fallback: false,
        ..config()
    })
    .unwrap();
    let (dst, _d2) = store();
    let pulled = c
        .pull_image(&Reference::parse("busybox").unwrap(), &amd64(), &dst)
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, img.manifest_digest);
    assert_has_image(&dst, &img);
}

/// A fake registry serving one single-layer image whose layer bytes are `served`.
async fn lying_registry(layer: Vec<u8>, served: Vec<u8>) -> (FakeServer, Vec<u8>, Descriptor) {
    let layer_desc = Descriptor::of(&layer);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let config_desc = Descriptor::of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": synth::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_desc.digest, "size": config_desc.size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_desc.digest, "size": layer_desc.size}],
    }))
    .unwrap();
    let m = manifest.clone();
    let layer_digest = layer_desc.digest.clone();
    let server = FakeServer::start(move |req| {
        if req.path.ends_with("/manifests/latest") {
            FakeResponse::new(200, m.clone()).header("Content-Type", synth::OCI_MANIFEST)
        } else if req.path.ends_with(config_desc.digest.as_str()) {
            FakeResponse::new(200, config.clone())
        } else if req.path.ends_with(layer_digest.as_str()) {
            FakeResponse::new(200, served.clone())
        } else {
            FakeResponse::new(404, "")
        }
    })
    .await;
    (server, manifest, layer_desc)
}

#[tokio::test]
async fn corrupted_blob_is_detected_and_nothing_is_ingested() {
    let layer = synth::layer_tar(&[("a", b"the real content")]);
    let mut corrupt = layer.clone();
    corrupt[600] ^= 0xff;
    let (server, _manifest, layer_desc) = lying_registry(layer, corrupt).await;
    let r = reference(&server.host(), "x");
    let (dst, _d) = store();
    let err = client().pull_image(&r, &amd64(), &dst).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(layer_desc.digest.as_str()),
        "{err}"
    );
    assert!(dst.list().unwrap().is_empty());
    let mut sink = Vec::new();
    let err = client()
        .fetch_blob(&r, &layer_desc, &mut sink)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");

    // A blob longer than its descriptor says is cut off, not stored.
    let layer = synth::layer_tar(&[("a", b"short")]);
    let mut long = layer.clone();
    long.extend_from_slice(&[0; 512]);
    let (server, _m, _l) = lying_registry(layer, long).await;
    let err = client()
        .pull_image(&reference(&server.host(), "x"), &amd64(), &dst)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err}");
    assert!(dst.list().unwrap().is_empty());
}

#[tokio::test]
async fn retries_5xx_429_and_dropped_connections_then_gives_up() {
    let layer = synth::layer_tar(&[("a", b"x")]);
    let (_good, manifest, _) = lying_registry(layer.clone(), layer).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let calls2 = Arc::clone(&calls);
    let manifest2 = manifest.clone();
    // 503, then a dropped connection, then 429, then the real answer.
    let flaky = FakeServer::start(move |req| {
        if !req.path.contains("/manifests/") {
            return FakeResponse::new(404, "");
        }
        match calls2.fetch_add(1, Ordering::SeqCst) {
            0 => FakeResponse::new(503, "busy"),
            1 => FakeResponse::Drop,
            2 => FakeResponse::new(429, "slow down"),
            _ => FakeResponse::new(200, manifest2.clone())
                .header("Content-Type", synth::OCI_MANIFEST),
        }
    })
    .await;
    let c = RegistryClient::anonymous(RegistryConfig {
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        },
        ..RegistryConfig::default()
    })
    .unwrap();
    let m = c
        .fetch_manifest(&reference(&flaky.host(), "x"))
        .await
        .unwrap();
    assert_eq!(m.bytes, manifest);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(count(&c, "GET"), 4);

    // Always failing: bounded attempts, then an error naming the registry and status.
    let down = FakeServer::start(|_| FakeResponse::new(500, "")).await;
    let c = client();
    let err = c
        .fetch_manifest(&reference(&down.host(), "x"))
        .await
        .unwrap_err();
    assert_eq!(down.count("/v2/x/manifests/"), 3);
    assert!(
        matches!(err, RegistryError::Status { status: 500, ref registry, .. } if *registry == down.host()),
        "{err}"
    );
    // Client errors are not retried.
    let gone = FakeServer::start(|_| FakeResponse::new(400, "")).await;
    let _ = client()
        .fetch_manifest(&reference(&gone.host(), "x"))
        .await
        .unwrap_err();
    assert_eq!(gone.count("/v2/"), 1);
}

#[tokio::test]
async fn bearer_token_flow_with_cache() {
    let layer = synth::layer_tar(&[("a", b"x")]);
    let (_good, manifest, _) = lying_registry(layer.clone(), layer).await;
    let token_hits = Arc::new(AtomicUsize::new(0));
    let hits = Arc::clone(&token_hits);
    let m = manifest.clone();
    let realm_port = Arc::new(std::sync::OnceLock::<String>::new());
    let realm = Arc::clone(&realm_port);
    let server = FakeServer::start(move |req| {
        if req.path == "/token" {
            hits.fetch_add(1, Ordering::SeqCst);
            // Basic u:p, the service from the challenge, our pull scope.
            let ok = req.headers.get("authorization").map(String::as_str) == Some("Basic dTpw")
                && req.query.contains("service=fake-registry")
                && req.query.contains("scope=repository%3Ans%2Fx%3Apull");
            return if ok {
                FakeResponse::new(200, r#"{"token":"tok-123","expires_in":300}"#)
            } else {
                FakeResponse::new(401, "")
            };
        }
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer tok-123") {
            let challenge = format!(
                r#"Bearer realm="http://{}/token",service="fake-registry",scope="repository:ns/x:pull""#,
                realm.get().unwrap()
            );
            return FakeResponse::new(401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
                .header("WWW-Authenticate", &challenge);
        }
        FakeResponse::new(200, m.clone()).header("Content-Type", synth::OCI_MANIFEST)
    })
    .await;
    realm_port.set(server.host()).unwrap();
    let r = reference(&server.host(), "ns/x");

    let creds = StaticCredentials::new().with(
        &server.host(),
        Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        },
    );
    let c = RegistryClient::new(config(), Arc::new(creds)).unwrap();
    for _ in 0..3 {
        let got = c.fetch_manifest(&r).await.unwrap();
        assert_eq!(got.bytes, manifest);
    }
    assert_eq!(token_hits.load(Ordering::SeqCst), 1);
    // One challenge, then three authorized requests.
    assert_eq!(server.count("/v2/"), 4);

    // Without credentials the token server refuses and the error says so.
    let err = client().fetch_manifest(&r).await.unwrap_err();
    assert!(matches!(err, RegistryError::Auth { .. }), "{err}");
    assert!(err.to_string().contains(&server.host()), "{err}");
}

#[test]
fn digest_reference_verifies_the_manifest() {
    // A registry that answers a digest request with other bytes is caught.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = FakeServer::start(|_| {
            FakeResponse::new(200, r#"{"schemaVersion":2,"config":{},"layers":[]}"#)
                .header("Content-Type", synth::OCI_MANIFEST)
        })
        .await;
        let wanted = Digest::sha256_of(b"something else");
        let r = reference(&server.host(), "x").with_digest(wanted);
        let err = client().fetch_manifest(&r).await.unwrap_err();
        assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    });
}

#[tokio::test]
async fn identity_token_is_exchanged_and_expired_tokens_are_renewed() {
    let token_hits = Arc::new(AtomicUsize::new(0));
    let hits = Arc::clone(&token_hits);
    let realm_host = Arc::new(std::sync::OnceLock::<String>::new());
    let realm = Arc::clone(&realm_host);
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#.to_vec();
    let m = manifest.clone();
    let server = FakeServer::start(move |req| {
        if req.path == "/token" {
            hits.fetch_add(1, Ordering::SeqCst);
            let body = String::from_utf8_lossy(&req.body);
            let ok = req.method == "POST"
                && body.contains("grant_type=refresh_token")
                && body.contains("refresh_token=rt-1")
                && body.contains("service=svc");
            // A token that is stale at once, so every request needs a fresh one.
            return if ok {
                FakeResponse::new(200, r#"{"access_token":"acc-9","expires_in":0}"#)
            } else {
                FakeResponse::new(403, "")
            };
        }
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer acc-9") {
            let challenge = format!(
                r#"Bearer realm="http://{}/token",service="svc""#,
                realm.get().unwrap()
            );
            return FakeResponse::new(401, "").header("WWW-Authenticate", &challenge);
        }
        FakeResponse::new(200, m.clone()).header("Content-Type", synth::OCI_MANIFEST)
    })
    .await;
    realm_host.set(server.host()).unwrap();
    let creds =
        StaticCredentials::new().with(&server.host(), Credentials::IdentityToken("rt-1".into()));
    let c = RegistryClient::new(config(), Arc::new(creds)).unwrap();
    let r = reference(&server.host(), "x");
    for _ in 0..2 {
        assert_eq!(c.fetch_manifest(&r).await.unwrap().bytes, manifest);
    }
    assert_eq!(token_hits.load(Ordering::SeqCst), 2);
}
