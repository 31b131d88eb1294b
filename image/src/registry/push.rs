//! Pushing: blobs (skipped when the registry has them, mounted from another repository when
//! asked, else uploaded monolithically or in chunks), then manifests by digest or tag.

use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::mpsc;
use url::Url;

use rbuild_cache::{ContentStore, Descriptor, Digest};

use super::auth::Scope;
use super::client::{Body, Endpoint, RegistryClient, Request, Subject, status_error};
use super::error::RegistryError;
use super::manifest::{Index, Manifest, is_index, is_manifest};
use super::pull::MAX_MANIFEST_SIZE;
use super::reference::Reference;

/// Bytes read from the store per body chunk of a monolithic upload.
const STREAM_CHUNK: usize = 256 * 1024;

/// How a blob reached the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The registry already had it (HEAD).
    Exists,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Uploaded in one request.
    Uploaded,
    /// Uploaded in this many PATCH requests.
    Chunked(u64),
}

/// The outcome of [`RegistryClient::push_image`].
#[derive(Debug, Clone)]
pub struct PushResult {
    /// The tag (or digest) the manifest was put under.
    pub tag: String,
    pub digest: Digest,
    pub size: u64,
    /// Every blob pushed, in manifest order.
    pub blobs: Vec<(Digest, BlobPush)>,
}

impl fmt::Display for PushResult {
    /// The line `docker push` ends with.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: digest: {} size: {}",
            self.tag, self.digest, self.size
        )
    }
}

/// Reads a blob from the store on a blocking thread, as a request body.
fn store_body<S: ContentStore + 'static>(store: Arc<S>, digest: Digest) -> reqwest::Body {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut reader = match store.open(&digest) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; STREAM_CHUNK];
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    reqwest::Body::wrap_stream(stream)
}

fn location(ep: &Endpoint, resp: &Response) -> Result<Url, RegistryError> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::NoLocation {
            registry: ep.registry.clone(),
        })?;
    ep.base
        .join(loc)
        .map_err(|_| RegistryError::InvalidUrl(loc.to_owned()))
}

impl RegistryClient {
    /// Makes blob `blob` (stored in `store`) available in `reference`'s repository.
    /// With `mount_from` (a repository of the same registry), asks the registry to mount it
    /// from there first.
    pub async fn push_blob<S: ContentStore + 'static>(
        &self,
        reference: &Reference,
        blob: &Descriptor,
        store: &Arc<S>,
        mount_from: Option<&str>,
    ) -> Result<BlobPush, RegistryError> {
        let ep = self.origin(reference)?;
        let repo = reference.repository();
        let mut scopes = vec![Scope::push(repo)];
        let head_url = ep.url(&format!("v2/{repo}/blobs/{}", blob.digest))?;
        let resp = self
            .send(&ep, &Request::new(Method::HEAD, head_url, &scopes))
            .await?;
        match resp.status() {
            s if s.is_success() => return Ok(BlobPush::Exists),
            StatusCode::NOT_FOUND => {}
            _ => {
                return Err(
                    status_error(resp, "push", Subject::Blob(reference, &blob.digest)).await,
                );
            }
        }

        let mut start = ep.url(&format!("v2/{repo}/blobs/uploads/"))?;
        if let Some(from) = mount_from.filter(|f| *f != repo) {
            start
                .query_pairs_mut()
                .append_pair("mount", blob.digest.as_str())
                .append_pair("from", from);
            scopes.push(Scope::pull(from));
        }
        let resp = self
            .send(&ep, &Request::new(Method::POST, start, &scopes))
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount_from.is_some() => return Ok(BlobPush::Mounted),
            StatusCode::ACCEPTED => {}
            _ => {
                let what = format!("blob upload to {}", reference.name());
                return Err(status_error(resp, "push", Subject::Other(reference, &what)).await);
            }
        }
        let upload = location(&ep, &resp)?;
        if blob.size > self.inner.config.chunk_threshold {
            let patches = self
                .upload_chunked(&ep, reference, &scopes, upload, blob, store)
                .await?;
            Ok(BlobPush::Chunked(patches))
        } else {
            self.upload_monolithic(&ep, reference, &scopes, upload, blob, store)
                .await?;
            Ok(BlobPush::Uploaded)
        }
    }

    async fn upload_monolithic<S: ContentStore + 'static>(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        scopes: &[Scope],
        mut upload: Url,
        blob: &Descriptor,
        store: &Arc<S>,
    ) -> Result<(), RegistryError> {
        upload
            .query_pairs_mut()
            .append_pair("digest", blob.digest.as_str());
        let make = {
            let store = Arc::clone(store);
            let digest = blob.digest.clone();
            move || store_body(Arc::clone(&store), digest.clone())
        };
        let mut req = Request::new(Method::PUT, upload, scopes)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, &blob.size.to_string());
        req.body = Body::Stream(&make);
        let resp = self.send(ep, &req).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(resp, "push", Subject::Blob(reference, &blob.digest)).await);
        }
        Ok(())
    }

    async fn upload_chunked<S: ContentStore + 'static>(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        scopes: &[Scope],
        mut upload: Url,
        blob: &Descriptor,
        store: &Arc<S>,
    ) -> Result<u64, RegistryError> {
        let chunk_size = self.inner.config.chunk_size.max(1);
        let content_err = |source| RegistryError::Content {
            digest: blob.digest.clone(),
            source,
        };
        let task_err = |e: tokio::task::JoinError| RegistryError::Task(e.to_string());
        let reader = {
            let store = Arc::clone(store);
            let digest = blob.digest.clone();
            tokio::task::spawn_blocking(move || store.open(&digest))
                .await
                .map_err(task_err)?
                .map_err(content_err)?
        };
        let mut reader = Some(reader);
        let mut offset = 0u64;
        let mut patches = 0u64;
        while offset < blob.size {
            let want = chunk_size.min(blob.size - offset);
            let mut r = reader
                .take()
                .ok_or_else(|| RegistryError::Task("reader lost".into()))?;
            // One chunk is held in memory at a time so that a retried PATCH can resend it.
            let (r, chunk) = tokio::task::spawn_blocking(move || {
                let mut buf = Vec::with_capacity(want as usize);
                let res = (&mut r).take(want).read_to_end(&mut buf);
                (r, res.map(|_| buf))
            })
            .await
            .map_err(task_err)?;
            reader = Some(r);
            let chunk = chunk.map_err(|e| content_err(rbuild_cache::ContentError::Read(e)))?;
            if chunk.len() as u64 != want {
                return Err(RegistryError::SizeMismatch {
                    name: reference.name(),
                    digest: blob.digest.clone(),
                    expected: blob.size,
                    actual: offset + chunk.len() as u64,
                });
            }
            let end = offset + want - 1;
            let mut req = Request::new(Method::PATCH, upload.clone(), scopes)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, &want.to_string())
                .header(reqwest::header::CONTENT_RANGE, &format!("{offset}-{end}"));
            req.body = Body::Bytes(Bytes::from(chunk));
            let resp = self.send(ep, &req).await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(
                    status_error(resp, "push", Subject::Blob(reference, &blob.digest)).await,
                );
            }
            upload = location(ep, &resp)?;
            offset += want;
            patches += 1;
        }
        upload
            .query_pairs_mut()
            .append_pair("digest", blob.digest.as_str());
        let req = Request::new(Method::PUT, upload, scopes).header(CONTENT_LENGTH, "0");
        let resp = self.send(ep, &req).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(resp, "push", Subject::Blob(reference, &blob.digest)).await);
        }
        Ok(patches)
    }

    /// Puts a manifest or index under `reference`'s tag, or its digest if it has no tag.
    /// Returns the document's digest.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::sha256_of(bytes);
        if let Some(want) = reference.digest()
            && *want != digest
        {
            return Err(RegistryError::DigestMismatch {
                name: reference.to_string(),
                expected: want.clone(),
                actual: digest,
            });
        }
        let target = match reference.tag() {
            Some(tag) => tag.to_owned(),
            None => digest.to_string(),
        };
        let ep = self.origin(reference)?;
        let scopes = [Scope::push(reference.repository())];
        let url = ep.url(&format!("v2/{}/manifests/{target}", reference.repository()))?;
        let mut req = Request::new(Method::PUT, url, &scopes).header(CONTENT_TYPE, media_type);
        req.body = Body::Bytes(Bytes::copy_from_slice(bytes));
        let resp = self.send(&ep, &req).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, "push", Subject::Manifest(reference)).await);
        }
        Ok(digest)
    }

    /// Pushes an image whose manifest (or index) and blobs are in `store`: every blob the
    /// manifest names (at most `max_concurrent` at once), then the manifest by tag. For an
    /// index, each child manifest present in the store is pushed by digest first.
    pub async fn push_image<S: ContentStore + 'static>(
        &self,
        reference: &Reference,
        manifest_digest: &Digest,
        store: &Arc<S>,
        mount_from: Option<&str>,
    ) -> Result<PushResult, RegistryError> {
        let top = read_doc(store, manifest_digest).await?;
        let media_type = doc_media_type(reference, &top)?;
        let mut blobs = Vec::new();
        if is_index(&media_type) {
            let index: Index = parse(reference, &top)?;
            for child in &index.manifests {
                let bytes = read_doc(store, &child.digest).await?;
                let child_type = doc_media_type(reference, &bytes)?;
                blobs.extend(
                    self.push_manifest_blobs(reference, &bytes, store, mount_from)
                        .await?,
                );
                self.push_manifest(
                    &reference.with_digest(child.digest.clone()),
                    &child_type,
                    &bytes,
                )
                .await?;
            }
        } else {
            blobs = self
                .push_manifest_blobs(reference, &top, store, mount_from)
                .await?;
        }
        let target = match reference.tag() {
            Some(_) => reference.clone(),
            None => reference.with_digest(manifest_digest.clone()),
        };
        let digest = self.push_manifest(&target, &media_type, &top).await?;
        Ok(PushResult {
            tag: reference
                .tag()
                .map_or_else(|| digest.to_string(), str::to_owned),
            digest,
            size: top.len() as u64,
            blobs,
        })
    }

    async fn push_manifest_blobs<S: ContentStore + 'static>(
        &self,
        reference: &Reference,
        manifest: &[u8],
        store: &Arc<S>,
        mount_from: Option<&str>,
    ) -> Result<Vec<(Digest, BlobPush)>, RegistryError> {
        let parsed: Manifest = parse(reference, manifest)?;
        let descs: Vec<Descriptor> = std::iter::once(parsed.config.descriptor())
            .chain(parsed.layers.iter().map(|l| l.descriptor()))
            .collect();
        let limit = self.inner.config.max_concurrent.max(1);
        futures_util::stream::iter(descs)
            .map(|d| async move {
                let how = self.push_blob(reference, &d, store, mount_from).await?;
                Ok::<_, RegistryError>((d.digest, how))
            })
            .buffered(limit)
            .try_collect()
            .await
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    reference: &Reference,
    bytes: &[u8],
) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|source| RegistryError::InvalidManifest {
        name: reference.to_string(),
        source,
    })
}

fn doc_media_type(reference: &Reference, bytes: &[u8]) -> Result<String, RegistryError> {
    super::manifest::detect_media_type(bytes, None)
        .filter(|m| is_index(m) || is_manifest(m))
        .ok_or_else(|| RegistryError::UnsupportedMediaType {
            name: reference.to_string(),
            media_type: String::new(),
        })
}

/// Reads a manifest-sized document from the store.
async fn read_doc<S: ContentStore + 'static>(
    store: &Arc<S>,
    digest: &Digest,
) -> Result<Vec<u8>, RegistryError> {
    let store = Arc::clone(store);
    let d = digest.clone();
    tokio::task::spawn_blocking(move || {
        let reader = store.open(&d)?;
        let mut out = Vec::new();
        reader
            .take(MAX_MANIFEST_SIZE + 1)
            .read_to_end(&mut out)
            .map_err(rbuild_cache::ContentError::Read)?;
        Ok(out)
    })
    .await
    .map_err(|e| RegistryError::Task(e.to_string()))?
    .map_err(|source| RegistryError::Content {
        digest: digest.clone(),
        source,
    })
    .and_then(|out: Vec<u8>| {
        if out.len() as u64 > MAX_MANIFEST_SIZE {
            Err(RegistryError::ManifestTooLarge {
                name: digest.to_string(),
                limit: MAX_MANIFEST_SIZE,
            })
        } else {
            Ok(out)
        }
    })
}
