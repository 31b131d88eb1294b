//! Answering a registry's 401: HTTP basic, or the bearer-token flow (ask the challenge's
//! `realm` for a token for `service` and our scopes, with basic credentials or an identity
//! token if we have them). Answers are cached per registry host and scope set, tokens until
//! they expire.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use super::{AuthError, Challenge, CredentialProvider, Credentials, parse_challenges};

/// Tokens without `expires_in` are good for 60 s (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Refresh a little early so a token does not expire in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// A token scope such as `repository:library/busybox:pull`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(String);

impl Scope {
    pub fn pull(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:pull"))
    }

    pub fn push(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:pull,push"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Default)]
struct HostState {
    basic: Option<String>,
    tokens: HashMap<String, (String, Instant)>,
}

/// Produces `Authorization` headers for registry requests; shared by all requests of a
/// client.
#[derive(Debug)]
pub struct Authenticator {
    http: reqwest::Client,
    provider: Arc<dyn CredentialProvider>,
    hosts: Mutex<HashMap<String, HostState>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

fn scope_key(scopes: &[Scope]) -> String {
    let mut v: Vec<&str> = scopes.iter().map(Scope::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v.join(" ")
}

impl Authenticator {
    pub fn new(http: reqwest::Client, provider: Arc<dyn CredentialProvider>) -> Authenticator {
        Authenticator {
            http,
            provider,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    fn hosts(&self) -> std::sync::MutexGuard<'_, HashMap<String, HostState>> {
        // The map holds only cached answers; a panic elsewhere cannot leave it inconsistent.
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cached `Authorization` value for a request to `host` needing `scopes`.
    pub fn cached(&self, host: &str, scopes: &[Scope]) -> Option<String> {
        let hosts = self.hosts();
        let state = hosts.get(host)?;
        if let Some((token, expires)) = state.tokens.get(&scope_key(scopes))
            && Instant::now() < *expires
        {
            return Some(format!("Bearer {token}"));
        }
        state.basic.clone()
    }

    /// Forgets cached answers for `host` (after they were refused).
    pub fn invalidate(&self, host: &str, scopes: &[Scope]) {
        if let Some(state) = self.hosts().get_mut(host) {
            state.tokens.remove(&scope_key(scopes));
            state.basic = None;
        }
    }

    /// Looks up credentials for `registry` on a blocking thread (helpers are programs).
    pub async fn credentials(&self, registry: &str) -> Result<Option<Credentials>, AuthError> {
        let provider = Arc::clone(&self.provider);
        let registry = registry.to_owned();
        match tokio::task::spawn_blocking(move || provider.credentials(&registry)).await {
            Ok(r) => r,
            Err(e) => Err(AuthError::Helper {
                program: "credential lookup".to_owned(),
                message: e.to_string(),
            }),
        }
    }

    /// Answers a 401 from `host` (registry `registry`) carrying `www_authenticate`. Returns
    /// the `Authorization` value to retry with, or `None` if we have nothing to offer.
    pub async fn respond(
        &self,
        registry: &str,
        host: &str,
        scopes: &[Scope],
        www_authenticate: &str,
    ) -> Result<Option<String>, AuthError> {
        let challenges = parse_challenges(www_authenticate)?;
        let creds = self.credentials(registry).await?;
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let (token, lifetime) = self.fetch_token(bearer, scopes, creds.as_ref()).await?;
            let expires = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN);
            self.hosts()
                .entry(host.to_owned())
                .or_default()
                .tokens
                .insert(scope_key(scopes), (token.clone(), expires));
            return Ok(Some(format!("Bearer {token}")));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let Some(Credentials::Basic { username, password }) = creds else {
                return Ok(None);
            };
            let header = format!("Basic {}", B64.encode(format!("{username}:{password}")));
            self.hosts().entry(host.to_owned()).or_default().basic = Some(header.clone());
            return Ok(Some(header));
        }
        Err(AuthError::UnsupportedScheme(challenges[0].scheme.clone()))
    }

    async fn fetch_token(
        &self,
        challenge: &Challenge,
        scopes: &[Scope],
        creds: Option<&Credentials>,
    ) -> Result<(String, Duration), AuthError> {
        let realm = challenge
            .param("realm")
            .ok_or_else(|| AuthError::InvalidRealm(String::new()))?;
        let mut url =
            url::Url::parse(realm).map_err(|_| AuthError::InvalidRealm(realm.to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AuthError::InvalidRealm(realm.to_owned()));
        }
        let mut scope_list: Vec<String> = scopes.iter().map(|s| s.0.clone()).collect();
        if scope_list.is_empty()
            && let Some(s) = challenge.param("scope")
        {
            scope_list.push(s.to_owned());
        }
        let service = challenge.param("service");
        let request = match creds {
            Some(Credentials::IdentityToken(refresh)) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token");
                form.append_pair("client_id", "rbuild");
                form.append_pair("refresh_token", refresh);
                if let Some(s) = service {
                    form.append_pair("service", s);
                }
                form.append_pair("scope", &scope_list.join(" "));
                self.http
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form.finish())
            }
            other => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in &scope_list {
                        q.append_pair("scope", s);
                    }
                }
                let req = self.http.get(url);
                match other {
                    Some(Credentials::Basic { username, password }) => {
                        req.basic_auth(username, Some(password))
                    }
                    _ => req,
                }
            }
        };
        let token_err = |source| AuthError::TokenRequest {
            realm: realm.to_owned(),
            source,
        };
        let resp = request.send().await.map_err(token_err)?;
        if !resp.status().is_success() {
            return Err(AuthError::TokenRefused {
                realm: realm.to_owned(),
                status: resp.status().as_u16(),
            });
        }
        let body: TokenResponse = resp.json().await.map_err(token_err)?;
        let token = body
            .token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AuthError::NoToken {
                realm: realm.to_owned(),
            })?;
        let lifetime = body
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok((token, lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys_are_order_independent() {
        let a = [Scope::push("a"), Scope::pull("b")];
        let b = [Scope::pull("b"), Scope::push("a"), Scope::pull("b")];
        assert_eq!(scope_key(&a), scope_key(&b));
        assert_eq!(Scope::pull("x/y").as_str(), "repository:x/y:pull");
        assert_eq!(Scope::push("x").as_str(), "repository:x:pull,push");
    }

    #[tokio::test]
    async fn basic_challenge_uses_credentials_and_caches() {
        let provider = super::super::StaticCredentials::new().with(
            "reg:1",
            Credentials::Basic {
                username: "u".into(),
                password: "p".into(),
            },
        );
        let auth = Authenticator::new(reqwest::Client::new(), Arc::new(provider));
        let scopes = [Scope::pull("x")];
        assert_eq!(auth.cached("reg:1", &scopes), None);
        let h = auth
            .respond("reg:1", "reg:1", &scopes, r#"Basic realm="r""#)
            .await
            .unwrap();
        assert_eq!(h.as_deref(), Some("Basic dTpw"));
        assert_eq!(auth.cached("reg:1", &[]).as_deref(), Some("Basic dTpw"));
        auth.invalidate("reg:1", &[]);
        assert_eq!(auth.cached("reg:1", &scopes), None);
        // Without credentials there is nothing to answer a basic challenge with.
        let h = auth
            .respond("other", "other", &scopes, r#"Basic realm="r""#)
            .await
            .unwrap();
        assert_eq!(h, None);
        assert!(matches!(
            auth.respond("reg:1", "reg:1", &scopes, "Negotiate abc")
                .await,
            Err(AuthError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            auth.respond("reg:1", "reg:1", &scopes, r#"Bearer realm="ftp://x""#)
                .await,
            Err(AuthError::InvalidRealm(_))
        ));
    }
}
