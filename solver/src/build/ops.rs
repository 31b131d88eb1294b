//! The op executor: runs one build-graph vertex on snapshots, and computes its cache key
//! (op definition + parents' keys + checksums of the context files it reads).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rbuild_executor::snapshot::{Committed, Snapshotter};
use rbuild_executor::{Helper, NetPool, Network, Sandbox};
use rbuild_graph::{Digest, ExecOp, FileOp, MountKind, Op, SourceOp, Vertex};
use rbuild_image::local::ImageStore;
use rbuild_image::registry::RegistryClient;

use super::SandboxHelper;
use super::cache_from::CacheFrom;
use super::error::StepError;
use super::explainer::{Bypass, Explainer, miss_line};
use super::fs::{Fs, Layer};
use crate::blocking::blocking;
use crate::cache::CacheKey;
use crate::context::{Matcher, MetaCache, checksum_selection_listed};
use crate::progress::ProgressSink;
use crate::scheduler::{ExecContext, Executor, JobClass};

/// Version of the cache-key parts written here; bump when their meaning changes.
const KEY_VERSION: &[u8] = b"rbuild.build.v1";

/// Counters of what a build did, for reports and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub run_executed: AtomicU64,
    pub file_executed: AtomicU64,
}

/// Everything the op executor shares across vertices.
#[derive(Debug)]
pub struct Env {
    pub vertices: BTreeMap<Digest, Vertex>,
    pub images: ImageStore,
    pub snapshotter: Arc<Snapshotter>,
    /// Made on the first `RUN` (sealing the helper binary costs a copy of it).
    pub sandbox: std::sync::Mutex<SandboxSlot>,
    pub client: Option<RegistryClient>,
    pub context_root: PathBuf,
    pub metacache: Arc<MetaCache>,
    /// The network of a `RUN` with the default network mode.
    pub default_network: Network,
    /// Sandbox networks reused by the build's runs (see [`NetPool`]); `None`: each run
    /// makes its own.
    pub netpool: Option<NetPool>,
    /// Where `RUN --mount=type=cache` directories live.
    pub cache_mounts: PathBuf,
    /// `RUN --mount=type=secret` sources: id → host file. Never part of a cache key.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `RUN --mount=type=ssh` agents: id → host agent socket.
    pub ssh_agents: BTreeMap<String, PathBuf>,
    pub counters: Counters,
    /// Keys not reused in this build (`--no-cache`, `--no-cache-filter`).
    pub bypass: Arc<Bypass>,
    /// Steps that `--cache-from` images may hold.
    pub cache_from: Option<Arc<CacheFrom>>,
    /// Records what made each key; says why steps miss (`--explain`).
    pub explainer: Option<Arc<Explainer>>,
    pub progress: Progress,
}

/// The build's progress sink, where explanations go.
#[derive(Clone)]
pub struct Progress(pub Arc<dyn ProgressSink<Digest>>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// The sandbox of a build, or how to make it.
#[derive(Debug)]
pub enum SandboxSlot {
    Pending(SandboxHelper),
    Ready(Arc<Sandbox>),
}

/// Implements [`Executor`] for build-graph ops.
#[derive(Debug, Clone)]
pub struct OpExecutor {
    pub env: Arc<Env>,
}

/// A fresh snapshot key: unique per process and call (keys are local names, never
/// part of a cache key).
pub fn new_snapshot_key(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!("{}-{nanos}-{n}", std::process::id());
    let d = rbuild_cache::Digest::sha256_of(seed.as_bytes());
    format!("{prefix}-{}", &d.hex()[..24])
}

/// The layers of a filesystem input.
pub fn layers_of(fs: &Fs) -> Result<&[Layer], StepError> {
    fs.as_layers().ok_or(StepError::ContextAsLayers)
}

/// The committed snapshots of `layers`, base first.
pub fn committed(snap: &Snapshotter, layers: &[Layer]) -> Result<Vec<Committed>, StepError> {
    layers
        .iter()
        .map(|l| snap.committed(&l.snapshot).map_err(StepError::Snapshot))
        .collect()
}

impl Env {
    /// The sandbox, made on first use.
    pub fn sandbox(&self) -> Result<Arc<Sandbox>, rbuild_executor::SandboxError> {
        let mut slot = self.sandbox.lock().unwrap_or_else(|e| e.into_inner());
        let helper = match &mut *slot {
            SandboxSlot::Ready(s) => return Ok(s.clone()),
            SandboxSlot::Pending(SandboxHelper::CurrentExe(args)) => {
                Helper::current_exe(args.clone())?
            }
            SandboxSlot::Pending(SandboxHelper::Given(h)) => match h.take() {
                Some(h) => h,
                None => return Err(rbuild_executor::SandboxError::Cancelled),
            },
        };
        let sandbox = Arc::new(Sandbox::new(helper));
        *slot = SandboxSlot::Ready(sandbox.clone());
        Ok(sandbox)
    }

    fn vertex(&self, d: &Digest) -> Result<&Vertex, StepError> {
        self.vertices
            .get(d)
            .ok_or_else(|| StepError::UnknownVertex(d.clone()))
    }

    /// The `.dockerignore` rules of a context source vertex, if `d` is one.
    fn context_of(&self, d: &Digest) -> Result<Option<Matcher>, StepError> {
        match &self.vertex(d)?.op {
            Op::Source(SourceOp::Context(c)) => {
                if c.name != "context" {
                    return Err(StepError::UnknownContext(c.name.clone()));
                }
                Ok(Some(Matcher::new(&c.exclude).map_err(StepError::Pattern)?))
            }
            _ => Ok(None),
        }
    }

    /// Checksum of the context files `paths` select, as a key part (`blake3:<hex>`). The
    /// explainer keeps the listing of a selection it has not recorded yet.
    async fn context_checksum(
        &self,
        ignore: Matcher,
        paths: Vec<String>,
    ) -> Result<String, StepError> {
        let root = self.context_root.clone();
        let cache = self.metacache.clone();
        let explainer = self.explainer.clone();
        blocking(move || {
            let (sum, listing) = checksum_selection_listed(&root, &paths, &ignore, Some(&cache))
                .map_err(StepError::Checksum)?;
            let digest = sum.to_digest_string();
            if let Some(x) = explainer
                && x.wants_listing(&digest)
            {
                x.keep_listing(digest.clone(), listing.entries());
            }
            Ok(digest)
        })
        .await?
    }
}

/// The op as it enters a key: without proxy settings (which never change a result).
pub(super) fn op_bytes(op: &Op) -> Vec<u8> {
    let op = match op {
        Op::Exec(e) if !e.proxy_env.is_empty() => {
            let mut e = e.clone();
            e.proxy_env = Default::default();
            Op::Exec(e)
        }
        other => other.clone(),
    };
    // Plain structs, strings and BTreeMaps: serialising cannot fail.
    serde_json::to_vec(&op).unwrap_or_default()
}

impl Executor<Digest, Op> for OpExecutor {
    type Output = Fs;
    type Error = StepError;

    async fn execute(
        &self,
        key: &Digest,
        op: &Op,
        inputs: Vec<Fs>,
        ctx: ExecContext<Digest>,
    ) -> Result<Fs, StepError> {
        let env = &self.env;
        // Only a step about to run missed the cache; the context is never cached.
        if let Some(x) = env.explainer.as_ref().filter(|x| x.enabled())
            && !matches!(op, Op::Source(SourceOp::Context(_) | SourceOp::Scratch))
        {
            let vertex = env.vertex(key)?;
            let reasons = x.explain(vertex, &env.vertices, &env.bypass);
            env.progress
                .0
                .vertex_cache_miss(key, &miss_line(vertex, &reasons));
        }
        match op {
            Op::Source(SourceOp::Scratch) => Ok(Fs::layers(Vec::new())),
            Op::Source(SourceOp::Image(img)) => {
                super::image::load(&env.images, &env.snapshotter, env.client.as_ref(), img)
                    .await
                    .map_err(|e| StepError::Image {
                        reference: img.reference.clone(),
                        source: Box::new(e),
                    })
            }
            Op::Source(SourceOp::Context(_)) => {
                let ignore = env.context_of(key)?.unwrap_or_default();
                Ok(Fs::context(env.context_root.clone(), ignore))
            }
            Op::Source(SourceOp::Http(_)) => Err(StepError::Unsupported("ADD from a URL".into())),
            Op::Source(SourceOp::Git(_)) => {
                Err(StepError::Unsupported("ADD from a git repository".into()))
            }
            Op::Exec(e) => {
                let out = super::exec::run(env, e, inputs, &ctx).await?;
                env.counters.run_executed.fetch_add(1, Ordering::Relaxed);
                Ok(out)
            }
            Op::File(f) => {
                let parent = inputs.first().cloned();
                let out = super::file::run(env, f, inputs, &ctx).await?;
                env.counters.file_executed.fetch_add(1, Ordering::Relaxed);
                // A copy that made a `--cache-from` image's layer: that layer stands
                // for it, so the steps after it can be taken from the image too.
                if let (Some(c), Some(parent), FileOp::Copy(_)) = (&env.cache_from, parent, f) {
                    let (c, vertex, made) = (c.clone(), key.clone(), out.clone());
                    if let Some(same) = blocking(move || c.verify(&vertex, &parent, &made))
                        .await?
                        .map_err(|e| StepError::CacheFrom(Box::new(e)))?
                    {
                        return Ok(same);
                    }
                }
                Ok(out)
            }
            Op::Merge(_) => {
                let mut all = Vec::new();
                for input in &inputs {
                    all.extend_from_slice(layers_of(input)?);
                }
                Ok(Fs::layers(all))
            }
        }
    }

    async fn cache_key(
        &self,
        key: &Digest,
        op: &Op,
        inputs: &[CacheKey],
    ) -> Result<Option<CacheKey>, StepError> {
        let env = &self.env;
        let parts: Vec<Vec<u8>> = vec![KEY_VERSION.to_vec(), op_bytes(op)];
        // Digests of the context selections, also key parts (after the op).
        let mut context: Vec<String> = Vec::new();
        match op {
            // An unresolved tag could name anything tomorrow; downloads are not cached yet.
            Op::Source(SourceOp::Image(i)) if i.digest.is_none() => return Ok(None),
            Op::Source(SourceOp::Http(_) | SourceOp::Git(_)) => return Ok(None),
            Op::File(FileOp::Copy(c)) => {
                let vertex = env.vertex(key)?;
                // Per context input, the sources read from it, in source order.
                let mut by_input: BTreeMap<usize, Vec<String>> = BTreeMap::new();
                for s in &c.sources {
                    by_input.entry(s.input).or_default().push(s.path.clone());
                }
                for (input, paths) in by_input {
                    let Some(d) = vertex.inputs.get(input) else {
                        continue;
                    };
                    if let Some(ignore) = env.context_of(d)? {
                        context.push(env.context_checksum(ignore, paths).await?);
                    }
                }
            }
            Op::Exec(ExecOp { mounts, .. }) => {
                let vertex = env.vertex(key)?;
                for m in mounts {
                    if let MountKind::Bind { input, source, .. } = &m.kind
                        && let Some(d) = vertex.inputs.get(*input)
                        && let Some(ignore) = env.context_of(d)?
                    {
                        context.push(env.context_checksum(ignore, vec![source.clone()]).await?);
                    }
                }
            }
            _ => {}
        }
        let refs: Vec<&[u8]> = parts
            .iter()
            .map(Vec::as_slice)
            .chain(context.iter().map(String::as_bytes))
            .collect();
        let cache_key = CacheKey::derive(&refs, inputs);
        if let Ok(vertex) = env.vertex(key) {
            env.bypass.note(vertex, &cache_key, inputs);
            if let Some(x) = &env.explainer {
                x.note_step(vertex, &parts[1], &cache_key, inputs, context);
            }
        }
        if let Some(c) = &env.cache_from {
            c.note(key, &cache_key);
        }
        Ok(Some(cache_key))
    }

    /// A `RUN` waits on its sandboxed process; the rest (copies, hashing, unpacking
    /// bases) keeps a core busy.
    fn class(&self, _key: &Digest, op: &Op) -> JobClass {
        match op {
            Op::Exec(_) => JobClass::Wait,
            _ => JobClass::Compute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_graph::{NetworkMode, Platform, ProxyEnv, SecurityMode};

    fn exec(proxy: ProxyEnv, args: &[&str]) -> Op {
        Op::Exec(ExecOp {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: String::new(),
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
            platform: Platform::linux_amd64(),
            mounts: vec![],
            proxy_env: proxy,
        })
    }

    #[test]
    fn proxy_settings_never_enter_a_key_but_the_command_does() {
        let plain = exec(ProxyEnv::default(), &["true"]);
        let proxied = exec(
            ProxyEnv {
                http_proxy: Some("http://proxy:3128".into()),
                ..ProxyEnv::default()
            },
            &["true"],
        );
        assert_eq!(op_bytes(&plain), op_bytes(&proxied));
        assert_ne!(
            op_bytes(&plain),
            op_bytes(&exec(ProxyEnv::default(), &["false"]))
        );
    }

    #[test]
    fn snapshot_keys_are_unique_and_valid_names() {
        let a = new_snapshot_key("run");
        let b = new_snapshot_key("run");
        assert_ne!(a, b);
        assert!(a.starts_with("run-"));
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
    }
}
