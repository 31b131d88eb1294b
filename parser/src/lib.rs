//! The Dockerfile parser: parser directives, line continuations with the file's escape
//! character, comments, heredocs, JSON exec form vs shell form, every instruction and flag
//! of BuildKit's Dockerfile front end 1.x, and a typed AST with spans for every node.
//!
//! Also home of the shell-word expander ([`shell`]) that the front end applies with a
//! stage's variables, because it shares the escape-character rules with the parser.

pub mod ast;
pub mod shell;
