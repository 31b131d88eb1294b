//! The line scanner: parser directives, comments, line continuations with the escape
//! character, empty continuation lines, heredoc bodies. Produces one raw node per
//! instruction (BuildKit's `parser.Parse`).

use crate::ParseError;
use crate::ast::{Directive, Heredoc, ParseWarning, Span};
use crate::grammar::{Rule, parse};
use crate::heredoc::{chomp, markers_in_line};
use crate::nodes::{LineCtx, RawNode, node_from_line};
use crate::source::{Joined, Source};

/// BuildKit reads lines with a `bufio.Scanner`, whose longest line is 64 KiB - 1.
pub(crate) const MAX_LINE: usize = 64 * 1024 - 1;

/// The raw parse of a file.
#[derive(Debug)]
pub(crate) struct RawFile {
    pub directives: Vec<Directive>,
    pub escape: char,
    pub nodes: Vec<RawNode>,
    pub warnings: Vec<ParseWarning>,
}

/// One physical line: `start..content_end` is its text without trailing `\r`/`\n`,
/// `start..next` includes the line break.
#[derive(Debug, Clone, Copy)]
struct PhysLine {
    start: usize,
    content_end: usize,
    next: usize,
}

fn physical_lines(text: &str, from: usize) -> Vec<PhysLine> {
    let mut lines = Vec::new();
    let mut start = from;
    while start < text.len() {
        let next = text[start..]
            .find('\n')
            .map_or(text.len(), |i| start + i + 1);
        let content_end = start + text[start..next].trim_end_matches(['\r', '\n']).len();
        lines.push(PhysLine {
            start,
            content_end,
            next,
        });
        start = next;
    }
    lines
}

/// The parser-directive state (BuildKit's `DirectiveParser`): directives are only
/// recognised until the first line that is not one.
#[derive(Debug, Default)]
struct Directives {
    done: bool,
    found: Vec<Directive>,
}

impl Directives {
    /// Looks at the first line of an instruction (leading white space removed).
    fn line(&mut self, token: &str, span: Span) -> Result<Option<&Directive>, ParseError> {
        if self.done {
            return Ok(None);
        }
        let Some(body) = token.strip_prefix('#') else {
            self.done = true;
            return Ok(None);
        };
        let Some(top) = parse(Rule::directive, body).and_then(|mut p| p.next()) else {
            self.done = true;
            return Ok(None);
        };
        let (mut name, mut value) = (String::new(), String::new());
        for p in top.into_inner() {
            match p.as_rule() {
                Rule::directive_name => name = p.as_str().to_lowercase(),
                Rule::directive_value => value = p.as_str().to_string(),
                _ => {}
            }
        }
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(None);
        }
        if self.found.iter().any(|d| d.name == name) {
            return Err(ParseError {
                message: format!("only one {name} parser directive can be used"),
                span,
            });
        }
        self.found.push(Directive { name, value, span });
        Ok(self.found.last())
    }
}

/// BuildKit's `isComment`: the first non-blank character is `#`.
fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// BuildKit's line-continuation regex `([^E])E[ \t]*$|^E[ \t]*$`: returns the end of the
/// text to keep and whether the line is complete (no continuation).
fn trim_continuation(text: &str, start: usize, end: usize, escape: char) -> (usize, bool) {
    let t = text[start..end].trim_end_matches([' ', '\t']);
    let Some(before) = t.strip_suffix(escape) else {
        return (end, true);
    };
    if before.ends_with(escape) {
        return (end, true);
    }
    (start + before.len(), false)
}

pub(crate) fn parse_file(text: &str) -> Result<RawFile, ParseError> {
    let source = Source::new(text);
    let bom = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let lines = physical_lines(text, bom);
    for (i, l) in lines.iter().enumerate() {
        let len = l.next - l.start - usize::from(text[..l.next].ends_with('\n'));
        if len > MAX_LINE {
            return Err(ParseError {
                message: format!("dockerfile line greater than max allowed size of {MAX_LINE}"),
                span: Span {
                    start: l.start,
                    end: l.content_end,
                    line: i + 1,
                    col: 1,
                    end_line: i + 1,
                },
            });
        }
    }

    let mut directives = Directives::default();
    let mut escape = '\\';
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let raw = &text[l.start..l.content_end];
        let lead = raw.len() - raw.trim_start().len();
        let tok_start = l.start + lead;
        let token = &text[tok_start..l.content_end];
        let line_span = source.span(tok_start, l.content_end);
        if let Some(d) = directives.line(token, line_span)?
            && d.name == "escape"
        {
            escape = match d.value.as_str() {
                "\\" => '\\',
                "`" => '`',
                v => {
                    return Err(ParseError {
                        message: format!("invalid escape token '{v}' does not match ` or \\"),
                        span: line_span,
                    });
                }
            };
        }
        i += 1;
        let start_line = i;
        let first_end = if token.starts_with('#') {
            tok_start
        } else {
            l.content_end
        };
        let (keep, mut complete) = trim_continuation(text, tok_start, first_end, escape);
        if complete && keep == tok_start {
            continue;
        }
        let mut joined = Joined::default();
        joined.push(text, tok_start, keep);
        let mut last_end = l.content_end;
        let mut empty_continuation = false;
        while !complete && i < lines.len() {
            let l = lines[i];
            i += 1;
            last_end = l.content_end;
            let raw = &text[l.start..l.content_end];
            if is_comment(raw) {
                continue;
            }
            if raw.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (keep, c) = trim_continuation(text, l.start, l.content_end, escape);
            joined.push(text, l.start, keep);
            complete = c;
        }
        let end_line = i;
        let at = Span {
            start: tok_start,
            end: last_end,
            line: start_line,
            col: source.line_col(tok_start).1,
            end_line,
        };
        if empty_continuation {
            warnings.push(ParseWarning {
                rule: "NoEmptyContinuation",
                message: format!("Empty continuation line found in: {}", joined.text),
                span: at,
            });
        }
        let ctx = LineCtx {
            source: &source,
            line: &joined,
            escape,
            at,
        };
        let mut node = node_from_line(&ctx, 0, joined.text.len())?;
        let mut span = at;

        if node.can_contain_heredoc() && joined.text.contains("<<") {
            let markers = markers_in_line(&joined.text)
                .map_err(|message| ParseError { message, span: at })?;
            for (marker, word_at) in markers {
                let mut content = String::new();
                let mut terminated = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    span.end = l.content_end;
                    span.end_line = i;
                    let mut candidate = &text[l.start..l.content_end];
                    if marker.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == marker.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(&text[l.start..l.next]);
                }
                if !terminated {
                    return Err(ParseError {
                        message: "unterminated heredoc".into(),
                        span,
                    });
                }
                let marker_start = joined.to_source(word_at);
                let (line, col) = source.line_col(marker_start);
                node.node.heredocs.push(Heredoc {
                    content: if marker.chomp {
                        chomp(&content)
                    } else {
                        content
                    },
                    name: marker.name,
                    expand: marker.expand,
                    chomp: marker.chomp,
                    span: Span {
                        start: marker_start,
                        end: span.end,
                        line,
                        col,
                        end_line: span.end_line,
                    },
                });
            }
        }
        // The node starts at its keyword (which a first line holding only the escape
        // character can push to a later line).
        if !node.node.keyword.text.is_empty() {
            let kw = node.node.keyword.span;
            span.start = kw.start;
            span.line = kw.line;
            span.col = kw.col;
        }
        node.node.span = span;
        nodes.push(node);
    }

    if nodes.is_empty() {
        let line = lines.len().max(1);
        let start = lines.last().map_or(0, |l| l.start);
        return Err(ParseError {
            message: "file with no instructions".into(),
            span: Span {
                start,
                end: text.len(),
                line,
                col: 1,
                end_line: line,
            },
        });
    }
    Ok(RawFile {
        directives: directives.found,
        escape,
        nodes,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_regex() {
        let t = "a \\";
        assert_eq!(trim_continuation(t, 0, t.len(), '\\'), (2, false));
        let t = "a\\  \t";
        assert_eq!(trim_continuation(t, 0, t.len(), '\\'), (1, false));
        let t = "a\\\\";
        assert_eq!(trim_continuation(t, 0, t.len(), '\\'), (t.len(), true));
        let t = "\\";
        assert_eq!(trim_continuation(t, 0, t.len(), '\\'), (0, false));
        let t = "a `";
        assert_eq!(trim_continuation(t, 0, t.len(), '`'), (2, false));
        assert_eq!(trim_continuation(t, 0, t.len(), '\\'), (t.len(), true));
    }

    fn dump(src: &str) -> String {
        let f = parse_file(src).unwrap();
        f.nodes.iter().map(|n| n.node.dump() + "\n").collect()
    }

    #[test]
    fn comments_and_blanks_inside_continuations() {
        let src = "RUN a \\\n# comment\n\n  b \\\n    # indented\n c\n";
        assert_eq!(dump(src), "(run \"a   b  c\")\n");
        let f = parse_file(src).unwrap();
        assert_eq!(f.warnings.len(), 1);
        assert_eq!(f.nodes[0].node.span.end_line, 6);
    }

    #[test]
    fn crlf_is_accepted() {
        assert_eq!(
            dump("FROM a\r\nRUN b \\\r\n c\r\n"),
            "(from \"a\")\n(run \"b  c\")\n"
        );
    }

    #[test]
    fn directives_only_at_the_top() {
        let f = parse_file("# Escape=`\n# syntax=x/y\nFROM a `\n b\n# escape=\\\n").unwrap();
        assert_eq!(f.escape, '`');
        assert_eq!(f.directives.len(), 2);
        assert_eq!(f.directives[1].value, "x/y");
        let f = parse_file("FROM a\n# escape=`\nRUN b `\n").unwrap();
        assert_eq!(f.escape, '\\');
        assert!(parse_file("# escape=`\n# escape=`\nFROM a\n").is_err());
        assert!(parse_file("# escape=x\nFROM a\n").is_err());
    }

    #[test]
    fn heredoc_bodies_are_not_continuation_processed() {
        let f = parse_file("RUN <<EOF\na \\\n# not a comment\nEOF\nRUN x\n").unwrap();
        assert_eq!(f.nodes.len(), 2);
        assert_eq!(
            f.nodes[0].node.heredocs[0].content,
            "a \\\n# not a comment\n"
        );
        assert_eq!(f.nodes[0].node.span.end_line, 4);
        let e = parse_file("RUN <<EOF\nabc\n").unwrap_err();
        assert_eq!(e.message, "unterminated heredoc");
    }

    #[test]
    fn long_lines_are_rejected() {
        let long = format!("FROM a\nLABEL x={}\n", "a".repeat(MAX_LINE));
        let e = parse_file(&long).unwrap_err();
        assert_eq!(e.span.line, 2);
        let ok = format!("FROM a\nLABEL x={}\n", "a".repeat(MAX_LINE - 8));
        assert!(parse_file(&ok).is_ok());
    }
}
