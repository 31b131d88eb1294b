//! The `rbuild` command line: clap definitions (`cli`) → resolved settings → one library
//! call per command (`commands`), with diagnostics rendered by `diag`.

mod cli;
mod commands;
mod diag;
mod progress;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // The sandbox helper re-executes this binary: it must start before clap or any thread.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == commands::run::SANDBOX_INIT)
    {
        rbuild_executor::sandbox_init_main();
    }
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
