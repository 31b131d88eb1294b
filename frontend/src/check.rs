//! `rbuild check`: parse, lower and lint a Dockerfile without building it, collecting every
//! finding with its location so the CLI can render it.

use rbuild_parser::ast::{Dockerfile, Span};

use crate::lint::{self, CheckDirective};
use crate::{BuildOptions, ImageResolver, Warning};

/// A fatal finding: the Dockerfile cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    pub message: String,
    pub span: Option<Span>,
}

/// Everything `rbuild check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub errors: Vec<CheckError>,
    /// Warnings left after the `# check=skip=` directive, in file order.
    pub warnings: Vec<Warning>,
    /// `# check=error=true`: warnings fail the check.
    pub warnings_are_errors: bool,
}

impl CheckReport {
    /// True when the Dockerfile passes the check.
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && (!self.warnings_are_errors || self.warnings.is_empty())
    }
}

/// Parses a Dockerfile as the front end does: BuildKit refuses an empty file before
/// parsing it, with a message of its own.
pub fn parse(source: &str) -> Result<Dockerfile, CheckError> {
    if source.is_empty() {
        return Err(CheckError {
            message: "the Dockerfile cannot be empty".into(),
            span: None,
        });
    }
    rbuild_parser::parse(source).map_err(|e| CheckError {
        message: e.message,
        span: Some(e.span),
    })
}

/// Parses, lints and lowers `source`. Base images come from `resolver`; an image it cannot
/// resolve is no error (the graph keeps an unresolved source).
pub fn check(source: &str, opts: &BuildOptions, resolver: &dyn ImageResolver) -> CheckReport {
    let mut report = CheckReport::default();
    let df = match parse(source) {
        Ok(df) => df,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    let directive = CheckDirective::from_dockerfile(&df);
    let mut warnings = lint::lint(&df);
    match crate::lower(&df, opts, resolver) {
        Ok(lowered) => {
            warnings.extend(lowered.warnings.iter().cloned());
            if opts.target.is_some() {
                for stage in lowered.stages.iter().filter(|s| !s.reachable) {
                    warnings.push(Warning {
                        rule: "UnreachableStage",
                        message: format!(
                            "Stage {} is not reached by target {:?} and will not be built",
                            stage
                                .name
                                .clone()
                                .unwrap_or_else(|| stage.index.to_string()),
                            opts.target.as_deref().unwrap_or_default()
                        ),
                        span: stage.span,
                    });
                }
            }
        }
        Err(e) => report.errors.push(CheckError {
            message: e.to_string(),
            span: e.span(),
        }),
    }
    warnings.retain(|w| !directive.skips(w.rule));
    // The parser's own warnings reach us both through the lint pass and through the
    // lowering; sorting on every field makes the copies adjacent for dedup.
    warnings.sort_by(|a, b| {
        (a.span.line, a.span.col, a.rule, &a.message).cmp(&(
            b.span.line,
            b.span.col,
            b.rule,
            &b.message,
        ))
    });
    warnings.dedup();
    report.warnings = warnings;
    report.warnings_are_errors = directive.error;
    report
}
