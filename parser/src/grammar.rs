//! The pest grammar of the regular pieces of a line (see `dockerfile.pest`).

use pest::Parser;
use pest::iterators::Pairs;

#[derive(Debug, pest_derive::Parser)]
#[grammar = "dockerfile.pest"]
pub(crate) struct DockerfileGrammar;

/// Runs `rule` on the whole of `input`; `None` when it does not match.
pub(crate) fn parse(rule: Rule, input: &str) -> Option<Pairs<'_, Rule>> {
    DockerfileGrammar::parse(rule, input).ok()
}

/// Runs an escape-sensitive `rule`: the input is prefixed with the escape character (which
/// the rule pushes on pest's stack). Returns the prefixed text, whose offsets are those of
/// `input` plus [`ESCAPE_PREFIX_LEN`].
pub(crate) fn with_escape(escape: char, input: &str) -> String {
    let mut s = String::with_capacity(input.len() + 1);
    s.push(escape);
    s.push_str(input);
    s
}

/// Both escape characters (`\` and `` ` ``) are one byte long.
pub(crate) const ESCAPE_PREFIX_LEN: usize = 1;
