//! Cache keys and cache hits.

use std::sync::Arc;

use super::toy::{Toy, ToyExec, dag};
use crate::{Cache, CacheKey, Event, MemoryCache, Recorder, Solver};

fn diamond(leaf: u64) -> crate::Dag<&'static str, Toy> {
    dag([
        ("a", Toy::Sum(leaf), &[]),
        ("b", Toy::Sum(2), &["a"]),
        ("c", Toy::Sum(3), &["a"]),
        ("d", Toy::Sum(4), &["b", "c"]),
        ("lone", Toy::Sum(5), &[]),
        ("e", Toy::Sum(6), &["lone"]),
    ])
}

const ALL: [&str; 2] = ["d", "e"];

#[tokio::test]
async fn cache_hits_skip_execution_and_are_reported() {
    let dag = diamond(1);
    let cache = Arc::new(MemoryCache::new());
    let first = Solver::new(ToyExec::new()).with_cache(cache.clone());
    let solved = first.solve(&dag, &ALL).await.unwrap();
    assert_eq!((solved.executed, solved.cached), (6, 0));
    assert_eq!(cache.len(), 6);
    for (k, key) in &solved.cache_keys {
        assert!(cache.contains(key), "{k} not stored");
    }

    let recorder = Arc::new(Recorder::new());
    let second = Solver::new(ToyExec::new())
        .with_cache(cache.clone())
        .with_progress(recorder.clone());
    let again = second.solve(&dag, &ALL).await.unwrap();
    assert_eq!((again.executed, again.cached), (0, 6));
    assert!(second.executor().runs().is_empty());
    assert_eq!(again.outputs, solved.outputs);
    let events = recorder.events();
    assert_eq!(events.len(), 6);
    assert!(events.iter().all(|e| matches!(e, Event::Cached(_))));
}

#[tokio::test]
async fn changing_a_leaf_changes_exactly_its_dependents_keys() {
    let solver = Solver::new(ToyExec::new());
    let before = solver.cache_keys(&diamond(1), &ALL).await.unwrap();
    let after = solver.cache_keys(&diamond(100), &ALL).await.unwrap();
    assert_eq!(before.len(), 6);
    let changed: Vec<_> = before
        .iter()
        .filter(|(k, key)| after[*k] != **key)
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(changed, ["a", "b", "c", "d"]);
    // Nothing was executed to compute them, and a solve computes the same keys.
    assert!(solver.executor().runs().is_empty());
    let solved = solver.solve(&diamond(1), &ALL).await.unwrap();
    assert_eq!(solved.cache_keys, before);
    // The keys are the derivation over the inputs' keys, in input order.
    let a = CacheKey::derive(&[b"sum", &1u64.to_be_bytes()], &[]);
    assert_eq!(before["a"], a);
    let b = CacheKey::derive(&[b"sum", &2u64.to_be_bytes()], &[a]);
    assert_eq!(before["b"], b);
}

#[tokio::test]
async fn second_build_after_a_leaf_change_reruns_only_dependents() {
    let cache = Arc::new(MemoryCache::new());
    Solver::new(ToyExec::new())
        .with_cache(cache.clone())
        .solve(&diamond(1), &ALL)
        .await
        .unwrap();
    let solver = Solver::new(ToyExec::new()).with_cache(cache.clone());
    let solved = solver.solve(&diamond(2), &ALL).await.unwrap();
    let runs = solver.executor().runs();
    assert_eq!(
        runs.keys().copied().collect::<Vec<_>>(),
        ["a", "b", "c", "d"]
    );
    assert_eq!((solved.executed, solved.cached), (4, 2));
}

#[tokio::test]
async fn a_vertex_without_key_reruns_with_its_dependents() {
    let dag = dag([
        ("v", Toy::Volatile(1), &[]),
        ("after", Toy::Sum(2), &["v"]),
        ("other", Toy::Sum(3), &[]),
    ]);
    let cache = Arc::new(MemoryCache::new());
    let outputs = ["after", "other"];
    let first = Solver::new(ToyExec::new()).with_cache(cache.clone());
    let solved = first.solve(&dag, &outputs).await.unwrap();
    assert_eq!(
        solved.cache_keys.keys().copied().collect::<Vec<_>>(),
        ["other"]
    );
    let second = Solver::new(ToyExec::new()).with_cache(cache.clone());
    let again = second.solve(&dag, &outputs).await.unwrap();
    assert_eq!(
        second.executor().runs().keys().copied().collect::<Vec<_>>(),
        ["after", "v"]
    );
    assert_eq!((again.executed, again.cached), (2, 1));
}

/// A cache whose lookups fail.
#[derive(Debug)]
struct Broken;

#[derive(Debug, thiserror::Error)]
#[error("disk on fire")]
struct BrokenError;

impl Cache<u64> for Broken {
    type Error = BrokenError;
    async fn get(&self, _: &CacheKey) -> Result<Option<u64>, BrokenError> {
        Err(BrokenError)
    }
    async fn put(&self, _: &CacheKey, _: &u64) -> Result<(), BrokenError> {
        Err(BrokenError)
    }
}

#[tokio::test]
async fn cache_errors_fail_the_solve_with_the_vertex() {
    let dag = dag([("a", Toy::Sum(1), &[])]);
    let solver = Solver::new(ToyExec::new()).with_cache(Arc::new(Broken));
    let err = solver.solve(&dag, &["a"]).await.unwrap_err();
    assert_eq!(err.key(), Some(&"a"));
    assert_eq!(err.to_string(), "cache lookup or store for vertex a failed");
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.to_string(), "disk on fire");
    assert!(solver.executor().runs().is_empty());
}
