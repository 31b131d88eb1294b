//! The Dockerfile shell-word expander: BuildKit's `frontend/dockerfile/shell` lexer rules.
//!
//! A word of a Dockerfile instruction (an `ENV` value, a `COPY` source, a `FROM` image...)
//! is expanded with the stage's variables before use:
//!
//! - `'...'` is literal; in `"..."` variables expand and the escape character escapes only
//!   `"`, `$` and itself; outside quotes the escape character (`\`, or `` ` `` with
//!   `# escape=``) escapes any character and a lone one at the end is dropped.
//! - `$VAR`, `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}`, `${VAR:?msg}`,
//!   `${VAR?msg}`, `${VAR#p}`, `${VAR##p}`, `${VAR%p}`, `${VAR%%p}`, `${VAR/p/r}` and
//!   `${VAR//p/r}`. Nested words are expanded too. Patterns know `*`, `?` and `\`
//!   escapes; like BuildKit, `[...]` is literal and `/#p`, `/%p` anchors are not special.
//! - `$` before a character that cannot start a name stays literal; positional and
//!   special parameters (`$1`, `$@`, `$#`...) are never set.
//!
//! [`Lexer::process_words`] then splits on unquoted whitespace, as BuildKit's
//! `ProcessWords` does (used for `EXPOSE` and heredoc detection). One deliberate
//! difference: BuildKit shares a single field buffer between a word and the words nested
//! in its `${...}`, so there `a${X:-b}` splits as `b`, losing the `a`; here it gives `ab`,
//! as `process_word` does.

mod env;
mod error;
mod expand;
mod pattern;
mod words;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

pub use env::Env;
pub use error::ShellError;

use expand::Expander;

/// Expands words with one escape character and BuildKit's lexer switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    /// Keep quote characters in the output (BuildKit `RawQuotes`).
    pub raw_quotes: bool,
    /// Keep escape characters in the output (BuildKit `RawEscapes`).
    pub raw_escapes: bool,
    /// Leave references to unset variables as written (BuildKit `SkipUnsetEnv`).
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters (BuildKit `SkipProcessQuotes`).
    pub skip_process_quotes: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Self::new('\\')
    }
}

/// An expansion result with the variables it looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded<T> {
    pub value: T,
    /// Variable names that were referenced and found in env (for cache keys / ARG usage).
    pub matched: BTreeSet<String>,
    /// Variable names referenced but unset (for the "undefined variable" lint).
    pub unmatched: BTreeSet<String>,
}

impl Lexer {
    /// A lexer with escape character `escape` and every switch off.
    pub fn new(escape: char) -> Self {
        Self {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Whether `word` expands to itself: nothing in it is special (no `$`, quote, escape
    /// character or `<`, no leading byte-order mark). Most words of a Dockerfile are.
    fn is_plain(&self, word: &str) -> bool {
        !word.starts_with('\u{feff}') && !word.contains(['$', '\'', '"', '<', self.escape])
    }

    /// Expand one word (quotes removed, escapes processed, variables substituted).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<Expanded<String>, ShellError> {
        if self.is_plain(word) {
            return Ok(Expanded {
                value: word.to_string(),
                matched: BTreeSet::new(),
                unmatched: BTreeSet::new(),
            });
        }
        let mut expander = Expander::new(self, env, word);
        let pass = expander.run(false)?;
        Ok(Expanded {
            value: pass.text,
            matched: expander.matched,
            unmatched: expander.unmatched,
        })
    }

    /// Expand then split into words on unquoted whitespace (BuildKit ProcessWords).
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<Expanded<Vec<String>>, ShellError> {
        if self.is_plain(word) {
            return Ok(Expanded {
                value: word.split_whitespace().map(str::to_string).collect(),
                matched: BTreeSet::new(),
                unmatched: BTreeSet::new(),
            });
        }
        let mut expander = Expander::new(self, env, word);
        let pass = expander.run(true)?;
        Ok(Expanded {
            value: pass.fields,
            matched: expander.matched,
            unmatched: expander.unmatched,
        })
    }
}
