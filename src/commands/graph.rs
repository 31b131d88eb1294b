//! `rbuild graph`: print the build graph as DOT or JSON. Works offline: bases that cannot
//! be resolved stay unresolved source vertices.

use std::process::ExitCode;

use rbuild_frontend::NoopResolver;

use super::settings::DockerfileSettings;
use crate::cli::{GraphArgs, GraphFormat};
use crate::diag::{Level, render};

pub fn run(args: &GraphArgs) -> anyhow::Result<ExitCode> {
    let s = DockerfileSettings::resolve(&args.dockerfile)?;
    let df = match rbuild_frontend::check::parse(&s.source) {
        Ok(df) => df,
        Err(e) => {
            eprint!(
                "{}",
                render(
                    &s.display,
                    &s.source,
                    Level::Error,
                    None,
                    &e.message,
                    e.span
                )
            );
            return Ok(ExitCode::from(1));
        }
    };
    let lowered = match rbuild_frontend::lower(&df, &s.options, &NoopResolver) {
        Ok(l) => l,
        Err(e) => {
            eprint!(
                "{}",
                render(
                    &s.display,
                    &s.source,
                    Level::Error,
                    None,
                    &e.to_string(),
                    e.span()
                )
            );
            return Ok(ExitCode::from(1));
        }
    };
    let text = match args.format {
        GraphFormat::Dot => lowered.graph.to_dot(),
        GraphFormat::Json => serde_json::to_string_pretty(&lowered.to_json())?,
    };
    println!("{}", text.trim_end());
    Ok(ExitCode::SUCCESS)
}
