//! A large random DAG: every needed vertex runs exactly once, after its inputs, with the
//! right inputs.

use std::collections::BTreeSet;

use tokio::time::timeout;

use super::toy::{HANG_GUARD, Toy, ToyExec, assert_dependency_order, expected};
use crate::{Dag, Solver};

/// A 64-bit linear congruential generator (Knuth's MMIX constants): deterministic and
/// good enough to shape graphs.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn random_dag(seed: u64, size: u32) -> Dag<u32, Toy> {
    let mut rng = Lcg(seed);
    let mut vertices: Vec<(u32, Vec<u32>)> = (0..size)
        .map(|i| {
            let fan_in = if i == 0 { 0 } else { rng.below(5) };
            let inputs = (0..fan_in).map(|_| rng.below(i as usize) as u32).collect();
            (i, inputs)
        })
        .collect();
    // Insert in a shuffled order, so users often come before their inputs.
    for i in (1..vertices.len()).rev() {
        let j = rng.below(i + 1);
        vertices.swap(i, j);
    }
    let mut b = Dag::builder();
    for (k, inputs) in vertices {
        b.add(k, Toy::Sum(u64::from(k)), inputs).unwrap();
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_dag_runs_each_needed_vertex_once_in_order() {
    for seed in [1, 2, 3] {
        let dag = random_dag(seed, 500);
        // The last 40 vertices as outputs: most of the graph, not all of it.
        let outputs: Vec<u32> = (460..500).collect();
        let mut needed = BTreeSet::new();
        let mut todo = outputs.clone();
        while let Some(k) = todo.pop() {
            if needed.insert(k) {
                todo.extend(dag.inputs(&k).unwrap().into_iter().copied());
            }
        }

        let solver = Solver::new(ToyExec::new()).with_jobs(4);
        let solved = timeout(HANG_GUARD, solver.solve(&dag, &outputs))
            .await
            .expect("solve hung")
            .unwrap();
        let runs = solver.executor().runs();
        assert_eq!(runs.keys().copied().collect::<BTreeSet<_>>(), needed);
        assert!(runs.values().all(|&n| n == 1));
        assert_eq!(solved.executed, needed.len());
        assert!(needed.len() < 500, "seed {seed}: every vertex needed");
        assert_dependency_order(&dag, &solver.executor().log());
        for k in &outputs {
            assert_eq!(
                solved.outputs[k],
                expected(&dag, k),
                "seed {seed}, vertex {k}"
            );
        }
    }
}
