//! One module per command: resolve settings from the parsed flags, make one library call,
//! render the result. Commands return the process exit code.

/// `print!` that ends quietly when stdout's reader went away instead of panicking; use
/// inside functions returning `anyhow::Result`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::commands::render::emit(&format!($($arg)*))?
    };
}

/// `println!` counterpart of `out!`.
macro_rules! outln {
    () => {
        $crate::commands::render::emit("\n")?
    };
    ($($arg:tt)*) => {
        $crate::commands::render::emit(&format!("{}\n", format_args!($($arg)*)))?
    };
}

mod build;
mod check;
mod df;
mod graph;
mod history;
mod images;
mod import;
mod inspect;
mod load;
mod login;
mod prune;
mod pull;
mod push;
mod registry;
mod render;
mod rmi;
pub mod run;
mod save;
mod secrets;
mod settings;
mod store;
mod tag;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let root = cli.root.as_deref();
    match &cli.command {
        Command::Build(args) => build::run(root, args),
        Command::Check(args) => check::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Images(args) => images::run(root, args),
        Command::Inspect(args) => inspect::run(root, args),
        Command::History(args) => history::run(root, args),
        Command::Tag(args) => tag::run(root, args),
        Command::Rmi(args) => rmi::run(root, args),
        Command::Save(args) => save::run(root, args),
        Command::Load(args) => load::run(root, args),
        Command::Import(args) => import::run(root, args),
        Command::Pull(args) => pull::run(root, args),
        Command::Push(args) => push::run(root, args),
        Command::Login(args) => login::login(root, args),
        Command::Logout(args) => login::logout(root, args),
        Command::Df => df::run(root),
        Command::Prune(args) => prune::run(root, args),
        Command::Run(args) => run::run(root, args),
    }
}
