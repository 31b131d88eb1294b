//! The scheduler: runs the vertices a solve needs, each once, as soon as its inputs are
//! done, at most `jobs` at a time, consulting the cache first.
//!
//! Vertices come in two classes ([`JobClass`], reported by the executor per op): work
//! that needs a core (hashing, tar, compression) and work that mostly waits on something
//! else (a sandboxed process, a `sleep`). A waiting vertex holds no core, so when the
//! solver is given a separate limit for them ([`Solver::with_wait_jobs`]) they take
//! permits from that pool instead, and four sleeping steps run at once on two cores.
//! Without one, every vertex shares the `jobs` pool.
//!
//! Every vertex becomes a tokio task when its last input finishes. The task waits for a
//! permit of its class's semaphore, computes the vertex's cache key from its inputs' keys,
//! returns a cached result if there is one, and otherwise executes the op and stores the
//! result. The first failure cancels the solve: tasks still waiting for a permit give
//! up, running executors see [`ExecContext::is_cancelled`], no dependent is started, and
//! the solve returns that first error once the running tasks have wound down. External
//! cancellation ([`Solver::cancel_token`]) works the same way and returns
//! [`SolveError::Cancelled`]. Results are put into the cache as soon as each vertex
//! finishes, so whatever completed before a failure or Ctrl-C is reused next time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::cache::{Cache, CacheKey, NoCache};
use crate::cancel::CancelToken;
use crate::dag::{Dag, DagError, VertexKey};
use crate::progress::{LogStream, NoProgress, ProgressSink};

/// What a vertex mostly does while it runs, which decides the pool it takes its permit
/// from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobClass {
    /// Keeps a core busy: bounded by [`Solver::with_jobs`].
    #[default]
    Compute,
    /// Mostly waits (on another process, a timer, the network): bounded by
    /// [`Solver::with_wait_jobs`] when that is set, else by `jobs` as well.
    Wait,
}

/// Executes single vertices. The scheduler never looks inside `O`.
pub trait Executor<K, O>: Send + Sync + 'static {
    /// A vertex's result, handed to its users as input. Keep it cheap to clone (a
    /// reference to a snapshot, not the snapshot).
    type Output: Clone + Send + Sync + 'static;
    type Error: std::error::Error + Send + Sync + 'static;

    /// Runs `op` on `inputs` (the outputs of the vertex's inputs, in op order). Must
    /// return promptly, with an error, once `ctx` is cancelled: kill what it started and
    /// leave nothing half-visible. Runs on an async worker thread: hand CPU-heavy or
    /// blocking work to [`crate::compute`] or [`crate::blocking`].
    fn execute(
        &self,
        key: &K,
        op: &O,
        inputs: Vec<Self::Output>,
        ctx: ExecContext<K>,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;

    /// The cache key of `op` given its inputs' cache keys (in op order), or `None` if the
    /// result must not be cached. Usually [`CacheKey::derive`] over a canonical encoding
    /// of the op. Not called, and `None`, when an input has no key. The default caches
    /// nothing.
    fn cache_key(
        &self,
        key: &K,
        op: &O,
        inputs: &[CacheKey],
    ) -> impl Future<Output = Result<Option<CacheKey>, Self::Error>> + Send {
        let _ = (key, op, inputs);
        async { Ok(None) }
    }

    /// The class of `op`, which decides the pool its permit comes from. The default is
    /// [`JobClass::Compute`].
    fn class(&self, key: &K, op: &O) -> JobClass {
        let _ = (key, op);
        JobClass::Compute
    }
}

/// What a running vertex gets besides its inputs: the cancellation signal and a way to
/// report its output. Cheap to clone, e.g. into a blocking closure.
#[derive(Clone)]
pub struct ExecContext<K> {
    key: K,
    cancel: CancelToken,
    progress: Arc<dyn ProgressSink<K>>,
}

impl<K: fmt::Debug> fmt::Debug for ExecContext<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecContext")
            .field("key", &self.key)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

impl<K> ExecContext<K> {
    pub fn key(&self) -> &K {
        &self.key
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the solve is cancelled (a failure elsewhere or the caller).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// The solve's token, to hand to blocking work that polls it.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// Reports output of the running vertex.
    pub fn log(&self, stream: LogStream, bytes: &[u8]) {
        self.progress.vertex_log(&self.key, stream, bytes);
    }

    /// Reports bytes handled so far by the running vertex (absolute, coarse: see
    /// [`ProgressSink::vertex_progress`]).
    pub fn progress(&self, current: u64, total: Option<u64>) {
        self.progress.vertex_progress(&self.key, current, total);
    }
}

/// Errors of a solve.
#[derive(Debug, thiserror::Error)]
pub enum SolveError<K: VertexKey, E: std::error::Error + 'static> {
    #[error(transparent)]
    Dag(#[from] DagError<K>),
    #[error("vertex {key} failed")]
    Vertex {
        key: K,
        #[source]
        source: E,
    },
    #[error("cache lookup or store for vertex {key} failed")]
    Cache {
        key: K,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("vertex {key} panicked")]
    Panicked { key: K },
    #[error("build cancelled")]
    Cancelled,
}

impl<K: VertexKey, E: std::error::Error + 'static> SolveError<K, E> {
    /// The vertex the error is about, if any.
    pub fn key(&self) -> Option<&K> {
        match self {
            SolveError::Vertex { key, .. }
            | SolveError::Cache { key, .. }
            | SolveError::Panicked { key } => Some(key),
            SolveError::Dag(_) | SolveError::Cancelled => None,
        }
    }
}

/// The result of a successful solve.
#[derive(Debug, Clone)]
pub struct Solved<K, T> {
    /// The result of every requested output.
    pub outputs: BTreeMap<K, T>,
    /// The cache key of every vertex the solve needed and that has one.
    pub cache_keys: BTreeMap<K, CacheKey>,
    /// How many vertices were executed.
    pub executed: usize,
    /// How many vertices came from the cache.
    pub cached: usize,
}

/// Runs DAGs with one executor, one cache and one progress sink.
pub struct Solver<K, X, C = NoCache> {
    executor: Arc<X>,
    cache: Arc<C>,
    progress: Arc<dyn ProgressSink<K>>,
    jobs: usize,
    /// A separate limit for [`JobClass::Wait`] vertices; `None`: they share `jobs`.
    wait_jobs: Option<usize>,
    cancel: CancelToken,
}

impl<K: fmt::Debug, X, C> fmt::Debug for Solver<K, X, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Solver")
            .field("jobs", &self.jobs)
            .field("wait_jobs", &self.wait_jobs)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

/// The number of cores, the default for `jobs`.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl<K: VertexKey, X> Solver<K, X, NoCache> {
    /// A solver without cache or progress, with one job per core.
    pub fn new(executor: X) -> Self {
        Solver {
            executor: Arc::new(executor),
            cache: Arc::new(NoCache),
            progress: Arc::new(NoProgress),
            jobs: default_jobs(),
            wait_jobs: None,
            cancel: CancelToken::new(),
        }
    }
}

impl<K: VertexKey, X, C> Solver<K, X, C> {
    pub fn with_cache<C2>(self, cache: Arc<C2>) -> Solver<K, X, C2> {
        Solver {
            executor: self.executor,
            cache,
            progress: self.progress,
            jobs: self.jobs,
            wait_jobs: self.wait_jobs,
            cancel: self.cancel,
        }
    }

    pub fn with_progress(mut self, progress: Arc<dyn ProgressSink<K>>) -> Self {
        self.progress = progress;
        self
    }

    /// At most `jobs` vertices run at once (0 counts as 1): every vertex, or with
    /// [`Self::with_wait_jobs`] every [`JobClass::Compute`] vertex.
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Gives [`JobClass::Wait`] vertices a pool of their own: at most `wait_jobs` of them
    /// run at once (0 counts as 1), besides the `jobs` compute vertices. `None` (the
    /// default): they share the `jobs` pool.
    pub fn with_wait_jobs(mut self, wait_jobs: Option<usize>) -> Self {
        self.wait_jobs = wait_jobs.map(|n| n.max(1));
        self
    }

    /// Uses `token` for external cancellation instead of a fresh one.
    pub fn with_cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// Cancelling this token stops every solve of this solver with
    /// [`SolveError::Cancelled`]. Clone it into a Ctrl-C handler.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    pub fn jobs(&self) -> usize {
        self.jobs
    }

    pub fn wait_jobs(&self) -> Option<usize> {
        self.wait_jobs
    }

    pub fn executor(&self) -> &Arc<X> {
        &self.executor
    }

    /// The cache keys of `outputs` and everything they depend on, without executing or
    /// consulting the cache (for `--explain` and tests). Vertices without a key are
    /// absent.
    pub async fn cache_keys<O>(
        &self,
        dag: &Dag<K, O>,
        outputs: &[K],
    ) -> Result<BTreeMap<K, CacheKey>, SolveError<K, X::Error>>
    where
        X: Executor<K, O>,
    {
        let outputs = outputs
            .iter()
            .map(|k| dag.position(k))
            .collect::<Result<Vec<_>, _>>()?;
        let (_, order) = dag.reachable(&outputs);
        let mut keys: Vec<Option<CacheKey>> = vec![None; dag.len()];
        let mut out = BTreeMap::new();
        for i in order {
            let node = &dag.nodes[i];
            let inputs: Option<Vec<CacheKey>> =
                node.inputs.iter().map(|&j| keys[j].clone()).collect();
            let Some(inputs) = inputs else { continue };
            let key = self
                .executor
                .cache_key(&node.key, &node.op, &inputs)
                .await
                .map_err(|source| SolveError::Vertex {
                    key: node.key.clone(),
                    source,
                })?;
            if let Some(k) = &key {
                out.insert(node.key.clone(), k.clone());
            }
            keys[i] = key;
        }
        Ok(out)
    }

    /// Runs whatever `outputs` need and returns their results. Stop a solve with the
    /// cancel token, not by dropping this future: dropping it aborts the running
    /// vertices at their next await point, without the chance to clean up.
    pub async fn solve<O>(
        &self,
        dag: &Dag<K, O>,
        outputs: &[K],
    ) -> Result<Solved<K, X::Output>, SolveError<K, X::Error>>
    where
        O: Send + Sync + 'static,
        X: Executor<K, O>,
        C: Cache<X::Output> + 'static,
    {
        let wanted = outputs
            .iter()
            .map(|k| dag.position(k))
            .collect::<Result<Vec<_>, _>>()?;
        if self.cancel.is_cancelled() {
            return Err(SolveError::Cancelled);
        }
        let (needed, _) = dag.reachable(&wanted);
        let mut pending: Vec<usize> = (0..dag.len())
            .map(|i| if needed[i] { dag.distinct_inputs(i) } else { 0 })
            .collect();
        let mut results: Vec<Option<X::Output>> = vec![None; dag.len()];
        let mut keys: Vec<Option<CacheKey>> = vec![None; dag.len()];

        let shared = Arc::new(Shared {
            executor: self.executor.clone(),
            cache: self.cache.clone(),
            progress: self.progress.clone(),
            permits: Arc::new(Semaphore::new(self.jobs)),
            wait_permits: self.wait_jobs.map(|n| Arc::new(Semaphore::new(n))),
            // Per solve, so that a failure here does not cancel the caller's token.
            cancel: CancelToken::new(),
        });
        let mut tasks = JoinSet::new();
        let mut task_vertex = HashMap::new();
        let spawn = |i: usize,
                     tasks: &mut JoinSet<_>,
                     task_vertex: &mut HashMap<_, usize>,
                     results: &[Option<X::Output>],
                     keys: &[Option<CacheKey>]| {
            let node = &dag.nodes[i];
            // Every input is done when a vertex is spawned, so these are all `Some`.
            let inputs = node
                .inputs
                .iter()
                .filter_map(|&j| results[j].clone())
                .collect();
            let input_keys = node.inputs.iter().map(|&j| keys[j].clone()).collect();
            let job = run_vertex(
                shared.clone(),
                node.key.clone(),
                node.op.clone(),
                inputs,
                input_keys,
            );
            let handle = tasks.spawn(job);
            task_vertex.insert(handle.id(), i);
        };
        for i in 0..dag.len() {
            if needed[i] && pending[i] == 0 {
                spawn(i, &mut tasks, &mut task_vertex, &results, &keys);
            }
        }

        let mut first_error = None;
        let mut externally_cancelled = false;
        let (mut executed, mut cached) = (0, 0);
        loop {
            let stopping = first_error.is_some() || externally_cancelled;
            tokio::select! {
                // Checked first: once the caller cancels, failures caused by the
                // cancellation must not be reported as the cause.
                biased;
                () = self.cancel.cancelled(), if !stopping => {
                    externally_cancelled = true;
                    shared.cancel.cancel();
                }
                joined = tasks.join_next_with_id() => {
                    let Some(joined) = joined else { break };
                    let (i, outcome) = match joined {
                        Ok((id, outcome)) => (task_vertex[&id], outcome),
                        // Panics are caught inside the task and tasks are never
                        // aborted, so this is a panic in a progress sink.
                        Err(e) => (task_vertex[&e.id()], Outcome::Failed(Failure::Panicked)),
                    };
                    match outcome {
                        Outcome::Done { output, cache_key, from_cache } => {
                            if from_cache { cached += 1 } else { executed += 1 }
                            results[i] = Some(output);
                            keys[i] = cache_key;
                            if first_error.is_some() || externally_cancelled {
                                continue;
                            }
                            for user in dag.users(i) {
                                if needed[user] {
                                    pending[user] -= 1;
                                    if pending[user] == 0 {
                                        spawn(user, &mut tasks, &mut task_vertex, &results, &keys);
                                    }
                                }
                            }
                        }
                        Outcome::Failed(failure) => {
                            shared.cancel.cancel();
                            if first_error.is_none() && !externally_cancelled {
                                let key = dag.nodes[i].key.clone();
                                first_error = Some(match failure {
                                    Failure::Exec(source) => SolveError::Vertex { key, source },
                                    Failure::Cache(source) => SolveError::Cache { key, source },
                                    Failure::Panicked => SolveError::Panicked { key },
                                    Failure::Cancelled => SolveError::Cancelled,
                                });
                            }
                        }
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if externally_cancelled {
            return Err(SolveError::Cancelled);
        }
        let outputs = wanted
            .iter()
            .filter_map(|&i| Some((dag.nodes[i].key.clone(), results[i].clone()?)))
            .collect();
        let cache_keys = (0..dag.len())
            .filter_map(|i| Some((dag.nodes[i].key.clone(), keys[i].clone()?)))
            .collect();
        Ok(Solved {
            outputs,
            cache_keys,
            executed,
            cached,
        })
    }
}

/// What every vertex task shares.
struct Shared<K, X, C> {
    executor: Arc<X>,
    cache: Arc<C>,
    progress: Arc<dyn ProgressSink<K>>,
    permits: Arc<Semaphore>,
    /// The pool of [`JobClass::Wait`] vertices, if they have their own.
    wait_permits: Option<Arc<Semaphore>>,
    cancel: CancelToken,
}

enum Outcome<T, E> {
    Done {
        output: T,
        cache_key: Option<CacheKey>,
        from_cache: bool,
    },
    Failed(Failure<E>),
}

enum Failure<E> {
    Exec(E),
    Cache(Box<dyn std::error::Error + Send + Sync>),
    Panicked,
    Cancelled,
}

/// One vertex, from waiting for a permit to its result.
async fn run_vertex<K, O, X, C>(
    shared: Arc<Shared<K, X, C>>,
    key: K,
    op: Arc<O>,
    inputs: Vec<X::Output>,
    input_keys: Vec<Option<CacheKey>>,
) -> Outcome<X::Output, X::Error>
where
    K: VertexKey,
    O: Send + Sync + 'static,
    X: Executor<K, O>,
    C: Cache<X::Output>,
{
    let pool = match (shared.executor.class(&key, &op), &shared.wait_permits) {
        (JobClass::Wait, Some(wait)) => wait.clone(),
        _ => shared.permits.clone(),
    };
    let permit = tokio::select! {
        biased;
        () = shared.cancel.cancelled() => return Outcome::Failed(Failure::Cancelled),
        permit = pool.acquire_owned() => permit,
    };
    // The semaphore is never closed; a closed one would mean the solve is gone.
    let Ok(_permit) = permit else {
        return Outcome::Failed(Failure::Cancelled);
    };
    // A failure may have landed while we waited: never start after it.
    if shared.cancel.is_cancelled() {
        return Outcome::Failed(Failure::Cancelled);
    }
    // Panics are caught here, not at the join, so that the solve is cancelled before
    // this task's permit is released and no waiting vertex starts after the panic.
    let outcome = CatchUnwind(Box::pin(process(&shared, &key, &op, inputs, input_keys)))
        .await
        .unwrap_or(Outcome::Failed(Failure::Panicked));
    if let Outcome::Failed(failure) = &outcome {
        let message = match failure {
            Failure::Exec(e) => e.to_string(),
            Failure::Cache(e) => format!("cache: {e}"),
            Failure::Panicked => "panicked".to_string(),
            Failure::Cancelled => "cancelled".to_string(),
        };
        shared.progress.vertex_failed(&key, &message);
        // Cancel while still holding the permit, so no waiting vertex slips in.
        shared.cancel.cancel();
    }
    outcome
}

async fn process<K, O, X, C>(
    shared: &Shared<K, X, C>,
    key: &K,
    op: &O,
    inputs: Vec<X::Output>,
    input_keys: Vec<Option<CacheKey>>,
) -> Outcome<X::Output, X::Error>
where
    K: VertexKey,
    O: Send + Sync + 'static,
    X: Executor<K, O>,
    C: Cache<X::Output>,
{
    let input_keys: Option<Vec<CacheKey>> = input_keys.into_iter().collect();
    let cache_key = match input_keys {
        Some(input_keys) => match shared.executor.cache_key(key, op, &input_keys).await {
            Ok(k) => k,
            Err(e) => return Outcome::Failed(Failure::Exec(e)),
        },
        None => None,
    };
    if let Some(ck) = &cache_key {
        match shared.cache.get(ck).await {
            Ok(Some(output)) => {
                shared.progress.vertex_cached(key);
                return Outcome::Done {
                    output,
                    cache_key,
                    from_cache: true,
                };
            }
            Ok(None) => {}
            Err(e) => return Outcome::Failed(Failure::Cache(Box::new(e))),
        }
    }
    shared.progress.vertex_started(key);
    let started = Instant::now();
    let ctx = ExecContext {
        key: key.clone(),
        cancel: shared.cancel.clone(),
        progress: shared.progress.clone(),
    };
    let output = match shared.executor.execute(key, op, inputs, ctx).await {
        Ok(output) => output,
        Err(e) => return Outcome::Failed(Failure::Exec(e)),
    };
    if let Some(ck) = &cache_key
        && let Err(e) = shared.cache.put(ck, &output).await
    {
        return Outcome::Failed(Failure::Cache(Box::new(e)));
    }
    shared.progress.vertex_done(key, started.elapsed());
    Outcome::Done {
        output,
        cache_key,
        from_cache: false,
    }
}

/// Completes with `Err(())` if polling the inner future panics.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The future is dropped right after a panic, never polled again, so no broken
        // invariant inside it can be observed.
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}
