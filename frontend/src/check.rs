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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoopResolver;

    #[test]
    fn empty_file_is_refused_before_parsing() {
        let r = check("", &BuildOptions::default(), &NoopResolver);
        assert_eq!(r.errors[0].message, "the Dockerfile cannot be empty");
        assert!(!r.passed());
    }

    #[test]
    fn parse_and_lowering_errors_carry_their_line() {
        let r = check(
            "FROM a\nCOPY --user=x a b\n",
            &BuildOptions::default(),
            &NoopResolver,
        );
        assert_eq!(r.errors[0].span.map(|s| s.line), Some(2));
        let r = check(
            "RUN true\nFROM a\n",
            &BuildOptions::default(),
            &NoopResolver,
        );
        assert_eq!(r.errors[0].message, "no build stage in current context");
        assert_eq!(r.errors[0].span.map(|s| s.line), Some(1));
    }

    #[test]
    fn warnings_fail_only_with_error_directive() {
        let src = "FROM a\nMAINTAINER me\n";
        let r = check(src, &BuildOptions::default(), &NoopResolver);
        assert!(r.passed());
        assert_eq!(r.warnings.len(), 1);
        let r = check(
            &format!("# check=error=true\n{src}"),
            &BuildOptions::default(),
            &NoopResolver,
        );
        assert!(!r.passed());
        let r = check(
            &format!("# check=skip=MaintainerDeprecated;error=true\n{src}"),
            &BuildOptions::default(),
            &NoopResolver,
        );
        assert!(r.passed());
    }

    #[test]
    fn stages_the_target_does_not_reach_are_reported() {
        let opts = BuildOptions {
            target: Some("one".into()),
            ..BuildOptions::default()
        };
        let r = check(
            "FROM a AS one\nRUN true\nFROM b AS two\nRUN true\n",
            &opts,
            &NoopResolver,
        );
        let unreachable: Vec<_> = r
            .warnings
            .iter()
            .filter(|w| w.rule == "UnreachableStage")
            .map(|w| w.span.line)
            .collect();
        assert_eq!(unreachable, vec![3]);
    }

    #[test]
    fn undefined_variable_is_reported_once() {
        let r = check(
            "FROM a\nCOPY $NOPE /x\n",
            &BuildOptions::default(),
            &NoopResolver,
        );
        let undefined: Vec<_> = r
            .warnings
            .iter()
            .filter(|w| w.rule == "UndefinedVar")
            .collect();
        assert_eq!(undefined.len(), 1, "{:?}", r.warnings);
        assert_eq!(undefined[0].span.line, 2);
    }
}
