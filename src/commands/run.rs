//! `rbuild run`: a command in a fresh sandbox on a stored image, like `docker run` without
//! a daemon. The image's layers are unpacked once into shared snapshots; each run gets its
//! own writable snapshot on top, removed when the run ends.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, anyhow, bail};
use rbuild_cache::Store;
use rbuild_executor::cgroup::Limits;
use rbuild_executor::sys::tty;
use rbuild_executor::{
    CancelHandle, DEFAULT_PATH, ExtraMount, Helper, MountKind, Network, RunSpec, Sandbox,
    SandboxError, Stream,
};
use rbuild_image::local::ImageStore;
use rbuild_image::unpack;

use crate::cli::{NetworkMode, RunArgs};

/// The hidden first argument that makes the binary the sandbox helper.
pub const SANDBOX_INIT: &str = "__sandbox-init";

/// Docker's exit code when the container could not be started.
const RUN_FAILED: u8 = 125;

/// `root` is the store root flag (`None`: from the environment).
pub fn run(root: Option<&Path>, args: &RunArgs) -> anyhow::Result<ExitCode> {
    match run_inner(root, args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("rbuild run: {e:#}");
            Ok(ExitCode::from(RUN_FAILED))
        }
    }
}

fn run_inner(root: Option<&Path>, args: &RunArgs) -> anyhow::Result<ExitCode> {
    // Everything the user can get wrong is checked before anything is unpacked.
    let host_env: Vec<(String, String)> = std::env::vars().collect();
    let mut extra_env = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("read env file {}", file.display()))?;
        extra_env.extend(env_file_lines(&text));
    }
    extra_env.extend(args.env.iter().cloned());
    let mounts = args
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(w) = &args.workdir
        && !w.starts_with('/')
    {
        bail!("the working directory {w:?} is invalid, it needs to be an absolute path");
    }
    let limits = Limits {
        memory: args.memory.as_deref().map(parse_size).transpose()?,
        cpus: args.cpus,
        pids: None,
    };
    let network = match args.network {
        NetworkMode::Sandbox => Network::Sandbox,
        NetworkMode::Host => Network::Host,
        NetworkMode::None => Network::None,
    };

    let root = rbuild_cache::root_from_env(root)?;
    let store = Store::open(&root).with_context(|| format!("open store {}", root.display()))?;
    let images = ImageStore::new(store);
    let image = images.resolve(&args.image)?;
    let config = image.config.config.clone().unwrap_or_default();
    let argv = command_line(&config, args.entrypoint.as_deref(), &args.cmd)?;

    let hostname = args.hostname.clone().unwrap_or_else(container_id);
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    merge_env(&mut env, config.env.iter().cloned(), &host_env);
    merge_env(&mut env, extra_env, &host_env);

    let cancel = CancelHandle::new();
    let signalled = watch_signals(&cancel)?;
    let sandbox = Sandbox::new(Helper::current_exe(vec![OsString::from(SANDBOX_INIT)])?);
    let snapshotter = unpack::open_snapshotter(&root)?;
    // A prune waits until the container's lock lists the layers it stands on.
    let holding = unpack::hold_snapshots(&snapshotter)?;
    let layers = unpack::unpack(&images, &snapshotter, &image)?;
    // Dropping the container (on every path out of here) removes its snapshot; one left
    // by a killed rbuild is removed by a later run.
    let container = unpack::prepare_container(&snapshotter, &layers.layers, &container_id())?;
    drop(holding);

    let mut spec = RunSpec::new(container.snapshot().rootfs(), argv);
    spec.env = env;
    spec.cwd = args
        .workdir
        .clone()
        .or_else(|| config.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_owned());
    spec.user = args
        .user
        .clone()
        .or_else(|| config.user.clone())
        .unwrap_or_default();
    spec.hostname = hostname;
    spec.network = network;
    spec.mounts = mounts;
    spec.limits = limits;
    spec.stdin_inherit = args.interactive;
    spec.tty = args.tty;
    // Keys go to the sandbox's terminal as typed (it echoes, edits lines and sends
    // ^C as SIGINT); this terminal gets its mode back when the guard drops.
    let _raw = if args.tty && args.interactive && tty::is_terminal(0) {
        Some(tty::RawMode::enable(0).context("put the terminal in raw mode")?)
    } else {
        None
    };

    let result = sandbox.run(&spec, &cancel, &mut |stream, data| {
        // A closed stdout or stderr is the reader's choice, not a failure of the run.
        let _ = match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(data).and_then(|()| out.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(data),
        };
    });
    let removed = container.remove(&snapshotter);
    let signal = signalled.load(Ordering::SeqCst);
    let code = match result {
        Ok(status) => status.code(),
        Err(SandboxError::Cancelled) if signal != 0 => 128 + signal,
        Err(SandboxError::Exec { message, code }) => {
            eprintln!("rbuild run: {message}");
            code
        }
        Err(e) => return Err(e.into()),
    };
    removed.context("remove the container snapshot")?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(RUN_FAILED)))
}

/// Docker's rules: `--entrypoint` replaces the image's entrypoint and drops its command;
/// arguments replace the command.
fn command_line(
    config: &rbuild_image::oci::RuntimeConfig,
    entrypoint: Option<&str>,
    args: &[String],
) -> anyhow::Result<Vec<String>> {
    let (entry, image_cmd) = match entrypoint {
        Some("") => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.to_owned()], Vec::new()),
        None => (
            config.entrypoint.clone().unwrap_or_default(),
            config.cmd.clone().unwrap_or_default(),
        ),
    };
    let cmd = if args.is_empty() {
        image_cmd
    } else {
        args.to_vec()
    };
    let argv: Vec<String> = entry.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        bail!("no command specified");
    }
    Ok(argv)
}

/// Adds `K=V` entries, replacing earlier ones with the same key; a bare `K` takes the
/// value from this process's environment (and is skipped when unset there).
fn merge_env(
    env: &mut Vec<String>,
    entries: impl IntoIterator<Item = String>,
    host: &[(String, String)],
) {
    for entry in entries {
        let entry = match entry.split_once('=') {
            Some(_) => entry,
            None => match host.iter().find(|(k, _)| *k == entry) {
                Some((k, v)) => format!("{k}={v}"),
                None => continue,
            },
        };
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        let prefix = format!("{key}=");
        match env.iter_mut().find(|e| e.starts_with(&prefix)) {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }
}

/// The entries of an env file: blank lines and `#` comments skipped.
fn env_file_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// `HOST:CONTAINER[:ro|rw]`; the host path must be absolute (no named volumes) and is
/// created as a directory when missing, as Docker does.
fn parse_volume(spec: &str) -> anyhow::Result<ExtraMount> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, target, readonly) = match parts.as_slice() {
        [h, t] => (*h, *t, false),
        [h, t, "ro"] => (*h, *t, true),
        [h, t, "rw"] => (*h, *t, false),
        [_, _, mode] => bail!("invalid mode {mode:?} in volume {spec:?} (want ro or rw)"),
        _ => bail!("invalid volume {spec:?} (want HOST:CONTAINER[:ro|rw])"),
    };
    if !host.starts_with('/') {
        bail!("volume {spec:?}: the host path must be absolute (named volumes are not supported)");
    }
    if !target.starts_with('/') {
        bail!("volume {spec:?}: the container path must be absolute");
    }
    let host = Path::new(host);
    if !host.exists() {
        std::fs::create_dir_all(host).with_context(|| format!("create {}", host.display()))?;
    }
    let source = host
        .canonicalize()
        .with_context(|| format!("resolve {}", host.display()))?;
    Ok(ExtraMount {
        target: target.to_owned(),
        kind: MountKind::Bind { source, readonly },
    })
}

/// Bytes, or a number with a `b`, `k`, `m` or `g` suffix (powers of 1024), as Docker.
fn parse_size(s: &str) -> anyhow::Result<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let (num, mult) = match lower.char_indices().last() {
        Some((i, 'b')) => (&lower[..i], 1),
        Some((i, 'k')) => (&lower[..i], 1 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        _ => (lower.as_str(), 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("invalid size {s:?} (want bytes or a number with b/k/m/g)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("size {s:?} is too large"))
}

/// A 12-hex-digit id for the container (its default host name and snapshot key).
fn container_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let digest =
        rbuild_cache::Digest::sha256_of(format!("{}-{nanos}", std::process::id()).as_bytes());
    digest.hex()[..12].to_owned()
}

/// Passes SIGINT and SIGTERM on to the command (which may handle them, as with `docker
/// run`'s signal proxy) and records the last one (0: none); the third one kills the
/// sandbox, for a command that ignores them. The handlers are installed before the
/// sandbox starts; exec resets them in the helper.
fn watch_signals(cancel: &CancelHandle) -> anyhow::Result<Arc<AtomicI32>> {
    use tokio::signal::unix::{SignalKind, signal};
    let got = Arc::new(AtomicI32::new(0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("start the signal watcher")?;
    let (mut int, mut term) = rt
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })
        .context("install signal handlers")?;
    let cancel = cancel.clone();
    let flag = Arc::clone(&got);
    std::thread::spawn(move || {
        for _ in 0..3 {
            let n = rt.block_on(async {
                tokio::select! {
                    _ = int.recv() => libc_signal::SIGINT,
                    _ = term.recv() => libc_signal::SIGTERM,
                }
            });
            flag.store(n, Ordering::SeqCst);
            cancel.forward(n);
        }
        cancel.cancel();
    });
    Ok(got)
}

/// Signal numbers (Linux, every architecture rbuild runs on).
mod libc_signal {
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_image::oci::RuntimeConfig;

    fn cfg(entry: Option<&[&str]>, cmd: Option<&[&str]>) -> RuntimeConfig {
        RuntimeConfig {
            entrypoint: entry.map(|e| e.iter().map(|s| s.to_string()).collect()),
            cmd: cmd.map(|e| e.iter().map(|s| s.to_string()).collect()),
            ..RuntimeConfig::default()
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn docker_entrypoint_and_cmd_rules() {
        let c = cfg(Some(&["/ep"]), Some(&["a"]));
        assert_eq!(command_line(&c, None, &[]).unwrap(), s(&["/ep", "a"]));
        assert_eq!(
            command_line(&c, None, &s(&["b"])).unwrap(),
            s(&["/ep", "b"])
        );
        assert_eq!(command_line(&c, Some("/x"), &[]).unwrap(), s(&["/x"]));
        assert_eq!(
            command_line(&c, Some("/x"), &s(&["y"])).unwrap(),
            s(&["/x", "y"])
        );
        assert_eq!(command_line(&c, Some(""), &s(&["y"])).unwrap(), s(&["y"]));
        assert!(command_line(&cfg(None, None), None, &[]).is_err());
        assert!(command_line(&c, Some(""), &[]).is_err());
    }

    #[test]
    fn env_overrides_by_key_and_takes_bare_keys_from_host() {
        let mut env = s(&["PATH=/bin", "A=1"]);
        let host = vec![("H".to_owned(), "v".to_owned())];
        merge_env(&mut env, s(&["A=2", "B=3", "H", "MISSING"]), &host);
        assert_eq!(env, s(&["PATH=/bin", "A=2", "B=3", "H=v"]));
        assert_eq!(env_file_lines("# c\n\nA=1\n  B=2\n"), s(&["A=1", "B=2"]));
    }

    #[test]
    fn sizes_and_volumes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999999999g").is_err());
        assert!(parse_volume("rel:/x").is_err());
        assert!(parse_volume("/tmp:rel").is_err());
        assert!(parse_volume("/tmp:/x:zz").is_err());
        assert!(parse_volume("/tmp").is_err());
        let m = parse_volume("/tmp:/x:ro").unwrap();
        assert_eq!(m.target, "/x");
        assert!(matches!(m.kind, MountKind::Bind { readonly: true, .. }));
    }
}
