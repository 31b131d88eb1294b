//! The expansion engine: one pass over the characters of a word, as BuildKit's
//! `shellWord` does it, producing the expanded text, its fields, and the names looked up.

use std::collections::BTreeSet;

use super::pattern::{Pattern, reverse_pattern};
use super::words::Fields;
use super::{Env, Lexer, ShellError};

/// Go's `unicode.IsLetter`, approximated by Unicode `Alphabetic` (which also counts some
/// combining marks and letter-like numbers; no name in a real Dockerfile has them).
pub(crate) fn is_letter(c: char) -> bool {
    c.is_alphabetic()
}

/// Go's `unicode.IsDigit` (general category Nd), approximated by Unicode `Numeric`.
pub(crate) fn is_digit(c: char) -> bool {
    c.is_numeric()
}

/// POSIX special parameters: never set in a Dockerfile, so they expand to nothing.
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Blanks allowed between `<<` and a heredoc word.
fn is_heredoc_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

/// How deeply `${...}` words may nest. Expansion recurses per level, so the limit keeps
/// hostile input from exhausting the stack; real Dockerfiles nest two or three levels.
pub(crate) const MAX_NESTING: usize = 100;

/// What a `processStopOn` pass gives: the text and, at top level, its fields.
pub(crate) struct Pass {
    pub(crate) text: String,
    pub(crate) fields: Vec<String>,
}

pub(crate) struct Expander<'a> {
    lexer: &'a Lexer,
    env: &'a dyn Env,
    chars: Vec<char>,
    pos: usize,
    /// Whether escapes are kept in the output at the current nesting level (they are
    /// inside `#`/`%`/`/` patterns, which interpret `\` themselves).
    raw_escapes: bool,
    pub(crate) matched: BTreeSet<String>,
    pub(crate) unmatched: BTreeSet<String>,
    /// How many `${...}` words enclose the current position.
    depth: usize,
}

impl<'a> Expander<'a> {
    pub(crate) fn new(lexer: &'a Lexer, env: &'a dyn Env, word: &str) -> Self {
        let mut chars: Vec<char> = word.chars().collect();
        // BuildKit reads words with Go's text/scanner, which drops a leading byte-order mark.
        if chars.first() == Some(&'\u{feff}') {
            chars.remove(0);
        }
        Self {
            lexer,
            env,
            chars,
            pos: 0,
            raw_escapes: lexer.raw_escapes,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    /// Looks `name` up and records whether it was found.
    fn lookup(&mut self, name: &str) -> Option<String> {
        match self.env.get(name) {
            Some(value) => {
                self.matched.insert(name.to_owned());
                Some(value.to_owned())
            }
            None => {
                self.unmatched.insert(name.to_owned());
                None
            }
        }
    }

    /// Expands the whole word.
    pub(crate) fn run(&mut self, want_fields: bool) -> Result<Pass, ShellError> {
        let raw = self.raw_escapes;
        self.pass(None, raw, want_fields)
    }

    /// Expands up to `stop` (consumed) or the end of input when `stop` is `None`.
    /// Running out of input before `stop` is an error the callers turn into a more
    /// precise one.
    fn pass(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        want_fields: bool,
    ) -> Result<Pass, ShellError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.pass_inner(stop, want_fields);
        self.raw_escapes = saved;
        result
    }

    fn pass_inner(&mut self, stop: Option<char>, want_fields: bool) -> Result<Pass, ShellError> {
        // Room for the rest of the word: expansion seldom makes it much longer, and the
        // text then never regrows character by character.
        let mut text = String::with_capacity(self.chars.len().saturating_sub(self.pos));
        let mut fields = Fields::default();
        let quotes = !self.lexer.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok(Pass {
                    text,
                    fields: if want_fields {
                        fields.finish()
                    } else {
                        Vec::new()
                    },
                });
            }
            let special = match ch {
                '$' => Some(self.dollar()?),
                '<' => Some(self.possible_heredoc()),
                '\'' if quotes => Some(self.single_quoted()?),
                '"' if quotes => Some(self.double_quoted()?),
                _ => None,
            };
            if let Some(piece) = special {
                text.push_str(&piece);
                if want_fields {
                    // Only the value of an unquoted variable splits into fields.
                    if ch == '$' {
                        fields.push_str(&piece);
                    } else {
                        fields.push_raw_str(&piece);
                    }
                }
                continue;
            }
            self.pos += 1;
            // Fields are only collected when asked for: most words are expanded whole.
            if ch == self.lexer.escape {
                if self.raw_escapes {
                    if want_fields {
                        fields.push_raw(ch);
                    }
                    text.push(ch);
                }
                // A lone escape at the end of the word is dropped.
                let Some(escaped) = self.next() else { break };
                if want_fields {
                    fields.push_raw(escaped);
                }
                text.push(escaped);
            } else {
                if want_fields {
                    fields.push(ch);
                }
                text.push(ch);
            }
        }
        match stop {
            Some(_) => Err(ShellError::MissingBrace),
            None => Ok(Pass {
                text,
                fields: if want_fields {
                    fields.finish()
                } else {
                    Vec::new()
                },
            }),
        }
    }

    fn single_quoted(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ShellError::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if self.lexer.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            // Dropped; the missing closing quote is reported next.
                            None => continue,
                            // Inside double quotes only these can be escaped; any other
                            // escape character stays literal.
                            Some(next)
                                if next == '"' || next == '$' || next == self.lexer.escape =>
                            {
                                self.pos += 1;
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// `<` is only special as the start of `<<`, where blanks after it are kept with it
    /// so that a heredoc marker stays one field.
    fn possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.pos += 1;
        let mut out = "<<".to_owned();
        while let Some(ch) = self.peek().filter(|&c| is_heredoc_blank(c)) {
            out.push(ch);
            self.pos += 1;
        }
        out
    }

    /// A variable name: a run of digits (positional parameter), one special-parameter
    /// character, or letters, digits and `_`. Empty when none of these follows.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(digit) = self.peek().filter(|&c| is_digit(c)) {
                    name.push(digit);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.pos += 1;
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    /// Expands the `$...` at the current position.
    fn dollar(&mut self) -> Result<String, ShellError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ShellError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ShellError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        match self.next() {
            None => Err(ShellError::MissingBrace),
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => match self.next() {
                None => Err(ShellError::MissingBrace),
                Some(op) => self.modifier(&name, op, true),
            },
            Some(op @ ('+' | '-' | '?' | '#' | '%')) => self.modifier(&name, op, false),
            Some('/') => self.replace(&name),
            Some(other) => Err(ShellError::UnsupportedModifier(other.to_string())),
        }
    }

    /// `${name<op>word}` and `${name:<op>word}`; the word is expanded first.
    fn modifier(&mut self, name: &str, op: char, colon: bool) -> Result<String, ShellError> {
        let spelled = if colon {
            format!(":{op}")
        } else {
            op.to_string()
        };
        // Patterns interpret `\` themselves, so escapes are kept in them.
        let is_pattern = op == '#' || op == '%';
        if colon && is_pattern {
            return Err(ShellError::UnsupportedModifier(spelled));
        }
        let word = self.nested(Some('}'), is_pattern, ShellError::MissingBrace)?;
        let value = self.lookup(name);
        if value.is_none() && self.lexer.skip_unset_env {
            return Ok(format!("${{{name}{spelled}{word}}}"));
        }
        // With `:`, an empty value counts as unset.
        let usable = value.as_deref().filter(|v| !(colon && v.is_empty()));
        match op {
            '-' => Ok(match usable {
                Some(v) => v.to_owned(),
                None => word,
            }),
            '+' => Ok(match usable {
                Some(_) => word,
                None => String::new(),
            }),
            '?' => match (value.as_deref(), usable) {
                (_, Some(v)) => Ok(v.to_owned()),
                (None, None) => Err(required(name, word, "is not allowed to be unset")),
                (Some(_), None) => Err(required(name, word, "is not allowed to be empty")),
            },
            '#' | '%' => {
                let mut pattern: Vec<char> = word.chars().collect();
                // A doubled operator (`##`, `%%`) takes the longest match.
                let greedy = pattern.first() == Some(&op);
                if greedy {
                    pattern.remove(0);
                }
                let value: Vec<char> = value.unwrap_or_default().chars().collect();
                let shown: String = pattern.iter().collect();
                if op == '#' {
                    Ok(Pattern::compile(&pattern, greedy, &shown)?.trim_prefix(&value))
                } else {
                    // The shortest or longest match at the end is found as a match at
                    // the start of the reversed value.
                    let reversed = reverse_pattern(&pattern);
                    let value: Vec<char> = value.into_iter().rev().collect();
                    let trimmed = Pattern::compile(&reversed, greedy, &shown)?.trim_prefix(&value);
                    Ok(trimmed.chars().rev().collect())
                }
            }
            _ => Err(ShellError::UnsupportedModifier(spelled)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn replace(&mut self, name: &str) -> Result<String, ShellError> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pattern = self.nested(Some('/'), true, ShellError::MissingSlash)?;
        let replacement = self.nested(Some('}'), true, ShellError::MissingBrace)?;
        let value = self.lookup(name);
        if value.is_none() && self.lexer.skip_unset_env {
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        let pattern_chars: Vec<char> = pattern.chars().collect();
        let compiled = Pattern::compile(&pattern_chars, true, &pattern)?;
        let value: Vec<char> = value.unwrap_or_default().chars().collect();
        Ok(if all {
            compiled.replace_all(&value, &replacement)
        } else {
            compiled.replace_first(&value, &replacement)
        })
    }

    /// Expands a word nested in `${...}`. Running out of input there is reported as
    /// `at_end` (the missing delimiter), whatever the inner error was.
    fn nested(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        at_end: ShellError,
    ) -> Result<String, ShellError> {
        if self.depth >= MAX_NESTING {
            return Err(ShellError::TooDeep(MAX_NESTING));
        }
        self.depth += 1;
        let result = self.pass(stop, raw_escapes, false);
        self.depth -= 1;
        match result {
            Ok(pass) => Ok(pass.text),
            Err(_) if self.peek().is_none() => Err(at_end),
            Err(err) => Err(err),
        }
    }
}

fn required(name: &str, word: String, default: &str) -> ShellError {
    ShellError::Required {
        name: name.to_owned(),
        message: if word.is_empty() {
            default.to_owned()
        } else {
            word
        },
    }
}
