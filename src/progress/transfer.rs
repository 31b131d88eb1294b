//! Byte progress of blob transfers (`pull`, `push`) without touching the registry client:
//! a content store wrapper that reports every blob it ingests (a download) or hands out
//! for reading (an upload) as a [`Task`] with its byte count.

use std::io::{self, Read};
use std::sync::Arc;

use rbuild_cache::{ContentError, ContentStore, Descriptor, Digest};
use rbuild_solver::{Task, TaskSink};

/// Byte counts are reported at most once per this many bytes (and at the end).
const REPORT_EVERY: u64 = 256 * 1024;

/// `inner`, reporting transfers to `sink` as tasks named `<verb> sha256:<12 hex>`.
pub struct Reporting<S> {
    inner: S,
    sink: Arc<dyn TaskSink>,
    verb: &'static str,
}

impl<S> std::fmt::Debug for Reporting<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporting")
            .field("verb", &self.verb)
            .finish()
    }
}

impl<S: ContentStore> Reporting<S> {
    /// `verb` names the transfer: `downloading` for ingests, `uploading` for reads.
    pub fn new(inner: S, sink: Arc<dyn TaskSink>, verb: &'static str) -> Reporting<S> {
        Reporting { inner, sink, verb }
    }

    fn task(&self, digest: &Digest) -> Task {
        let short: String = digest
            .to_string()
            .chars()
            .take("sha256:".len() + 12)
            .collect();
        Task::start(Arc::clone(&self.sink), &format!("{} {short}", self.verb))
    }
}

/// A reader that reports how much has gone through it. An upload's reader ends its task
/// at EOF (or at `total`), and as cancelled if dropped before; a download's task is ended
/// by the ingest, which alone knows whether the bytes were right.
pub struct Counted<R> {
    inner: R,
    task: Option<Task>,
    read: u64,
    reported: u64,
    total: Option<u64>,
    end_at_eof: bool,
}

impl<R> Counted<R> {
    fn new(inner: R, task: Task, total: Option<u64>, end_at_eof: bool) -> Counted<R> {
        task.progress(0, total);
        Counted {
            inner,
            task: Some(task),
            read: 0,
            reported: 0,
            total,
            end_at_eof,
        }
    }

    fn report(&mut self, eof: bool) {
        let complete = eof || self.total.is_some_and(|t| self.read >= t);
        if let Some(task) = &self.task
            && self.read != self.reported
            && (complete || self.read - self.reported >= REPORT_EVERY)
        {
            task.progress(self.read, self.total);
            self.reported = self.read;
        }
        if complete
            && self.end_at_eof
            && let Some(task) = self.task.take()
        {
            task.done();
        }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.report(n == 0 && !buf.is_empty());
        Ok(n)
    }
}

impl<S: ContentStore> ContentStore for Reporting<S> {
    type Reader = Counted<S::Reader>;
    type Writer = S::Writer;

    fn info(&self, digest: &Digest) -> Result<Descriptor, ContentError> {
        self.inner.info(digest)
    }

    fn open(&self, digest: &Digest) -> Result<Self::Reader, ContentError> {
        let total = self.inner.info(digest)?.size;
        let reader = self.inner.open(digest)?;
        Ok(Counted::new(reader, self.task(digest), Some(total), true))
    }

    fn writer(&self) -> Result<Self::Writer, ContentError> {
        self.inner.writer()
    }

    fn delete(&self, digest: &Digest) -> Result<bool, ContentError> {
        self.inner.delete(digest)
    }

    fn list(&self) -> Result<Vec<Descriptor>, ContentError> {
        self.inner.list()
    }

    fn ingest(
        &self,
        expected: Option<&Descriptor>,
        reader: impl Read,
    ) -> Result<Descriptor, ContentError> {
        let Some(want) = expected else {
            return self.inner.ingest(None, reader);
        };
        if matches!(self.inner.info(&want.digest), Ok(have) if have.size == want.size) {
            return Ok(want.clone());
        }
        let mut counted = Counted::new(reader, self.task(&want.digest), Some(want.size), false);
        match self.inner.ingest(expected, &mut counted) {
            Ok(stored) => {
                if let Some(task) = counted.task.take() {
                    task.done();
                }
                Ok(stored)
            }
            Err(e) => {
                if let Some(task) = counted.task.take() {
                    task.fail(&e.to_string());
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rbuild_cache::MemContentStore;
    use rbuild_solver::{LogStream, TaskId};

    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl TaskSink for Seen {
        fn task_started(&self, _: TaskId, name: &str) {
            self.0.lock().unwrap().push(format!("start {name}"));
        }
        fn task_progress(&self, _: TaskId, current: u64, total: Option<u64>) {
            self.0.lock().unwrap().push(format!("{current}/{total:?}"));
        }
        fn task_log(&self, _: TaskId, _: LogStream, _: &[u8]) {}
        fn task_done(&self, _: TaskId) {
            self.0.lock().unwrap().push("done".into());
        }
        fn task_failed(&self, _: TaskId, error: &str) {
            self.0.lock().unwrap().push(format!("failed {error}"));
        }
    }

    fn short(d: &Descriptor) -> String {
        d.digest.to_string()[..19].to_owned()
    }

    #[test]
    fn ingest_reports_bytes_and_skips_present_blobs() {
        let seen = Arc::new(Seen::default());
        let store = Reporting::new(MemContentStore::default(), seen.clone(), "downloading");
        let data = vec![7u8; 600 * 1024];
        let want = Descriptor::of(&data);
        store.ingest(Some(&want), &data[..]).unwrap();
        store.ingest(Some(&want), &data[..]).unwrap();
        let total = Some(data.len() as u64);
        assert_eq!(
            *seen.0.lock().unwrap(),
            [
                format!("start downloading {}", short(&want)),
                format!("0/{total:?}"),
                format!("{}/{total:?}", 256 * 1024),
                format!("{}/{total:?}", 512 * 1024),
                format!("{}/{total:?}", 600 * 1024),
                "done".to_owned(),
            ]
        );
    }

    #[test]
    fn failed_ingest_fails_its_task() {
        let seen = Arc::new(Seen::default());
        let store = Reporting::new(MemContentStore::default(), seen.clone(), "downloading");
        let want = Descriptor::of(b"right");
        assert!(store.ingest(Some(&want), &b"wrong"[..]).is_err());
        let events = seen.0.lock().unwrap();
        assert_eq!(events.len(), 4, "{events:?}");
        assert_eq!(events[2], "5/Some(5)");
        assert!(events[3].starts_with("failed "), "{events:?}");
    }

    #[test]
    fn reads_report_uploads_and_end_at_eof_or_drop() {
        let seen = Arc::new(Seen::default());
        let store = Reporting::new(MemContentStore::default(), seen.clone(), "uploading");
        let blob = store.ingest(None, &b"hello"[..]).unwrap();
        let mut text = String::new();
        store
            .open(&blob.digest)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello");
        drop(store.open(&blob.digest).unwrap());
        let name = format!("start uploading {}", short(&blob));
        assert_eq!(
            *seen.0.lock().unwrap(),
            [
                &name,
                "0/Some(5)",
                "5/Some(5)",
                "done",
                &name,
                "0/Some(5)",
                "failed cancelled"
            ]
        );
    }
}
