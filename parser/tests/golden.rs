//! Golden tests: every `testdata/<case>/Dockerfile` is parsed and rendered (typed AST with
//! spans, BuildKit's raw dump, warnings, or the error with its position) and compared with
//! `testdata/<case>/ast.snap`. `RBUILD_BLESS=1` rewrites the snapshots.

use serde_json::Value;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

fn is_span(map: &serde_json::Map<String, Value>) -> bool {
    map.len() == 5
        && ["start", "end", "line", "col", "end_line"]
            .iter()
            .all(|k| map.contains_key(*k))
}

fn span_text(map: &serde_json::Map<String, Value>) -> String {
    let n = |k: &str| map[k].as_u64().unwrap_or_default();
    format!(
        "@{}:{}-{} [{}..{}]",
        n("line"),
        n("col"),
        n("end_line"),
        n("start"),
        n("end")
    )
}

/// Renders a serialised AST value as indented YAML-like text; spans are compact and
/// words are `"text" @line:col-end_line [start..end]`.
fn render(v: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(map) if is_span(map) => {
            let _ = writeln!(out, " {}", span_text(map));
        }
        Value::Object(map)
            if map.len() == 2 && map.contains_key("text") && map.contains_key("span") =>
        {
            let span = map["span"].as_object().map(span_text).unwrap_or_default();
            let _ = writeln!(out, " {} {span}", map["text"]);
        }
        Value::Object(map) => {
            out.push('\n');
            for (k, v) in map {
                let _ = write!(out, "{pad}{k}:");
                render(v, indent + 1, out);
            }
        }
        Value::Array(items) if items.is_empty() => out.push_str(" []\n"),
        Value::Array(items) => {
            out.push('\n');
            for item in items {
                let _ = write!(out, "{pad}-");
                render(item, indent + 1, out);
            }
        }
        other => {
            let _ = writeln!(out, " {other}");
        }
    }
}

fn snapshot(source: &str) -> String {
    let mut out = String::new();
    match rbuild_parser::parse(source) {
        Ok(df) => {
            out.push_str("# BuildKit AST dump\n");
            out.push_str(&df.dump());
            out.push_str("# typed AST\n");
            let mut rest = serde_json::to_value(&df).unwrap();
            if let Some(map) = rest.as_object_mut() {
                map.remove("nodes");
            }
            let mut body = String::new();
            render(&rest, 0, &mut body);
            out.push_str(body.trim_start_matches('\n'));
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "error: {}:{}: {}\nspan: @{}:{}-{} [{}..{}]",
                e.span.line,
                e.span.col,
                e.message,
                e.span.line,
                e.span.col,
                e.span.end_line,
                e.span.start,
                e.span.end
            );
        }
    }
    out
}

#[test]
fn golden_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let bless = std::env::var_os("RBUILD_BLESS").is_some_and(|v| v == "1");
    let mut cases: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 25, "only {} golden cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let source = fs::read_to_string(case.join("Dockerfile")).unwrap();
        let got = snapshot(&source);
        let snap = case.join("ast.snap");
        if bless {
            fs::write(&snap, &got).unwrap();
            continue;
        }
        match fs::read_to_string(&snap) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!(
                "{}: snapshot differs\n--- want\n{want}\n--- got\n{got}",
                case.display()
            )),
            Err(_) => failures.push(format!(
                "{}: no ast.snap (run with RBUILD_BLESS=1)",
                case.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
