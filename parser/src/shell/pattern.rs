//! Shell patterns of `${VAR#p}`, `${VAR%p}` and `${VAR/p/r}`, matched the way BuildKit
//! does it: BuildKit turns the pattern into a Go regular expression (`*` becomes `.*` or
//! `.*?`, `?` becomes `.`, everything else is literal, bracket expressions included) and
//! takes Go's leftmost-first match. This module matches the same language directly with a
//! memoised backtracking search, so the result is the one a backtracking engine picks
//! (Go's documented semantics) in time bounded by `pattern × text`, without recursion.
//!
//! As in Go's regexp, `*` and `?` never match a newline.

use std::collections::HashSet;

use super::ShellError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: any one character but a newline.
    Any,
    /// `*`: any run of characters without a newline.
    Star,
}

/// A compiled pattern.
#[derive(Debug)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
    /// `*` prefers the longest run (`##`, `%%`, `/`) or the shortest (`#`, `%`).
    greedy: bool,
}

impl Pattern {
    /// Compiles `pattern`. `\` escapes `*`, `?` and `\`; before `}` or `/` it only
    /// protected that character from ending the `${...}` and is dropped; any other
    /// escape is an error (as in BuildKit). `shown` is the pattern named in errors.
    pub(crate) fn compile(pattern: &[char], greedy: bool, shown: &str) -> Result<Self, ShellError> {
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut i = 0;
        while let Some(&ch) = pattern.get(i) {
            i += 1;
            let token = match ch {
                '*' => Token::Star,
                '?' => Token::Any,
                '\\' => match pattern.get(i) {
                    Some('}' | '/') => continue,
                    Some(&next @ ('*' | '?' | '\\')) => {
                        i += 1;
                        Token::Literal(next)
                    }
                    other => {
                        return Err(ShellError::InvalidPattern {
                            pattern: shown.to_owned(),
                            escaped: other.map(|c| c.to_string()).unwrap_or_default(),
                        });
                    }
                },
                other => Token::Literal(other),
            };
            tokens.push(token);
        }
        Ok(Self { tokens, greedy })
    }

    /// The end of the match that starts exactly at `start`, if any.
    fn match_at(
        &self,
        text: &[char],
        start: usize,
        failed: &mut HashSet<(usize, usize)>,
    ) -> Option<usize> {
        // Depth-first search over (token, text) positions in the order a backtracking
        // engine tries them. A state seen before has already failed (the search stops at
        // the first success, and positions only move forward), so it is skipped.
        let mut stack = vec![(0usize, start)];
        while let Some((ti, pos)) = stack.pop() {
            let Some(&token) = self.tokens.get(ti) else {
                return Some(pos);
            };
            if !failed.insert((ti, pos)) {
                continue;
            }
            let here = text.get(pos).copied();
            match token {
                Token::Literal(want) => {
                    if here == Some(want) {
                        stack.push((ti + 1, pos + 1));
                    }
                }
                Token::Any => {
                    if here.is_some_and(|c| c != '\n') {
                        stack.push((ti + 1, pos + 1));
                    }
                }
                Token::Star => {
                    let can_take = here.is_some_and(|c| c != '\n');
                    // The alternative pushed last is tried first.
                    if self.greedy {
                        stack.push((ti + 1, pos));
                        if can_take {
                            stack.push((ti, pos + 1));
                        }
                    } else {
                        if can_take {
                            stack.push((ti, pos + 1));
                        }
                        stack.push((ti + 1, pos));
                    }
                }
            }
        }
        None
    }

    /// The leftmost match starting at or after `from`, as `(start, end)`.
    fn find_from(
        &self,
        text: &[char],
        from: usize,
        failed: &mut HashSet<(usize, usize)>,
    ) -> Option<(usize, usize)> {
        (from..=text.len())
            .find_map(|start| self.match_at(text, start, failed).map(|end| (start, end)))
    }

    /// `text` without the part the pattern matches at its start (`${VAR#p}`).
    pub(crate) fn trim_prefix(&self, text: &[char]) -> String {
        let end = self.match_at(text, 0, &mut HashSet::new()).unwrap_or(0);
        text.get(end..).unwrap_or_default().iter().collect()
    }

    /// `text` with the first match replaced by `replacement`, taken literally.
    pub(crate) fn replace_first(&self, text: &[char], replacement: &str) -> String {
        match self.find_from(text, 0, &mut HashSet::new()) {
            Some((start, end)) => {
                let mut out: String = text[..start].iter().collect();
                out.push_str(replacement);
                out.extend(&text[end..]);
                out
            }
            None => text.iter().collect(),
        }
    }

    /// `text` with every match replaced (`${VAR//p/r}`). As BuildKit uses Go's
    /// `ReplaceAllString`, `$0`/`${0}` and `$$` in the replacement are expanded as Go
    /// regexp templates, and an empty match right after a match is not replaced.
    pub(crate) fn replace_all(&self, text: &[char], replacement: &str) -> String {
        let mut failed = HashSet::new();
        let mut out = String::new();
        let mut last_end = 0;
        let mut search = 0;
        while search <= text.len() {
            let Some((start, end)) = self.find_from(text, search, &mut failed) else {
                break;
            };
            out.extend(&text[last_end..start]);
            if end > last_end || start == 0 {
                let matched: String = text[start..end].iter().collect();
                expand_template(&mut out, replacement, &matched);
            }
            last_end = end;
            // Always advance by at least one character.
            let width = usize::from(search < text.len());
            if search + width > end {
                search += width;
            } else if search + 1 > end {
                search += 1;
            } else {
                search = end;
            }
        }
        out.extend(&text[last_end..]);
        out
    }
}

/// BuildKit's reversal of a pattern for suffix matching: characters in reverse order,
/// except that a `\` and the character after it stay a pair (`a\*c` → `c\*a`).
pub(crate) fn reverse_pattern(pattern: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut i = 0;
    while let Some(&ch) = pattern.get(i) {
        match pattern.get(i + 1) {
            Some(&next) if ch == '\\' => {
                out.push(next);
                out.push(ch);
                i += 2;
            }
            _ => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out.reverse();
    out
}

/// Go's `Regexp.Expand` for a regexp without groups: `$$` is `$`, `$0`/`${0}` the whole
/// match, any other well-formed `$name`/`${name}` nothing, a malformed one a literal `$`.
fn expand_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_name(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// The `name` or `{name}` at the start of `s` and the text after it.
fn template_name(s: &str) -> Option<(&str, &str)> {
    let (body, braced) = match s.strip_prefix('{') {
        Some(body) => (body, true),
        None => (s, false),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(super::expand::is_letter(c) || super::expand::is_digit(c) || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if braced {
        after.strip_prefix('}').map(|after| (name, after))
    } else {
        Some((name, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    /// BuildKit's translation of a pattern into a Go regular expression, for checking
    /// our matcher against a leftmost-first regex engine.
    fn to_regex(pattern: &str, greedy: bool, anchored: bool) -> regex::Regex {
        let mut out = String::from(if anchored { "^" } else { "" });
        for ch in pattern.chars() {
            match ch {
                '*' => out.push_str(if greedy { ".*" } else { ".*?" }),
                '?' => out.push('.'),
                other => out.push_str(&regex::escape(&other.to_string())),
            }
        }
        regex::Regex::new(&out).expect("valid regex")
    }

    /// Every pattern over `a b * ?` up to 4 tokens against every text over `a b \n` up to
    /// 3 characters and a few longer ones: same match as the regex engine (leftmost-first, like Go's).
    #[test]
    fn agrees_with_leftmost_first_regex() {
        fn all(alphabet: &[char], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                    .collect();
                out.extend(last.iter().cloned());
            }
            out
        }
        let patterns = all(&['a', 'b', '*', '?'], 4);
        let mut texts = all(&['a', 'b', '\n'], 3);
        texts.extend(["aabbaab", "ab\nab", "bbbb", "abab"].map(String::from));
        for pattern in &patterns {
            for greedy in [false, true] {
                let ours = Pattern::compile(&chars(pattern), greedy, pattern).expect("compiles");
                let anchored = to_regex(pattern, greedy, true);
                let floating = to_regex(pattern, greedy, false);
                for text in &texts {
                    let t = chars(text);
                    let want = anchored.find(text).map(|m| text[m.end()..].to_owned());
                    let got = ours.match_at(&t, 0, &mut HashSet::new());
                    assert_eq!(
                        got.map(|end| t[end..].iter().collect::<String>()),
                        want,
                        "prefix {pattern:?} greedy={greedy} on {text:?}"
                    );
                    let want = floating.find(text).map(|m| {
                        (
                            text[..m.start()].chars().count(),
                            text[..m.end()].chars().count(),
                        )
                    });
                    let got = ours.find_from(&t, 0, &mut HashSet::new());
                    assert_eq!(got, want, "find {pattern:?} greedy={greedy} on {text:?}");
                }
            }
        }
    }

    #[test]
    fn replace_all_like_go() {
        let replace = |pattern: &str, text: &str, with: &str| {
            Pattern::compile(&chars(pattern), true, pattern)
                .expect("compiles")
                .replace_all(&chars(text), with)
        };
        // Go: regexp.MustCompile("").ReplaceAllString("abc", "-") == "-a-b-c-"
        assert_eq!(replace("", "abc", "-"), "-a-b-c-");
        // Go: regexp.MustCompile(".*").ReplaceAllString("abc", "-") == "-"
        assert_eq!(replace("*", "abc", "-"), "-");
        assert_eq!(replace("*", "", "-"), "-");
        assert_eq!(replace("b*", "abcabc", "-"), "a-");
        assert_eq!(replace("b?", "abcabc", "-"), "a-a-");
        assert_eq!(replace("?", "a\nb", "-"), "-\n-");
        assert_eq!(
            replace("b", "abc", "[$0|${0}|$$|$1|$x|${x}|$|${|$}]"),
            "a[b|b|$||||$|${|$}]c"
        );
    }

    #[test]
    fn invalid_escapes() {
        for pattern in ["\\", "\\x", "\\\\\\", "a\\b"] {
            assert!(
                Pattern::compile(&chars(pattern), true, pattern).is_err(),
                "{pattern:?}"
            );
        }
        let ok = Pattern::compile(&chars("\\*\\?\\\\\\}\\/"), true, "").expect("compiles");
        assert_eq!(
            ok.tokens,
            [
                Token::Literal('*'),
                Token::Literal('?'),
                Token::Literal('\\'),
                Token::Literal('}'),
                Token::Literal('/')
            ]
        );
    }
}
