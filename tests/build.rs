//! `rbuild build` end to end: real builds on the busybox fixture in a temporary store,
//! checked by running the result with `rbuild run`, and the cache checked through the
//! build's counters (`--report-file`), never through timings.

mod common;

use std::path::Path;

use common::{Root, busybox_root, context_with, text, tool};

/// Builds `ctx` with `args` and returns the report, asserting success.
fn build(root: &Root, ctx: &Path, args: &[&str]) -> serde_json::Value {
    let (report, out) = try_build(root, ctx, args);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "build {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    report.expect("report")
}

fn try_build(
    root: &Root,
    ctx: &Path,
    args: &[&str],
) -> (Option<serde_json::Value>, std::process::Output) {
    let report = root.path().join("report.json");
    let _ = std::fs::remove_file(&report);
    let mut all = vec!["build", "--report-file", report.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(ctx.to_str().unwrap());
    let out = root.run(&all);
    let report = std::fs::read(&report)
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap());
    (report, out)
}

fn count(report: &serde_json::Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {report}"))
}

/// `rbuild run IMAGE CMD...` stdout, asserting success.
fn run(root: &Root, args: &[&str]) -> String {
    let mut all = vec!["run", "--network", "none"];
    all.extend_from_slice(args);
    root.ok(&all)
}

const MULTI_STAGE: &str = r#"
FROM busybox AS build
WORKDIR /src
COPY greeting.txt ./
RUN tr a-z A-Z < greeting.txt > /out.txt && echo built

FROM busybox AS other
RUN echo other > /other.txt

FROM busybox
COPY --from=build /out.txt /app/out.txt
COPY --from=other /other.txt /app/
CMD ["cat", "/app/out.txt", "/app/other.txt"]
"#;

#[test]
fn multi_stage_build_runs_and_target_picks_a_stage() {
    let root = busybox_root();
    let ctx = context_with(&[("Dockerfile", MULTI_STAGE), ("greeting.txt", "hello\n")]);
    let report = build(&root, ctx.path(), &["-t", "app:1"]);
    assert_eq!(count(&report, "run_executed"), 2, "{report}");
    assert_eq!(run(&root, &["app:1"]), "HELLO\nother\n");

    // --target builds only what the stage needs; its image is the stage's filesystem.
    let report = build(&root, ctx.path(), &["-t", "app:build", "--target", "build"]);
    assert_eq!(count(&report, "run_executed"), 0, "{report}");
    assert_eq!(run(&root, &["app:build", "cat", "/out.txt"]), "HELLO\n");
    assert_eq!(run(&root, &["app:build", "pwd"]), "/src\n");
    let out = root.run(&["run", "app:build", "cat", "/app/other.txt"]);
    assert!(!out.status.success());

    // -q prints only the image id, and --iidfile gets the same id.
    let iid = root.path().join("iid");
    let out = root.run(&[
        "build",
        "-q",
        "-t",
        "app:1",
        "--iidfile",
        iid.to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let id = stdout.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{stdout}");
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), id);
    assert!(!stderr.contains("#1"), "{stderr}");
    let images = root.ok(&["images", "-q", "app:1"]);
    assert_eq!(images.trim(), &id["sha256:".len().."sha256:".len() + 12]);
}

#[test]
fn build_args_and_labels_reach_the_image_and_rerun_only_steps_that_see_them() {
    let root = busybox_root();
    let dockerfile = r#"
FROM busybox
RUN echo base > /base
ARG V=default
RUN echo "$V" > /v
RUN cat /v /base > /both
"#;
    let ctx = context_with(&[("Dockerfile", dockerfile)]);
    let first = build(&root, ctx.path(), &["-t", "a:1", "--label", "k=v"]);
    assert_eq!(count(&first, "run_executed"), 3);
    assert_eq!(run(&root, &["a:1", "cat", "/both"]), "default\nbase\n");
    let inspect: serde_json::Value = serde_json::from_str(&root.ok(&["inspect", "a:1"])).unwrap();
    assert_eq!(inspect[0]["Config"]["Labels"]["k"], "v");

    let second = build(
        &root,
        ctx.path(),
        &["-t", "a:2", "--build-arg", "V=changed"],
    );
    // The RUN before the ARG is reused; both after it see V and run again.
    assert_eq!(count(&second, "run_executed"), 2, "{second}");
    assert_eq!(run(&root, &["a:2", "cat", "/both"]), "changed\nbase\n");

    // An arg nothing declares changes nothing.
    let third = build(&root, ctx.path(), &["-t", "a:3", "--build-arg", "UNUSED=1"]);
    assert_eq!(count(&third, "run_executed"), 0, "{third}");
    assert_eq!(count(&third, "file_executed"), 0, "{third}");
}

#[test]
fn dockerignore_keeps_files_out_of_the_image_and_the_cache_key() {
    let root = busybox_root();
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY . /app/\nRUN ls -a /app > /listing\n",
        ),
        (".dockerignore", "secret*\n*.log\n!keep.log\n"),
        ("code.txt", "code"),
        ("secret.key", "s3cret"),
        ("debug.log", "noise"),
        ("keep.log", "kept"),
    ]);
    build(&root, ctx.path(), &["-t", "ign"]);
    let listing = run(&root, &["ign", "cat", "/listing"]);
    let names: Vec<&str> = listing.lines().collect();
    assert!(names.contains(&"code.txt"), "{listing}");
    assert!(names.contains(&"keep.log"), "{listing}");
    assert!(!names.contains(&"secret.key"), "{listing}");
    assert!(!names.contains(&"debug.log"), "{listing}");

    // Changing an ignored file is not a change.
    std::fs::write(ctx.path().join("secret.key"), "rotated").unwrap();
    let report = build(&root, ctx.path(), &["-t", "ign"]);
    assert_eq!(count(&report, "run_executed"), 0, "{report}");
    assert_eq!(count(&report, "file_executed"), 0, "{report}");
}

#[test]
fn failing_run_names_the_line_and_shows_its_output() {
    let root = busybox_root();
    let ctx = context_with(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo fine\nRUN echo about to fail && echo on stderr >&2 && exit 7\nRUN echo never\n",
    )]);
    let (report, out) = try_build(&root, ctx.path(), &["-t", "broken"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(report.is_none());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("Dockerfile:3:1: error:"), "{stderr}");
    assert!(stderr.contains("exit code: 7"), "{stderr}");
    assert!(stderr.contains(" > about to fail"), "{stderr}");
    assert!(stderr.contains(" > on stderr"), "{stderr}");
    assert!(
        stderr.contains(" 3 | RUN echo about to fail"),
        "snippet missing: {stderr}"
    );
    assert!(!stderr.contains("never"), "{stderr}");
    // Nothing was tagged.
    let out = root.run(&["inspect", "broken"]);
    assert!(!out.status.success());

    // The step that succeeded before the failure is reused.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN echo fine\nRUN echo fixed\n",
    )
    .unwrap();
    let report = build(&root, ctx.path(), &["-t", "fixed"]);
    assert_eq!(count(&report, "run_executed"), 1, "{report}");
}

#[test]
fn noop_rebuild_runs_nothing_and_reads_no_context_and_one_change_reruns_its_copy() {
    let root = busybox_root();
    let dockerfile = r#"
FROM busybox
COPY a.txt /a.txt
RUN cat /a.txt > /from-a
COPY dir/ /dir/
RUN cat /dir/b.txt > /from-b
"#;
    let ctx = context_with(&[
        ("Dockerfile", dockerfile),
        ("a.txt", "a1"),
        ("dir/b.txt", "b1"),
        ("dir/c.txt", "c1"),
    ]);
    let first = build(&root, ctx.path(), &["-t", "c:1"]);
    assert_eq!(count(&first, "run_executed"), 2);
    assert!(count(&first, "context_bytes_read") > 0, "{first}");
    let id1 = first["image_id"].clone();

    // The context metadata cache keeps hashes only of files older than its racy window.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let warm = build(&root, ctx.path(), &["-t", "c:1"]);
    assert_eq!(count(&warm, "run_executed"), 0, "{warm}");
    let noop = build(&root, ctx.path(), &["-t", "c:1"]);
    assert_eq!(count(&noop, "run_executed"), 0, "{noop}");
    assert_eq!(count(&noop, "file_executed"), 0, "{noop}");
    assert_eq!(count(&noop, "context_bytes_read"), 0, "{noop}");
    assert_eq!(noop["image_id"], id1, "a no-op rebuild keeps the image id");
    let out = root.run(&["build", "-t", "c:1", ctx.path().to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("CACHED"), "{stderr}");
    // A new Dockerfile on the same base reuses the base from the store, which is no cached
    // step: a cold build prints no `CACHED` line (as docker and buildah count).
    let other = context_with(&[("Dockerfile", "FROM busybox\nRUN echo other > /other\n")]);
    let out = root.run(&["build", "-t", "o:1", other.path().to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("CACHED"), "{stderr}");

    // Changing a file of the second COPY re-runs that COPY and what follows, nothing else.
    std::fs::write(ctx.path().join("dir/c.txt"), "c2").unwrap();
    let changed = build(&root, ctx.path(), &["-t", "c:2"]);
    assert_eq!(count(&changed, "file_executed"), 1, "{changed}");
    assert_eq!(count(&changed, "run_executed"), 1, "{changed}");
    assert_eq!(run(&root, &["c:2", "cat", "/dir/c.txt"]), "c2");
    assert_eq!(run(&root, &["c:2", "cat", "/from-a", "/from-b"]), "a1b1");

    // --no-cache runs everything again.
    let fresh = build(&root, ctx.path(), &["-t", "c:3", "--no-cache"]);
    assert_eq!(count(&fresh, "run_executed"), 2, "{fresh}");
    assert_eq!(count(&fresh, "cached"), 0, "{fresh}");
}

#[test]
fn sigterm_cancels_the_running_step_and_tags_nothing() {
    use std::io::BufRead as _;
    use std::process::Stdio;
    let root = busybox_root();
    let ctx = context_with(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo before > /before\nRUN sleep 60\n",
    )]);
    let mut child = root
        .cmd(&["build", "-t", "slow", ctx.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut lines = std::io::BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("RUN sleep 60") {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("RUN sleep 60")),
        "the sleep never started: {seen:?}"
    );
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    seen.extend(lines.map(|l| l.unwrap()));
    let status = child.wait().unwrap();
    let all = seen.join("\n");
    assert_eq!(status.code(), Some(1), "{all}");
    assert!(all.contains("build cancelled"), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    assert!(!root.run(&["inspect", "slow"]).status.success());

    // The store is consistent: the step before the cancelled one is reused.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN echo before > /before\nRUN echo quick\n",
    )
    .unwrap();
    let report = build(&root, ctx.path(), &["-t", "slow"]);
    assert_eq!(count(&report, "run_executed"), 1, "{report}");
    assert_eq!(run(&root, &["slow", "cat", "/before"]), "before\n");
}

#[test]
fn bases_come_from_a_local_registry_and_pull_re_resolves_their_tag() {
    use rbuild_image::registry::testing::TestRegistry;
    let registry = TestRegistry::start().expect("registry fixture");
    let base = format!("{}/base:latest", registry.host());
    let src = busybox_root();
    src.ok(&["tag", "busybox", &base]);
    src.ok(&["push", &base]);

    let dst = Root::new();
    let ctx = context_with(&[(
        "Dockerfile",
        &format!("FROM {base}\nRUN (cat /marker 2>/dev/null || echo none) > /seen\n"),
    )]);
    build(&dst, ctx.path(), &["-t", "app"]);
    assert_eq!(run(&dst, &["app", "cat", "/seen"]), "none\n");

    // A new image under the same tag. Its built layer is stored uncompressed and pushed
    // gzipped, under the same image id.
    let v2 = context_with(&[("Dockerfile", "FROM busybox\nRUN echo v2 > /marker\n")]);
    build(&src, v2.path(), &["-t", &base]);
    let out = src.ok(&["push", &base]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(": Pushed")).count(),
        1,
        "{out}"
    );
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{base}"),
        ],
    );
    assert!(raw.status.success(), "{}", text(&raw).1);
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for layer in layers {
        let media_type = layer["mediaType"].as_str().unwrap();
        assert!(
            media_type.ends_with("gzip"),
            "{media_type} pushed uncompressed"
        );
    }
    // Converted once: a second push finds every layer there.
    let again = src.ok(&["push", &base]);
    assert!(!again.contains(": Pushed"), "{again}");
    let id = |root: &Root| -> String {
        let v: serde_json::Value = serde_json::from_str(&root.ok(&["inspect", &base])).unwrap();
        v[0]["Id"].as_str().unwrap().to_owned()
    };

    // Without --pull the stored base is used (and the step is cached)...
    let report = build(&dst, ctx.path(), &["-t", "app"]);
    assert_eq!(count(&report, "run_executed"), 0, "{report}");
    assert_eq!(run(&dst, &["app", "cat", "/seen"]), "none\n");
    // ...with --pull the tag is asked again and the new base makes a new step.
    let report = build(&dst, ctx.path(), &["-t", "app", "--pull"]);
    assert_eq!(count(&report, "run_executed"), 1, "{report}");
    assert_eq!(run(&dst, &["app", "cat", "/seen"]), "v2\n");
    assert_eq!(id(&dst), id(&src), "the image id survives the push");
}

#[test]
fn steps_that_change_nothing_add_history_but_no_layer() {
    let root = busybox_root();
    let ctx = context_with(&[(
        "Dockerfile",
        "FROM busybox\nRUN true\nWORKDIR /tmp\nRUN echo x > /x\nENV A=1\n",
    )]);
    build(&root, ctx.path(), &["-t", "thin"]);
    let inspect: serde_json::Value = serde_json::from_str(&root.ok(&["inspect", "thin"])).unwrap();
    let layers = inspect[0]["RootFS"]["Layers"].as_array().unwrap();
    // The base layer and the one RUN that wrote a file.
    assert_eq!(layers.len(), 2, "{inspect}");
    let history = root.ok(&["history", "--no-trunc", "thin"]);
    let line = |needle: &str| {
        history
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in\n{history}"))
            .to_owned()
    };
    assert!(line("RUN /bin/sh -c true").contains(" 0B "), "{history}");
    assert!(!line("RUN /bin/sh -c echo x").contains(" 0B "), "{history}");
    assert_eq!(run(&root, &["thin", "cat", "/x"]), "x\n");
}

#[test]
fn run_mounts_bind_context_files_keyed_by_content_and_leave_nothing_behind() {
    let root = busybox_root();
    let dockerfile = r#"
FROM busybox
RUN --mount=type=bind,source=input.txt,target=/mnt/in cat /mnt/in > /copied
RUN --mount=type=cache,target=/cache echo $(( $(cat /cache/n 2>/dev/null || echo 0) + 1 )) > /cache/n && cp /cache/n /count
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /tmpfs-listing
"#;
    let ctx = context_with(&[("Dockerfile", dockerfile), ("input.txt", "one\n")]);
    let first = build(&root, ctx.path(), &["-t", "m:1"]);
    assert_eq!(count(&first, "run_executed"), 3);
    assert_eq!(
        run(
            &root,
            &["m:1", "cat", "/copied", "/count", "/tmpfs-listing"]
        ),
        "one\n1\nx\n"
    );
    for gone in ["/mnt", "/cache", "/scratch"] {
        let out = root.run(&["run", "--network", "none", "m:1", "ls", gone]);
        assert!(!out.status.success(), "{gone} left in the image");
    }

    // The bound file is part of the key: changing it re-runs its step and the rest.
    std::fs::write(ctx.path().join("input.txt"), "two\n").unwrap();
    let second = build(&root, ctx.path(), &["-t", "m:2"]);
    assert_eq!(count(&second, "run_executed"), 3, "{second}");
    // The cache mount kept its content between builds.
    assert_eq!(run(&root, &["m:2", "cat", "/copied", "/count"]), "two\n2\n");

    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=secret,id=token,required=true cat /run/secrets/token\n",
    )
    .unwrap();
    let (_, out) = try_build(&root, ctx.path(), &["-t", "m:3"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("secret token not found"), "{stderr}");
}
