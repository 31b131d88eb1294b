//! `rbuild check`: parse and lint; print findings; exit 1 on errors.

use std::process::ExitCode;

use rbuild_frontend::NoopResolver;

use super::settings::DockerfileSettings;
use crate::cli::CheckArgs;
use crate::diag::{Level, render};

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let s = DockerfileSettings::resolve(&args.dockerfile)?;
    let report = rbuild_frontend::check::check(&s.source, &s.options, &NoopResolver);
    let mut out = String::new();
    for e in &report.errors {
        out.push_str(&render(
            &s.display,
            &s.source,
            Level::Error,
            None,
            &e.message,
            e.span,
        ));
    }
    let level = if report.warnings_are_errors {
        Level::Error
    } else {
        Level::Warning
    };
    for w in &report.warnings {
        out.push_str(&render(
            &s.display,
            &s.source,
            level,
            Some(w.rule),
            &w.message,
            Some(w.span),
        ));
    }
    eprint!("{out}");
    if report.passed() {
        match report.warnings.len() {
            0 => eprintln!("Check complete, no warnings found."),
            n => eprintln!(
                "Check complete, {n} warning{} found.",
                if n == 1 { "" } else { "s" }
            ),
        }
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}
