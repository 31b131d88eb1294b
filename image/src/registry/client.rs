//! [`RegistryClient`]: endpoints (scheme choice, mirrors), the request loop with
//! authentication and retries, and the mapping of error responses. Pulling and pushing
//! live in `pull.rs` and `push.rs`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::auth::{Anonymous, Authenticator, CredentialProvider, Scope};
use super::error::{RegistryError, registry_error_detail};
use super::reference::{DOCKER_HUB, Reference};
use super::retry::RetryPolicy;

/// Settings of a [`RegistryClient`].
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registries (`host` or `host:port`) that may be reached over plain HTTP, in addition
    /// to `localhost`, `127.0.0.0/8` and `::1`, which always may.
    pub insecure: Vec<String>,
    /// Mirrors of Docker Hub, tried in order before it for pulls.
    pub mirrors: Vec<Url>,
    /// Whether pulls from Docker Hub fall back to Docker Hub itself when every mirror
    /// failed. Air-gapped setups (and tests) turn this off.
    pub hub_fallback: bool,
    pub retry: RetryPolicy,
    /// Blobs larger than this are uploaded in chunks of `chunk_size` bytes.
    pub chunk_threshold: u64,
    pub chunk_size: u64,
    /// Blobs transferred at the same time by `pull_image` and `push_image`.
    pub max_concurrent: usize,
    pub user_agent: String,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            insecure: Vec::new(),
            mirrors: Vec::new(),
            hub_fallback: true,
            retry: RetryPolicy::default(),
            chunk_threshold: 64 << 20,
            chunk_size: 16 << 20,
            max_concurrent: 4,
            user_agent: concat!("rbuild/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// One place to send registry API requests: the registry itself or a mirror.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Ends in `/`; API paths are joined onto it.
    pub base: Url,
    /// The registry name credentials are looked up under.
    pub registry: String,
    /// `host:port`, the key of cached authorization.
    pub host: String,
}

impl Endpoint {
    pub fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base
            .join(path)
            .map_err(|_| RegistryError::InvalidUrl(format!("{}{path}", self.base)))
    }
}

/// The body of a request, re-creatable for every attempt.
pub(crate) enum Body<'a> {
    Empty,
    Bytes(Bytes),
    Stream(&'a (dyn Fn() -> reqwest::Body + Send + Sync)),
}

/// A request to send with [`RegistryClient::send`].
pub(crate) struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub scopes: &'a [Scope],
    pub headers: HeaderMap,
    pub body: Body<'a>,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, url: Url, scopes: &'a [Scope]) -> Request<'a> {
        Request {
            method,
            url,
            scopes,
            headers: HeaderMap::new(),
            body: Body::Empty,
        }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Request<'a> {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }
}

/// A client for the OCI distribution API. Cheap to clone; clones share connections, the
/// token cache and request counters.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub http: reqwest::Client,
    pub config: RegistryConfig,
    pub auth: Authenticator,
    requests: Mutex<BTreeMap<String, u64>>,
}

impl RegistryClient {
    /// A client taking credentials from `credentials`.
    pub fn new(
        config: RegistryConfig,
        credentials: Arc<dyn CredentialProvider>,
    ) -> Result<RegistryClient, RegistryError> {
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(RegistryError::Client)?;
        let auth = Authenticator::new(http.clone(), credentials);
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                config,
                auth,
                requests: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// A client without credentials.
    pub fn anonymous(config: RegistryConfig) -> Result<RegistryClient, RegistryError> {
        RegistryClient::new(config, Arc::new(Anonymous))
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// Requests sent so far (every attempt counts), by HTTP method.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether `registry` may be reached over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = host_of(registry);
        let local = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        local
            || self
                .inner
                .config
                .insecure
                .iter()
                .any(|i| i == registry || i == host)
    }

    /// The registry's own endpoint.
    pub(crate) fn origin(&self, reference: &Reference) -> Result<Endpoint, RegistryError> {
        let host = reference.api_host();
        let scheme = if self.is_insecure(reference.registry()) {
            "http"
        } else {
            "https"
        };
        let text = format!("{scheme}://{host}/");
        let base = Url::parse(&text).map_err(|_| RegistryError::InvalidUrl(text))?;
        Ok(Endpoint {
            base,
            registry: reference.registry().to_owned(),
            host: host.to_owned(),
        })
    }

    /// Where to pull from, in order: Docker Hub's mirrors, then the registry itself.
    pub(crate) fn pull_endpoints(
        &self,
        reference: &Reference,
    ) -> Result<Vec<Endpoint>, RegistryError> {
        let mut out = Vec::new();
        if reference.registry() == DOCKER_HUB {
            for mirror in &self.inner.config.mirrors {
                let mut base = mirror.clone();
                if !base.path().ends_with('/') {
                    base.set_path(&format!("{}/", base.path()));
                }
                let host = match (base.host_str(), base.port()) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    (Some(h), None) => h.to_owned(),
                    (None, _) => return Err(RegistryError::InvalidUrl(mirror.to_string())),
                };
                out.push(Endpoint {
                    base,
                    registry: host.clone(),
                    host,
                });
            }
        }
        if out.is_empty() || reference.registry() != DOCKER_HUB || self.inner.config.hub_fallback {
            out.push(self.origin(reference)?);
        }
        Ok(out)
    }

    /// Checks that `registry` answers the API and accepts our credentials (what
    /// `docker login` does before saving them).
    pub async fn ping(&self, registry: &str) -> Result<(), RegistryError> {
        // Any repository will do to build the endpoint; only `/v2/` is requested.
        let reference = Reference::parse(&format!("{registry}/ping"))
            .map_err(|_| RegistryError::InvalidUrl(registry.to_owned()))?;
        let ep = self.origin(&reference)?;
        let url = ep.url("v2/")?;
        let resp = self.send(&ep, &Request::new(Method::GET, url, &[])).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let what = format!("{registry}/v2/");
        Err(status_error(resp, "login", Subject::Other(&reference, &what)).await)
    }

    fn count(&self, method: &Method) {
        let mut map = self
            .inner
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(method.as_str().to_owned()).or_default() += 1;
    }

    /// Sends `req` to `ep`: adds cached authorization, answers one 401 challenge, and
    /// retries 5xx, 429 and transport failures with backoff. Returns the final response
    /// whatever its status.
    pub(crate) async fn send(
        &self,
        ep: &Endpoint,
        req: &Request<'_>,
    ) -> Result<Response, RegistryError> {
        let policy = &self.inner.config.retry;
        let mut attempt = 0u32;
        let mut answered_challenge = false;
        // The answer to a challenge is used as is for the retry: a token may already count
        // as expired in the cache (short lifetimes) and must still be presented once.
        let mut fresh_auth: Option<String> = None;
        loop {
            attempt += 1;
            let mut builder = self
                .inner
                .http
                .request(req.method.clone(), req.url.clone())
                .headers(req.headers.clone());
            if let Some(auth) = fresh_auth
                .clone()
                .or_else(|| self.inner.auth.cached(&ep.host, req.scopes))
            {
                builder = builder.header(reqwest::header::AUTHORIZATION, auth);
            }
            builder = match &req.body {
                Body::Empty => builder,
                Body::Bytes(b) => builder.body(b.clone()),
                Body::Stream(make) => builder.body(make()),
            };
            self.count(&req.method);
            let resp = match builder.send().await {
                Ok(r) => r,
                Err(e) => {
                    if RetryPolicy::retryable_error(&e)
                        && let Some(delay) = policy.delay_after(attempt)
                    {
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(RegistryError::Http {
                        registry: ep.registry.clone(),
                        source: e,
                    });
                }
            };
            if resp.status() == StatusCode::UNAUTHORIZED && !answered_challenge {
                answered_challenge = true;
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if let Some(challenge) = challenge {
                    self.inner.auth.invalidate(&ep.host, req.scopes);
                    let answer = self
                        .inner
                        .auth
                        .respond(&ep.registry, &ep.host, req.scopes, &challenge)
                        .await
                        .map_err(|source| RegistryError::Auth {
                            registry: ep.registry.clone(),
                            source,
                        })?;
                    if answer.is_some() {
                        // This retry does not use up an attempt.
                        fresh_auth = answer;
                        attempt -= 1;
                        continue;
                    }
                }
                return Ok(resp);
            }
            let hint = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(RetryPolicy::parse_retry_after);
            if RetryPolicy::retryable_status(resp.status().as_u16())
                && let Some(delay) = policy.delay_with_hint(attempt, hint)
            {
                tokio::time::sleep(delay).await;
                continue;
            }
            return Ok(resp);
        }
    }
}

/// What a failed request was about, to word its error.
pub(crate) enum Subject<'a> {
    Manifest(&'a Reference),
    Blob(&'a Reference, &'a rbuild_cache::Digest),
    Other(&'a Reference, &'a str),
}

/// Turns an unsuccessful response into an error naming the image and the registry.
pub(crate) async fn status_error(
    resp: Response,
    action: &'static str,
    subject: Subject<'_>,
) -> RegistryError {
    let status = resp.status();
    // Error bodies are small JSON documents; cap what we read of a misbehaving one.
    let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
    let detail = registry_error_detail(&body);
    let reference = match &subject {
        Subject::Manifest(r) | Subject::Blob(r, _) | Subject::Other(r, _) => *r,
    };
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            let reason = match &detail {
                Some((code, message)) if !code.is_empty() && !message.is_empty() => {
                    format!("{}: {message}", code.to_ascii_lowercase())
                }
                Some((code, _)) if !code.is_empty() => code.to_ascii_lowercase(),
                _ if status == StatusCode::UNAUTHORIZED => "unauthorized".to_owned(),
                _ => "denied".to_owned(),
            };
            let name = match subject {
                Subject::Other(r, _) if action == "login" => r.registry().to_owned(),
                _ => reference.name(),
            };
            RegistryError::AccessDenied {
                action,
                name,
                reason,
            }
        }
        StatusCode::NOT_FOUND => match subject {
            Subject::Manifest(r) => RegistryError::ManifestUnknown(r.to_string()),
            Subject::Blob(r, d) => RegistryError::BlobUnknown {
                name: r.name(),
                digest: d.clone(),
            },
            Subject::Other(r, what) => RegistryError::Status {
                registry: r.registry().to_owned(),
                what: what.to_owned(),
                status: 404,
                message: "not found".to_owned(),
            },
        },
        _ => {
            let what = match subject {
                Subject::Manifest(r) => format!("manifest {r}"),
                Subject::Blob(r, d) => format!("blob {}@{d}", r.name()),
                Subject::Other(_, w) => w.to_owned(),
            };
            let message = match detail {
                Some((code, message)) => format!("{}: {message}", code.to_ascii_lowercase()),
                None => String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(200)
                    .collect(),
            };
            RegistryError::Status {
                registry: reference.registry().to_owned(),
                what,
                status: status.as_u16(),
                message,
            }
        }
    }
}

/// Reads at most `limit` bytes of a body; `None` if it is longer or breaks off.
pub(crate) async fn read_limited(mut resp: Response, limit: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.ok()? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return None;
        }
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

/// `host` without `:port` (IPv6 keeps its brackets).
fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry
            .split_once(']')
            .map_or(registry, |(h, _)| &registry[..=h.len()]);
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(insecure: &[&str], mirrors: &[&str]) -> RegistryClient {
        RegistryClient::anonymous(RegistryConfig {
            insecure: insecure.iter().map(|s| s.to_string()).collect(),
            mirrors: mirrors.iter().map(|m| Url::parse(m).unwrap()).collect(),
            ..RegistryConfig::default()
        })
        .unwrap()
    }

    fn base(c: &RegistryClient, r: &str) -> String {
        c.origin(&Reference::parse(r).unwrap())
            .unwrap()
            .base
            .to_string()
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_hosts() {
        let c = client(&["reg.internal:5000", "other.lan"], &[]);
        assert_eq!(base(&c, "localhost/x"), "http://localhost/");
        assert_eq!(base(&c, "localhost:5000/x"), "http://localhost:5000/");
        assert_eq!(base(&c, "127.0.0.1:5000/x"), "http://127.0.0.1:5000/");
        assert_eq!(base(&c, "127.1.2.3/x"), "http://127.1.2.3/");
        assert_eq!(base(&c, "[::1]:5000/x"), "http://[::1]:5000/");
        assert_eq!(base(&c, "reg.internal:5000/x"), "http://reg.internal:5000/");
        assert_eq!(base(&c, "other.lan:443/x"), "http://other.lan:443/");
        assert_eq!(
            base(&c, "reg.internal:6000/x"),
            "https://reg.internal:6000/"
        );
        assert_eq!(base(&c, "10.0.0.1:5000/x"), "https://10.0.0.1:5000/");
        assert_eq!(base(&c, "busybox"), "https://registry-1.docker.io/");
    }

    #[test]
    fn mirrors_come_first_and_only_for_docker_hub() {
        let c = client(
            &[],
            &["http://127.0.0.1:5001", "http://127.0.0.1:5002/prefix"],
        );
        let eps = c
            .pull_endpoints(&Reference::parse("busybox").unwrap())
            .unwrap();
        let bases: Vec<String> = eps.iter().map(|e| e.base.to_string()).collect();
        assert_eq!(
            bases,
            [
                "http://127.0.0.1:5001/",
                "http://127.0.0.1:5002/prefix/",
                "https://registry-1.docker.io/"
            ]
        );
        assert_eq!(
            eps[1]
                .url("v2/library/busybox/manifests/latest")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:5002/prefix/v2/library/busybox/manifests/latest"
        );
        let eps = c
            .pull_endpoints(&Reference::parse("127.0.0.1:1/x").unwrap())
            .unwrap();
        assert_eq!(eps.len(), 1);
    }

    #[test]
    fn host_without_port() {
        assert_eq!(host_of("a:1"), "a");
        assert_eq!(host_of("a"), "a");
        assert_eq!(host_of("[::1]:5000"), "[::1]");
        assert_eq!(host_of("[::1]"), "[::1]");
    }
}
