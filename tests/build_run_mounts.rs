//! `RUN --mount` types wired through the build: `type=secret` and `type=ssh` with
//! `rbuild build --secret` and `--ssh` (the run sees them; a secret's value reaches no
//! blob of the store, layers, config or history, and no cache key: a new value does not
//! re-run the step, as in BuildKit), and `type=cache,from=STAGE` seeds. The Dockerfiles compare values in upper case so that the secrets' own
//! text appears nowhere but in their sources.

mod common;

use std::path::Path;

use common::{Root, import_busybox, text, tool};

const SECRET: &str = "s3cr3t-vAlue-91f2";
const ENV_SECRET: &str = "env-s3cr3t-77c1";

fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    dir
}

/// Builds with `args`; returns the report (None on failure) and stderr.
fn build(root: &Root, ctx: &Path, args: &[&str]) -> (Option<serde_json::Value>, String) {
    let report = root.path().join("report.json");
    let _ = std::fs::remove_file(&report);
    let mut all = vec![
        "build",
        "--progress",
        "plain",
        "--report-file",
        report.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    all.push(ctx.to_str().unwrap());
    let out = root
        .cmd(&all)
        .env("RBUILD_TEST_TOKEN", ENV_SECRET)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let report = std::fs::read(&report)
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap());
    assert_eq!(report.is_some(), out.status.success(), "{stderr}");
    (report, stderr)
}

fn run(root: &Root, args: &[&str]) -> String {
    let mut all = vec!["run", "--network", "none"];
    all.extend_from_slice(args);
    root.ok(&all)
}

/// No blob of the store, decompressed, contains `needle`.
fn assert_in_no_blob(root: &Root, needle: &str) {
    let dir = root.path().join("store/blobs-v1/sha256");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        // zcat -f passes blobs that are not gzip through unchanged.
        let out = tool("zcat", &["-f", path.to_str().unwrap()]);
        assert!(out.status.success(), "zcat {}", path.display());
        let found = out
            .stdout
            .windows(needle.len())
            .any(|w| w == needle.as_bytes());
        assert!(!found, "the secret is in blob {}", path.display());
        checked += 1;
    }
    assert!(checked > 3, "only {checked} blobs");
}

const SECRET_DOCKERFILE: &str = r#"
FROM busybox
RUN --mount=type=secret,id=tok [ "$(tr a-z A-Z < /run/secrets/tok)" = "S3CR3T-VALUE-91F2" ] && stat -c '%a %u %g' /run/secrets/tok > /default-mode
RUN --mount=type=secret,id=tok,target=/etc/app/key,mode=0440,uid=5,gid=6 stat -c '%a %u %g %s' /etc/app/key > /custom-mode
RUN --mount=type=secret,id=envtok,env=TOKEN [ "$(echo "$TOKEN" | tr a-z A-Z)" = "ENV-S3CR3T-77C1" ] && [ ! -e /run/secrets/envtok ] && echo env-ok > /env-ok
RUN --mount=type=secret,id=both,env=BOTH,target=/both [ "$BOTH" = "$(cat /both)" ] && echo both-ok > /both-ok
RUN --mount=type=secret,id=absent [ ! -e /run/secrets/absent ] && echo skipped > /absent
"#;

#[test]
fn secrets_reach_the_run_but_no_blob_and_no_cache_key() {
    let root = Root::new();
    import_busybox(&root);
    let ctx = context(SECRET_DOCKERFILE);
    let files = tempfile::tempdir().unwrap();
    let tok = files.path().join("tok");
    std::fs::write(&tok, SECRET).unwrap();
    let tok_arg = format!("id=tok,src={}", tok.display());
    let both_arg = format!("id=both,source={}", tok.display());
    let args = [
        "-t",
        "sec:1",
        "--secret",
        &tok_arg,
        "--secret",
        "id=envtok,env=RBUILD_TEST_TOKEN",
        "--secret",
        &both_arg,
    ];
    let (report, stderr) = build(&root, ctx.path(), &args);
    let report = report.unwrap_or_else(|| panic!("build failed:\n{stderr}"));
    assert_eq!(report["run_executed"], 5, "{report}");
    assert_eq!(
        run(
            &root,
            &[
                "sec:1",
                "cat",
                "/default-mode",
                "/custom-mode",
                "/env-ok",
                "/both-ok",
                "/absent"
            ]
        ),
        format!(
            "400 0 0\n440 5 6 {}\nenv-ok\nboth-ok\nskipped\n",
            SECRET.len()
        )
    );
    // Neither the secret files nor their mount points stay in the image.
    for gone in ["/run/secrets", "/etc/app/key", "/both"] {
        let out = root.run(&["run", "--network", "none", "sec:1", "ls", gone]);
        assert!(!out.status.success(), "{gone} left in the image");
    }
    assert_in_no_blob(&root, SECRET);
    assert_in_no_blob(&root, ENV_SECRET);
    let history = root.ok(&["history", "--no-trunc", "sec:1"]);
    assert!(!history.contains(SECRET) && !history.contains(ENV_SECRET));

    // A new value is not a new step: secrets are not part of any cache key.
    std::fs::write(&tok, "rotated-value").unwrap();
    let (report, stderr) = build(&root, ctx.path(), &args);
    let report = report.unwrap_or_else(|| panic!("build failed:\n{stderr}"));
    assert_eq!(report["run_executed"], 0, "{report}");
    assert!(stderr.contains("CACHED"), "{stderr}");
}

#[test]
fn missing_secrets_and_agents_fail_only_when_required() {
    let root = Root::new();
    import_busybox(&root);
    let ctx = context("FROM busybox\nRUN --mount=type=secret,id=need,required=true true\n");
    let (report, stderr) = build(&root, ctx.path(), &["-t", "x"]);
    assert!(report.is_none());
    assert!(stderr.contains("secret need not found"), "{stderr}");
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");

    let ctx = context("FROM busybox\nRUN --mount=type=ssh,required=true true\n");
    let (report, stderr) = build(&root, ctx.path(), &["-t", "x"]);
    assert!(report.is_none());
    assert!(
        stderr.contains("no SSH agent default forwarded"),
        "{stderr}"
    );

    // Bad flags are one-line errors.
    for (flag, value, want) in [
        ("--secret", "src=/nowhere", "missing id"),
        (
            "--secret",
            "id=a,src=/nonexistent/file",
            "secret a: cannot read",
        ),
        (
            "--secret",
            "id=a,env=RBUILD_TEST_UNSET_VAR_Q",
            "RBUILD_TEST_UNSET_VAR_Q is not set",
        ),
        (
            "--ssh",
            "a=/nonexistent/agent.sock",
            "--ssh a: /nonexistent",
        ),
    ] {
        let err = root.fails(&["build", flag, value, ctx.path().to_str().unwrap()]);
        assert!(err.contains(want), "{value}: {err}");
    }
}

#[test]
fn ssh_mounts_forward_an_agent_socket() {
    let root = Root::new();
    import_busybox(&root);
    let sockets = tempfile::tempdir().unwrap();
    let agent = sockets.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&agent).unwrap();
    let ctx = context(
        r#"
FROM busybox
RUN --mount=type=ssh [ -S "$SSH_AUTH_SOCK" ] && echo "$SSH_AUTH_SOCK" > /default
RUN --mount=type=ssh,id=deploy,target=/agent.sock,mode=0660,uid=7,gid=8 [ -S /agent.sock ] && stat -c '%a %u %g' /agent.sock > /custom
"#,
    );
    let default = format!("default={}", agent.display());
    let deploy = format!("deploy={}", agent.display());
    let (report, stderr) = build(
        &root,
        ctx.path(),
        &["-t", "ssh:1", "--ssh", &default, "--ssh", &deploy],
    );
    let report = report.unwrap_or_else(|| panic!("build failed:\n{stderr}"));
    assert_eq!(report["run_executed"], 2, "{report}");
    assert_eq!(
        run(&root, &["ssh:1", "cat", "/default", "/custom"]),
        "/run/buildkit/ssh_agent.0\n660 7 8\n"
    );
    for gone in ["/run/buildkit", "/agent.sock"] {
        let out = root.run(&["run", "--network", "none", "ssh:1", "ls", gone]);
        assert!(!out.status.success(), "{gone} left in the image");
    }
}

#[test]
fn cache_mounts_start_from_a_stage_and_keep_what_runs_add() {
    let root = Root::new();
    import_busybox(&root);
    let dockerfile = |seed: &str| {
        format!(
            r#"
FROM busybox AS seed
RUN mkdir -p /data/sub && echo {seed} > /data/sub/seeded && chmod 640 /data/sub/seeded

FROM busybox
ARG RUN_ID=1
RUN --mount=type=cache,id=c,from=seed,source=/data,target=/cache echo "$RUN_ID" >> /cache/runs && cat /cache/sub/seeded /cache/runs > /seen && stat -c %a /cache/sub/seeded >> /seen
"#
        )
    };
    let ctx = context(&dockerfile("one"));
    let (report, stderr) = build(&root, ctx.path(), &["-t", "c:1"]);
    assert!(report.is_some(), "{stderr}");
    assert_eq!(run(&root, &["c:1", "cat", "/seen"]), "one\n1\n640\n");
    // The same seed: the cache kept what the first run added.
    let (report, stderr) = build(&root, ctx.path(), &["-t", "c:2", "--build-arg", "RUN_ID=2"]);
    assert!(report.is_some(), "{stderr}");
    assert_eq!(run(&root, &["c:2", "cat", "/seen"]), "one\n1\n2\n640\n");
    // Another seed is another cache.
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile("two")).unwrap();
    let (report, stderr) = build(&root, ctx.path(), &["-t", "c:3", "--build-arg", "RUN_ID=3"]);
    assert!(report.is_some(), "{stderr}");
    assert_eq!(run(&root, &["c:3", "cat", "/seen"]), "two\n3\n640\n");
    // The seed stage's files are not in the image.
    let out = root.run(&["run", "--network", "none", "c:3", "ls", "/cache"]);
    assert!(!out.status.success(), "/cache left in the image");
}
