//! The build scheduler: loads the build graph into a DAG, computes cache keys, and runs
//! every vertex once (memoised by key) with bounded concurrency, reporting progress.
//!
//! The core is generic: a [`Dag`] of vertices with any key and op type, an [`Executor`]
//! that runs one vertex, a [`Cache`] consulted first, a [`ProgressSink`] that hears about
//! every vertex, and a [`CancelToken`] for Ctrl-C. [`load_graph`] turns an
//! [`rbuild_graph::Graph`] into such a DAG.

mod blocking;
mod cache;
mod cancel;
mod dag;
mod load;
mod progress;
mod scheduler;

pub use blocking::{BlockingError, blocking, compute};
pub use cache::{CACHE_KEY_VERSION, Cache, CacheKey, MemoryCache, NoCache};
pub use cancel::CancelToken;
pub use dag::{Dag, DagBuilder, DagError, VertexKey};
pub use load::{load_graph, load_graph_with};
pub use progress::{Event, LogStream, NoProgress, ProgressSink, Recorder};
pub use scheduler::{ExecContext, Executor, SolveError, Solved, Solver, default_jobs};

#[cfg(test)]
mod tests;
