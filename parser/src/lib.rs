//! The Dockerfile parser: parser directives, line continuations with the file's escape
//! character, comments, heredocs, JSON exec form vs shell form, every instruction and flag
//! of BuildKit's Dockerfile front end 1.x, and a typed AST with spans for every node.
//!
//! Also home of the shell-word expander ([`shell`]) that the front end applies with a
//! stage's variables, because it shares the escape-character rules with the parser.
//!
//! [`parse`] gives the typed [`ast::Dockerfile`]; [`parse_raw`] stops after the raw nodes
//! (BuildKit's parser alone, whose [`ast::Dockerfile::dump`] is BuildKit's `AST.Dump()`).
//!
//! Deliberate differences from BuildKit (all on input BuildKit mishandles or ignores):
//! - builder flags are read character by character (BuildKit reads bytes, which garbles
//!   non-ASCII flag values);
//! - unknown flags are rejected on every instruction (BuildKit does not check the flags of
//!   `ARG`, `STOPSIGNAL` and `HEALTHCHECK NONE`);
//! - an `ONBUILD` trigger is checked when the Dockerfile is parsed, not when a child image
//!   is built; `Heredoc::content` of `<<-` heredocs has its tabs already stripped;
//! - `EXPOSE` ports stay in written order (BuildKit sorts them);
//! - errors about a parser directive name its own line (BuildKit's is one line early);
//! - absurd nesting (`ONBUILD` 16 deep, `${...}` 64 deep in a heredoc line, JSON deeper
//!   than the stack) is an error or shell form instead of unbounded recursion.

pub mod ast;
mod dump;
mod grammar;
mod heredoc;
mod instructions;
mod json;
mod lines;
mod nodes;
pub mod shell;
mod source;
#[cfg(test)]
mod test_texts;
mod words;

pub use instructions::parse_duration;

use ast::Span;

/// A Dockerfile that cannot be parsed. `span` points at the culprit (the flag, the
/// keyword, the argument, or the whole instruction).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    pub span: Span,
}

/// Parses a Dockerfile into raw nodes and typed instructions.
pub fn parse(source: &str) -> Result<ast::Dockerfile, ParseError> {
    let raw = lines::parse_file(source)?;
    let instructions = instructions::convert_all(&raw.nodes)?;
    Ok(ast::Dockerfile {
        directives: raw.directives,
        escape: raw.escape,
        nodes: raw.nodes.into_iter().map(|n| n.node).collect(),
        instructions,
        warnings: raw.warnings,
    })
}

/// Parses a Dockerfile into raw nodes only, like BuildKit's `parser.Parse`: instruction
/// level checks (argument counts, flags, unknown instructions) are not made and
/// `instructions` is left empty.
pub fn parse_raw(source: &str) -> Result<ast::Dockerfile, ParseError> {
    let raw = lines::parse_file(source)?;
    Ok(ast::Dockerfile {
        directives: raw.directives,
        escape: raw.escape,
        nodes: raw.nodes.into_iter().map(|n| n.node).collect(),
        instructions: Vec::new(),
        warnings: raw.warnings,
    })
}
