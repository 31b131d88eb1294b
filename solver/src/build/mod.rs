//! `rbuild build`: runs a lowered build graph on the store's snapshots with the sandbox,
//! reusing every step whose cache key is recorded, and exports the target into the local
//! image store.
//!
//! - [`ops`]: the op executor (Source/Exec/File/Merge) and cache keys.
//! - [`store_cache`]: the cache index in the store's database; [`record`] its records.
//! - [`image`]: base images for the front end and for `FROM` vertices.
//! - [`export`]: layers → blobs → config, manifest and tags.
//! - `file`: file operations through [`crate::fileop`] on a fresh snapshot.
//! - [`explain`] and `explainer`: what made each key, remembered per Dockerfile, and why
//!   a step missed the cache (`--explain`); `--no-cache-filter` bypasses.
//! - [`cache_from`]: steps reused from the layers of existing images (`--cache-from`).

pub mod cache_from;
mod cache_seed;
mod error;
mod exec;
pub mod explain;
mod explainer;
pub mod export;
mod file;
mod fs;
pub mod image;
mod ops;
pub mod record;
mod store_cache;
mod stubs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rbuild_cache::Store;
use rbuild_executor::{Helper, NetPool, Network};
use rbuild_graph::{Digest, Graph, ImageConfig};
use rbuild_image::compress::Compression;
use rbuild_image::local::ImageStore;
use rbuild_image::registry::RegistryClient;
use rbuild_image::unpack;
use serde::Serialize;

pub use cache_from::CacheImage;
pub use error::{BuildError, StepError};
pub use explainer::{CacheMiss, ExplainOptions};
pub use export::{ExportError, ExportOptions, Exported};
pub use fs::{ContextDir, Fs, Layer, LayerBlob};
pub use image::{BaseImage, BaseResolver, ImageError};
pub use store_cache::StoreCache;

use crate::cancel::CancelToken;
use crate::context::MetaCache;
use crate::progress::ProgressSink;
use crate::scheduler::{SolveError, Solver};

/// Directory (in the store root) of the context metadata cache.
pub const CONTEXT_CACHE_DIR: &str = "context-v1";
/// Directory (in the store root) of `RUN --mount=type=cache` directories.
pub const CACHE_MOUNTS_DIR: &str = "cache-mounts-v1";

/// Everything one build needs.
pub struct BuildRequest {
    /// The lowered graph; its target is built.
    pub graph: Graph,
    /// The final image's config and history (`Lowered.config`).
    pub config: ImageConfig,
    /// The build context directory.
    pub context: PathBuf,
    pub store: Store,
    /// Names to tag the image with.
    pub tags: Vec<String>,
    /// Reuse nothing (results are still recorded).
    pub no_cache: bool,
    /// Stage labels (`build`, `stage-1`) whose steps, and every step after them, are not
    /// reused (`--no-cache-filter`).
    pub no_cache_filter: BTreeSet<String>,
    /// Images whose layers may be reused for the target stage (`--cache-from`).
    pub cache_from: Vec<CacheImage>,
    /// Record what made each key under a build id; with `enabled`, report why steps miss.
    pub explain: Option<ExplainOptions>,
    /// Steps run at once (with `run_jobs`: steps other than `RUN`).
    pub jobs: usize,
    /// A limit of its own for `RUN` steps, which mostly wait on their sandboxed process
    /// and hold no core: up to this many run besides the `jobs` others. `None`: they
    /// count against `jobs` like every step.
    pub run_jobs: Option<usize>,
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: layer mtimes clamped, history times set to it.
    pub source_date_epoch: Option<i64>,
    /// Registry access for bases missing from the store.
    pub client: Option<RegistryClient>,
    /// How to start sandboxes; made only when a `RUN` step executes.
    pub helper: SandboxHelper,
    pub progress: Arc<dyn ProgressSink<Digest>>,
    pub cancel: CancelToken,
    /// `RUN --mount=type=secret` sources (`--secret`): id → host file. They are read
    /// only by the sandbox and never enter a cache key, a layer or the history.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `RUN --mount=type=ssh` agents (`--ssh`): id → host agent socket.
    pub ssh_agents: BTreeMap<String, PathBuf>,
}

impl std::fmt::Debug for BuildRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildRequest")
            .field("context", &self.context)
            .field("tags", &self.tags)
            .field("no_cache", &self.no_cache)
            .field("jobs", &self.jobs)
            .field("run_jobs", &self.run_jobs)
            .finish_non_exhaustive()
    }
}

/// The program that becomes the sandbox init.
#[derive(Debug)]
pub enum SandboxHelper {
    /// This executable, re-run with these arguments (`Helper::current_exe`).
    CurrentExe(Vec<std::ffi::OsString>),
    /// A helper made by the caller (taken by the first `RUN`).
    Given(Option<Helper>),
}

/// What a build did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildReport {
    /// Image id (config digest).
    pub image_id: String,
    pub manifest: String,
    pub tags: Vec<String>,
    /// Vertices executed and taken from the cache.
    pub executed: usize,
    pub cached: usize,
    /// `RUN` steps executed.
    pub run_executed: u64,
    /// File operations (COPY/ADD/WORKDIR...) executed.
    pub file_executed: u64,
    /// Context file contents read and hashed for cache keys.
    pub context_bytes_read: u64,
    pub context_files_hashed: u64,
    /// Context files whose checksum came from the metadata cache.
    pub context_cache_hits: u64,
    /// Layers diffed and compressed at export.
    pub layers_exported: usize,
    /// Steps taken from `--cache-from` images.
    pub cache_from_hits: usize,
    /// Why steps missed the cache (`--explain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<ExplainReport>,
}

/// What `--explain` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainReport {
    /// Whether an earlier build of the same Dockerfile was recorded.
    pub earlier_build: bool,
    /// Steps that ran, with why, in the order they started.
    pub misses: Vec<CacheMiss>,
}

/// `RUN` steps at once when the user sets no `--jobs`: a sandboxed process waiting on a
/// `sleep` or a download needs no core, and BuildKit sets no limit at all; this bound
/// only keeps a very wide graph from starting hundreds of sandboxes at once.
pub const DEFAULT_RUN_JOBS: usize = 64;

/// The network of a `RUN` without `--network`: an outbound network of its own when
/// slirp4netns is installed (BuildKit's default), else loopback only; with the pool the
/// build's runs share such networks from, one at a time each (when running as root).
fn default_network() -> (Network, Option<NetPool>) {
    let slirp = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("slirp4netns"))
            .find(|p| p.is_file())
    });
    match slirp {
        Some(path) => (Network::Sandbox, NetPool::new(path)),
        None => (Network::None, None),
    }
}

/// Builds `req.graph`'s target and stores it as an image.
pub async fn build(req: BuildRequest) -> Result<BuildReport, BuildError> {
    let root = req.store.root().to_path_buf();
    let store_err = |path: PathBuf| {
        move |e: Box<dyn std::error::Error + Send + Sync>| BuildError::Store { path, source: e }
    };
    let snapshotter = Arc::new(
        unpack::open_snapshotter(&root).map_err(|e| store_err(root.clone())(Box::new(e)))?,
    );
    // Prune must not take layers this build looks up or stands on: hold the snapshot
    // store's GC lock (shared) until the build is over.
    let _hold =
        unpack::hold_snapshots(&snapshotter).map_err(|e| store_err(root.clone())(Box::new(e)))?;
    let meta_dir = root.join(CONTEXT_CACHE_DIR);
    std::fs::create_dir_all(&meta_dir).map_err(|e| store_err(meta_dir.clone())(Box::new(e)))?;
    let metacache =
        Arc::new(MetaCache::load(&meta_dir).map_err(|e| store_err(meta_dir.clone())(Box::new(e)))?);
    let cache_mounts = root.join(CACHE_MOUNTS_DIR);
    std::fs::create_dir_all(&cache_mounts)
        .map_err(|e| store_err(cache_mounts.clone())(Box::new(e)))?;

    let dag = crate::load::load_graph(&req.graph).map_err(BuildError::Graph)?;
    let target = req.graph.target().cloned().ok_or(BuildError::NoTarget)?;
    let images = ImageStore::new(req.store.clone());
    let bypass = Arc::new(explainer::Bypass::new(
        req.no_cache,
        req.no_cache_filter.clone(),
    ));
    let explainer = match req.explain.clone() {
        Some(opts) => Some(Arc::new(
            explainer::Explainer::load(
                opts,
                req.store.meta().clone(),
                req.graph.vertices(),
                ops::op_bytes,
            )
            .map_err(|e| BuildError::Cache(Box::new(e)))?,
        )),
        None => None,
    };
    let cache_from = (!req.cache_from.is_empty()).then(|| {
        Arc::new(cache_from::CacheFrom::plan(
            &req.graph,
            &req.config,
            req.cache_from.clone(),
            images.clone(),
            snapshotter.clone(),
            req.source_date_epoch,
        ))
    });
    let (default_network, netpool) = default_network();
    let env = Arc::new(ops::Env {
        vertices: req
            .graph
            .vertices()
            .iter()
            .map(|v| (v.digest.clone(), v.clone()))
            .collect(),
        images: images.clone(),
        snapshotter: snapshotter.clone(),
        sandbox: std::sync::Mutex::new(ops::SandboxSlot::Pending(req.helper)),
        client: req.client,
        context_root: req.context.clone(),
        metacache: metacache.clone(),
        default_network,
        netpool,
        cache_mounts,
        secrets: req.secrets,
        ssh_agents: req.ssh_agents,
        counters: ops::Counters::default(),
        bypass: bypass.clone(),
        cache_from: cache_from.clone(),
        explainer: explainer.clone(),
        progress: ops::Progress(req.progress.clone()),
    });
    let mut cache = StoreCache::new(req.store.meta().clone(), snapshotter.clone(), !req.no_cache)
        .with_bypass(bypass);
    if let Some(c) = &cache_from {
        cache = cache.with_cache_from(c.clone());
    }
    let cache = Arc::new(cache);
    let solver = Solver::new(ops::OpExecutor { env: env.clone() })
        .with_cache(cache.clone())
        .with_progress(req.progress)
        .with_jobs(req.jobs)
        .with_wait_jobs(req.run_jobs)
        .with_cancel_token(req.cancel.clone());
    let solved = solver.solve(&dag, std::slice::from_ref(&target)).await;
    // The keys of a complete build become the record the next `--explain` compares with.
    if solved.is_ok()
        && let Some(x) = &explainer
    {
        let (puts, removals) = x.finish(req.graph.vertices());
        cache.stage_writes(puts, removals);
    }
    // Whatever happened, what finished and the checksums learnt so far save work next
    // time.
    let flushed = {
        let cache = cache.clone();
        tokio::task::spawn_blocking(move || cache.flush()).await
    };
    // Pruning stats every remembered file again: only worth it when this build hashed
    // something (files changed); until then stale entries only cost a little space.
    if metacache.stats().files_hashed > 0 {
        metacache.prune_stale();
    }
    let _ = metacache.save_if_changed(&meta_dir);
    let solved = solved.map_err(|e| match e {
        SolveError::Vertex { key, source } => BuildError::Step {
            description: describe(&req.graph, &key),
            vertex: key,
            source,
        },
        SolveError::Cache { source, .. } => BuildError::Cache(source),
        SolveError::Panicked { key } => BuildError::Panicked {
            description: describe(&req.graph, &key),
        },
        SolveError::Dag(d) => BuildError::Graph(d),
        SolveError::Cancelled => BuildError::Cancelled,
    })?;
    flushed
        .map_err(|_| BuildError::Cancelled)?
        .map_err(|e| BuildError::Cache(Box::new(e)))?;
    if req.cancel.is_cancelled() {
        return Err(BuildError::Cancelled);
    }
    let fs = solved
        .outputs
        .get(&target)
        .cloned()
        .ok_or(BuildError::NoTarget)?;
    let layers = fs
        .as_layers()
        .ok_or(BuildError::Step {
            description: describe(&req.graph, &target),
            vertex: target.clone(),
            source: StepError::ContextAsLayers,
        })?
        .to_vec();
    let opts = ExportOptions {
        compression: req.compression,
        source_date_epoch: req.source_date_epoch,
        tags: req.tags,
    };
    let config = req.config;
    let cancel = req.cancel.clone();
    let snap = snapshotter.clone();
    let exported = tokio::task::spawn_blocking(move || {
        export::export(&images, &snap, &layers, &config, &opts, &cancel)
    })
    .await
    .map_err(|_| BuildError::Cancelled)?
    .map_err(|e| match e {
        ExportError::Cancelled => BuildError::Cancelled,
        e => BuildError::Export(e),
    })?;
    let stats = metacache.stats();
    Ok(BuildReport {
        image_id: exported.id.as_str().to_owned(),
        manifest: exported.manifest.as_str().to_owned(),
        tags: exported.tags,
        executed: solved.executed,
        cached: solved.cached,
        run_executed: env.counters.run_executed.load(Ordering::Relaxed),
        file_executed: env.counters.file_executed.load(Ordering::Relaxed),
        context_bytes_read: stats.bytes_read,
        context_files_hashed: stats.files_hashed,
        context_cache_hits: stats.cache_hits,
        layers_exported: exported.layers_computed,
        cache_from_hits: cache.cache_from_hits(),
        explain: explainer
            .as_ref()
            .filter(|x| x.enabled())
            .map(|x| ExplainReport {
                earlier_build: x.has_baseline(),
                misses: x.misses(),
            }),
    })
}

fn describe(graph: &Graph, d: &Digest) -> String {
    graph
        .vertex(d)
        .map(|v| v.meta.description.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| d.short().to_owned())
}
