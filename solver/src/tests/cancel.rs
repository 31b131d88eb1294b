//! Fail fast and external cancellation.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::timeout;

use super::toy::{HANG_GUARD, Phase, Toy, ToyExec, dag};
use crate::{CancelToken, Event, MemoryCache, Recorder, SolveError, Solver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_cancels_siblings_and_dependents_never_run() {
    let sibling_started = Arc::new(Notify::new());
    let dag = dag([
        ("fails", Toy::FailAfter(sibling_started.clone()), &[]),
        ("sibling", Toy::AwaitCancel(sibling_started), &[]),
        ("after_fail", Toy::Sum(1), &["fails"]),
        ("after_sibling", Toy::Sum(1), &["sibling"]),
        ("join", Toy::Sum(1), &["after_fail", "after_sibling"]),
    ]);
    let recorder = Arc::new(Recorder::new());
    let solver = Solver::new(ToyExec::new())
        .with_jobs(2)
        .with_progress(recorder.clone());
    let err = timeout(HANG_GUARD, solver.solve(&dag, &["join"]))
        .await
        .expect("solve hung")
        .unwrap_err();

    // The first failure is the one reported, with its vertex and cause.
    match &err {
        SolveError::Vertex { key, source } => {
            assert_eq!(*key, "fails");
            assert_eq!(source.to_string(), "fails failed");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(err.key(), Some(&"fails"));
    assert_eq!(err.to_string(), "vertex fails failed");
    // The running sibling observed the cancellation.
    assert_eq!(solver.executor().saw_cancel(), ["sibling"]);
    let runs = solver.executor().runs();
    assert_eq!(
        runs.keys().copied().collect::<Vec<_>>(),
        ["fails", "sibling"]
    );
    // Both running vertices finished before the solve returned.
    let finished = solver.executor().log();
    assert_eq!(
        finished.iter().filter(|(_, p)| *p == Phase::Finish).count(),
        2
    );
    let events = recorder.events();
    assert!(events.contains(&Event::Failed("fails", "fails failed".into())));
    assert!(events.contains(&Event::Failed("sibling", "sibling cancelled".into())));
    assert!(!events.iter().any(|e| matches!(e, Event::Done(..))));
}

#[tokio::test]
async fn nothing_starts_after_a_failure() {
    // One job, many ready vertices: whichever got the permit before the failure ran;
    // none may start after it.
    let mut b = crate::Dag::builder();
    b.add("fails".to_string(), Toy::Fail, []).unwrap();
    let mut keys = vec!["fails".to_string()];
    for i in 0..10 {
        let k = format!("v{i}");
        b.add(k.clone(), Toy::Sum(i), []).unwrap();
        keys.push(k);
    }
    b.add("dependent".to_string(), Toy::Sum(0), ["fails".to_string()])
        .unwrap();
    keys.push("dependent".to_string());
    let dag = b.build().unwrap();
    let recorder = Arc::new(Recorder::new());
    let solver = Solver::new(ToyExec::new())
        .with_jobs(1)
        .with_progress(recorder.clone());
    let err = solver.solve(&dag, &keys).await.unwrap_err();
    assert_eq!(err.key().map(String::as_str), Some("fails"));

    let events = recorder.events();
    let failed_at = events
        .iter()
        .position(|e| matches!(e, Event::Failed(k, _) if k == "fails"))
        .unwrap();
    assert!(
        !events[failed_at..]
            .iter()
            .any(|e| matches!(e, Event::Started(_))),
        "{events:?}"
    );
    assert!(!solver.executor().runs().contains_key("dependent"));
    // Tasks are started in insertion order and the permit queue is fair, so on this
    // single-threaded runtime the failure comes first and nothing else runs at all.
    assert_eq!(solver.executor().runs().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_cancel_returns_cancelled_and_keeps_finished_results() {
    // String keys: the solve future is spawned, which needs keys without lifetimes.
    let started = Arc::new(Notify::new());
    let mut b = crate::Dag::builder();
    b.add("base".to_string(), Toy::Sum(7), []).unwrap();
    b.add(
        "slow".to_string(),
        Toy::AwaitCancel(started.clone()),
        ["base".to_string()],
    )
    .unwrap();
    let dag = b.build().unwrap();
    let cache = Arc::new(MemoryCache::new());
    let token = CancelToken::new();
    let solver = Arc::new(
        Solver::new(ToyExec::new())
            .with_cache(cache.clone())
            .with_cancel_token(token.clone()),
    );
    let run = {
        let solver = solver.clone();
        tokio::spawn(async move { solver.solve(&dag, &["slow".to_string()]).await.map(|_| ()) })
    };
    started.notified().await;
    token.cancel();
    let err = timeout(HANG_GUARD, run)
        .await
        .expect("solve hung")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, SolveError::Cancelled), "{err:?}");
    assert_eq!(err.to_string(), "build cancelled");
    assert_eq!(solver.executor().saw_cancel(), ["slow".to_string()]);

    // What finished before the cancellation is in the cache, and the next build
    // (a new token, "slow" now succeeding) reuses it.
    assert_eq!(cache.len(), 1);
    let mut b = crate::Dag::builder();
    b.add("base".to_string(), Toy::Sum(7), []).unwrap();
    b.add("slow".to_string(), Toy::Sum(1), ["base".to_string()])
        .unwrap();
    let dag = b.build().unwrap();
    let again = Solver::new(ToyExec::new()).with_cache(cache.clone());
    let solved = again.solve(&dag, &["slow".to_string()]).await.unwrap();
    assert_eq!((solved.executed, solved.cached), (1, 1));
    assert_eq!(
        again.executor().runs().into_keys().collect::<Vec<_>>(),
        ["slow"]
    );
}

#[tokio::test]
async fn cancelled_before_the_solve_runs_nothing() {
    let dag = dag([("a", Toy::Sum(1), &[])]);
    let token = CancelToken::new();
    token.cancel();
    let solver = Solver::new(ToyExec::new()).with_cancel_token(token);
    assert!(matches!(
        solver.solve(&dag, &["a"]).await,
        Err(SolveError::Cancelled)
    ));
    assert!(solver.executor().runs().is_empty());
    assert!(solver.cancel_token().is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_does_not_cancel_the_callers_token() {
    let dag = dag([("a", Toy::Fail, &[])]);
    let solver = Solver::new(ToyExec::new());
    assert!(solver.solve(&dag, &["a"]).await.is_err());
    assert!(!solver.cancel_token().is_cancelled());
    // The solver stays usable.
    let ok = super::toy::dag([("b", Toy::Sum(2), &[])]);
    assert_eq!(solver.solve(&ok, &["b"]).await.unwrap().outputs["b"], 2);
}
