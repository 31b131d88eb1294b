//! Golden-directory tests: every `testdata/<case>/Dockerfile` is parsed (AST snapshot),
//! checked with the real binary (`check.snap`: the exact diagnostics) and lowered
//! (`graph.snap`: `rbuild graph --format json`). Cases named `err-*` must fail and carry an
//! `expect-error` file: the line the error must name (`-` for none), then a substring of
//! the message.
//! Regenerate snapshots with `RBUILD_BLESS=1 cargo test --test golden`.

mod common;

use std::path::Path;

use common::{case_args, golden, rbuild, text, workspace};

fn cases() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(workspace().join("testdata"))
        .expect("testdata/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn ast_snapshot(source: &str) -> String {
    match rbuild_parser::parse(source) {
        Ok(df) => format!(
            "# raw nodes (BuildKit AST dump)\n{}\n# typed instructions\n{}\n",
            df.dump(),
            serde_json::to_string_pretty(&df.instructions).expect("AST serializes")
        ),
        Err(e) => format!(
            "# parse error at {}:{}\n{}\n",
            e.span.line, e.span.col, e.message
        ),
    }
}

fn run_case(dir: &Path) -> Result<(), String> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let df = dir.join("Dockerfile");
    let source = std::fs::read_to_string(&df).map_err(|e| format!("{name}: {e}"))?;
    let args = case_args(dir);

    golden(&dir.join("ast.snap"), &ast_snapshot(&source))?;

    let out = rbuild()
        .current_dir(dir)
        .args(["check", "-f", "Dockerfile"])
        .args(&args)
        .arg(".")
        .output()
        .map_err(|e| format!("{name}: {e}"))?;
    let (_, stderr) = text(&out);
    let code = out.status.code();
    golden(
        &dir.join("check.snap"),
        &format!("exit: {code:?}\n{stderr}"),
    )?;

    if name.starts_with("err-") {
        if code != Some(1) {
            return Err(format!("{name}: expected exit 1, got {code:?}\n{stderr}"));
        }
        let expect = std::fs::read_to_string(dir.join("expect-error"))
            .map_err(|e| format!("{name}: expect-error: {e}"))?;
        let mut lines = expect.lines();
        let line = lines.next().unwrap_or("").trim();
        let needle = lines.next().unwrap_or("").trim();
        // `-`: the error names no particular line (an unknown --target, say).
        if line != "-" && !stderr.contains(&format!("Dockerfile:{line}:")) {
            return Err(format!(
                "{name}: error does not name line {line}:\n{stderr}"
            ));
        }
        if !stderr.contains(needle) {
            return Err(format!("{name}: error lacks {needle:?}:\n{stderr}"));
        }
        return Ok(());
    }
    if code != Some(0) {
        return Err(format!("{name}: check failed with {code:?}:\n{stderr}"));
    }
    let out = rbuild()
        .current_dir(dir)
        .args(["graph", "--format", "json", "-f", "Dockerfile"])
        .args(&args)
        .arg(".")
        .output()
        .map_err(|e| format!("{name}: {e}"))?;
    let (stdout, stderr) = text(&out);
    if !out.status.success() {
        return Err(format!("{name}: graph failed:\n{stderr}"));
    }
    serde_json::from_str::<serde_json::Value>(&stdout)
        .map_err(|e| format!("{name}: graph is not JSON: {e}"))?;
    golden(&dir.join("graph.snap"), &stdout)
}

#[test]
fn golden_cases() {
    let cases = cases();
    assert!(
        cases.len() >= 60,
        "expected at least 60 cases, found {}",
        cases.len()
    );
    let failures: Vec<String> = cases.iter().filter_map(|d| run_case(d).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
