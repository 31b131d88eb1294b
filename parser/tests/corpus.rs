//! Conformance against BuildKit's own parser test files (the shared corpus, read in place;
//! see its README): raw-node dumps of the positive files, rejection lines of the negative
//! files, and the line numbers of `line-info`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// `RBUILD_CORPUS`, or `shared/corpus` beside the repository.
fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("RBUILD_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
    };
    assert!(
        dir.join("expected.tsv").is_file(),
        "the parser corpus is missing at {} (set RBUILD_CORPUS to the shared/corpus directory)",
        dir.display()
    );
    dir
}

/// expected.tsv: case dir -> (verdict, line).
fn expected(dir: &Path) -> BTreeMap<String, (String, Option<usize>)> {
    let text = fs::read_to_string(dir.join("expected.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), (f[1].to_string(), f[2].parse().ok()))
        })
        .collect()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

fn read(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn positive_dumps_match_buildkit() {
    let dir = corpus_dir();
    let expected = expected(&dir);
    let cases = subdirs(&dir.join("buildkit-parser/positive"));
    assert_eq!(cases.len(), 33);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let source = read(&case.join("Dockerfile"));
        let want = read(&case.join("result"));
        match rbuild_parser::parse_raw(&source) {
            Ok(df) if df.dump() == want => {}
            Ok(df) => failures.push(format!(
                "{name}: dump differs\n--- want\n{want}--- got\n{}",
                df.dump()
            )),
            Err(e) => failures.push(format!(
                "{name}: raw parse failed: {e} at line {}",
                e.span.line
            )),
        }
        // The typed parse accepts every file BuildKit's instruction parser accepts; the
        // files it rejects must be rejected at the right line.
        let key = format!("buildkit-parser/positive/{name}");
        let typed = rbuild_parser::parse(&source);
        match (expected.get(&key), typed) {
            (None, Err(e)) => failures.push(format!("{name}: typed parse failed: {e}")),
            (Some((_, Some(line))), Err(e)) if e.span.line != *line => failures.push(format!(
                "{name}: rejected at line {} instead of {line}: {e}",
                e.span.line
            )),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{}/{} positive cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn flags_and_health_are_rejected_by_instruction_checks() {
    let dir = corpus_dir().join("buildkit-parser/positive");
    let e = rbuild_parser::parse(&read(&dir.join("flags/Dockerfile"))).unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.span.line),
        ("unknown flag: --user", 3)
    );
    let e = rbuild_parser::parse(&read(&dir.join("health/Dockerfile"))).unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.span.line),
        ("HEALTHCHECK requires at least one argument", 4)
    );
}

#[test]
fn negatives_are_rejected_at_their_line() {
    let dir = corpus_dir();
    let expected = expected(&dir);
    let mut cases = subdirs(&dir.join("buildkit-parser/negative"));
    cases.extend(subdirs(&dir.join("buildkit-instructions/negative")));
    assert_eq!(cases.len(), 11);
    let mut failures = Vec::new();
    for case in &cases {
        let rel = case
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let source = read(&case.join("Dockerfile"));
        let (verdict, line) = expected
            .get(&rel)
            .cloned()
            .unwrap_or(("reject".into(), None));
        assert_eq!(verdict, "reject", "{rel}");
        match rbuild_parser::parse(&source) {
            Ok(_) => failures.push(format!("{rel}: accepted")),
            Err(e) => {
                if let Some(line) = line
                    && e.span.line != line
                {
                    failures.push(format!(
                        "{rel}: line {} instead of {line}: {e}",
                        e.span.line
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn instruction_negatives_have_buildkit_messages() {
    let dir = corpus_dir().join("buildkit-instructions/negative");
    for (case, message) in [
        ("copy-no-args", "COPY requires at least two arguments"),
        ("onbuild-from", "FROM isn't allowed as an ONBUILD trigger"),
        ("maintainer-unknown-flag", "unknown flag: --boo"),
        (
            "onbuild-onbuild",
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        ("unknown-instruction-upper", "unknown instruction: FOO"),
        ("unknown-instruction-lower", "unknown instruction: foo"),
        (
            "copy-heredoc-destination",
            "COPY cannot accept a heredoc as a destination",
        ),
    ] {
        let e = rbuild_parser::parse(&read(&dir.join(case).join("Dockerfile"))).unwrap_err();
        assert!(e.message.starts_with(message), "{case}: {}", e.message);
        assert_eq!(e.span.line, 2, "{case}");
    }
}

#[test]
fn line_info_matches_expected_lines() {
    let dir = corpus_dir().join("buildkit-parser/line-info");
    let source = read(&dir.join("Dockerfile"));
    let df = rbuild_parser::parse(&source).unwrap();
    let want: Vec<(String, usize, usize)> = read(&dir.join("expected-lines.txt"))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    let got: Vec<(String, usize, usize)> = df
        .instructions
        .iter()
        .map(|i| (i.keyword.text.clone(), i.span.line, i.span.end_line))
        .collect();
    assert_eq!(got, want);
    assert_eq!(df.escape, '\\');
    assert_eq!(df.directives[0].name, "escape");
}
