//! Registry authentication: where credentials come from ([`CredentialProvider`]: a docker
//! `config.json`, fixed credentials, or none) and how they are presented (anonymous, HTTP
//! basic, or the bearer-token challenge flow with a token cache per registry and scope).

mod challenge;
mod docker_config;
pub mod helper;
mod token;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;

pub use challenge::{Challenge, parse_challenges};
pub use docker_config::{
    DOCKER_HUB_AUTH_KEY, DockerConfig, auth_key, default_config_path, login, logout,
};
pub use token::{Authenticator, Scope};

/// Errors from finding credentials or obtaining a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid WWW-Authenticate header {header:?}: {reason}")]
    InvalidChallenge {
        header: String,
        reason: &'static str,
    },
    #[error("cannot access docker config {path}")]
    ConfigIo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid docker config {path}: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },
    #[error("credential helper {program} failed: {message}")]
    Helper { program: String, message: String },
    #[error("cannot run credential helper {program}")]
    HelperSpawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("token request to {realm} failed")]
    TokenRequest {
        realm: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("token server {realm} refused: {status}")]
    TokenRefused { realm: String, status: u16 },
    #[error("token server {realm} sent no token")]
    NoToken { realm: String },
    #[error("invalid token realm {0:?}")]
    InvalidRealm(String),
    #[error("unsupported authentication scheme {0:?}")]
    UnsupportedScheme(String),
}

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged at the token realm.
    IdentityToken(String),
}

impl fmt::Debug for Credentials {
    // Never print secrets, not even in debug logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(..)"),
        }
    }
}

/// A source of credentials, asked per registry (as written in references, e.g.
/// `docker.io` or `127.0.0.1:5000`). Lookups may run helper programs, so callers run them
/// off the async threads.
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    fn credentials(&self, registry: &str) -> Result<Option<Credentials>, AuthError>;
}

/// No credentials: anonymous access only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl CredentialProvider for Anonymous {
    fn credentials(&self, _registry: &str) -> Result<Option<Credentials>, AuthError> {
        Ok(None)
    }
}

/// Fixed credentials per registry (e.g. from command-line flags).
#[derive(Debug, Clone, Default)]
pub struct StaticCredentials {
    by_registry: BTreeMap<String, Credentials>,
}

impl StaticCredentials {
    pub fn new() -> StaticCredentials {
        StaticCredentials::default()
    }

    pub fn with(mut self, registry: &str, credentials: Credentials) -> StaticCredentials {
        self.by_registry.insert(registry.to_owned(), credentials);
        self
    }
}

impl CredentialProvider for StaticCredentials {
    fn credentials(&self, registry: &str) -> Result<Option<Credentials>, AuthError> {
        Ok(self.by_registry.get(registry).cloned())
    }
}
