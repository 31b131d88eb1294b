//! Helpers shared by the integration tests: run the real `rbuild` binary, compare or
//! bless golden files.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn rbuild() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
}

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared conformance corpus: `$RBUILD_CORPUS`, else `../shared/corpus` beside the
/// workspace. Panics with a clear message when it is missing: a missing corpus must fail
/// the suite, never pass it silently.
pub fn corpus() -> PathBuf {
    let dir = std::env::var_os("RBUILD_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/corpus"));
    assert!(
        dir.join("expected.tsv").is_file(),
        "conformance corpus not found at {} (set RBUILD_CORPUS)",
        dir.display()
    );
    dir
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Compares `actual` with the golden file, or rewrites it when `RBUILD_BLESS=1`.
/// Returns a description of the mismatch instead of panicking so a test can report all.
pub fn golden(path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("RBUILD_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(path, actual).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (run with RBUILD_BLESS=1 to create)",
            path.display()
        )
    })?;
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "{} differs:\n{}",
            path.display(),
            first_difference(&expected, actual)
        ))
    }
}

fn first_difference(expected: &str, actual: &str) -> String {
    for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
        if e != a {
            return format!("line {}:\n  expected: {e}\n  actual:   {a}", i + 1);
        }
    }
    format!(
        "length differs: expected {} lines, got {}",
        expected.lines().count(),
        actual.lines().count()
    )
}

/// Reads a case's `args` file: one `--build-arg K=V` or `--target X` per line.
pub fn case_args(dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(dir.join("args")) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .flat_map(|l| match l.split_once(' ') {
            Some((flag, value)) => vec![flag.to_string(), value.trim().to_string()],
            None => vec![l.to_string()],
        })
        .collect()
}
