//! Runs one command in a sandbox, for trying the executor by hand and for the tests that
//! need a separate process (rootless runs under another uid):
//! `rbuild-sandbox-run [--network none|host|sandbox] [--user USER] [--tty] [--interactive]
//! ROOTFS CMD [ARG...]`.
//! The helper is `rbuild-sandbox-init` next to this binary.

use std::io::Write;
use std::process::ExitCode;

use rbuild_executor::{CancelHandle, Helper, Network, Rootfs, RunSpec, Sandbox, Stream};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut network = Network::None;
    let mut user = String::new();
    let (mut tty, mut interactive) = (false, false);
    while args.len() > 1 && args[0].starts_with("--") {
        match args[0].as_str() {
            "--tty" => {
                tty = true;
                args.remove(0);
                continue;
            }
            "--interactive" => {
                interactive = true;
                args.remove(0);
                continue;
            }
            "--network" => {
                network = match args[1].as_str() {
                    "host" => Network::Host,
                    "sandbox" => Network::Sandbox,
                    _ => Network::None,
                }
            }
            "--user" => user = args[1].clone(),
            _ => break,
        }
        args.drain(..2);
    }
    if args.len() < 2 || args[0].starts_with("--") {
        eprintln!(
            "usage: rbuild-sandbox-run [--network none|host|sandbox] [--user USER] [--tty] [--interactive] ROOTFS CMD [ARG...]"
        );
        return ExitCode::from(2);
    }
    let rootfs = Rootfs::Dir(args.remove(0).into());
    let init = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("rbuild-sandbox-init"),
        Err(e) => {
            eprintln!("rbuild-sandbox-run: {e}");
            return ExitCode::from(125);
        }
    };
    let sandbox = match Helper::new(init, Vec::new()) {
        Ok(h) => Sandbox::new(h),
        Err(e) => {
            eprintln!("rbuild-sandbox-run: {e}");
            return ExitCode::from(125);
        }
    };
    let mut spec = RunSpec::new(rootfs, args);
    spec.network = network;
    spec.user = user;
    spec.tty = tty;
    spec.stdin_inherit = interactive;
    let result = sandbox.run(&spec, &CancelHandle::new(), &mut |stream, data| {
        let _ = match stream {
            Stream::Stdout => std::io::stdout().write_all(data),
            Stream::Stderr => std::io::stderr().write_all(data),
        };
    });
    match result {
        Ok(status) => ExitCode::from(status.code().clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("rbuild-sandbox-run: {e}");
            ExitCode::from(125)
        }
    }
}
