//! BuildKit's `AST.Dump()` text of raw nodes: `(keyword ["--flag"] "arg" ...)` with Go's
//! `strconv.Quote` for every string.

use crate::ast::{Dockerfile, Node, NodeArgs};
use std::fmt::Write as _;

impl Node {
    /// The BuildKit `AST.Dump()` line of this node, e.g. `(copy ["--from=a"] "x" "/y")`.
    pub fn dump(&self) -> String {
        format!("({})", self.dump_inner())
    }

    fn dump_inner(&self) -> String {
        let mut s = self.keyword.text.to_lowercase();
        if !self.flags.is_empty() {
            let flags: Vec<String> = self
                .flags
                .iter()
                .map(|f| go_quote(&f.as_written()))
                .collect();
            let _ = write!(s, " [{}]", flags.join(" "));
        }
        dump_args(&self.args, &mut s);
        // Go's strings.TrimSpace of the whole line.
        s.trim().to_string()
    }
}

fn dump_args(args: &NodeArgs, s: &mut String) {
    let mut push = |v: &str| {
        s.push(' ');
        s.push_str(&go_quote(v));
    };
    match args {
        NodeArgs::Json(v) | NodeArgs::Words(v) => v.iter().for_each(|a| push(a)),
        NodeArgs::Shell(v) => push(v),
        NodeArgs::KeyValues(kvs) => {
            for (k, v, d) in kvs {
                push(k);
                push(v);
                push(d);
            }
        }
        NodeArgs::Healthcheck(typ, cmd) => {
            push(typ);
            if let Some(cmd) = cmd {
                dump_args(cmd, s);
            }
        }
        NodeArgs::Nested(node) => {
            s.push(' ');
            s.push_str(&node.dump());
        }
        NodeArgs::Empty => {}
    }
}

impl crate::ast::Flag {
    /// The flag as BuildKit keeps it: `--name=value` or `--name`, quotes and escapes
    /// already processed.
    pub fn as_written(&self) -> String {
        match &self.value {
            Some(v) => format!("--{}={}", self.name, v),
            None => format!("--{}", self.name),
        }
    }
}

impl Dockerfile {
    /// BuildKit's `AST.Dump()` of the whole file: one line per node, each ending in `\n`.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push_str(&node.dump());
            out.push('\n');
        }
        out
    }
}

/// Go's `strconv.Quote`: printable characters stay literal, the rest is escaped.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_print(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and ASCII space.
fn is_go_print(c: char) -> bool {
    if c.is_ascii() {
        return c == ' ' || c.is_ascii_graphic();
    }
    use pest::unicode::{LETTER, MARK, NUMBER, PUNCTUATION, SYMBOL};
    LETTER(c) || MARK(c) || NUMBER(c) || PUNCTUATION(c) || SYMBOL(c)
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a b"), r#""a b""#);
        assert_eq!(
            go_quote("\" \\ / \u{8} \u{c} \n \r \t \0"),
            r#""\" \\ / \b \f \n \r \t \x00""#
        );
        assert_eq!(go_quote("♥☃한"), "\"♥☃한\"");
        assert_eq!(go_quote("\u{a0}\u{200b}\u{7f}"), r#""\u00a0\u200b\x7f""#);
        assert_eq!(go_quote("\u{e0001}"), r#""\U000e0001""#);
    }
}
