//! Errors of the front end. Every error that comes from the Dockerfile carries the span
//! of the instruction at fault; messages follow BuildKit's.

use rbuild_parser::ast::Span;
use rbuild_parser::shell::ShellError;

use crate::resolver::ResolveError;

#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// The Dockerfile does not parse ([`crate::lower_source`] only).
    #[error("{message}")]
    Parse { message: String, span: Span },
    #[error("dockerfile contains no stages to build")]
    NoStages,
    #[error("no build stage in current context")]
    NoBuildStage { span: Span },
    #[error(
        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
    )]
    InvalidStageName { name: String, span: Span },
    #[error(
        "target stage {target:?} could not be found{}",
        did_you_mean(suggestion)
    )]
    UnknownTarget {
        target: String,
        suggestion: Option<String>,
    },
    /// A word of an instruction could not be expanded.
    #[error("failed to process {word:?}: {source}")]
    Expand {
        word: String,
        span: Span,
        #[source]
        source: ShellError,
    },
    #[error("base name ({name}) should not be blank")]
    BlankBaseName { name: String, span: Span },
    #[error("failed to parse stage name {name:?}: {source}")]
    InvalidReference {
        name: String,
        span: Span,
        #[source]
        source: crate::reference::ReferenceError,
    },
    #[error("failed to parse platform {value}: {reason}")]
    InvalidPlatform {
        value: String,
        reason: String,
        span: Span,
    },
    #[error("{reference}: {source}")]
    Resolve {
        reference: String,
        span: Span,
        #[source]
        source: ResolveError,
    },
    #[error("circular dependency detected on stage: {stage}")]
    CircularDependency { stage: String, span: Span },
    /// The ONBUILD trigger of a base image does not parse.
    #[error("failed to parse ONBUILD trigger {trigger:?}: {message}")]
    Trigger {
        trigger: String,
        message: String,
        span: Span,
    },
    /// Any other invalid instruction (bad flag value, bad mount, bad port...).
    #[error("{message}")]
    Instruction { message: String, span: Span },
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map(|m| format!(" (did you mean {m}?)"))
        .unwrap_or_default()
}

impl FrontendError {
    /// Where in the Dockerfile the error is, when it comes from the Dockerfile.
    pub fn span(&self) -> Option<Span> {
        use FrontendError::*;
        match self {
            NoStages | UnknownTarget { .. } => None,
            Parse { span, .. }
            | NoBuildStage { span }
            | InvalidStageName { span, .. }
            | Expand { span, .. }
            | BlankBaseName { span, .. }
            | InvalidReference { span, .. }
            | InvalidPlatform { span, .. }
            | Resolve { span, .. }
            | CircularDependency { span, .. }
            | Trigger { span, .. }
            | Instruction { span, .. } => Some(*span),
        }
    }

    pub(crate) fn at(span: Span, message: impl Into<String>) -> FrontendError {
        FrontendError::Instruction {
            message: message.into(),
            span,
        }
    }
}
