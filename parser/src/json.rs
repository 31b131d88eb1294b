//! The exec form: a JSON array of strings (`["a", "b"]`), recognised with the pest grammar.

use crate::grammar::{Rule, parse};
use pest::iterators::Pair;

/// Why a text is not an exec-form command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JsonError {
    /// Not a JSON array at all: the text is shell form.
    #[error("not a JSON array")]
    NotJson,
    /// Valid JSON, but an element is not a string: an error, not shell form.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
}

/// A decoded string element and the byte range of its literal in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonString {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// Parses `text` (leading white space allowed) as a JSON array of strings.
pub(crate) fn parse_string_array(text: &str) -> Result<Vec<JsonString>, JsonError> {
    let lead = text.len() - text.trim_start().len();
    let body = &text[lead..];
    if !body.starts_with('[') {
        return Err(JsonError::NotJson);
    }
    match plain_string_array(body, lead) {
        Some(items) => Ok(items),
        None => grammar_string_array(body, lead),
    }
}

/// [`parse_string_array`] by the grammar, on `body` (starting at `[`, at `lead` in the
/// caller's text).
fn grammar_string_array(body: &str, lead: usize) -> Result<Vec<JsonString>, JsonError> {
    let mut pairs = parse(Rule::json_top, body).ok_or(JsonError::NotJson)?;
    let top = pairs.next().ok_or(JsonError::NotJson)?;
    // Go's decoder fails (and BuildKit falls back to shell form) on a number beyond
    // float64, wherever it is.
    let overflow = top.clone().into_inner().flatten().any(|p| {
        p.as_rule() == Rule::json_number && p.as_str().parse::<f64>().is_ok_and(f64::is_infinite)
    });
    if overflow {
        return Err(JsonError::NotJson);
    }
    let array = top
        .into_inner()
        .find(|p| p.as_rule() == Rule::json_array)
        .ok_or(JsonError::NotJson)?;
    array
        .into_inner()
        .map(|value| {
            if value.as_rule() != Rule::json_string {
                return Err(JsonError::NotStringArray);
            }
            let span = value.as_span();
            Ok(JsonString {
                text: decode_string(value),
                start: lead + span.start(),
                end: lead + span.end(),
            })
        })
        .collect()
}

/// JSON white space.
fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The common exec form, an array of strings without escapes (`["/bin/sh", "-c"]`), read
/// directly: such strings are their own decoding, so the grammar would add nothing but
/// its cost. `None` for anything else (escapes, control characters, other values,
/// malformed text), which then goes through the grammar.
fn plain_string_array(body: &str, lead: usize) -> Option<Vec<JsonString>> {
    let b = body.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && is_json_ws(b[i]) {
            i += 1;
        }
        i
    };
    let mut items = Vec::new();
    let mut i = skip_ws(1);
    if b.get(i) != Some(&b']') {
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let open = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' || b[i] < 0x20 {
                    return None;
                }
                i += 1;
            }
            if i == b.len() {
                return None;
            }
            i += 1;
            items.push(JsonString {
                text: body[open + 1..i - 1].to_string(),
                start: lead + open,
                end: lead + i,
            });
            i = skip_ws(i);
            match b.get(i) {
                Some(b',') => i = skip_ws(i + 1),
                Some(b']') => break,
                _ => return None,
            }
        }
    }
    (skip_ws(i + 1) == b.len()).then_some(items)
}

/// Decodes a `json_string` pair. Lone or mismatched UTF-16 surrogates become U+FFFD, as in
/// Go's `encoding/json`.
fn decode_string(pair: Pair<'_, Rule>) -> String {
    let mut out = String::new();
    let mut pending_high: Option<u16> = None;
    for part in pair.into_inner() {
        let s = part.as_str();
        let unit = match part.as_rule() {
            Rule::json_escape if s.as_bytes().get(1) == Some(&b'u') => {
                u16::from_str_radix(&s[2..], 16).ok()
            }
            _ => None,
        };
        match unit {
            Some(u) if (0xDC00..0xE000).contains(&u) => match pending_high.take() {
                Some(h) => {
                    let c = 0x10000 + ((u32::from(h) - 0xD800) << 10) + (u32::from(u) - 0xDC00);
                    out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                }
                None => out.push('\u{FFFD}'),
            },
            Some(u) => {
                if pending_high.take().is_some() {
                    out.push('\u{FFFD}');
                }
                if (0xD800..0xDC00).contains(&u) {
                    pending_high = Some(u);
                } else {
                    out.push(char::from_u32(u32::from(u)).unwrap_or('\u{FFFD}'));
                }
            }
            None => {
                if pending_high.take().is_some() {
                    out.push('\u{FFFD}');
                }
                match part.as_rule() {
                    Rule::json_escape => out.push(match &s[1..] {
                        "b" => '\u{8}',
                        "f" => '\u{c}',
                        "n" => '\n',
                        "r" => '\r',
                        "t" => '\t',
                        other => other.chars().next().unwrap_or('\u{FFFD}'),
                    }),
                    _ => out.push_str(s),
                }
            }
        }
    }
    if pending_high.is_some() {
        out.push('\u{FFFD}');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Result<Vec<String>, JsonError> {
        parse_string_array(s).map(|v| v.into_iter().map(|j| j.text).collect())
    }

    #[test]
    fn arrays_of_strings() {
        assert_eq!(texts("[]"), Ok(vec![]));
        assert_eq!(texts(r#"[ "a", "b" ]"#), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(
            texts("[\t\"a\",\t\"b\"\t]"),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            texts(r#"["\" \\ \/ \b \f \n \r \t \u0000 \u2665"]"#),
            Ok(vec!["\" \\ / \u{8} \u{c} \n \r \t \0 ♥".into()])
        );
    }

    #[test]
    fn surrogates() {
        assert_eq!(texts(r#"["\ud83d\ude00"]"#), Ok(vec!["😀".into()]));
        assert_eq!(texts(r#"["\ud83dx"]"#), Ok(vec!["\u{FFFD}x".into()]));
        assert_eq!(texts(r#"["\ude00"]"#), Ok(vec!["\u{FFFD}".into()]));
    }

    #[test]
    fn malformed_json_is_not_json() {
        for s in [
            "['a']",
            r#"["a""#,
            r#"["a]"#,
            r#"["a",]"#,
            "echo [a]",
            r#"["a"] x"#,
            "[01]",
            "[\"\t\"]",
            "[\"a\", 1e999]",
            "[[1e400]]",
            r#"["\x"]"#,
        ] {
            assert_eq!(texts(s), Err(JsonError::NotJson), "{s}");
        }
    }

    #[test]
    fn valid_json_with_non_strings_is_an_error() {
        for s in [
            r#"[ "echo", [ "nested json" ] ]"#,
            "[1]",
            r#"["a", null]"#,
            r#"[{"a": [1, 2.5e3, true]}]"#,
        ] {
            assert_eq!(texts(s), Err(JsonError::NotStringArray), "{s}");
        }
    }

    #[test]
    fn plain_arrays_read_directly_match_the_grammar() {
        for s in [
            "[]",
            "[ ]",
            r#"["a"]"#,
            r#"[ "/bin/sh" ,"-c",	"echo hi" ] "#,
            r#"["é ♥", ""]"#,
        ] {
            let direct = plain_string_array(s, 2).expect(s);
            let array = parse(Rule::json_top, s)
                .unwrap()
                .next()
                .unwrap()
                .into_inner()
                .find(|p| p.as_rule() == Rule::json_array)
                .unwrap();
            let grammar: Vec<JsonString> = array
                .into_inner()
                .map(|v| JsonString {
                    start: 2 + v.as_span().start(),
                    end: 2 + v.as_span().end(),
                    text: decode_string(v),
                })
                .collect();
            assert_eq!(direct, grammar, "{s}");
        }
        for s in [
            r#"["a\"b"]"#,
            r#"["a",]"#,
            r#"["a" "b"]"#,
            r#"["a"] x"#,
            "[1]",
            "[\"\t\"]",
        ] {
            assert_eq!(plain_string_array(s, 0), None, "{s}");
        }
    }

    #[test]
    fn plain_arrays_agree_with_the_grammar_on_random_text() {
        let alphabet = ['[', ']', '"', ',', ' ', '\t', 'a', 'é', '1', '\\', '\u{1}'];
        let mut direct = 0;
        for mut s in crate::test_texts::random_texts(&alphabet, 0x9e37_79b9_7f4a_7c15, 20_000) {
            s.insert(0, '[');
            if let Some(items) = plain_string_array(&s, 0) {
                direct += 1;
                assert_eq!(Ok(items), grammar_string_array(&s, 0), "{s:?}");
            }
        }
        // The comparison must have covered the fast path.
        assert!(direct > 100, "{direct}");
    }

    #[test]
    fn offsets_of_elements() {
        let v = parse_string_array(r#"  ["ab", "c"]"#).unwrap();
        assert_eq!((v[0].start, v[0].end), (3, 7));
        assert_eq!((v[1].start, v[1].end), (9, 12));
    }
}
