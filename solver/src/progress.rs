//! Progress events of a solve, delivered to a [`ProgressSink`] supplied by the caller.
//!
//! The solver only reports; rendering (TTY tree, plain log, JSON) belongs to the CLI.
//! Sinks are called from the vertex tasks themselves, so they must be cheap and must not
//! block: forward to a channel if rendering is slow.
//!
//! Work that is not a vertex of the graph (resolving and pulling a base image, exporting
//! layers, writing or pushing the image) is reported as a named [`Task`] to a [`TaskSink`].
//!
//! # Event contract
//!
//! Vertex events, per key (calls for different keys interleave freely, from any thread):
//!
//! ```text
//! vertex_cached
//! | vertex_failed                       (cache key or lookup failed)
//! | vertex_started (vertex_log | vertex_progress | vertex_cache_miss)*
//!   (vertex_done | vertex_failed)
//! ```
//!
//! Task events, per [`TaskId`] (ids are unique in the process):
//!
//! ```text
//! task_started (task_progress | task_log)* (task_done | task_failed)
//! ```
//!
//! A [`Task`] dropped before [`Task::done`] or [`Task::fail`] reports
//! `task_failed(id, "cancelled")`, so every started task ends exactly once.
//!
//! Byte counts (`current`, `total`) are absolute, not deltas: `current` never decreases
//! except when a transfer starts over (a retry), and `total` is `None` while unknown.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which output stream a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Receives the life of every vertex the solve touches. Each vertex gets either
/// `vertex_cached`, or `vertex_started` followed by logs and then `vertex_done` or
/// `vertex_failed`. A vertex whose cache-key or cache lookup fails gets only
/// `vertex_failed`. Vertices never started (cancelled, or inputs failed) get nothing.
pub trait ProgressSink<K>: Send + Sync {
    fn vertex_started(&self, _key: &K) {}
    /// The result came from the cache; the vertex was not executed.
    fn vertex_cached(&self, _key: &K) {}
    fn vertex_log(&self, _key: &K, _stream: LogStream, _bytes: &[u8]) {}
    fn vertex_done(&self, _key: &K, _elapsed: Duration) {}
    fn vertex_failed(&self, _key: &K, _error: &str) {}
    /// Bytes handled so far by the running vertex (a context transfer, a layer being
    /// written), out of `total` when known. Only between `vertex_started` and its end.
    /// Every call is an event for the renderer: report coarsely (every few hundred KiB,
    /// and once at the end), not per buffer.
    fn vertex_progress(&self, _key: &K, _current: u64, _total: Option<u64>) {}
    /// Why the vertex missed the cache (`--explain`): the instruction and its reasons.
    /// Only between `vertex_started` and its end.
    fn vertex_cache_miss(&self, _key: &K, _reason: &str) {}
}

/// Identifies one [`Task`]; unique within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(u64);

impl TaskId {
    /// A fresh id, never handed out before in this process.
    pub fn next() -> TaskId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TaskId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{}", self.0)
    }
}

/// Receives the life of named work outside the graph (see the module's event contract).
/// Usually driven through a [`Task`] rather than called directly.
pub trait TaskSink: Send + Sync {
    /// `name` is what a user reads, e.g. `exporting layers` or
    /// `resolve image config for docker.io/library/busybox:latest`.
    fn task_started(&self, _id: TaskId, _name: &str) {}
    /// Absolute bytes done; as coarse as [`ProgressSink::vertex_progress`].
    fn task_progress(&self, _id: TaskId, _current: u64, _total: Option<u64>) {}
    fn task_log(&self, _id: TaskId, _stream: LogStream, _bytes: &[u8]) {}
    fn task_done(&self, _id: TaskId) {}
    fn task_failed(&self, _id: TaskId, _error: &str) {}
}

/// One running piece of named work; reports to its sink and ends exactly once (on drop
/// as cancelled if neither [`Task::done`] nor [`Task::fail`] was called).
pub struct Task {
    sink: Arc<dyn TaskSink>,
    id: TaskId,
    ended: bool,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Task {
    /// Starts a task named `name` on `sink`.
    pub fn start(sink: Arc<dyn TaskSink>, name: &str) -> Task {
        let id = TaskId::next();
        sink.task_started(id, name);
        Task {
            sink,
            id,
            ended: false,
        }
    }

    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Bytes done so far (absolute), out of `total` when known.
    pub fn progress(&self, current: u64, total: Option<u64>) {
        self.sink.task_progress(self.id, current, total);
    }

    /// Output worth showing under the task (e.g. a hook's stderr).
    pub fn log(&self, stream: LogStream, bytes: &[u8]) {
        self.sink.task_log(self.id, stream, bytes);
    }

    pub fn done(mut self) {
        self.ended = true;
        self.sink.task_done(self.id);
    }

    pub fn fail(mut self, error: &str) {
        self.ended = true;
        self.sink.task_failed(self.id, error);
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if !self.ended {
            self.sink.task_failed(self.id, "cancelled");
        }
    }
}

/// Discards every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl<K> ProgressSink<K> for NoProgress {}

impl TaskSink for NoProgress {}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<K> {
    Started(K),
    Cached(K),
    Log(K, LogStream, Vec<u8>),
    Done(K, Duration),
    Failed(K, String),
    Progress(K, u64, Option<u64>),
    CacheMiss(K, String),
}

impl<K> Event<K> {
    pub fn key(&self) -> &K {
        match self {
            Event::Started(k)
            | Event::Cached(k)
            | Event::Log(k, _, _)
            | Event::Done(k, _)
            | Event::Failed(k, _)
            | Event::Progress(k, _, _)
            | Event::CacheMiss(k, _) => k,
        }
    }
}

/// Keeps every event in arrival order (for tests and for `--progress rawjson`-like
/// consumers that want the whole history).
pub struct Recorder<K> {
    events: Mutex<Vec<Event<K>>>,
}

impl<K> Default for Recorder<K> {
    fn default() -> Self {
        Recorder {
            events: Mutex::new(Vec::new()),
        }
    }
}

impl<K> fmt::Debug for Recorder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.events.lock().map_or(0, |e| e.len());
        f.debug_struct("Recorder").field("events", &len).finish()
    }
}

impl<K> Recorder<K> {
    pub fn new() -> Recorder<K> {
        Recorder::default()
    }

    fn push(&self, event: Event<K>) {
        // A poisoned lock only means another thread panicked mid-push; the list is
        // still a valid Vec.
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Event<K>>
    where
        K: Clone,
    {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl<K: Clone + Send + Sync> ProgressSink<K> for Recorder<K> {
    fn vertex_started(&self, key: &K) {
        self.push(Event::Started(key.clone()));
    }
    fn vertex_cached(&self, key: &K) {
        self.push(Event::Cached(key.clone()));
    }
    fn vertex_log(&self, key: &K, stream: LogStream, bytes: &[u8]) {
        self.push(Event::Log(key.clone(), stream, bytes.to_vec()));
    }
    fn vertex_done(&self, key: &K, elapsed: Duration) {
        self.push(Event::Done(key.clone(), elapsed));
    }
    fn vertex_failed(&self, key: &K, error: &str) {
        self.push(Event::Failed(key.clone(), error.to_string()));
    }
    fn vertex_progress(&self, key: &K, current: u64, total: Option<u64>) {
        self.push(Event::Progress(key.clone(), current, total));
    }
    fn vertex_cache_miss(&self, key: &K, reason: &str) {
        self.push(Event::CacheMiss(key.clone(), reason.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records task events as text, in order.
    #[derive(Default)]
    struct Tasks(Mutex<Vec<String>>);

    impl TaskSink for Tasks {
        fn task_started(&self, id: TaskId, name: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} start {name}", id.get()));
        }
        fn task_progress(&self, id: TaskId, current: u64, total: Option<u64>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} bytes {current}/{total:?}", id.get()));
        }
        fn task_log(&self, id: TaskId, _: LogStream, bytes: &[u8]) {
            let text = String::from_utf8_lossy(bytes);
            self.0
                .lock()
                .unwrap()
                .push(format!("{} log {text}", id.get()));
        }
        fn task_done(&self, id: TaskId) {
            self.0.lock().unwrap().push(format!("{} done", id.get()));
        }
        fn task_failed(&self, id: TaskId, error: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} failed {error}", id.get()));
        }
    }

    #[test]
    fn every_task_ends_exactly_once() {
        let sink = Arc::new(Tasks::default());
        let a = Task::start(sink.clone(), "export");
        let b = Task::start(sink.clone(), "push");
        let c = Task::start(sink.clone(), "pull");
        let (ia, ib, ic) = (a.id().get(), b.id().get(), c.id().get());
        assert!(ia != ib && ib != ic && ia != ic);
        a.progress(5, Some(10));
        a.log(LogStream::Stderr, b"note");
        a.done();
        b.fail("refused");
        drop(c);
        assert_eq!(
            *sink.0.lock().unwrap(),
            [
                format!("{ia} start export"),
                format!("{ib} start push"),
                format!("{ic} start pull"),
                format!("{ia} bytes 5/Some(10)"),
                format!("{ia} log note"),
                format!("{ia} done"),
                format!("{ib} failed refused"),
                format!("{ic} failed cancelled"),
            ]
        );
    }

    /// Each vertex "copies" `op` bytes in two halves.
    struct Copying;

    impl crate::Executor<&'static str, u64> for Copying {
        type Output = ();
        type Error = std::convert::Infallible;

        async fn execute(
            &self,
            _: &&'static str,
            op: &u64,
            _: Vec<()>,
            ctx: crate::ExecContext<&'static str>,
        ) -> Result<(), Self::Error> {
            ctx.progress(op / 2, Some(*op));
            ctx.progress(*op, Some(*op));
            Ok(())
        }

        async fn cache_key(
            &self,
            _: &&'static str,
            _: &u64,
            _: &[crate::CacheKey],
        ) -> Result<Option<crate::CacheKey>, Self::Error> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn executors_report_bytes_between_start_and_done() {
        let mut dag = crate::Dag::builder();
        dag.add("a", 10, []).unwrap();
        let dag = dag.build().unwrap();
        let rec = Arc::new(Recorder::new());
        crate::Solver::new(Copying)
            .with_progress(rec.clone())
            .solve(&dag, &["a"])
            .await
            .unwrap();
        let events = rec.events();
        assert_eq!(
            events[..3],
            [
                Event::Started("a"),
                Event::Progress("a", 5, Some(10)),
                Event::Progress("a", 10, Some(10))
            ]
        );
        assert!(matches!(events[3], Event::Done("a", _)), "{events:?}");
        assert_eq!(events.len(), 4);
    }

    #[test]
    fn recorder_keeps_vertex_progress() {
        let rec = Recorder::new();
        rec.vertex_started(&"a");
        rec.vertex_progress(&"a", 3, None);
        assert_eq!(
            rec.events(),
            [Event::Started("a"), Event::Progress("a", 3, None)]
        );
        assert_eq!(*rec.events()[1].key(), "a");
    }
}
