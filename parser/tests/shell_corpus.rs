//! Runs BuildKit's shell-lexer tables (`buildkit-shell/envVarTest` and `wordsTest` in the
//! shared corpus) through the expander, reading them exactly as BuildKit's
//! `TestShellParser4EnvVars` and `TestShellParser4Words` do. A missing table fails.

use std::path::PathBuf;

use rbuild_parser::shell::Lexer;

fn corpus_file(name: &str) -> (PathBuf, String) {
    let root = std::env::var_os("RBUILD_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus"))
        });
    let path = root.join("buildkit-shell").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read corpus table {}: {err}", path.display()));
    (path, text)
}

#[test]
fn envvartest_table() {
    let (path, text) = corpus_file("envVarTest");
    let env = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ];
    let lexer = Lexer::new('\\');
    let (mut run, mut skipped, mut errors_expected) = (0, 0, 0);
    let mut failures = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        // Only a `#` in column 1 makes a comment (checked before trimming).
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(
            fields.len(),
            3,
            "{}:{line_no}: want 3 fields",
            path.display()
        );
        let (platform, input, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        match platform {
            "A" | "U" => {}
            "W" => {
                skipped += 1;
                continue;
            }
            other => panic!("{}:{line_no}: bad platform tag {other:?}", path.display()),
        }
        run += 1;
        let got = lexer.process_word(input, &env).map(|e| e.value);
        let ok = if expected == "error" {
            errors_expected += 1;
            got.is_err()
        } else {
            got.as_deref() == Ok(expected)
        };
        if !ok {
            failures.push(format!(
                "line {line_no}: {input:?} expected {expected:?}, got {got:?}"
            ));
        }
    }
    println!(
        "envVarTest: {}/{run} rows pass ({errors_expected} expect an error), {skipped} Windows rows skipped",
        run - failures.len()
    );
    assert_eq!(run, 228, "envVarTest should have 228 A/U rows");
    assert!(
        failures.is_empty(),
        "envVarTest failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn wordstest_table() {
    let (path, text) = corpus_file("wordsTest");
    let lexer = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut run = 0;
    let mut failures = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(def) = line.strip_prefix("ENV ") {
            // As BuildKit's EnvsFromSlice: the name is before the first `=`, the value
            // (spaces kept) after it.
            let def = def.trim_start_matches(' ');
            let (name, value) = def.split_once('=').unwrap_or((def, ""));
            env.push((name.to_owned(), value.to_owned()));
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(
            parts.len(),
            2,
            "{}:{line_no}: want exactly one '|'",
            path.display()
        );
        let input = parts[0].trim();
        let expected: Vec<&str> = parts[1].trim_start_matches(' ').split(',').collect();
        run += 1;
        let got = match lexer.process_words(input, &env) {
            Ok(expanded) => expanded.value,
            Err(_) => vec!["error".to_owned()],
        };
        if got != expected {
            failures.push(format!(
                "line {line_no}: {input:?} expected {expected:?}, got {got:?}"
            ));
        }
    }
    println!("wordsTest: {}/{run} rows pass", run - failures.len());
    assert_eq!(run, 24, "wordsTest should have 24 rows");
    assert!(
        failures.is_empty(),
        "wordsTest failures:\n{}",
        failures.join("\n")
    );
}
