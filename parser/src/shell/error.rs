//! Errors of the shell-word expander. Messages follow BuildKit's lexer so users who know
//! `docker build` recognise them.

/// Why a word could not be expanded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ShellError {
    /// A `'` with no closing `'`.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// A `"` with no closing `"`.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// A `${` whose closing `}` never comes.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// A `${VAR/pattern` whose `/` before the replacement never comes.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${{...}`, `${:...}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A `${VAR<modifier>...}` form that is not supported (`${VAR:=x}`, `${VAR:#x}`, ...).
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${VAR?message}` with `VAR` unset, or `${VAR:?message}` with `VAR` unset or empty.
    #[error("{name}: {message}")]
    Required {
        /// The variable that had to be set.
        name: String,
        /// The word after `?`, or a default message when it is empty.
        message: String,
    },
    /// A `#`, `%` or `/` pattern with an escape other than `\*`, `\?`, `\\`, `\}`, `\/`.
    #[error("invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'")]
    InvalidPattern {
        /// The pattern as written (after expansion of the variables in it).
        pattern: String,
        /// The character after the backslash (empty when the pattern ends with it).
        escaped: String,
    },
    /// `${...}` words nested deeper than the expander allows.
    #[error("syntax error: substitutions nested more than {0} deep")]
    TooDeep(usize),
}
