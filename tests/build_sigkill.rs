//! `rbuild build` killed with SIGKILL at random moments never corrupts the store (issue
//! 6): after every kill, every blob in the store verifies against its name, every listed
//! image can be read in full, the tag is absent or names the finished image, and the next
//! build succeeds with the same image id as a clean build in a store of its own.
//!
//! The kill delays are seeded (`RBUILD_SIGKILL_SEED` replays one, `RBUILD_SIGKILL_TRIALS`
//! runs more) and spread over the
//! duration of one uncounted full build, so they land in every phase: context hashing,
//! `RUN`s, `COPY`s, layer export, tagging. Nothing about timing is asserted.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use common::{Root, import_busybox, text, tool};

const DEFAULT_SEED: u64 = 0x6b11_2026;
const DEFAULT_TRIALS: usize = 20;

const DOCKERFILE: &str = r#"
FROM busybox AS gen
COPY files/ /files/
RUN for i in $(seq 1 60); do echo "$i" > /files/gen-$i; done
RUN seq 1 60000 > /files/big.txt

FROM busybox AS other
RUN echo two > /two

FROM busybox
COPY --from=gen /files /app/files
COPY --from=other /two /app/two
COPY top.txt /app/
RUN cat /app/two /app/top.txt > /app/both && ls /app/files | wc -l > /app/count
WORKDIR /app
CMD ["cat", "/app/both"]
"#;

fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(dir.path().join("top.txt"), "top\n").unwrap();
    std::fs::create_dir(dir.path().join("files")).unwrap();
    for i in 0..20 {
        std::fs::write(
            dir.path().join("files").join(format!("f{i}.txt")),
            format!("file {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    dir
}

/// `build -q`: the image id.
fn build_id(root: &Root, ctx: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build", "-q", "-t", "app:latest"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    root.ok(&args).trim().to_owned()
}

/// Every blob file is named by the sha256 of its content: nothing half written is
/// visible.
fn verify_blobs(root: &Root, what: &str) {
    let dir = root.path().join("store/blobs-v1/sha256");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let files: Vec<String> = entries
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    if files.is_empty() {
        return;
    }
    let mut args = vec!["--"];
    args.extend(files.iter().map(String::as_str));
    let out = tool("sha256sum", &args);
    assert!(out.status.success(), "{what}: sha256sum: {:?}", text(&out));
    for line in text(&out).0.lines() {
        let (sum, path) = line.split_once("  ").unwrap();
        let name = Path::new(path).file_name().unwrap().to_string_lossy();
        assert_eq!(sum, name, "{what}: blob {path} does not match its name");
    }
}

/// Nothing under the store stays mounted after the build's process is gone.
fn verify_no_mounts(root: &Root, what: &str) {
    let store = root.path().join("store");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mounts
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| Path::new(m).starts_with(&store))
        })
        .collect();
    assert!(
        left.is_empty(),
        "{what}: mounts left behind:\n{}",
        left.join("\n")
    );
}

/// Every listed image reads in full (manifest, config, layers), and `app:latest` is
/// either absent or the finished image.
fn verify_images(root: &Root, scratch: &Path, reference: &str, what: &str) {
    let listing = root.ok(&["images", "--format", "json"]);
    for line in listing.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = format!(
            "{}:{}",
            row["Repository"].as_str().unwrap(),
            row["Tag"].as_str().unwrap()
        );
        let out = scratch.join("save.tar");
        let saved = root.run(&[
            "save",
            "--format",
            "oci",
            "-o",
            out.to_str().unwrap(),
            &name,
        ]);
        let (stdout, stderr) = text(&saved);
        assert!(
            saved.status.success(),
            "{what}: listed image {name} cannot be read in full\n{stdout}\n{stderr}"
        );
        let _ = std::fs::remove_file(&out);
    }
    let inspect = root.run(&["inspect", "app:latest"]);
    if inspect.status.success() {
        let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(
            v[0]["Id"].as_str().unwrap(),
            reference,
            "{what}: app:latest names an image other than the finished one"
        );
    }
}

#[test]
fn sigkill_at_random_moments_never_corrupts_the_store() {
    let seed = std::env::var("RBUILD_SIGKILL_SEED")
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .expect("RBUILD_SIGKILL_SEED must be a number")
        })
        .unwrap_or(DEFAULT_SEED);
    let trials: usize = std::env::var("RBUILD_SIGKILL_TRIALS")
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .expect("RBUILD_SIGKILL_TRIALS must be a number")
        })
        .unwrap_or(DEFAULT_TRIALS);
    eprintln!("sigkill test: seed {seed}, {trials} trials (replay with RBUILD_SIGKILL_SEED)");
    let mut state = seed;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let ctx = context();
    let scratch = tempfile::tempdir().unwrap();

    // The clean reference, in a store of its own.
    let clean = Root::new();
    import_busybox(&clean);
    let reference = build_id(&clean, ctx.path(), &[]);

    let root = Root::new();
    import_busybox(&root);
    // One uncounted full build calibrates the spread of the kill delays.
    let started = Instant::now();
    let first = build_id(&root, ctx.path(), &["--no-cache"]);
    let full = started.elapsed();
    assert_eq!(
        first, reference,
        "builds are not reproducible across stores"
    );
    root.ok(&["rmi", "app:latest"]);

    let mut killed = 0;
    for trial in 1..=trials {
        let what = format!("seed {seed}, trial {trial}");
        // Over the whole build; a few land after its end.
        let delay = full.mul_f64((next() % 1000) as f64 / 1000.0);
        let mut child = root
            .cmd(&[
                "build",
                "--no-cache",
                "-t",
                "app:latest",
                "--progress",
                "plain",
                ctx.path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let status = match child.try_wait().unwrap() {
            Some(status) => status,
            None => {
                // `Child::kill` is SIGKILL.
                child.kill().unwrap();
                killed += 1;
                child.wait().unwrap()
            }
        };
        eprintln!("{what}: after {delay:?}: {status}");
        verify_blobs(&root, &what);
        verify_no_mounts(&root, &what);
        verify_images(&root, scratch.path(), &reference, &what);
        let id = build_id(&root, ctx.path(), &[]);
        assert_eq!(id, reference, "{what}: the build after the kill differs");
        verify_blobs(&root, &what);
        if trial % 2 == 0 {
            // Half the trials start from no tag, so a kill before tagging shows none.
            root.ok(&["rmi", "app:latest"]);
        }
    }
    eprintln!("sigkill test: {killed} of {trials} builds killed");
    assert!(killed > 0, "every build finished before its kill");
}
