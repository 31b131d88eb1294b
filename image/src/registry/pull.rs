//! Pulling: manifests (through an index to this platform's manifest), blobs streamed and
//! verified on the fly, and [`RegistryClient::pull_image`] which ingests a whole image into
//! a content store.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Response};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use rbuild_cache::{ContentStore, Descriptor, Digest, Hasher};

use super::auth::Scope;
use super::client::{Endpoint, RegistryClient, Request, Subject, read_limited, status_error};
use super::error::RegistryError;
use super::manifest::{
    ACCEPTED_MANIFEST_TYPES, ImageDescriptor, Index, Manifest, Platform, detect_media_type,
    is_index, is_manifest,
};
use super::reference::Reference;

/// Manifests and configs larger than this are refused rather than read into memory.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Image configs are read into memory too; they are JSON documents of a few KiB.
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// A manifest as the registry sent it.
#[derive(Debug, Clone)]
pub struct PulledManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// What [`RegistryClient::pull_image`] fetched; every blob is in the content store.
#[derive(Debug, Clone)]
pub struct PulledImage {
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub manifest: Vec<u8>,
    /// The index the manifest was chosen from, if the reference named one.
    pub index: Option<PulledManifest>,
    pub config_descriptor: ImageDescriptor,
    pub config: Vec<u8>,
    pub layers: Vec<ImageDescriptor>,
}

/// A blob body being received: hashed and counted as it arrives.
struct BlobStream {
    resp: Response,
    hasher: Hasher,
    expected: Descriptor,
    name: String,
    registry: String,
}

impl BlobStream {
    /// The next chunk; after the last one, checks size and digest and returns `None`.
    async fn next(&mut self) -> Result<Option<Bytes>, RegistryError> {
        let chunk = self
            .resp
            .chunk()
            .await
            .map_err(|source| RegistryError::Http {
                registry: self.registry.clone(),
                source,
            })?;
        match chunk {
            Some(c) => {
                if self.hasher.len() + c.len() as u64 > self.expected.size {
                    return Err(self.size_error(self.hasher.len() + c.len() as u64));
                }
                self.hasher.update(&c);
                Ok(Some(c))
            }
            None => {
                if self.hasher.len() != self.expected.size {
                    return Err(self.size_error(self.hasher.len()));
                }
                let actual = std::mem::take(&mut self.hasher).finish();
                if actual != self.expected.digest {
                    return Err(RegistryError::DigestMismatch {
                        name: format!("{}@{}", self.name, self.expected.digest),
                        expected: self.expected.digest.clone(),
                        actual,
                    });
                }
                Ok(None)
            }
        }
    }

    fn size_error(&self, actual: u64) -> RegistryError {
        RegistryError::SizeMismatch {
            name: self.name.clone(),
            digest: self.expected.digest.clone(),
            expected: self.expected.size,
            actual,
        }
    }
}

/// Feeds chunks from an async task to a blocking reader (the content store's ingest).
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(b)) => self.current = b,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

impl RegistryClient {
    /// Fetches the manifest `reference` names; an index or manifest list is resolved to
    /// the entry for `platform`. A digest in the reference is verified.
    pub async fn pull_manifest(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<(PulledManifest, Option<PulledManifest>), RegistryError> {
        let first = self.fetch_manifest(reference).await?;
        if is_manifest(&first.media_type) {
            return Ok((first, None));
        }
        if !is_index(&first.media_type) {
            return Err(RegistryError::UnsupportedMediaType {
                name: reference.to_string(),
                media_type: first.media_type,
            });
        }
        let index: Index = serde_json::from_slice(&first.bytes).map_err(|source| {
            RegistryError::InvalidManifest {
                name: reference.to_string(),
                source,
            }
        })?;
        let entry = index
            .select(platform)
            .ok_or_else(|| RegistryError::NoMatchingPlatform {
                name: reference.to_string(),
                platform: platform.to_string(),
            })?
            .clone();
        let child_ref = reference.with_digest(entry.digest.clone());
        let child = self.fetch_manifest(&child_ref).await?;
        if child.bytes.len() as u64 != entry.size {
            return Err(RegistryError::SizeMismatch {
                name: child_ref.name(),
                digest: entry.digest,
                expected: entry.size,
                actual: child.bytes.len() as u64,
            });
        }
        if !is_manifest(&child.media_type) {
            return Err(RegistryError::UnsupportedMediaType {
                name: child_ref.to_string(),
                media_type: child.media_type,
            });
        }
        Ok((child, Some(first)))
    }

    /// Fetches one manifest or index document as it is, trying mirrors first.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<PulledManifest, RegistryError> {
        let mut last = None;
        for ep in self.pull_endpoints(reference)? {
            match self.fetch_manifest_from(&ep, reference).await {
                Ok(m) => return Ok(m),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::ManifestUnknown(reference.to_string())))
    }

    async fn fetch_manifest_from(
        &self,
        ep: &Endpoint,
        reference: &Reference,
    ) -> Result<PulledManifest, RegistryError> {
        let scopes = [Scope::pull(reference.repository())];
        let url = ep.url(&format!(
            "v2/{}/manifests/{}",
            reference.repository(),
            reference.manifest_reference()
        ))?;
        let req = Request::new(Method::GET, url, &scopes)
            .header(ACCEPT, &ACCEPTED_MANIFEST_TYPES.join(", "));
        let resp = self.send(ep, &req).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, "pull", Subject::Manifest(reference)).await);
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(resp, MAX_MANIFEST_SIZE).await.ok_or_else(|| {
            RegistryError::ManifestTooLarge {
                name: reference.to_string(),
                limit: MAX_MANIFEST_SIZE,
            }
        })?;
        let digest = Digest::sha256_of(&bytes);
        if let Some(want) = reference.digest()
            && *want != digest
        {
            return Err(RegistryError::DigestMismatch {
                name: reference.to_string(),
                expected: want.clone(),
                actual: digest,
            });
        }
        let media_type = detect_media_type(&bytes, content_type.as_deref()).ok_or_else(|| {
            RegistryError::UnsupportedMediaType {
                name: reference.to_string(),
                media_type: content_type.unwrap_or_default(),
            }
        })?;
        Ok(PulledManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Starts receiving a blob, from the first endpoint that has it.
    async fn open_blob(
        &self,
        reference: &Reference,
        blob: &Descriptor,
    ) -> Result<BlobStream, RegistryError> {
        let scopes = [Scope::pull(reference.repository())];
        let mut last = None;
        for ep in self.pull_endpoints(reference)? {
            let url = ep.url(&format!(
                "v2/{}/blobs/{}",
                reference.repository(),
                blob.digest
            ))?;
            let resp = match self
                .send(&ep, &Request::new(Method::GET, url, &scopes))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            if !resp.status().is_success() {
                last =
                    Some(status_error(resp, "pull", Subject::Blob(reference, &blob.digest)).await);
                continue;
            }
            if let Some(len) = resp.content_length()
                && len != blob.size
            {
                last = Some(RegistryError::SizeMismatch {
                    name: reference.name(),
                    digest: blob.digest.clone(),
                    expected: blob.size,
                    actual: len,
                });
                continue;
            }
            return Ok(BlobStream {
                resp,
                hasher: Hasher::new(),
                expected: blob.clone(),
                name: reference.name(),
                registry: ep.registry.clone(),
            });
        }
        Err(last.unwrap_or_else(|| RegistryError::BlobUnknown {
            name: reference.name(),
            digest: blob.digest.clone(),
        }))
    }

    /// Streams blob `blob` of `reference`'s repository into `sink`, verifying size and
    /// digest as the bytes arrive. On error the sink has received a prefix of the data
    /// (possibly all of it, if only the digest was wrong) and must be discarded.
    pub async fn fetch_blob<W: AsyncWrite + Unpin>(
        &self,
        reference: &Reference,
        blob: &Descriptor,
        sink: &mut W,
    ) -> Result<(), RegistryError> {
        let mut stream = self.open_blob(reference, blob).await?;
        let sink_err = |source| RegistryError::Sink {
            digest: blob.digest.clone(),
            source,
        };
        while let Some(chunk) = stream.next().await? {
            sink.write_all(&chunk).await.map_err(sink_err)?;
        }
        sink.flush().await.map_err(sink_err)
    }

    /// Fetches a small blob (a config) into memory, verified.
    pub async fn fetch_blob_bytes(
        &self,
        reference: &Reference,
        blob: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if blob.size > limit {
            return Err(RegistryError::ManifestTooLarge {
                name: format!("{}@{}", reference.name(), blob.digest),
                limit,
            });
        }
        let mut out = Vec::with_capacity(blob.size as usize);
        self.fetch_blob(reference, blob, &mut out).await?;
        Ok(out)
    }

    /// Streams a blob into `store`, verified twice: on the fly here and by the store's
    /// ingest. Already present blobs are not fetched. Transient failures start over.
    pub async fn ingest_blob<S: ContentStore + 'static>(
        &self,
        reference: &Reference,
        blob: &Descriptor,
        store: &Arc<S>,
    ) -> Result<(), RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.ingest_blob_once(reference, blob, store).await {
                Err(e) if e.is_transient() => match self.inner.config.retry.delay_after(attempt) {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    async fn ingest_blob_once<S: ContentStore + 'static>(
        &self,
        reference: &Reference,
        blob: &Descriptor,
        store: &Arc<S>,
    ) -> Result<(), RegistryError> {
        let content_err = |source| RegistryError::Content {
            digest: blob.digest.clone(),
            source,
        };
        {
            let store = Arc::clone(store);
            let want = blob.clone();
            let present = tokio::task::spawn_blocking(
                move || matches!(store.info(&want.digest), Ok(have) if have.size == want.size),
            )
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))?;
            if present {
                return Ok(());
            }
        }
        let mut stream = self.open_blob(reference, blob).await?;
        let (tx, rx) = mpsc::channel(8);
        let writer = {
            let store = Arc::clone(store);
            let want = blob.clone();
            tokio::task::spawn_blocking(move || {
                store.ingest(
                    Some(&want),
                    ChannelReader {
                        rx,
                        current: Bytes::new(),
                    },
                )
            })
        };
        let received = loop {
            match stream.next().await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        // The ingest stopped early; its own error says why.
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => {
                    // Make the ingest fail rather than commit whatever it has.
                    let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                    break Err(e);
                }
            }
        };
        drop(tx);
        let stored = writer
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))?;
        received?;
        stored.map(|_| ()).map_err(content_err)
    }

    /// Pulls `reference` for `platform` into `store`: manifest, config and layers (layers in
    /// parallel, at most `max_concurrent` at once), every byte verified.
    pub async fn pull_image<S: ContentStore + 'static>(
        &self,
        reference: &Reference,
        platform: &Platform,
        store: &Arc<S>,
    ) -> Result<PulledImage, RegistryError> {
        let (manifest, index) = self.pull_manifest(reference, platform).await?;
        let parsed: Manifest = serde_json::from_slice(&manifest.bytes).map_err(|source| {
            RegistryError::InvalidManifest {
                name: reference.to_string(),
                source,
            }
        })?;
        let config_desc = parsed.config.descriptor();
        let config = self
            .fetch_blob_bytes(reference, &config_desc, MAX_CONFIG_SIZE)
            .await?;

        let limit = self.inner.config.max_concurrent.max(1);
        futures_util::stream::iter(parsed.layers.iter().map(|l| Ok(l.descriptor())))
            .try_for_each_concurrent(limit, |d| async move {
                self.ingest_blob(reference, &d, store).await
            })
            .await?;

        // Small documents last: a store that has the manifest has everything it names.
        let mut docs = vec![
            (config_desc, config.clone()),
            (Descriptor::of(&manifest.bytes), manifest.bytes.clone()),
        ];
        if let Some(index) = &index {
            docs.push((Descriptor::of(&index.bytes), index.bytes.clone()));
        }
        let store2 = Arc::clone(store);
        tokio::task::spawn_blocking(move || {
            for (desc, bytes) in docs {
                store2.ingest(Some(&desc), &bytes[..]).map_err(|source| {
                    RegistryError::Content {
                        digest: desc.digest.clone(),
                        source,
                    }
                })?;
            }
            Ok::<(), RegistryError>(())
        })
        .await
        .map_err(|e| RegistryError::Task(e.to_string()))??;

        Ok(PulledImage {
            manifest_digest: manifest.digest,
            manifest_media_type: manifest.media_type,
            manifest: manifest.bytes,
            index,
            config_descriptor: parsed.config,
            config,
            layers: parsed.layers,
        })
    }
}
