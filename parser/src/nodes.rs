//! BuildKit's line parsers: one logical line (continuations joined) to a raw [`Node`], with
//! the spans of every piece kept for the typed conversion.

use crate::ParseError;
use crate::ast::{Flag, Node, NodeArgs, Span, Word};
use crate::json::{JsonError, parse_string_array};
use crate::source::{Joined, Source, trim_range};
use crate::words::{extract_flags, split_words};

/// A raw node plus what the typed conversion needs: BuildKit's flattened argument list
/// (`nodeArgs`) with spans, and the `json` attribute.
#[derive(Debug, Clone)]
pub(crate) struct RawNode {
    pub node: Node,
    pub args: Vec<Word>,
    pub json: bool,
    pub nested: Option<Box<RawNode>>,
}

impl RawNode {
    /// Lower-case keyword.
    pub fn command(&self) -> String {
        self.node.keyword.text.to_lowercase()
    }

    /// BuildKit's `canContainHeredoc`: RUN, COPY and ADD in shell form (also as an
    /// ONBUILD trigger).
    pub fn can_contain_heredoc(&self) -> bool {
        let target = match &self.nested {
            Some(n) if self.command() == "onbuild" => n,
            _ => self,
        };
        matches!(target.command().as_str(), "run" | "copy" | "add") && !target.json
    }
}

/// Context of one logical line.
pub(crate) struct LineCtx<'a, 'b> {
    pub source: &'a Source<'b>,
    pub line: &'a Joined,
    pub escape: char,
    /// Where errors without a better position point: the whole instruction.
    pub at: Span,
}

impl LineCtx<'_, '_> {
    fn word(&self, text: impl Into<String>, start: usize, end: usize) -> Word {
        self.line.word(self.source, text, start, end)
    }

    fn error(&self, message: impl Into<String>, span: Span) -> ParseError {
        ParseError {
            message: message.into(),
            span,
        }
    }
}

/// How deep ONBUILD triggers may nest in the raw parse. Any nesting is rejected by the
/// typed conversion; the limit only keeps absurd input from exhausting the stack.
const MAX_ONBUILD_DEPTH: usize = 16;

/// BuildKit's `newNodeFromLine` on `line.text[start..end]`.
pub(crate) fn node_from_line(
    ctx: &LineCtx<'_, '_>,
    start: usize,
    end: usize,
) -> Result<RawNode, ParseError> {
    node_at_depth(ctx, start, end, 0)
}

fn node_at_depth(
    ctx: &LineCtx<'_, '_>,
    start: usize,
    end: usize,
    depth: usize,
) -> Result<RawNode, ParseError> {
    let text = &ctx.line.text;
    let (start, end) = trim_range(text, start, end);
    let trimmed = &text[start..end];
    let (kw, args_range) = match split_instruction(trimmed) {
        Some((k, a)) => ((start + k.0, start + k.1), (start + a.0, start + a.1)),
        None => ((start, start), (end, end)),
    };
    let keyword = ctx.word(&text[kw.0..kw.1], kw.0, kw.1);

    // Flags, then the rest of the arguments, trimmed.
    let args_text = &text[args_range.0..args_range.1];
    let (raw_flags, rest_at) = if args_range.1 > args_range.0 {
        extract_flags(args_text, ctx.escape)
    } else {
        (Vec::new(), 0)
    };
    let flags: Vec<Flag> = raw_flags
        .into_iter()
        .map(|f| {
            let body = f.text.strip_prefix("--").unwrap_or(&f.text);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            Flag {
                name,
                value,
                span: ctx
                    .line
                    .span(ctx.source, args_range.0 + f.start, args_range.0 + f.end),
            }
        })
        .collect();
    let rest = trim_range(text, args_range.0 + rest_at, args_range.1);

    let command = keyword.text.to_lowercase();
    let mut json = false;
    let mut nested = None;
    let (args, flat) = match command.as_str() {
        "add" | "copy" | "volume" => maybe_json_to_list(ctx, rest, &mut json)?,
        "arg" => name_or_name_val(ctx, rest),
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(ctx, rest, &mut json)?,
        "env" => name_val(ctx, rest, "ENV")?,
        "label" => name_val(ctx, rest, "LABEL")?,
        "expose" | "from" => whitespace_delimited(ctx, rest),
        "healthcheck" => health_config(ctx, rest, &mut json)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => string(ctx, rest),
        "onbuild" => {
            if rest.0 == rest.1 {
                (NodeArgs::Empty, Vec::new())
            } else {
                if depth >= MAX_ONBUILD_DEPTH {
                    return Err(ctx.error(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                        ctx.line.span(ctx.source, rest.0, rest.1),
                    ));
                }
                let child = node_at_depth(ctx, rest.0, rest.1, depth + 1)?;
                let mut flat = vec![child.node.keyword.clone()];
                flat.extend(child.args.iter().cloned());
                let args = NodeArgs::Nested(Box::new(child.node.clone()));
                nested = Some(Box::new(child));
                (args, flat)
            }
        }
        // Unknown instructions keep no arguments; the typed conversion rejects them.
        _ => (NodeArgs::Empty, Vec::new()),
    };

    let node = Node {
        keyword,
        flags,
        args,
        heredocs: Vec::new(),
        original: text[start..end].to_string(),
        span: ctx.line.span(ctx.source, start, end),
    };
    Ok(RawNode {
        node,
        args: flat,
        json,
        nested,
    })
}

/// Splits a trimmed instruction line into the keyword (up to the first blank) and the
/// arguments after the first run of `[\t\v\f\r ]`, as byte ranges; `None` for an empty
/// line. Done by hand rather than with the grammar: it runs once per instruction and a
/// grammar call costs more than the scan itself.
fn split_instruction(trimmed: &str) -> Option<((usize, usize), (usize, usize))> {
    let kw_end = trimmed.find(is_hspace).unwrap_or(trimmed.len());
    if kw_end == 0 {
        return None;
    }
    let after = &trimmed[kw_end..];
    let args_start = kw_end + (after.len() - after.trim_start_matches(is_hspace).len());
    let args = if args_start > kw_end {
        (args_start, trimmed.len())
    } else {
        (trimmed.len(), trimmed.len())
    };
    Some(((0, kw_end), args))
}

type Parsed = (NodeArgs, Vec<Word>);

fn json_array(ctx: &LineCtx<'_, '_>, rest: (usize, usize)) -> Result<Option<Parsed>, ParseError> {
    match parse_string_array(&ctx.line.text[rest.0..rest.1]) {
        Ok(items) => {
            let words: Vec<Word> = items
                .into_iter()
                .map(|j| ctx.word(j.text, rest.0 + j.start, rest.0 + j.end))
                .collect();
            let texts = words.iter().map(|w| w.text.clone()).collect();
            Ok(Some((NodeArgs::Json(texts), words)))
        }
        Err(JsonError::NotJson) => Ok(None),
        Err(e @ JsonError::NotStringArray) => {
            Err(ctx.error(e.to_string(), ctx.line.span(ctx.source, rest.0, rest.1)))
        }
    }
}

/// RUN, CMD, ENTRYPOINT, SHELL: exec form or the whole rest as one shell-form string.
fn maybe_json(
    ctx: &LineCtx<'_, '_>,
    rest: (usize, usize),
    json: &mut bool,
) -> Result<Parsed, ParseError> {
    if rest.0 == rest.1 {
        return Ok((NodeArgs::Empty, Vec::new()));
    }
    if let Some(parsed) = json_array(ctx, rest)? {
        *json = true;
        return Ok(parsed);
    }
    let text = &ctx.line.text[rest.0..rest.1];
    Ok((
        NodeArgs::Shell(text.to_string()),
        vec![ctx.word(text, rest.0, rest.1)],
    ))
}

/// ADD, COPY, VOLUME: exec form or blank-separated words.
fn maybe_json_to_list(
    ctx: &LineCtx<'_, '_>,
    rest: (usize, usize),
    json: &mut bool,
) -> Result<Parsed, ParseError> {
    if let Some(parsed) = json_array(ctx, rest)? {
        *json = true;
        return Ok(parsed);
    }
    Ok(whitespace_delimited(ctx, rest))
}

/// BuildKit's `[\t\v\f\r ]+` separator.
fn is_hspace(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits `text[s..e]` on runs of `[\t\v\f\r ]` into at most `limit` pieces (Go's
/// `regexp.Split(s, n)` on trimmed text): the last piece runs to the end.
fn split_hspace(text: &str, s: usize, e: usize, limit: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = s;
    loop {
        let rest = &text[pos..e];
        pos += rest.len() - rest.trim_start_matches(is_hspace).len();
        if pos >= e {
            break;
        }
        if out.len() + 1 == limit {
            out.push((pos, e));
            break;
        }
        let rest = &text[pos..e];
        let len = rest.find(is_hspace).unwrap_or(rest.len());
        out.push((pos, pos + len));
        pos += len;
    }
    out
}

fn whitespace_delimited(ctx: &LineCtx<'_, '_>, rest: (usize, usize)) -> Parsed {
    if rest.0 == rest.1 {
        return (NodeArgs::Empty, Vec::new());
    }
    let words: Vec<Word> = split_hspace(&ctx.line.text, rest.0, rest.1, usize::MAX)
        .into_iter()
        .map(|(s, e)| ctx.word(&ctx.line.text[s..e], s, e))
        .collect();
    let texts = words.iter().map(|w| w.text.clone()).collect();
    (NodeArgs::Words(texts), words)
}

/// MAINTAINER, USER, WORKDIR, STOPSIGNAL: the whole rest as one argument.
fn string(ctx: &LineCtx<'_, '_>, rest: (usize, usize)) -> Parsed {
    if rest.0 == rest.1 {
        return (NodeArgs::Empty, Vec::new());
    }
    let w = ctx.word(&ctx.line.text[rest.0..rest.1], rest.0, rest.1);
    (NodeArgs::Words(vec![w.text.clone()]), vec![w])
}

/// ARG: words (quotes kept).
fn name_or_name_val(ctx: &LineCtx<'_, '_>, rest: (usize, usize)) -> Parsed {
    let words: Vec<Word> = split_words(&ctx.line.text[rest.0..rest.1], ctx.escape)
        .into_iter()
        .map(|w| ctx.word(w.text, rest.0 + w.start, rest.0 + w.end))
        .collect();
    if words.is_empty() {
        return (NodeArgs::Empty, Vec::new());
    }
    let texts = words.iter().map(|w| w.text.clone()).collect();
    (NodeArgs::Words(texts), words)
}

/// ENV and LABEL: `k=v ...`, or the legacy `k v` form when the first word has no `=`.
fn name_val(ctx: &LineCtx<'_, '_>, rest: (usize, usize), key: &str) -> Result<Parsed, ParseError> {
    let text = &ctx.line.text;
    let words = split_words(&text[rest.0..rest.1], ctx.escape);
    if words.is_empty() {
        return Ok((NodeArgs::Empty, Vec::new()));
    }
    let mut kvs = Vec::new();
    let mut flat = Vec::new();
    if !words[0].text.contains('=') {
        let parts = split_hspace(text, rest.0, rest.1, 2);
        if parts.len() < 2 {
            return Err(ctx.error(format!("{key} must have two arguments"), ctx.at));
        }
        let (k, v) = (parts[0], parts[1]);
        let kw = ctx.word(&text[k.0..k.1], k.0, k.1);
        let vw = ctx.word(&text[v.0..v.1], v.0, v.1);
        let dw = ctx.word("", v.1, v.1);
        kvs.push((kw.text.clone(), vw.text.clone(), String::new()));
        flat.extend([kw, vw, dw]);
        return Ok((NodeArgs::KeyValues(kvs), flat));
    }
    for w in words {
        let (s, e) = (rest.0 + w.start, rest.0 + w.end);
        let Some(eq) = w.text.find('=') else {
            return Err(ctx.error(
                format!(
                    "Syntax error - can't find = in {}. Must be of the form: name=value",
                    crate::dump::go_quote(&w.text)
                ),
                ctx.line.span(ctx.source, s, e),
            ));
        };
        let kw = ctx.word(&w.text[..eq], s, s + eq);
        let vw = ctx.word(&w.text[eq + 1..], s + eq + 1, s + w.text.len());
        let dw = ctx.word("=", s + eq, s + eq + 1);
        kvs.push((kw.text.clone(), vw.text.clone(), "=".to_string()));
        flat.extend([kw, vw, dw]);
    }
    Ok((NodeArgs::KeyValues(kvs), flat))
}

/// HEALTHCHECK: the type word, then the command like CMD.
fn health_config(
    ctx: &LineCtx<'_, '_>,
    rest: (usize, usize),
    json: &mut bool,
) -> Result<Parsed, ParseError> {
    let text = &ctx.line.text[rest.0..rest.1];
    let sep = text.find(char::is_whitespace).unwrap_or(text.len());
    if sep == 0 {
        return Ok((NodeArgs::Empty, Vec::new()));
    }
    let after = &text[sep..];
    let next = sep + (after.len() - after.trim_start().len());
    let typ = ctx.word(&text[..sep], rest.0, rest.0 + sep);
    let (cmd, cmd_words) = maybe_json(ctx, (rest.0 + next, rest.1), json)?;
    let cmd = match cmd {
        NodeArgs::Empty => None,
        other => Some(Box::new(other)),
    };
    let mut flat = vec![typ.clone()];
    flat.extend(cmd_words);
    Ok((NodeArgs::Healthcheck(typ.text, cmd), flat))
}

#[cfg(test)]
mod tests {
    use super::{split_hspace, split_instruction};

    #[test]
    fn instruction_keyword_and_arguments() {
        assert_eq!(split_instruction("RUN  a b"), Some(((0, 3), (5, 8))));
        assert_eq!(split_instruction("RUN"), Some(((0, 3), (3, 3))));
        assert_eq!(split_instruction("RUN\t\u{b}x"), Some(((0, 3), (5, 6))));
        // Only BuildKit's blanks separate: a no-break space is part of the keyword.
        assert_eq!(split_instruction("RUN\u{a0}x"), Some(((0, 6), (6, 6))));
        assert_eq!(split_instruction(""), None);
    }

    #[test]
    fn split_on_blank_runs() {
        let t = "a \t b  c";
        let v: Vec<&str> = split_hspace(t, 0, t.len(), usize::MAX)
            .into_iter()
            .map(|(s, e)| &t[s..e])
            .collect();
        assert_eq!(v, vec!["a", "b", "c"]);
        let v: Vec<&str> = split_hspace(t, 0, t.len(), 2)
            .into_iter()
            .map(|(s, e)| &t[s..e])
            .collect();
        assert_eq!(v, vec!["a", "b  c"]);
        let t = "a\u{a0}b";
        assert_eq!(split_hspace(t, 0, t.len(), usize::MAX).len(), 1);
    }
}
