//! Progress events of a solve, delivered to a [`ProgressSink`] supplied by the caller.
//!
//! The solver only reports; rendering (TTY tree, plain log, JSON) belongs to the CLI.
//! Sinks are called from the vertex tasks themselves, so they must be cheap and must not
//! block: forward to a channel if rendering is slow.

use std::fmt;
use std::sync::Mutex;
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
}

/// Discards every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl<K> ProgressSink<K> for NoProgress {}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<K> {
    Started(K),
    Cached(K),
    Log(K, LogStream, Vec<u8>),
    Done(K, Duration),
    Failed(K, String),
}

impl<K> Event<K> {
    pub fn key(&self) -> &K {
        match self {
            Event::Started(k)
            | Event::Cached(k)
            | Event::Log(k, _, _)
            | Event::Done(k, _)
            | Event::Failed(k, _) => k,
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
}
