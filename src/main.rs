//! The `rbuild` command line: clap definitions (`cli`) → resolved settings → one library
//! call per command (`commands`), with diagnostics rendered by `diag`.

mod cli;
mod commands;
mod diag;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
