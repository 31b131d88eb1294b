//! `rbuild build --explain`, `--no-cache-filter` and `--cache-from` end to end on the
//! busybox fixture: the reasons a rebuild names, which steps a filter re-runs, and which
//! steps an image's history and layers stand in for (counted through `--report-file`).

mod common;

use std::path::Path;

use common::{Root, busybox_root, context_with, text};

/// Builds `ctx` with `args`; returns the report and stderr, asserting success.
fn build(root: &Root, ctx: &Path, args: &[&str]) -> (serde_json::Value, String) {
    let report = root.path().join("report.json");
    let _ = std::fs::remove_file(&report);
    let mut all = vec!["build", "--report-file", report.to_str().unwrap()];
    if !args.contains(&"--progress") {
        all.extend(["--progress", "plain"]);
    }
    all.extend_from_slice(args);
    all.push(ctx.to_str().unwrap());
    let out = root.run(&all);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "build {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (report, stderr)
}

fn count(report: &serde_json::Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {report}"))
}

/// The `#N cache miss: ...` lines of a plain log, without their numbers.
fn misses(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once(" cache miss: ").map(|(_, r)| r.to_owned()))
        .collect()
}

const EXPLAINED: &str = r#"
FROM busybox
ARG V=one
RUN echo "$V" > /v
COPY . /app
RUN ls -lR /app > /listing
"#;

#[test]
fn explain_names_the_file_arg_and_base_image_that_changed() {
    let root = busybox_root();
    let ctx = context_with(&[
        ("Dockerfile", EXPLAINED),
        ("d07/s3/f042.txt", "one"),
        ("d07/s3/f043.txt", "same"),
        ("top.txt", "top"),
    ]);
    let (_, stderr) = build(&root, ctx.path(), &["--explain", "-t", "e:1"]);
    let first = misses(&stderr);
    assert_eq!(first.len(), 4, "{stderr}");
    assert!(
        first
            .iter()
            .all(|m| m.ends_with("— no earlier build of this Dockerfile")),
        "{stderr}"
    );
    assert!(
        stderr.contains("explain: no earlier build of this Dockerfile (4 steps ran)"),
        "{stderr}"
    );

    // Nothing changed: nothing to explain.
    let (report, stderr) = build(&root, ctx.path(), &["--explain", "-t", "e:1"]);
    assert_eq!(count(&report, "executed"), 1, "only the context: {report}");
    assert!(misses(&stderr).is_empty(), "{stderr}");
    assert!(
        stderr.contains("explain: every step came from the cache"),
        "{stderr}"
    );

    // One file's content: the COPY names it, the RUN after names the COPY.
    std::fs::write(ctx.path().join("d07/s3/f042.txt"), "two").unwrap();
    let (_, stderr) = build(&root, ctx.path(), &["--explain", "-t", "e:1"]);
    assert_eq!(
        misses(&stderr),
        [
            "COPY . /app — file d07/s3/f042.txt content changed",
            "RUN ls -lR /app > /listing — parent step COPY . /app changed",
        ],
        "{stderr}"
    );
    assert!(
        stderr.contains("explain: 2 steps missed the cache:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  [3/4] COPY . /app: file d07/s3/f042.txt content changed"),
        "{stderr}"
    );

    // Mode, an added symlink and a removed file, all named.
    let perm = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(ctx.path().join("top.txt"), perm).unwrap();
    std::os::unix::fs::symlink("top.txt", ctx.path().join("link")).unwrap();
    std::fs::remove_file(ctx.path().join("d07/s3/f043.txt")).unwrap();
    let (_, stderr) = build(&root, ctx.path(), &["--explain", "-t", "e:1"]);
    assert_eq!(
        misses(&stderr)[0],
        "COPY . /app — file d07/s3/f043.txt removed; symlink link added; \
         file top.txt mode changed (0644 → 0755)",
        "{stderr}"
    );

    // A build arg: the steps that see it name it, the COPY after it names its parent.
    let (_, stderr) = build(
        &root,
        ctx.path(),
        &["--explain", "--build-arg", "V=two", "-t", "e:1"],
    );
    assert_eq!(
        misses(&stderr),
        [
            "RUN echo \"two\" > /v — build arg V changed",
            "COPY . /app — parent step RUN echo \"two\" > /v changed",
            "RUN ls -lR /app > /listing — build arg V changed; parent step COPY . /app changed",
        ],
        "{stderr}"
    );

    // A new base image under the same tag: the FROM names both digests.
    let tar = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tar.path(), common::busybox_rootfs()).unwrap();
    root.ok(&[
        "import",
        "--change",
        r#"CMD ["sh", "-l"]"#,
        tar.path().to_str().unwrap(),
        "busybox:latest",
    ]);
    let (_, stderr) = build(
        &root,
        ctx.path(),
        &["--explain", "--build-arg", "V=two", "-t", "e:1"],
    );
    let got = misses(&stderr);
    assert!(
        got[0].contains("base image docker.io/library/busybox:latest changed: sha256:"),
        "{stderr}"
    );
    assert!(
        got[1].ends_with("— base image docker.io/library/busybox:latest changed"),
        "{stderr}"
    );

    // --no-cache says so; rawjson carries the reasons as events and a summary.
    let (_, stderr) = build(
        &root,
        ctx.path(),
        &[
            "--explain",
            "--no-cache",
            "--build-arg",
            "V=two",
            "-t",
            "e:1",
        ],
    );
    assert!(
        misses(&stderr).iter().all(|m| m.ends_with("— --no-cache")),
        "{stderr}"
    );
    std::fs::write(ctx.path().join("top.txt"), "new top").unwrap();
    let (_, stderr) = build(
        &root,
        ctx.path(),
        &[
            "--explain",
            "--progress",
            "rawjson",
            "--build-arg",
            "V=two",
            "-t",
            "e:1",
        ],
    );
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reasons: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "cache_miss")
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "COPY . /app — file top.txt content changed",
            "RUN ls -lR /app > /listing — parent step COPY . /app changed"
        ],
        "{stderr}"
    );
    let summary = events.iter().find(|e| e["event"] == "explain").unwrap();
    assert_eq!(summary["earlier_build"], true);
    assert_eq!(summary["misses"].as_array().unwrap().len(), 2, "{summary}");
}

#[test]
fn explain_records_stay_per_dockerfile() {
    let root = busybox_root();
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM busybox AS main\nCOPY a.txt /a\nRUN cat /a\n",
        ),
        ("other.Dockerfile", "FROM busybox\nCOPY a.txt /b\n"),
        ("a.txt", "1"),
    ]);
    build(&root, ctx.path(), &[]);
    // Another Dockerfile in the same context has its own record: its first build has
    // nothing to compare with, and the first Dockerfile's record is still there.
    let other = ctx.path().join("other.Dockerfile");
    let (_, stderr) = build(
        &root,
        ctx.path(),
        &["--explain", "-f", other.to_str().unwrap()],
    );
    assert!(
        stderr.contains("explain: no earlier build of this Dockerfile"),
        "{stderr}"
    );
    std::fs::write(ctx.path().join("a.txt"), "2").unwrap();
    let (_, stderr) = build(&root, ctx.path(), &["--explain"]);
    assert_eq!(
        misses(&stderr)[0],
        "COPY a.txt /a — file a.txt content changed",
        "{stderr}"
    );
    // So is a target of its own.
    let (_, stderr) = build(&root, ctx.path(), &["--explain", "--target", "main"]);
    assert!(
        stderr.contains("explain: no earlier build of this Dockerfile"),
        "{stderr}"
    );
}

const TWO_STAGES: &str = r#"
FROM busybox AS build
RUN echo built > /b

FROM busybox
RUN echo pre > /pre
COPY --from=build /b /b
RUN cat /b > /c
"#;

#[test]
fn no_cache_filter_reruns_the_named_stages_and_what_uses_them() {
    let root = busybox_root();
    let ctx = context_with(&[("Dockerfile", TWO_STAGES)]);
    let (first, _) = build(&root, ctx.path(), &["-t", "f:1"]);
    assert_eq!(count(&first, "run_executed"), 3, "{first}");

    // The build stage runs again; the final stage reuses what does not depend on it.
    let (report, stderr) = build(
        &root,
        ctx.path(),
        &["--explain", "--no-cache-filter", "build", "-t", "f:1"],
    );
    assert_eq!(count(&report, "run_executed"), 2, "{report}");
    assert_eq!(count(&report, "file_executed"), 1, "{report}");
    assert_eq!(
        misses(&stderr),
        [
            "RUN echo built > /b — stage build is in --no-cache-filter",
            "COPY --from=build /b /b — parent step RUN echo built > /b runs again (--no-cache-filter)",
            "RUN cat /b > /c — parent step COPY --from=build /b /b runs again (--no-cache-filter)",
        ],
        "{stderr}"
    );

    // By index, comma-separated with a name: both stages.
    let (report, _) = build(
        &root,
        ctx.path(),
        &["--no-cache-filter", "1,build", "-t", "f:1"],
    );
    assert_eq!(count(&report, "run_executed"), 3, "{report}");
    // The unnamed stage alone, by its label.
    let (report, _) = build(
        &root,
        ctx.path(),
        &["--no-cache-filter", "stage-1", "-t", "f:1"],
    );
    assert_eq!(count(&report, "run_executed"), 2, "{report}");
    // Without the filter everything is reused again.
    let (report, _) = build(&root, ctx.path(), &["-t", "f:1"]);
    assert_eq!(count(&report, "run_executed"), 0, "{report}");

    let out = root.run(&[
        "build",
        "--no-cache-filter",
        "nope",
        ctx.path().to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--no-cache-filter: no stage named \"nope\""),
        "{stderr}"
    );
}

const CACHED_RUNS: &str = r#"
FROM busybox
ENV A=1
RUN echo "$A" > /a
RUN true
WORKDIR /w
ARG B=x
RUN echo "$B" > b
"#;

/// `rbuild save` of `name` from `from`, loaded into a fresh store with the busybox base.
fn transplant(from: &Root, name: &str) -> Root {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    from.ok(&["save", "-o", archive.to_str().unwrap(), name]);
    let to = busybox_root();
    to.ok(&["load", "-i", archive.to_str().unwrap()]);
    to
}

#[test]
fn cache_from_reuses_run_layers_of_an_image_in_a_fresh_store() {
    let first = busybox_root();
    let ctx = context_with(&[("Dockerfile", CACHED_RUNS)]);
    let (a, _) = build(&first, ctx.path(), &["-t", "cf:a"]);
    assert_eq!(count(&a, "run_executed"), 3, "{a}");

    // A store with the image but no cache: every RUN (the empty one too) and the WORKDIR
    // come from the image's layers, and the image is the same.
    let second = transplant(&first, "cf:a");
    let (b, stderr) = build(
        &second,
        ctx.path(),
        &["--explain", "--cache-from", "cf:a", "-t", "cf:b"],
    );
    assert_eq!(count(&b, "run_executed"), 0, "{b}\n{stderr}");
    assert_eq!(count(&b, "file_executed"), 0, "{b}\n{stderr}");
    assert_eq!(count(&b, "cache_from_hits"), 4, "{b}");
    assert_eq!(stderr.matches("CACHED").count(), 4, "{stderr}");
    assert_eq!(
        b["image_id"], a["image_id"],
        "same image as the cache image"
    );
    // Remembered: the next build needs no --cache-from.
    let (c, _) = build(&second, ctx.path(), &["-t", "cf:c"]);
    assert_eq!(count(&c, "run_executed"), 0, "{c}");

    // A build arg in the history text: the steps before it match, the RUN that sees it
    // does not.
    let third = transplant(&first, "cf:a");
    let (d, _) = build(
        &third,
        ctx.path(),
        &["--cache-from", "cf:a", "--build-arg", "B=y", "-t", "cf:d"],
    );
    assert_eq!(count(&d, "cache_from_hits"), 3, "{d}");
    assert_eq!(count(&d, "run_executed"), 1, "{d}");
    let out = third.ok(&["run", "--network", "none", "cf:d", "cat", "/w/b"]);
    assert_eq!(out, "y\n");
}

#[test]
fn cache_from_takes_a_copy_only_when_its_layer_is_the_image_layer() {
    let first = busybox_root();
    let dockerfile =
        "FROM busybox\nRUN echo a > /a\nCOPY data.txt /data.txt\nRUN cat /data.txt > /copy\n";
    let ctx = context_with(&[("Dockerfile", dockerfile), ("data.txt", "old")]);
    let (a, _) = build(&first, ctx.path(), &["-t", "cp:a"]);
    assert_eq!(count(&a, "run_executed"), 2, "{a}");

    // Same content: the copy runs, makes the image's layer, and the RUN after it is
    // taken from the image.
    let same = transplant(&first, "cp:a");
    let (b, _) = build(&same, ctx.path(), &["--cache-from", "cp:a", "-t", "cp:b"]);
    assert_eq!(count(&b, "file_executed"), 1, "{b}");
    assert_eq!(count(&b, "run_executed"), 0, "{b}");
    assert_eq!(count(&b, "cache_from_hits"), 2, "{b}");
    assert_eq!(b["image_id"], a["image_id"]);

    // Same history text, other content: the RUN before the COPY is reused, the COPY and
    // everything after it run, and the result has the new content.
    std::fs::write(ctx.path().join("data.txt"), "new").unwrap();
    let second = transplant(&first, "cp:a");
    let (b, _) = build(&second, ctx.path(), &["--cache-from", "cp:a", "-t", "cp:b"]);
    assert_eq!(count(&b, "cache_from_hits"), 1, "{b}");
    assert_eq!(count(&b, "file_executed"), 1, "{b}");
    assert_eq!(count(&b, "run_executed"), 1, "{b}");
    let out = second.ok(&["run", "--network", "none", "cp:b", "cat", "/copy"]);
    assert_eq!(out, "new");

    // Only local images and registries are sources.
    let out = second.run(&[
        "build",
        "--cache-from",
        "type=local,src=/tmp",
        ctx.path().to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("type=local is not supported"), "{stderr}");
    let out = second.run(&[
        "build",
        "--cache-from",
        "missing:1",
        ctx.path().to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no such image in the local store"),
        "{stderr}"
    );
}

#[test]
fn cache_from_pulls_a_registry_image() {
    use rbuild_image::registry::testing::TestRegistry;
    let registry = TestRegistry::start().expect("registry fixture");
    let name = format!("{}/cache:1", registry.host());
    let src = busybox_root();
    let ctx = context_with(&[("Dockerfile", CACHED_RUNS)]);
    let (a, _) = build(&src, ctx.path(), &["-t", &name]);
    src.ok(&["push", &name]);

    let dst = busybox_root();
    let spec = format!("type=registry,ref={name}");
    let (b, _) = build(&dst, ctx.path(), &["--cache-from", &spec, "-t", "cf:b"]);
    assert_eq!(count(&b, "run_executed"), 0, "{b}");
    assert_eq!(count(&b, "cache_from_hits"), 4, "{b}");
    assert_eq!(b["image_id"], a["image_id"]);

    let missing = format!("type=registry,ref={}/nothing:1", registry.host());
    let out = dst.run(&[
        "build",
        "--cache-from",
        &missing,
        ctx.path().to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot pull"), "{stderr}");
}
