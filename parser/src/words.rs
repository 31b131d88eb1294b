//! Builder flags (`--name=value` words before the arguments) and the word splitter of ENV,
//! LABEL and ARG, both driven by the pest grammar.

use crate::grammar::{ESCAPE_PREFIX_LEN, Rule, parse, with_escape};
use pest::iterators::Pair;

/// A flag word with quotes and escapes processed, and its byte range in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawFlag {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// Splits the leading builder flags off `args` (BuildKit's `extractBuilderFlags`).
/// Returns the flags and the byte offset in `args` where the remaining arguments start.
pub(crate) fn extract_flags(args: &str, escape: char) -> (Vec<RawFlag>, usize) {
    // Most instructions have no flags: when the first word does not start with `--` the
    // grammar would match nothing, so skip the call.
    if !args.trim_start().starts_with("--") {
        return (Vec::new(), 0);
    }
    plain_flags(args, escape).unwrap_or_else(|| grammar_flags(args, escape))
}

/// [`extract_flags`] by the grammar.
fn grammar_flags(args: &str, escape: char) -> (Vec<RawFlag>, usize) {
    let input = with_escape(escape, args);
    let Some(mut pairs) = parse(Rule::flags, &input) else {
        return (Vec::new(), 0);
    };
    let Some(top) = pairs.next() else {
        return (Vec::new(), 0);
    };
    let top_end = top.as_span().end() - ESCAPE_PREFIX_LEN;
    let mut flags = Vec::new();
    for word in top.into_inner().filter(|p| p.as_rule() == Rule::flag_word) {
        let span = word.as_span();
        let (start, end) = (
            span.start() - ESCAPE_PREFIX_LEN,
            span.end() - ESCAPE_PREFIX_LEN,
        );
        let mut text = String::new();
        unescape_into(word, &mut text);
        if text == "--" {
            // `--` ends the flags; the arguments start after it.
            return (flags, end);
        }
        flags.push(RawFlag { text, start, end });
    }
    (flags, top_end)
}

/// [`extract_flags`] when every flag word is free of quotes and escape characters (the
/// usual `--from=build --link`): each is then a run of non-space characters taken as it
/// is. `None` when a flag word needs the grammar.
fn plain_flags(args: &str, escape: char) -> Option<(Vec<RawFlag>, usize)> {
    let mut flags = Vec::new();
    let mut end = 0;
    loop {
        let start = end + (args[end..].len() - args[end..].trim_start().len());
        let rest = &args[start..];
        if !rest.starts_with("--") {
            return Some((flags, end));
        }
        let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..len];
        if word.contains(['"', '\'', escape]) {
            return None;
        }
        if word == "--" {
            return Some((flags, start + len));
        }
        flags.push(RawFlag {
            text: word.to_string(),
            start,
            end: start + len,
        });
        end = start + len;
    }
}

/// Appends the processed text of a flag word (or part of it): quotes removed, each escape
/// pair replaced by the escaped character, a trailing lone escape dropped.
fn unescape_into(pair: Pair<'_, Rule>, out: &mut String) {
    match pair.as_rule() {
        Rule::flag_lit | Rule::flag_dq_lit | Rule::flag_sq_lit | Rule::esc_char => {
            out.push_str(pair.as_str())
        }
        Rule::esc_end => {}
        _ => {
            for inner in pair.into_inner() {
                unescape_into(inner, out);
            }
        }
    }
}

/// A word of ENV / LABEL / ARG (quotes and escapes kept) and its byte range in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawWord {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// BuildKit's `parseWords`: splits on white space outside quotes, keeping quotes and escape
/// characters in the words (only a lone escape character at the very end is dropped).
pub(crate) fn split_words(rest: &str, escape: char) -> Vec<RawWord> {
    // Without escape characters a word is a run of non-space characters and quoted
    // strings: the common case, split without a grammar call.
    if !rest.contains(escape) {
        return split_unescaped(rest);
    }
    grammar_words(rest, escape)
}

/// [`split_words`] by the grammar.
fn grammar_words(rest: &str, escape: char) -> Vec<RawWord> {
    let input = with_escape(escape, rest);
    let Some(mut pairs) = parse(Rule::words, &input) else {
        // The grammar accepts any input; an empty list is the only sane fallback.
        return Vec::new();
    };
    let Some(top) = pairs.next() else {
        return Vec::new();
    };
    let mut words = Vec::new();
    for word in top.into_inner().filter(|p| p.as_rule() == Rule::word) {
        let span = word.as_span();
        let (start, end) = (
            span.start() - ESCAPE_PREFIX_LEN,
            span.end() - ESCAPE_PREFIX_LEN,
        );
        let mut text = word.as_str().to_string();
        if ends_with_lone_escape(&word) {
            text.truncate(text.len() - escape.len_utf8());
        }
        if !text.is_empty() {
            words.push(RawWord { text, start, end });
        }
    }
    words
}

/// [`split_words`] of a text without escape characters: words end at white space
/// outside quotes; a quote runs to the next one of its kind (or to the end). Quotes are
/// kept, as the grammar keeps them.
fn split_unescaped(rest: &str) -> Vec<RawWord> {
    let mut words = Vec::new();
    let mut chars = rest.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            if c.is_whitespace() {
                end = i;
                break;
            }
            if c == '"' || c == '\'' {
                // Up to and including the closing quote; an unclosed one runs to the end.
                for (_, q) in chars.by_ref() {
                    if q == c {
                        break;
                    }
                }
            }
        }
        words.push(RawWord {
            text: rest[start..end].to_string(),
            start,
            end,
        });
    }
    words
}

fn ends_with_lone_escape(pair: &Pair<'_, Rule>) -> bool {
    let mut last = None;
    for inner in pair.clone().into_inner() {
        last = Some(inner);
    }
    match last {
        Some(p) if p.as_rule() == Rule::esc_end => true,
        Some(p) if p.as_rule() == Rule::word_dq => ends_with_lone_escape(&p),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag_texts(args: &str, esc: char) -> (Vec<String>, String) {
        let (flags, at) = extract_flags(args, esc);
        (
            flags.into_iter().map(|f| f.text).collect(),
            args[at..].trim().to_string(),
        )
    }

    #[test]
    fn flags_are_split_off() {
        assert_eq!(
            flag_texts("--from=build --chown=1:1 a b", '\\'),
            (
                vec!["--from=build".into(), "--chown=1:1".into()],
                "a b".into()
            )
        );
        assert_eq!(flag_texts("a --b", '\\'), (vec![], "a --b".into()));
        assert_eq!(
            flag_texts("--link", '\\'),
            (vec!["--link".into()], "".into())
        );
    }

    #[test]
    fn plain_flags_match_the_grammar() {
        for args in [
            "--from=build --chown=1:1 a b",
            "--link",
            "--link  ",
            "  --a=1\t--b=2\u{a0}x --c",
            "--x -- --y z",
            "--mount=type=cache,target=/root/.cache <<EOF",
            "--é=ü a",
        ] {
            let plain = plain_flags(args, '\\').expect(args);
            // The grammar's answer: extract_flags with the fast path bypassed.
            let input = with_escape('\\', args);
            let top = parse(Rule::flags, &input).unwrap().next().unwrap();
            let mut grammar = Vec::new();
            let mut at = top.as_span().end() - ESCAPE_PREFIX_LEN;
            for w in top.into_inner().filter(|p| p.as_rule() == Rule::flag_word) {
                let sp = w.as_span();
                let (start, end) = (sp.start() - 1, sp.end() - 1);
                if w.as_str() == "--" {
                    at = end;
                    break;
                }
                grammar.push(RawFlag {
                    text: w.as_str().to_string(),
                    start,
                    end,
                });
            }
            assert_eq!(plain, (grammar, at), "{args:?}");
        }
        assert_eq!(plain_flags("--a=\"x y\" b", '\\'), None);
        assert_eq!(plain_flags("--a=x` y", '`'), None);
    }

    #[test]
    fn fast_paths_agree_with_the_grammar_on_random_text() {
        let (mut flags, mut words) = (0, 0);
        // The characters that matter to flags and words.
        let alphabet = ['-', '-', '=', 'a', '"', '\'', ' ', '\t', '\u{a0}', 'é', '`'];
        for text in crate::test_texts::random_texts(&alphabet, 0x2545_f491_4f6c_dd1d, 20_000) {
            // With `\` as escape character the texts have none; with a backtick many do.
            for esc in ['\\', '`'] {
                if let Some(plain) = plain_flags(&text, esc) {
                    flags += 1;
                    assert_eq!(plain, grammar_flags(&text, esc), "{text:?} {esc}");
                }
                if !text.contains(esc) {
                    words += 1;
                    assert_eq!(
                        split_unescaped(&text),
                        grammar_words(&text, esc),
                        "{text:?}"
                    );
                }
            }
        }
        // The comparison must have covered the fast paths.
        assert!(flags > 1000 && words > 1000, "{flags} {words}");
    }

    #[test]
    fn double_dash_ends_flags() {
        assert_eq!(
            flag_texts("--doit=true -- foo /tmp/", '\\'),
            (vec!["--doit=true".into()], "foo /tmp/".into())
        );
        assert_eq!(flag_texts("-- --x y", '\\'), (vec![], "--x y".into()));
        assert_eq!(flag_texts("--x --", '\\'), (vec!["--x".into()], "".into()));
    }

    #[test]
    fn flag_quotes_and_escapes_are_processed() {
        assert_eq!(
            flag_texts(r#"--mount=type=secret,id="a b" x"#, '\\').0,
            vec!["--mount=type=secret,id=a b".to_string()]
        );
        assert_eq!(
            flag_texts(r"--a=x\ y z", '\\').0,
            vec!["--a=x y".to_string()]
        );
        assert_eq!(flag_texts("--a=x` y z", '`').0, vec!["--a=x y".to_string()]);
        assert_eq!(
            flag_texts(r"--a='it\'s' z", '\\').0,
            vec!["--a=it's".to_string()]
        );
    }

    fn texts(rest: &str, esc: char) -> Vec<String> {
        split_words(rest, esc).into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            texts(r#"abc="123 456" def"#, '\\'),
            vec![r#"abc="123 456""#, "def"]
        );
        assert_eq!(
            texts(r"name=value\ value2 n2=v", '\\'),
            vec![r"name=value\ value2", "n2=v"]
        );
        assert_eq!(texts(r#"name='a\'b''"#, '\\'), vec![r#"name='a\'b''"#]);
        assert_eq!(texts(r#"a="x\"y z" b"#, '\\'), vec![r#"a="x\"y z""#, "b"]);
    }

    #[test]
    fn trailing_lone_escape_is_dropped() {
        assert_eq!(texts(r"a b\", '\\'), vec!["a", "b"]);
        assert_eq!(texts(r"a \", '\\'), vec!["a"]);
        assert_eq!(texts(r#"a "b\"#, '\\'), vec!["a", "\"b"]);
        assert_eq!(texts(r"a\\", '\\'), vec![r"a\\"]);
    }

    #[test]
    fn unescaped_split_matches_the_grammar() {
        for text in [
            "",
            "  a  b\tc ",
            "k=v PATH=/x:$PATH",
            "a\u{a0}b\u{2003}c",
            "é=ü x",
            r#"a="1 2" b='3 "4' c"d e"f"#,
            r#"x="unclosed y"#,
            "x='unclosed y",
            r#"a=""b'' "" ''"#,
        ] {
            let plain = split_unescaped(text);
            let input = with_escape('\\', text);
            let top = parse(Rule::words, &input).unwrap().next().unwrap();
            let grammar: Vec<(String, usize, usize)> = top
                .into_inner()
                .filter(|p| p.as_rule() == Rule::word)
                .map(|p| {
                    let sp = p.as_span();
                    (p.as_str().to_string(), sp.start() - 1, sp.end() - 1)
                })
                .collect();
            let plain: Vec<(String, usize, usize)> = plain
                .into_iter()
                .map(|w| (w.text, w.start, w.end))
                .collect();
            assert_eq!(plain, grammar, "{text:?}");
        }
    }

    #[test]
    fn word_offsets() {
        let w = split_words("  ab  'c d'", '\\');
        assert_eq!((w[0].start, w[0].end), (2, 4));
        assert_eq!((w[1].start, w[1].end), (6, 11));
    }
}
