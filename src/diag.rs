//! Renders diagnostics the way compilers do: `file:line:col: level: message`, then the
//! offending line and a caret under the culprit.

use std::fmt::Write as _;

use rbuild_parser::ast::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

/// Formats one diagnostic against the Dockerfile's source text.
pub fn render(
    file: &str,
    source: &str,
    level: Level,
    rule: Option<&str>,
    message: &str,
    span: Option<Span>,
) -> String {
    let level = match level {
        Level::Error => "error",
        Level::Warning => "warning",
    };
    let prefix = rule.map(|r| format!("{r}: ")).unwrap_or_default();
    let Some(span) = span.filter(|s| s.line > 0) else {
        return format!("{file}: {level}: {prefix}{message}\n");
    };
    let mut out = format!(
        "{file}:{}:{}: {level}: {prefix}{message}\n",
        span.line, span.col
    );
    if let Some(line) = source.lines().nth(span.line - 1) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let gutter = span.line.to_string();
        let _ = writeln!(out, " {gutter} | {line}");
        let col = span.col.max(1);
        let line_chars = line.chars().count();
        // The caret covers the span's part of this line, at least one column.
        let span_chars = source
            .get(span.start..span.end)
            .map(|s| s.lines().next().unwrap_or("").chars().count())
            .unwrap_or(1);
        let width = span_chars.clamp(1, line_chars.saturating_sub(col - 1).max(1));
        let pad: String = line
            .chars()
            .take(col - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let _ = writeln!(
            out,
            " {} | {pad}{}",
            " ".repeat(gutter.len()),
            "^".repeat(width)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_under_the_culprit() {
        let src = "FROM scratch\nCOPY --user=me a b\n";
        let span = Span {
            start: 18,
            end: 27,
            line: 2,
            col: 6,
            end_line: 2,
        };
        let out = render(
            "Dockerfile",
            src,
            Level::Error,
            None,
            "unknown flag: --user",
            Some(span),
        );
        assert_eq!(
            out,
            "Dockerfile:2:6: error: unknown flag: --user\n 2 | COPY --user=me a b\n   |      ^^^^^^^^^\n"
        );
    }

    #[test]
    fn no_span_gives_one_line() {
        let out = render("Dockerfile", "", Level::Error, None, "empty", None);
        assert_eq!(out, "Dockerfile: error: empty\n");
    }
}
