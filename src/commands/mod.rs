//! One module per command: resolve settings from the parsed flags, make one library call,
//! render the result. Commands return the process exit code.

mod check;
mod graph;
pub mod run;
mod settings;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Graph(args) => graph::run(&args),
        Command::Run(args) => run::run(args.root.as_deref(), &args),
    }
}
