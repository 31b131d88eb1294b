//! The Dockerfile conformance corpus (`../shared/corpus`, never copied here): every case
//! is run through the real `rbuild check`, and its verdict (accept, or reject naming the
//! expected line) compared with `expected.tsv`. Also our own real-world-shaped Dockerfiles
//! in `tests/realworld/`, which must check clean and lower to JSON.
//!
//! `RBUILD_REALWORLD_DIR` may point at a directory of `<name>/Dockerfile` files fetched from
//! the public repositories listed in the corpus' SOURCES.md (kept out of the repository);
//! they are then held to the same verdict.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{corpus, rbuild, text, workspace};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Accept,
    /// Reject naming this line (`None`: no particular line).
    Reject(Option<usize>),
}

/// Runs `rbuild ARGS`, killing it if it hangs: a hang is a failure, never a rejection.
/// The pipes are drained while the child runs, so output larger than a pipe buffer (the
/// graph of a big Dockerfile) cannot stall it.
fn run(args: &[&str], dir: &Path) -> Result<Output, String> {
    let mut child = rbuild()
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("rbuild {args:?} hung in {}", dir.display()));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: stdout.join().map_err(|_| "stdout reader panicked")?,
        stderr: stderr.join().map_err(|_| "stderr reader panicked")?,
    })
}

fn expected() -> BTreeMap<String, Verdict> {
    let tsv = std::fs::read_to_string(corpus().join("expected.tsv")).expect("expected.tsv");
    tsv.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let verdict = match cols[1] {
                "accept" => Verdict::Accept,
                _ => Verdict::Reject(cols[2].parse().ok()),
            };
            (cols[0].to_string(), verdict)
        })
        .collect()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    out.sort();
    out
}

/// Judges one `rbuild check` run against the verdict; `Err` explains a mismatch.
fn judge(case: &str, verdict: &Verdict, out: &Output) -> Result<(), String> {
    let (_, stderr) = text(out);
    let code = out.status.code();
    if code.is_none() || code == Some(101) || stderr.contains("panicked") {
        return Err(format!("{case}: crashed ({:?}):\n{stderr}", out.status));
    }
    match verdict {
        Verdict::Accept => {
            let warnings_only = !stderr.contains("error") && stderr.contains("warning");
            if code == Some(0) || warnings_only {
                Ok(())
            } else {
                Err(format!("{case}: expected accept, got {code:?}:\n{stderr}"))
            }
        }
        Verdict::Reject(line) => {
            if code == Some(0) {
                return Err(format!("{case}: expected reject, got exit 0:\n{stderr}"));
            }
            match line {
                Some(n)
                    if !stderr.contains(&format!("Dockerfile:{n}:"))
                        && !stderr.contains(&format!("line {n}")) =>
                {
                    Err(format!(
                        "{case}: rejected, but not naming line {n}:\n{stderr}"
                    ))
                }
                _ => Ok(()),
            }
        }
    }
}

#[test]
fn buildkit_corpus_verdicts() {
    let root = corpus();
    let expected = expected();
    let mut failures = Vec::new();
    let (mut accepted, mut accept_total, mut rejected, mut reject_total) = (0, 0, 0, 0);
    let mut dirs = Vec::new();
    for group in [
        "buildkit-parser/positive",
        "buildkit-parser/negative",
        "buildkit-instructions/negative",
    ] {
        dirs.extend(subdirs(&root.join(group)));
    }
    dirs.push(root.join("buildkit-parser/line-info"));
    for dir in dirs {
        let case = dir
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let verdict = expected.get(&case).cloned().unwrap_or_else(|| {
            if case.contains("/negative/") {
                Verdict::Reject(None)
            } else {
                Verdict::Accept
            }
        });
        let is_accept = verdict == Verdict::Accept;
        if is_accept {
            accept_total += 1;
        } else {
            reject_total += 1;
        }
        let result = run(&["check", "-f", "Dockerfile", "."], &dir)
            .and_then(|out| judge(&case, &verdict, &out));
        match result {
            Ok(()) if is_accept => accepted += 1,
            Ok(()) => rejected += 1,
            Err(e) => failures.push(e),
        }
    }
    println!("{accepted}/{accept_total} accepted, {rejected}/{reject_total} rejected");
    assert_eq!(accept_total, 24, "corpus should hold 24 accept cases");
    assert_eq!(reject_total, 21, "corpus should hold 21 reject cases");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Checks every `<dir>/*/Dockerfile`: `rbuild check` accepts it and `rbuild graph --format
/// json` prints valid JSON. Returns the failures.
fn check_and_graph_all(root: &Path) -> (usize, Vec<String>) {
    let dirs = subdirs(root);
    let mut failures = Vec::new();
    for dir in &dirs {
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        if let Err(e) = run(&["check", "-f", "Dockerfile", "."], dir)
            .and_then(|out| judge(&case, &Verdict::Accept, &out))
        {
            failures.push(e);
            continue;
        }
        match run(&["graph", "--format", "json", "-f", "Dockerfile", "."], dir) {
            Ok(out) if out.status.success() => {
                if let Err(e) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                    failures.push(format!("{case}: graph output is not JSON: {e}"));
                }
            }
            Ok(out) => failures.push(format!("{case}: graph failed:\n{}", text(&out).1)),
            Err(e) => failures.push(e),
        }
    }
    (dirs.len(), failures)
}

#[test]
fn own_realworld_dockerfiles_check_and_lower() {
    let (count, failures) = check_and_graph_all(&workspace().join("tests/realworld"));
    assert!(
        count >= 20,
        "expected at least 20 Dockerfiles, found {count}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn fetched_public_dockerfiles_check_and_lower() {
    let Some(dir) = std::env::var_os("RBUILD_REALWORLD_DIR") else {
        println!("RBUILD_REALWORLD_DIR not set: public Dockerfiles not checked in this run");
        return;
    };
    let (count, failures) = check_and_graph_all(Path::new(&dir));
    println!(
        "{} of {count} public Dockerfiles pass",
        count - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A reader that closes the pipe early must not make rbuild panic.
#[test]
fn graph_into_a_closed_pipe_does_not_panic() {
    let mut child = rbuild()
        .args(["graph", "--format", "json", "examples"])
        .current_dir(workspace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rbuild");
    // Close our end of stdout before rbuild writes its graph.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for rbuild");
    let (_, stderr) = text(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
