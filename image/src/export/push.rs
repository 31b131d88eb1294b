//! `type=image,push=true` and `type=registry`: the image (or its variant) tagged in the local
//! store and pushed under every name with [`RegistryClient::push_image`]. Loopback
//! registries are reached over plain HTTP, as everywhere in the client.
//!
//! Progress counts the bytes the client reads from the store while uploading: blobs the
//! registry already has are not read, so they do not count.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rbuild_cache::{ContentError, ContentStore, Descriptor as BlobDescriptor, Digest};

use super::{ExportReport, Exporter, OutputError, OutputSpec, Progress as _};
use crate::registry::{Reference, RegistryClient};

/// A content store that counts the bytes read from it.
struct CountingStore<S> {
    inner: S,
    read: Arc<AtomicU64>,
}

struct CountingReader<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<S: ContentStore> ContentStore for CountingStore<S> {
    type Reader = CountingReader<S::Reader>;
    type Writer = S::Writer;

    fn info(&self, digest: &Digest) -> Result<BlobDescriptor, ContentError> {
        self.inner.info(digest)
    }

    fn open(&self, digest: &Digest) -> Result<Self::Reader, ContentError> {
        Ok(CountingReader {
            inner: self.inner.open(digest)?,
            read: Arc::clone(&self.read),
        })
    }

    fn writer(&self) -> Result<Self::Writer, ContentError> {
        self.inner.writer()
    }

    fn delete(&self, digest: &Digest) -> Result<bool, ContentError> {
        self.inner.delete(digest)
    }

    fn list(&self) -> Result<Vec<BlobDescriptor>, ContentError> {
        self.inner.list()
    }
}

/// Runs blocking work (layer conversion) without stalling a multi-thread runtime's other
/// tasks; on a current-thread runtime it simply runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Exporter<'_> {
    /// Exports any output, pushing where the output asks for it: what the CLI calls for
    /// every `--output`/`--push`. Outputs without a push are written as by
    /// [`Exporter::export`].
    pub async fn export_or_push(
        &self,
        client: &RegistryClient,
        manifest: &Digest,
        spec: &OutputSpec,
    ) -> Result<ExportReport, OutputError> {
        if spec.is_push() {
            self.push(client, manifest, spec).await
        } else {
            blocking(|| self.export(manifest, spec))
        }
    }

    /// Tags the image under the output's names (or the tags) in the local store and pushes
    /// it under each of them.
    pub async fn push(
        &self,
        client: &RegistryClient,
        manifest: &Digest,
        spec: &OutputSpec,
    ) -> Result<ExportReport, OutputError> {
        let names = self.names(spec)?;
        if names.is_empty() {
            return Err(OutputError::NoName);
        }
        let references = names
            .iter()
            .map(|n| {
                Reference::parse(n).map_err(|source| OutputError::Name {
                    name: n.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let _gc = self.store.store().gc_guard()?;
        let exported = blocking(|| {
            let exported = self.prepare(manifest, spec)?;
            self.record(&exported, &names)?;
            Ok::<_, OutputError>(exported)
        })?;
        let mut report = self.report(&exported, names)?;

        let image = crate::layout::image_for(self.store, &exported, &[])?;
        let total = image.layers.iter().map(|l| l.size).sum::<u64>() + image.config.size;
        let read = Arc::new(AtomicU64::new(0));
        let store = Arc::new(CountingStore {
            inner: self.store.store().content().clone(),
            read: Arc::clone(&read),
        });
        self.progress.start("pushing", Some(total));
        let mut reported = 0u64;
        for (name, reference) in report.names.clone().iter().zip(&references) {
            let push = client.push_image(reference, &exported, &store, None);
            tokio::pin!(push);
            let result = loop {
                tokio::select! {
                    result = &mut push => break result,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {
                        let now = read.load(Ordering::Relaxed);
                        self.progress.advance(now - reported);
                        reported = now;
                    }
                }
            };
            let now = read.load(Ordering::Relaxed);
            self.progress.advance(now - reported);
            reported = now;
            report
                .pushed
                .push(result.map_err(|source| OutputError::Push {
                    name: name.clone(),
                    source,
                })?);
        }
        Ok(report)
    }
}
