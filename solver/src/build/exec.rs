//! `RUN`: a process in the sandbox on a fresh writable snapshot of the input filesystem,
//! committed as a new layer when it succeeds.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use rbuild_executor::snapshot::View;
use rbuild_executor::{
    CancelHandle, DEFAULT_PATH, ExtraMount, MountKind as SandboxMount, Network, RunSpec,
    SandboxError, Stream,
};
use rbuild_graph::{Digest, ExecOp, MountKind, NetworkMode, SecurityMode};

use super::cache_seed::seed_cache_dir;
use super::error::StepError;
use super::fs::{Fs, Layer};
use super::ops::{Env, committed, layers_of, new_snapshot_key};
use crate::fileop::resolve_in_root;
use crate::progress::LogStream;
use crate::scheduler::ExecContext;

/// Lines of output kept for the error of a failing step.
const TAIL_LINES: usize = 12;

/// Keeps the last lines of a stream of chunks.
#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                self.lines.push_back(line);
                if self.lines.len() > TAIL_LINES {
                    self.lines.pop_front();
                }
            } else if self.partial.len() < 4096 {
                self.partial.push(b);
            }
        }
    }

    fn finish(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            self.push(b"\n");
        }
        self.lines.into()
    }
}

/// The environment of the process: the op's, with proxy settings and a default `PATH`.
fn process_env(e: &ExecOp) -> Vec<String> {
    let mut env = e.env.clone();
    let p = &e.proxy_env;
    for (k, v) in [
        ("HTTP_PROXY", &p.http_proxy),
        ("HTTPS_PROXY", &p.https_proxy),
        ("FTP_PROXY", &p.ftp_proxy),
        ("NO_PROXY", &p.no_proxy),
        ("ALL_PROXY", &p.all_proxy),
    ] {
        if let Some(v) = v {
            env.push(format!("{k}={v}"));
            env.push(format!("{}={v}", k.to_ascii_lowercase()));
        }
    }
    if !env.iter().any(|kv| kv.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    env
}

/// The directory of mount input `input`: the context's root, or a read-only view of a
/// stage (kept open in `views` for the run).
fn input_root(
    env: &Env,
    inputs: &[Fs],
    input: usize,
    views: &mut Vec<View>,
) -> Result<PathBuf, StepError> {
    let fs = inputs
        .get(input)
        .ok_or_else(|| StepError::Unsupported(format!("mount input {input}")))?;
    if let Some(c) = fs.as_context() {
        return Ok(c.root.clone());
    }
    let parents = committed(&env.snapshotter, layers_of(fs)?)?;
    let view = env
        .snapshotter
        .view(&new_snapshot_key("mount"), &parents)
        .map_err(StepError::Snapshot)?;
    let p = view.path().to_owned();
    views.push(view);
    Ok(p)
}

/// What the run's mounts become in the sandbox.
#[derive(Debug, Default)]
struct RunMounts {
    mounts: Vec<ExtraMount>,
    /// Views opened for stage inputs, kept alive until the run ends.
    views: Vec<View>,
    /// Secrets given as environment variables: (name, host file).
    secret_env: Vec<(String, PathBuf)>,
}

/// Extra mounts of the run. A secret or SSH agent the build was not given is an error
/// when the mount is `required`, else the mount is left out (as BuildKit does).
fn mounts(env: &Env, e: &ExecOp, inputs: &[Fs]) -> Result<RunMounts, StepError> {
    let mut out = RunMounts::default();
    for m in &e.mounts {
        let kind = match &m.kind {
            MountKind::Bind {
                input,
                source,
                readonly,
            } => {
                let root = input_root(env, inputs, *input, &mut out.views)?;
                let source = resolve_in_root(&root, source, true)?;
                if *readonly {
                    SandboxMount::Bind {
                        source,
                        readonly: true,
                    }
                } else {
                    SandboxMount::BindDiscard { source }
                }
            }
            MountKind::Tmpfs { size } => SandboxMount::Tmpfs { size: *size },
            MountKind::Cache {
                id,
                input: Some(input),
                source,
                readonly,
                ..
            } => {
                // Seeded from a stage: the seed's snapshots are part of the cache's name.
                let mut name = format!("{id}\0from");
                match inputs.get(*input).and_then(Fs::as_layers) {
                    Some(layers) => {
                        for l in layers {
                            name.push('\0');
                            name.push_str(&l.snapshot);
                        }
                    }
                    None => return Err(StepError::ContextAsLayers),
                }
                let root = input_root(env, inputs, *input, &mut out.views)?;
                let seed = resolve_in_root(&root, source, true)?;
                let dir = env
                    .cache_mounts
                    .join(&rbuild_cache::Digest::sha256_of(name.as_bytes()).hex()[..32]);
                seed_cache_dir(&dir, &seed)?;
                SandboxMount::Bind {
                    source: dir,
                    readonly: *readonly,
                }
            }
            MountKind::Cache {
                id,
                input: None,
                readonly,
                uid,
                gid,
                mode,
                ..
            } => {
                let dir = env
                    .cache_mounts
                    .join(&rbuild_cache::Digest::sha256_of(id.as_bytes()).hex()[..32]);
                if !dir.exists() {
                    let io = |source| StepError::Io {
                        path: dir.clone(),
                        source,
                    };
                    std::fs::create_dir_all(&dir).map_err(io)?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(
                        &dir,
                        std::fs::Permissions::from_mode(mode.unwrap_or(0o755)),
                    )
                    .map_err(io)?;
                    std::os::unix::fs::chown(&dir, Some(uid.unwrap_or(0)), Some(gid.unwrap_or(0)))
                        .map_err(io)?;
                }
                SandboxMount::Bind {
                    source: dir,
                    readonly: *readonly,
                }
            }
            MountKind::Secret {
                id,
                path,
                env: var,
                required,
                uid,
                gid,
                mode,
            } => {
                let Some(source) = env.secrets.get(id) else {
                    if *required {
                        return Err(StepError::SecretNotFound(id.clone()));
                    }
                    continue;
                };
                if let Some(var) = var {
                    out.secret_env.push((var.clone(), source.clone()));
                }
                let Some(path) = path else { continue };
                out.mounts.push(ExtraMount {
                    target: path.clone(),
                    kind: SandboxMount::Secret {
                        source: source.clone(),
                        uid: *uid,
                        gid: *gid,
                        mode: *mode,
                    },
                });
                continue;
            }
            MountKind::Ssh {
                id,
                required,
                uid,
                gid,
                mode,
            } => {
                let Some(agent) = env.ssh_agents.get(id) else {
                    if *required {
                        return Err(StepError::SshNotFound(id.clone()));
                    }
                    continue;
                };
                SandboxMount::Ssh {
                    agent: agent.clone(),
                    uid: *uid,
                    gid: *gid,
                    mode: *mode,
                }
            }
        };
        out.mounts.push(ExtraMount {
            target: m.target.clone(),
            kind,
        });
    }
    Ok(out)
}

pub async fn run(
    env: &Arc<Env>,
    e: &ExecOp,
    inputs: Vec<Fs>,
    ctx: &ExecContext<Digest>,
) -> Result<Fs, StepError> {
    if e.security == SecurityMode::Insecure {
        return Err(StepError::Unsupported("RUN --security=insecure".into()));
    }
    let base = inputs.first().ok_or(StepError::ContextAsLayers)?;
    let parent_layers = layers_of(base)?.to_vec();
    let parents = committed(&env.snapshotter, &parent_layers)?;
    let RunMounts {
        mounts: extra,
        views,
        secret_env,
    } = mounts(env, e, &inputs)?;
    let key = new_snapshot_key("run");
    let active = env
        .snapshotter
        .prepare(&key, &parents)
        .map_err(StepError::Snapshot)?;

    let mut spec = RunSpec::new(active.rootfs(), e.args.clone());
    spec.env = process_env(e);
    spec.cwd = if e.cwd.is_empty() {
        "/".into()
    } else {
        e.cwd.clone()
    };
    spec.user = e.user.clone();
    spec.hostname = "buildkitsandbox".into();
    spec.network = match e.network {
        NetworkMode::Default => env.default_network,
        NetworkMode::None => Network::None,
        NetworkMode::Host => Network::Host,
    };
    spec.mounts = extra;
    spec.secret_env = secret_env;

    let handle = CancelHandle::new();
    let watcher = {
        let ctx = ctx.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            ctx.cancelled().await;
            handle.cancel();
        })
    };
    let env_ptr = Arc::clone(env);
    let log_ctx = ctx.clone();
    let run_handle = handle.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut tail = Tail::default();
        let sandbox = match env_ptr.sandbox() {
            Ok(s) => s,
            Err(e) => return (Err(e), Vec::new()),
        };
        // A pooled network, held until the run is over. Should the pool fail to start
        // one, the run makes its own network, as it would without a pool, and reports
        // what is wrong if that fails too.
        let mut spec = spec;
        let lease = match (&env_ptr.netpool, spec.network) {
            (Some(pool), Network::Sandbox) => pool.lease().ok(),
            _ => None,
        };
        spec.netns = lease.as_ref().map(|l| l.path().to_owned());
        let status = sandbox.run(&spec, &run_handle, &mut |stream, data| {
            tail.push(data);
            let stream = match stream {
                Stream::Stdout => LogStream::Stdout,
                Stream::Stderr => LogStream::Stderr,
            };
            log_ctx.log(stream, data);
        });
        // Every process of the run is gone: the network may serve the next one.
        drop(lease);
        (status, tail.finish())
    })
    .await;
    watcher.abort();
    drop(views);
    let (status, last_lines) = result.map_err(|_| StepError::Cancelled)?;
    let status = match status {
        Ok(s) => s,
        Err(SandboxError::Cancelled) => return Err(StepError::Cancelled),
        Err(SandboxError::Exec { code, .. }) => {
            return Err(StepError::ExitCode {
                argv: e.args.clone(),
                code,
                last_lines,
            });
        }
        Err(err) => return Err(StepError::Sandbox(err)),
    };
    if ctx.is_cancelled() {
        return Err(StepError::Cancelled);
    }
    if !status.success() {
        return Err(StepError::ExitCode {
            argv: e.args.clone(),
            code: status.code(),
            last_lines,
        });
    }
    let snap = env.snapshotter.clone();
    let lowers: Vec<PathBuf> = parents.iter().map(|c| c.dir().to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let layer = snap.commit(active).map_err(StepError::Snapshot)?;
        // Nobody knows the key yet, so the fresh layer may still be trimmed.
        super::stubs::prune_copied_up_dirs(layer.dir(), &lowers).map_err(|source| {
            StepError::Io {
                path: layer.dir().to_owned(),
                source,
            }
        })?;
        // Durable with the next cache flush, which syncs before it records anything.
        Ok::<(), StepError>(())
    })
    .await
    .map_err(|_| StepError::Cancelled)??;
    let mut layers = parent_layers;
    layers.push(Layer {
        snapshot: key,
        blob: None,
    });
    Ok(Fs::layers(layers))
}
