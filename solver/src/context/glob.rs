//! The pattern engine behind `.dockerignore` and COPY source wildcards.
//!
//! Two dialects share one matcher:
//! - [`IgnorePattern`] follows moby's `patternmatcher`: a pattern becomes an exact, prefix,
//!   suffix or general match exactly as moby's `compile` classifies it (including its
//!   quirks, e.g. `**foo` matching `xfoo`), `*` and `?` never cross `/`, `**` spans any
//!   number of directories.
//! - [`FileGlob`] follows Go's `filepath.Match`, which Docker uses for COPY sources.
//!
//! Bracket classes follow `filepath.Match` syntax in both (`[abc]`, `[a-z]`, `[^a-z]`,
//! `\` escapes; `[]a]`, `[-a]`, `[a-]`, an unclosed `[` or a trailing `\` are errors, as
//! Go's syntax check in `patternmatcher.New` reports them). Moby hands the bracket text to
//! Go's regexp engine; the two agree on every class `filepath.Match` accepts except ones
//! containing `*`, `?` or `[:name:]`, which moby mangles and we treat literally.

/// Why a pattern is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("syntax error in pattern {0:?}")]
    BadPattern(String),
    #[error("illegal exclusion pattern: \"!\"")]
    BareExclamation,
    #[error("pattern longer than {MAX_PATTERN_CHARS} characters")]
    TooLong,
}

/// No context path is longer than PATH_MAX; bounding patterns bounds matching work.
pub const MAX_PATTERN_CHARS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character other than `/`.
    Any,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` followed by more pattern: moby's `(.*/)?`.
    DoubleStarDir,
    /// `**` at the end of a pattern that is not a plain prefix: moby's `.*`.
    DoubleStarEnd,
    Class(Class),
}

/// Parses a bracket class; `chars[*i]` is the character after `[`. Mirrors the syntax
/// `filepath.Match` accepts.
fn parse_class(chars: &[char], i: &mut usize) -> Option<Class> {
    let mut negated = false;
    if chars.get(*i) == Some(&'^') {
        negated = true;
        *i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match chars.get(*i) {
            None => return None,
            Some(']') if !ranges.is_empty() => {
                *i += 1;
                return Some(Class { negated, ranges });
            }
            _ => {}
        }
        let lo = class_char(chars, i)?;
        let mut hi = lo;
        if chars.get(*i) == Some(&'-') {
            *i += 1;
            hi = class_char(chars, i)?;
        }
        // Go's regexp (which moby compiles classes with) rejects reversed ranges.
        if lo > hi {
            return None;
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &[char], i: &mut usize) -> Option<char> {
    let c = *chars.get(*i)?;
    match c {
        '-' | ']' => None,
        '\\' => {
            let esc = *chars.get(*i + 1)?;
            *i += 2;
            Some(esc)
        }
        _ => {
            *i += 1;
            Some(c)
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Exact(Vec<char>),
    Prefix(Vec<char>),
    Suffix(Vec<char>),
    Tokens(Vec<Tok>),
}

/// One `.dockerignore` pattern (without its `!`), compiled as moby's `Pattern.compile`.
#[derive(Debug, Clone)]
pub struct IgnorePattern {
    text: String,
    kind: Kind,
}

impl IgnorePattern {
    /// Compiles an already cleaned pattern.
    pub fn new(cleaned: &str) -> Result<Self, PatternError> {
        let bad = || PatternError::BadPattern(cleaned.to_owned());
        let chars: Vec<char> = cleaned.chars().collect();
        if chars.len() > MAX_PATTERN_CHARS {
            return Err(PatternError::TooLong);
        }
        #[derive(PartialEq)]
        enum Detected {
            Exact,
            Prefix,
            Suffix,
            Regexp,
        }
        let mut detected = Detected::Exact;
        let mut toks = Vec::new();
        let mut i = 0;
        let mut iteration = 0;
        while i < chars.len() {
            let ch = chars[i];
            i += 1;
            match ch {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    // moby treats `**/` as `**`.
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i == chars.len() {
                        if detected == Detected::Exact {
                            detected = Detected::Prefix;
                        } else {
                            toks.push(Tok::DoubleStarEnd);
                            detected = Detected::Regexp;
                        }
                    } else {
                        toks.push(Tok::DoubleStarDir);
                        detected = Detected::Regexp;
                    }
                    if iteration == 0 {
                        detected = Detected::Suffix;
                    }
                }
                '*' => {
                    toks.push(Tok::Star);
                    detected = Detected::Regexp;
                }
                '?' => {
                    toks.push(Tok::Any);
                    detected = Detected::Regexp;
                }
                '\\' => {
                    // A trailing backslash fails Go's filepath.Match syntax check.
                    let esc = *chars.get(i).ok_or_else(bad)?;
                    i += 1;
                    toks.push(Tok::Lit(esc));
                    detected = Detected::Regexp;
                }
                '[' => {
                    let class = parse_class(&chars, &mut i).ok_or_else(bad)?;
                    toks.push(Tok::Class(class));
                    detected = Detected::Regexp;
                }
                ']' => {
                    toks.push(Tok::Lit(']'));
                    detected = Detected::Regexp;
                }
                other => toks.push(Tok::Lit(other)),
            }
            iteration += 1;
        }
        let kind = match detected {
            Detected::Exact => Kind::Exact(chars),
            // moby strips the trailing `**` and keeps everything before it.
            Detected::Prefix => Kind::Prefix(chars[..chars.len() - 2].to_vec()),
            // moby strips the leading `**` and keeps everything after it.
            Detected::Suffix => Kind::Suffix(chars[2..].to_vec()),
            Detected::Regexp => Kind::Tokens(toks),
        };
        Ok(IgnorePattern {
            text: cleaned.to_owned(),
            kind,
        })
    }

    /// The cleaned pattern text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has anything but literal characters.
    pub fn has_wildcards(&self) -> bool {
        self.text.contains(['*', '?', '[', ']', '\\'])
    }

    /// Whether `path` (slash separated, relative to the context) matches in full.
    pub fn matches(&self, path: &[char]) -> bool {
        match &self.kind {
            Kind::Exact(p) => path == p.as_slice(),
            Kind::Prefix(p) => path.starts_with(p),
            Kind::Suffix(s) => path.ends_with(s) || (s.first() == Some(&'/') && path == &s[1..]),
            Kind::Tokens(toks) => match_tokens(toks, path),
        }
    }
}

/// A COPY source component pattern with Go's `filepath.Match` semantics.
#[derive(Debug, Clone)]
pub struct FileGlob {
    toks: Vec<Tok>,
}

impl FileGlob {
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        let bad = || PatternError::BadPattern(pattern.to_owned());
        let chars: Vec<char> = pattern.chars().collect();
        if chars.len() > MAX_PATTERN_CHARS {
            return Err(PatternError::TooLong);
        }
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let ch = chars[i];
            i += 1;
            match ch {
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::Any),
                '\\' => {
                    let esc = *chars.get(i).ok_or_else(bad)?;
                    i += 1;
                    toks.push(Tok::Lit(esc));
                }
                '[' => toks.push(Tok::Class(parse_class(&chars, &mut i).ok_or_else(bad)?)),
                other => toks.push(Tok::Lit(other)),
            }
        }
        Ok(FileGlob { toks })
    }

    pub fn matches(&self, name: &str) -> bool {
        let chars: Vec<char> = name.chars().collect();
        match_tokens(&self.toks, &chars)
    }
}

/// Anchored match of `toks` against all of `path`, memoised over (token, position) so
/// pathological patterns stay polynomial.
fn match_tokens(toks: &[Tok], path: &[char]) -> bool {
    thread_local! {
        // Reused across calls: matching runs for every path and pattern of a walk.
        static MEMO: std::cell::RefCell<Vec<Option<bool>>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let width = path.len() + 1;
    MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        memo.clear();
        memo.resize((toks.len() + 1) * width, None);
        match_at(toks, path, 0, 0, &mut memo, width)
    })
}

fn match_at(
    toks: &[Tok],
    path: &[char],
    mut ti: usize,
    mut pi: usize,
    memo: &mut [Option<bool>],
    width: usize,
) -> bool {
    // Single-character tokens are matched in a loop; only stars recurse, so recursion
    // depth is bounded by the number of stars, not the pattern length.
    loop {
        let single = match toks.get(ti) {
            Some(Tok::Lit(c)) => path.get(pi) == Some(c),
            Some(Tok::Any) => matches!(path.get(pi), Some(&c) if c != '/'),
            Some(Tok::Class(class)) => matches!(path.get(pi), Some(&c) if class.matches(c)),
            _ => break,
        };
        if !single {
            return false;
        }
        ti += 1;
        pi += 1;
    }
    if let Some(known) = memo[ti * width + pi] {
        return known;
    }
    let result = match toks.get(ti) {
        None => pi == path.len(),
        Some(Tok::Star) => {
            let mut k = pi;
            loop {
                if match_at(toks, path, ti + 1, k, memo, width) {
                    break true;
                }
                match path.get(k) {
                    Some(&c) if c != '/' => k += 1,
                    _ => break false,
                }
            }
        }
        Some(Tok::DoubleStarDir) => {
            // `(.*/)?`: nothing, or any run without a newline that ends with `/`.
            match_at(toks, path, ti + 1, pi, memo, width) || {
                let mut found = false;
                for k in pi..path.len() {
                    match path[k] {
                        '\n' => break,
                        '/' if match_at(toks, path, ti + 1, k + 1, memo, width) => {
                            found = true;
                            break;
                        }
                        _ => {}
                    }
                }
                found
            }
        }
        Some(Tok::DoubleStarEnd) => {
            // `.*` then the end of the pattern (moby only emits it last).
            !path[pi..].contains(&'\n') && match_at(toks, path, ti + 1, path.len(), memo, width)
        }
        Some(Tok::Lit(_) | Tok::Any | Tok::Class(_)) => false,
    };
    memo[ti * width + pi] = Some(result);
    result
}
