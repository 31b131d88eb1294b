//! `rbuild graph`: print the build graph as DOT or JSON. Works offline: bases that cannot
//! be resolved stay unresolved source vertices.

use std::process::ExitCode;

use rbuild_frontend::NoopResolver;

use super::settings::DockerfileSettings;
use crate::cli::{GraphArgs, GraphFormat};
use crate::diag::{Level, render};

pub fn run(args: &GraphArgs) -> anyhow::Result<ExitCode> {
    let s = DockerfileSettings::resolve(&args.dockerfile)?;
    // Parse and lowering errors render alike: message and where it points.
    let lowered = rbuild_frontend::check::parse(&s.source)
        .map_err(|e| (e.message, e.span))
        .and_then(|df| {
            rbuild_frontend::lower(&df, &s.options, &NoopResolver)
                .map_err(|e| (e.to_string(), e.span()))
        });
    let lowered = match lowered {
        Ok(l) => l,
        Err((message, span)) => {
            eprint!(
                "{}",
                render(&s.display, &s.source, Level::Error, None, &message, span)
            );
            return Ok(ExitCode::from(1));
        }
    };
    let text = match args.format {
        GraphFormat::Dot => lowered.graph.to_dot(),
        GraphFormat::Json => serde_json::to_string_pretty(&lowered.to_json())?,
    };
    super::render::emit(&format!("{}\n", text.trim_end()))?;
    Ok(ExitCode::SUCCESS)
}
