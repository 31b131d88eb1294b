//! Golden-directory tests: every `testdata/<case>/Dockerfile` is lowered and the result
//! (stages, warnings, final image config, graph; or the error with its line:col) is
//! compared with `graph.snap`. `RBUILD_BLESS=1` rewrites the snapshots.
//!
//! Optional files of a case: `dockerignore` (the context's `.dockerignore`), `args` (one option per line: `--build-arg K=V`, `--target X`,
//! `--platform P`, `--build-platform P`, `--label K=V`) and `images.json` (base images the
//! resolver knows: `{ "<normalised ref>": { "digest": ..., "config": <image JSON> } }`).

use std::fs;
use std::path::{Path, PathBuf};

use rbuild_frontend::{BuildOptions, ImageResolver, MemoryResolver, NoopResolver, ResolvedImage};
use serde_json::{Value, json};

fn options(case: &Path) -> BuildOptions {
    let mut opts = BuildOptions::default();
    if let Ok(text) = fs::read_to_string(case.join("dockerignore")) {
        opts.context_excludes = rbuild_frontend::parse_dockerignore(&text);
    }
    let Ok(text) = fs::read_to_string(case.join("args")) else {
        return opts;
    };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (flag, value) = line.split_once(' ').expect("args line: --flag value");
        let value = value.trim();
        let kv = || {
            let (k, v) = value.split_once('=').unwrap_or((value, ""));
            (k.to_string(), v.to_string())
        };
        match flag {
            "--build-arg" => {
                let (k, v) = kv();
                opts.build_args.insert(k, v);
            }
            "--label" => {
                let (k, v) = kv();
                opts.labels.insert(k, v);
            }
            "--target" => opts.target = Some(value.to_string()),
            "--platform" => opts.target_platform = value.parse().unwrap(),
            "--build-platform" => opts.build_platform = value.parse().unwrap(),
            other => panic!("{}: unknown args flag {other}", case.display()),
        }
    }
    opts
}

fn resolver(case: &Path) -> Box<dyn ImageResolver> {
    let Ok(text) = fs::read_to_string(case.join("images.json")) else {
        return Box::new(NoopResolver);
    };
    let images: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    let mut r = MemoryResolver::new();
    for (reference, v) in images {
        r.insert(
            reference.clone(),
            ResolvedImage {
                canonical_ref: reference,
                digest: v["digest"].as_str().map(str::to_string),
                config: serde_json::from_value(v["config"].clone()).unwrap(),
            },
        );
    }
    Box::new(r)
}

fn render(case: &Path) -> String {
    let source = fs::read_to_string(case.join("Dockerfile")).unwrap();
    let value = match rbuild_parser::parse(&source) {
        Err(e) => {
            json!({"parse_error": {"message": e.message, "line": e.span.line, "col": e.span.col}})
        }
        Ok(df) => match rbuild_frontend::lower(&df, &options(case), resolver(case).as_ref()) {
            Err(e) => json!({"error": {
                "message": e.to_string(),
                "line": e.span().map(|s| s.line),
                "col": e.span().map(|s| s.col),
            }}),
            Ok(l) => l.to_json(),
        },
    };
    let mut out = serde_json::to_string_pretty(&value).unwrap();
    out.push('\n');
    out
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut v: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn golden_cases() {
    let bless = std::env::var_os("RBUILD_BLESS").is_some_and(|v| v == "1");
    let cases = cases();
    assert!(cases.len() >= 25, "only {} golden cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let got = render(case);
        let snap = case.join("graph.snap");
        if bless {
            fs::write(&snap, &got).unwrap();
            continue;
        }
        match fs::read_to_string(&snap) {
            Ok(want) if want == got => {}
            Ok(_) => failures.push(format!("{}: differs from graph.snap", case.display())),
            Err(_) => failures.push(format!(
                "{}: no graph.snap (run with RBUILD_BLESS=1)",
                case.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn golden_output_is_deterministic() {
    for case in cases() {
        assert_eq!(render(&case), render(&case), "{}", case.display());
    }
}

/// Every golden Dockerfile with one line removed, and with one line repeated, must lower
/// or fail with an error, never panic.
#[test]
fn mutated_cases_never_panic() {
    let opts = BuildOptions::default();
    for case in cases() {
        let source = fs::read_to_string(case.join("Dockerfile")).unwrap();
        let lines: Vec<&str> = source.lines().collect();
        for i in 0..lines.len() {
            let mut removed = lines.clone();
            removed.remove(i);
            let mut repeated = lines.clone();
            repeated.insert(i, lines[i]);
            for variant in [removed, repeated] {
                let text = variant.join("\n");
                if let Ok(df) = rbuild_parser::parse(&text) {
                    let resolver = resolver(&case);
                    let _ = rbuild_frontend::lower(&df, &opts, resolver.as_ref());
                }
            }
        }
    }
}
