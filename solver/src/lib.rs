//! The build scheduler: loads the build graph into a DAG, computes cache keys, and runs
//! every vertex once (memoised by key) with bounded concurrency, reporting progress.
//!
//! The core is generic: a [`Dag`] of vertices with any key and op type, an [`Executor`]
//! that runs one vertex, a [`Cache`] consulted first, a [`ProgressSink`] that hears about
//! every vertex, and a [`CancelToken`] for Ctrl-C. [`load_graph`] turns an
//! [`rbuild_graph::Graph`] into such a DAG.
//!
//! ```
//! use std::convert::Infallible;
//! use rbuild_solver::{CacheKey, Dag, ExecContext, Executor, Solver};
//!
//! /// Each vertex outputs its number plus the sum of its inputs.
//! struct Add;
//!
//! impl Executor<&'static str, u32> for Add {
//!     type Output = u32;
//!     type Error = Infallible;
//!
//!     async fn execute(
//!         &self,
//!         _: &&'static str,
//!         op: &u32,
//!         inputs: Vec<u32>,
//!         _: ExecContext<&'static str>,
//!     ) -> Result<u32, Infallible> {
//!         Ok(op + inputs.iter().sum::<u32>())
//!     }
//!
//!     async fn cache_key(
//!         &self,
//!         _: &&'static str,
//!         op: &u32,
//!         inputs: &[CacheKey],
//!     ) -> Result<Option<CacheKey>, Infallible> {
//!         Ok(Some(CacheKey::derive(&[&op.to_be_bytes()], inputs)))
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut dag = Dag::builder();
//! dag.add("a", 1, [])?.add("b", 10, ["a"])?.add("c", 100, ["a", "b"])?;
//! let dag = dag.build()?;
//! let solved = Solver::new(Add).with_jobs(4).solve(&dag, &["c"]).await?;
//! assert_eq!(solved.outputs["c"], 112);
//! assert_eq!(solved.executed, 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod blocking;
pub mod build;
mod cache;
mod cancel;
pub mod context;
mod dag;
pub mod fileop;
mod load;
mod progress;
mod scheduler;

pub use blocking::{BlockingError, blocking, compute};
pub use cache::{CACHE_KEY_VERSION, Cache, CacheKey, MemoryCache, NoCache};
pub use cancel::CancelToken;
pub use dag::{Dag, DagBuilder, DagError, VertexKey};
pub use load::{load_graph, load_graph_with};
pub use progress::{Event, LogStream, NoProgress, ProgressSink, Recorder, Task, TaskId, TaskSink};
pub use scheduler::{ExecContext, Executor, JobClass, SolveError, Solved, Solver, default_jobs};

#[cfg(test)]
mod tests;
