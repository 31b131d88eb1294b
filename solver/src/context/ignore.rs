//! `.dockerignore`: reading the file, choosing which file applies, and deciding whether
//! a context path is excluded, with the semantics of moby's `patternmatcher` and
//! `ignorefile` packages. Reading the file's patterns is [`rbuild_graph::parse_dockerignore`]
//! (the front end records them in the context source), re-exported by the context module as `parse_ignore`.

use std::path::{Path, PathBuf};

use super::glob::{IgnorePattern, PatternError};
use rbuild_graph::{clean_path as clean, parse_dockerignore as parse_ignore};

/// The ignore file for a build: `<Dockerfile>.dockerignore` next to the Dockerfile wins
/// over `.dockerignore` at the context root; `None` when neither exists.
pub fn ignore_file_for(context_root: &Path, dockerfile: &Path) -> Option<PathBuf> {
    if let Some(name) = dockerfile.file_name() {
        let mut specific = name.to_os_string();
        specific.push(".dockerignore");
        let candidate = dockerfile.with_file_name(specific);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    let fallback = context_root.join(".dockerignore");
    fallback.is_file().then_some(fallback)
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: IgnorePattern,
    exception: bool,
}

/// Decides exclusion for context paths; the last matching pattern wins.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    rules: Vec<Rule>,
    exceptions: bool,
}

impl Matcher {
    /// Builds a matcher from patterns as moby's `patternmatcher.New` does: each is trimmed
    /// (empty ones skipped) and cleaned, a leading `!` marks an exception, and syntax
    /// errors are reported here rather than at match time.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        let mut matcher = Matcher::default();
        for raw in patterns {
            let trimmed = raw.as_ref().trim();
            if trimmed.is_empty() {
                continue;
            }
            let mut p = clean(trimmed);
            let exception = p.starts_with('!');
            if exception {
                if p.len() == 1 {
                    return Err(PatternError::BareExclamation);
                }
                p.remove(0);
                matcher.exceptions = true;
            }
            let pattern = IgnorePattern::new(&p)?;
            matcher.rules.push(Rule { pattern, exception });
        }
        Ok(matcher)
    }

    /// Parses `.dockerignore` text and builds its matcher.
    pub fn from_ignore_text(text: &str) -> Result<Self, PatternError> {
        Matcher::new(&parse_ignore(text))
    }

    /// Whether there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any pattern is an `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.exceptions
    }

    /// moby's `MatchesOrParentMatches`: `path` is excluded when the last pattern that
    /// matches it or one of its parent directories is not an exception. The context root
    /// itself (`.`) is never excluded.
    /// `path` is used as given (slash separated, already clean), like moby's method.
    pub fn matches(&self, path: &str) -> bool {
        if path == "." || self.rules.is_empty() {
            return false;
        }
        let chars: Vec<char> = path.chars().collect();
        // Prefix lengths (in chars) of each parent directory, shortest first.
        let parents: Vec<usize> = chars
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c == '/')
            .map(|(i, _)| i)
            .collect();
        let mut matched = false;
        for rule in &self.rules {
            // An inclusion cannot change an already excluded path, nor an exception an
            // included one.
            if rule.exception != matched {
                continue;
            }
            let hit = rule.pattern.matches(&chars)
                || parents
                    .iter()
                    .any(|&end| rule.pattern.matches(&chars[..end]));
            if hit {
                matched = !rule.exception;
            }
        }
        matched
    }

    /// The per-pattern "matches an ancestor" state for the children of directory `dir`
    /// (`.` for the context root), computed from scratch.
    pub fn ancestors_of_children(&self, dir: &str) -> AncestorHits {
        if dir == "." {
            return AncestorHits(vec![false; self.rules.len()]);
        }
        let chars: Vec<char> = dir.chars().collect();
        let mut ends: Vec<usize> = chars
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c == '/')
            .map(|(i, _)| i)
            .collect();
        ends.push(chars.len());
        AncestorHits(
            self.rules
                .iter()
                .map(|r| ends.iter().any(|&end| r.pattern.matches(&chars[..end])))
                .collect(),
        )
    }

    /// The state for the children of `dir`, a child of the directory `parent` describes.
    pub fn descend(&self, dir: &str, parent: &AncestorHits) -> AncestorHits {
        let chars: Vec<char> = dir.chars().collect();
        AncestorHits(
            self.rules
                .iter()
                .zip(&parent.0)
                .map(|(r, &hit)| hit || r.pattern.matches(&chars))
                .collect(),
        )
    }

    /// [`Matcher::matches`] for `path`, a child of the directory `parent` describes:
    /// each pattern is tried on `path` alone, its parents' results come from `parent`.
    pub fn matches_child(&self, path: &str, parent: &AncestorHits) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        let chars: Vec<char> = path.chars().collect();
        let mut matched = false;
        for (rule, &ancestor) in self.rules.iter().zip(&parent.0) {
            if rule.exception != matched {
                continue;
            }
            if ancestor || rule.pattern.matches(&chars) {
                matched = !rule.exception;
            }
        }
        matched
    }

    /// moby's `MatchesExact`: like [`Matcher::matches`] without looking at parents.
    pub fn matches_exact(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        let mut matched = false;
        for rule in &self.rules {
            if rule.exception != matched {
                continue;
            }
            if rule.pattern.matches(&chars) {
                matched = !rule.exception;
            }
        }
        matched
    }

    /// Whether an exception could re-include something below the excluded directory
    /// `dir`, so a walk must descend into it. Without exceptions nothing can; a literal
    /// exception can only if it lies below `dir` (moby's `dirSlash` prefix rule); an
    /// exception with wildcards might match anything, so BuildKit walks, and so do we.
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        if !self.exceptions {
            return false;
        }
        let dir_slash = format!("{}/", clean(dir));
        self.rules.iter().filter(|r| r.exception).any(|r| {
            r.pattern.has_wildcards() || format!("{}/", r.pattern.as_str()).starts_with(&dir_slash)
        })
    }
}

/// Which patterns of a [`Matcher`] match some ancestor directory of the paths below one
/// directory, so a walk tests each pattern once per path instead of once per parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AncestorHits(Vec<bool>);
