//! The build scheduler: loads the build graph into a DAG, computes cache keys, and runs
//! every vertex once (memoised by digest) with bounded concurrency, reporting progress.
//!
//! Empty until the `rbuild build` issue: the front end and graph vocabulary come first.

pub mod context;
