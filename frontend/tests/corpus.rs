//! The shared conformance corpus through parser and front end together: every case must
//! be accepted or rejected as `expected.tsv` says, rejections naming the expected line.
//! The corpus is read in place (`RBUILD_CORPUS`, or `shared/corpus` beside the repository
//! or beside its worktree directory).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rbuild_frontend::{BuildOptions, NoopResolver};

fn corpus_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = match std::env::var_os("RBUILD_CORPUS") {
        Some(d) => vec![PathBuf::from(d)],
        None => vec![
            manifest.join("../../shared/corpus"),
            manifest.join("../../../shared/corpus"),
        ],
    };
    candidates
        .into_iter()
        .find(|d| d.join("expected.tsv").is_file())
        .expect("the corpus is missing (set RBUILD_CORPUS to the shared/corpus directory)")
}

/// Case dir -> (verdict, line).
fn expected(dir: &Path) -> BTreeMap<String, (String, Option<usize>)> {
    fs::read_to_string(dir.join("expected.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), (f[1].to_string(), f[2].parse().ok()))
        })
        .collect()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// `Ok(())` when accepted, else the error's line (if any) and message.
fn check(source: &str) -> Result<(), (Option<usize>, String)> {
    let df = rbuild_parser::parse(source).map_err(|e| (Some(e.span.line), e.message))?;
    rbuild_frontend::lower(&df, &BuildOptions::default(), &NoopResolver)
        .map(|_| ())
        .map_err(|e| (e.span().map(|s| s.line), e.to_string()))
}

#[test]
fn corpus_verdicts() {
    let dir = corpus_dir();
    let expected = expected(&dir);
    let groups = [
        ("buildkit-parser/positive", "accept"),
        ("buildkit-parser/negative", "reject"),
        ("buildkit-instructions/negative", "reject"),
    ];
    let mut failures = Vec::new();
    let (mut accepted, mut rejected, mut total_accept, mut total_reject) = (0, 0, 0, 0);
    for (group, default) in groups {
        for case in subdirs(&dir.join(group)) {
            let name = format!("{group}/{}", case.file_name().unwrap().to_string_lossy());
            let source = fs::read(case.join("Dockerfile")).unwrap();
            let source = String::from_utf8_lossy(&source);
            let (verdict, line) = expected
                .get(&name)
                .cloned()
                .unwrap_or((default.to_string(), None));
            let got = check(&source);
            if verdict == "accept" {
                total_accept += 1;
                match got {
                    Ok(()) => accepted += 1,
                    Err((l, m)) => failures.push(format!("{name}: rejected at {l:?}: {m}")),
                }
            } else {
                total_reject += 1;
                match got {
                    Ok(()) => failures.push(format!("{name}: accepted")),
                    Err((l, m)) => {
                        if line.is_some() && l != line {
                            failures.push(format!("{name}: rejected at {l:?}, want {line:?}: {m}"));
                        } else {
                            rejected += 1;
                        }
                    }
                }
            }
        }
    }
    total_accept += 1;
    let line_info = fs::read_to_string(dir.join("buildkit-parser/line-info/Dockerfile")).unwrap();
    match check(&line_info) {
        Ok(()) => accepted += 1,
        Err((l, m)) => failures.push(format!("line-info: rejected at {l:?}: {m}")),
    }
    println!("{accepted}/{total_accept} accepted, {rejected}/{total_reject} rejected");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
