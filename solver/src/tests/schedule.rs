//! Execution: once per key, only what is needed, in dependency order, concurrently up to
//! `jobs`.

use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::time::timeout;

use super::toy::{HANG_GUARD, Toy, ToyExec, assert_dependency_order, dag, expected, solver};
use crate::{Dag, Event, LogStream, Recorder, SolveError, Solver};

fn diamond() -> Dag<&'static str, Toy> {
    dag([
        ("a", Toy::Sum(1), &[]),
        ("b", Toy::Sum(2), &["a"]),
        ("c", Toy::Sum(3), &["a"]),
        ("d", Toy::Sum(4), &["b", "c"]),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn diamond_runs_every_vertex_once_in_order() {
    let dag = diamond();
    let recorder = Arc::new(Recorder::new());
    let solver = solver(4).with_progress(recorder.clone());
    let solved = solver.solve(&dag, &["d"]).await.unwrap();

    let runs = solver.executor().runs();
    assert_eq!(
        runs.into_iter().collect::<Vec<_>>(),
        [("a", 1), ("b", 1), ("c", 1), ("d", 1)]
    );
    assert_dependency_order(&dag, &solver.executor().log());
    assert_eq!(solved.outputs.len(), 1);
    assert_eq!(solved.outputs["d"], expected(&dag, &"d"));
    assert_eq!((solved.executed, solved.cached), (4, 0));

    let events = recorder.events();
    for k in ["a", "b", "c", "d"] {
        let mine: Vec<_> = events.iter().filter(|e| *e.key() == k).collect();
        assert_eq!(mine.len(), 3, "{k}: {mine:?}");
        assert_eq!(*mine[0], Event::Started(k));
        assert_eq!(
            *mine[1],
            Event::Log(k, LogStream::Stdout, format!("{k}\n").into_bytes())
        );
        assert!(matches!(mine[2], Event::Done(key, _) if *key == k));
    }
}

#[tokio::test]
async fn identical_vertices_run_once_across_outputs() {
    let mut b = Dag::builder();
    b.add("base", Toy::Sum(1), []).unwrap();
    b.add("x", Toy::Sum(2), ["base"]).unwrap();
    b.add("y", Toy::Sum(3), ["base", "base"]).unwrap();
    // The same vertex reached again (as from a second stage): one vertex.
    b.add("base", Toy::Sum(1), []).unwrap();
    let dag = b.build().unwrap();
    assert_eq!(dag.len(), 3);

    let solver = solver(2);
    let solved = solver.solve(&dag, &["x", "y", "x"]).await.unwrap();
    assert_eq!(solver.executor().runs()["base"], 1);
    assert_eq!(solved.executed, 3);
    assert_eq!(solved.outputs["x"], expected(&dag, &"x"));
    assert_eq!(solved.outputs["y"], expected(&dag, &"y"));
    // The duplicated input is passed twice, in order.
    assert_eq!(expected(&dag, &"y"), (3 * 31 + 1) * 31 + 1);
}

#[tokio::test]
async fn only_vertices_the_outputs_reach_run() {
    let dag = dag([
        ("a", Toy::Sum(1), &[]),
        ("b", Toy::Sum(2), &["a"]),
        ("other", Toy::Fail, &[]),
        ("after", Toy::Sum(3), &["b", "other"]),
    ]);
    let solver = solver(2);
    let solved = solver.solve(&dag, &["b"]).await.unwrap();
    let runs = solver.executor().runs();
    assert_eq!(runs.keys().copied().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(solved.outputs.keys().copied().collect::<Vec<_>>(), ["b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_vertices_run_concurrently() {
    // Each side waits for the other at the barrier: run one after the other, this hangs.
    let barrier = Arc::new(Barrier::new(2));
    let dag = dag([
        ("left", Toy::Barrier(barrier.clone()), &[]),
        ("right", Toy::Barrier(barrier), &[]),
        ("join", Toy::Sum(0), &["left", "right"]),
    ]);
    let solver = solver(2);
    let solved = timeout(HANG_GUARD, solver.solve(&dag, &["join"]))
        .await
        .expect("independent vertices did not run concurrently")
        .unwrap();
    assert_eq!(solved.executed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_job_serialises() {
    let mut b = Dag::builder();
    let keys: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    for k in &keys {
        b.add(k.clone(), Toy::Track, []).unwrap();
    }
    let dag = b.build().unwrap();
    let solver: Solver<String, _> = Solver::new(ToyExec::new()).with_jobs(1);
    let solved = solver.solve(&dag, &keys).await.unwrap();
    assert_eq!(solved.executed, 12);
    assert_eq!(solver.executor().max_in_flight(), 1);
    assert!(solver.executor().runs().values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_vertices_run_beyond_the_job_limit() {
    // Four waiting vertices meet at a barrier of four: with only the two compute permits
    // this hangs; with a pool of their own they all run at once.
    let barrier = Arc::new(Barrier::new(4));
    let dag = dag([
        ("w1", Toy::WaitBarrier(barrier.clone()), &[]),
        ("w2", Toy::WaitBarrier(barrier.clone()), &[]),
        ("w3", Toy::WaitBarrier(barrier.clone()), &[]),
        ("w4", Toy::WaitBarrier(barrier), &[]),
        ("join", Toy::Sum(0), &["w1", "w2", "w3", "w4"]),
    ]);
    let solver = solver(2).with_wait_jobs(Some(4));
    let solved = timeout(HANG_GUARD, solver.solve(&dag, &["join"]))
        .await
        .expect("waiting vertices did not run concurrently")
        .unwrap();
    assert_eq!(solved.executed, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compute_vertices_keep_their_limit_beside_waiting_ones() {
    let mut b = Dag::builder();
    let mut keys = Vec::new();
    for i in 0..12 {
        keys.push(format!("cpu{i}"));
        b.add(format!("cpu{i}"), Toy::Track, []).unwrap();
        keys.push(format!("wait{i}"));
        b.add(format!("wait{i}"), Toy::WaitTrack, []).unwrap();
    }
    let dag = b.build().unwrap();
    let solver: Solver<String, _> = Solver::new(ToyExec::new())
        .with_jobs(2)
        .with_wait_jobs(Some(3));
    assert_eq!(solver.wait_jobs(), Some(3));
    let solved = solver.solve(&dag, &keys).await.unwrap();
    assert_eq!(solved.executed, 24);
    assert!(solver.executor().max_in_flight() <= 2);
    assert!(solver.executor().max_wait_in_flight() <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_pool_of_their_own_waiting_vertices_share_the_jobs() {
    let mut b = Dag::builder();
    let mut keys = Vec::new();
    for i in 0..6 {
        keys.push(format!("cpu{i}"));
        b.add(format!("cpu{i}"), Toy::Track, []).unwrap();
        keys.push(format!("wait{i}"));
        b.add(format!("wait{i}"), Toy::WaitTrack, []).unwrap();
    }
    let dag = b.build().unwrap();
    let solver: Solver<String, _> = Solver::new(ToyExec::new()).with_jobs(1);
    assert_eq!(solver.wait_jobs(), None);
    let solved = solver.solve(&dag, &keys).await.unwrap();
    assert_eq!(solved.executed, 12);
    // One permit for both kinds: never two at once, of either kind or across kinds.
    assert_eq!(solver.executor().max_any_in_flight(), 1);
}

#[tokio::test]
async fn zero_jobs_means_one() {
    assert_eq!(solver::<&str>(0).jobs(), 1);
    assert!(crate::default_jobs() >= 1);
}

#[tokio::test]
async fn panicking_executor_is_reported_with_its_vertex() {
    let dag = dag([("a", Toy::Sum(1), &[]), ("boom", Toy::Panic, &["a"])]);
    let err = solver(1).solve(&dag, &["boom"]).await.unwrap_err();
    assert!(
        matches!(err, SolveError::Panicked { key: "boom" }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "vertex boom panicked");
}

#[tokio::test]
async fn executors_can_log_from_the_rayon_pool() {
    let dag = dag([("a", Toy::Sum(1), &[]), ("heavy", Toy::Compute(2), &["a"])]);
    let recorder = Arc::new(Recorder::new());
    let solver = solver(1).with_progress(recorder.clone());
    let solved = solver.solve(&dag, &["heavy"]).await.unwrap();
    assert_eq!(solved.outputs["heavy"], expected(&dag, &"heavy"));
    assert!(recorder.events().contains(&Event::Log(
        "heavy",
        LogStream::Stderr,
        b"computing".to_vec()
    )));
}
