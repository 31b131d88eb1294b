//! A toy executor: ops that add numbers, fail, panic, or wait on test-controlled
//! synchronisation points, and a log of what ran in which order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Barrier, Notify};

use crate::{
    CacheKey, Dag, ExecContext, Executor, JobClass, LogStream, NoCache, Solver, VertexKey,
};

/// A generous guard against a hanging test; never a timing assertion.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub enum Toy {
    /// Output: the number plus the sum of the inputs. Logs the key to stdout.
    Sum(u64),
    /// Like `Sum`, but without a cache key.
    Volatile(u64),
    Fail,
    Panic,
    /// Waits for every holder of the barrier, then behaves like `Sum(0)`.
    Barrier(Arc<Barrier>),
    /// Counts how many `Track` vertices run at once, yielding a few times meanwhile.
    Track,
    /// A [`JobClass::Wait`] vertex: waits for every holder of the barrier, then behaves
    /// like `Sum(0)`.
    WaitBarrier(Arc<Barrier>),
    /// A [`JobClass::Wait`] vertex counting how many of its kind run at once.
    WaitTrack,
    /// Notifies once started, then waits for cancellation and fails.
    AwaitCancel(Arc<Notify>),
    /// Waits for the notification, then fails.
    FailAfter(Arc<Notify>),
    /// Like `Sum`, computed on the rayon pool, logging to stderr from there.
    Compute(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Start,
    Finish,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ToyError(pub String);

#[derive(Debug)]
pub struct ToyExec<K> {
    log: Mutex<Vec<(K, Phase)>>,
    saw_cancel: Mutex<Vec<K>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    wait_in_flight: AtomicUsize,
    max_wait_in_flight: AtomicUsize,
    /// `Track` and `WaitTrack` together.
    any_in_flight: AtomicUsize,
    max_any_in_flight: AtomicUsize,
}

impl<K> Default for ToyExec<K> {
    fn default() -> Self {
        ToyExec {
            log: Mutex::new(Vec::new()),
            saw_cancel: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            wait_in_flight: AtomicUsize::new(0),
            max_wait_in_flight: AtomicUsize::new(0),
            any_in_flight: AtomicUsize::new(0),
            max_any_in_flight: AtomicUsize::new(0),
        }
    }
}

impl<K: VertexKey> ToyExec<K> {
    pub fn new() -> Self {
        ToyExec::default()
    }

    fn record(&self, key: &K, phase: Phase) {
        self.log.lock().unwrap().push((key.clone(), phase));
    }

    /// Every (key, phase) in the order it happened.
    pub fn log(&self) -> Vec<(K, Phase)> {
        self.log.lock().unwrap().clone()
    }

    /// How many times each key was executed.
    pub fn runs(&self) -> BTreeMap<K, usize> {
        let mut runs = BTreeMap::new();
        for (k, phase) in self.log() {
            if phase == Phase::Start {
                *runs.entry(k).or_default() += 1;
            }
        }
        runs
    }

    pub fn saw_cancel(&self) -> Vec<K> {
        self.saw_cancel.lock().unwrap().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn max_wait_in_flight(&self) -> usize {
        self.max_wait_in_flight.load(Ordering::SeqCst)
    }

    /// The most `Track` and `WaitTrack` vertices that ran at once, together.
    pub fn max_any_in_flight(&self) -> usize {
        self.max_any_in_flight.load(Ordering::SeqCst)
    }
}

/// Counts one more running vertex in each `(now, max)` pair, keeping the maximum, yields
/// a few times (so that others get the chance to start), and counts it out again.
async fn track(counters: [(&AtomicUsize, &AtomicUsize); 2]) {
    for (now, max) in counters {
        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(n, Ordering::SeqCst);
    }
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    for (now, _) in counters {
        now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn sum(n: u64, inputs: &[u64]) -> u64 {
    inputs
        .iter()
        .fold(n, |acc, x| acc.wrapping_mul(31).wrapping_add(*x))
}

impl<K: VertexKey> Executor<K, Toy> for ToyExec<K> {
    type Output = u64;
    type Error = ToyError;

    async fn execute(
        &self,
        key: &K,
        op: &Toy,
        inputs: Vec<u64>,
        ctx: ExecContext<K>,
    ) -> Result<u64, ToyError> {
        self.record(key, Phase::Start);
        let result = match op {
            Toy::Sum(n) | Toy::Volatile(n) => {
                ctx.log(LogStream::Stdout, format!("{key}\n").as_bytes());
                Ok(sum(*n, &inputs))
            }
            Toy::Fail => Err(ToyError(format!("{key} failed"))),
            Toy::Panic => panic!("toy panic"),
            Toy::Barrier(barrier) | Toy::WaitBarrier(barrier) => {
                barrier.wait().await;
                Ok(sum(0, &inputs))
            }
            Toy::Track => {
                track([
                    (&self.in_flight, &self.max_in_flight),
                    (&self.any_in_flight, &self.max_any_in_flight),
                ])
                .await;
                Ok(0)
            }
            Toy::WaitTrack => {
                track([
                    (&self.wait_in_flight, &self.max_wait_in_flight),
                    (&self.any_in_flight, &self.max_any_in_flight),
                ])
                .await;
                Ok(0)
            }
            Toy::AwaitCancel(started) => {
                started.notify_one();
                ctx.cancelled().await;
                self.saw_cancel.lock().unwrap().push(key.clone());
                Err(ToyError(format!("{key} cancelled")))
            }
            Toy::Compute(n) => {
                let (n, ctx) = (*n, ctx.clone());
                crate::compute(move || {
                    ctx.log(LogStream::Stderr, b"computing");
                    sum(n, &inputs)
                })
                .await
                .map_err(|e| ToyError(e.to_string()))
            }
            Toy::FailAfter(go) => {
                go.notified().await;
                Err(ToyError(format!("{key} failed")))
            }
        };
        self.record(key, Phase::Finish);
        result
    }

    async fn cache_key(
        &self,
        _key: &K,
        op: &Toy,
        inputs: &[CacheKey],
    ) -> Result<Option<CacheKey>, ToyError> {
        Ok(match op {
            Toy::Sum(n) => Some(CacheKey::derive(&[b"sum", &n.to_be_bytes()], inputs)),
            Toy::Volatile(_) => None,
            other => Some(CacheKey::derive(&[format!("{other:?}").as_bytes()], inputs)),
        })
    }

    fn class(&self, _key: &K, op: &Toy) -> JobClass {
        match op {
            Toy::WaitBarrier(_) | Toy::WaitTrack => JobClass::Wait,
            _ => JobClass::Compute,
        }
    }
}

/// A solver over a fresh toy executor, `jobs` at a time, without cache.
pub fn solver<K: VertexKey>(jobs: usize) -> Solver<K, ToyExec<K>, NoCache> {
    Solver::new(ToyExec::new()).with_jobs(jobs)
}

/// Builds a DAG from `(key, op, inputs)`.
pub fn dag<const N: usize>(
    vertices: [(&'static str, Toy, &[&'static str]); N],
) -> Dag<&'static str, Toy> {
    let mut b = Dag::builder();
    for (k, op, inputs) in vertices {
        b.add(k, op, inputs.iter().copied()).unwrap();
    }
    b.build().unwrap()
}

/// The expected output of `key`, computed sequentially from the DAG.
pub fn expected<K: VertexKey>(dag: &Dag<K, Toy>, key: &K) -> u64 {
    let mut values: BTreeMap<K, u64> = BTreeMap::new();
    for k in dag.topological() {
        let inputs: Vec<u64> = dag.inputs(k).unwrap().iter().map(|i| values[*i]).collect();
        let n = match dag.op(k).unwrap() {
            Toy::Sum(n) | Toy::Volatile(n) | Toy::Compute(n) => *n,
            _ => 0,
        };
        values.insert(k.clone(), sum(n, &inputs));
    }
    values[key]
}

/// Checks that every executed vertex started after all its inputs finished (for runs
/// without a cache, where every input is executed).
pub fn assert_dependency_order<K: VertexKey>(dag: &Dag<K, Toy>, log: &[(K, Phase)]) {
    let position = |key: &K, phase: Phase| log.iter().position(|(k, p)| k == key && *p == phase);
    for (k, phase) in log {
        if *phase != Phase::Start {
            continue;
        }
        let start = position(k, Phase::Start).unwrap();
        for input in dag.inputs(k).unwrap() {
            let finish = position(input, Phase::Finish);
            assert!(
                finish.is_some_and(|f| f < start),
                "{k} started before its input {input} finished"
            );
        }
    }
}
