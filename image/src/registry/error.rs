//! The registry client's error type and the mapping of registry error responses onto it.

use rbuild_cache::{ContentError, Digest};

use super::auth::AuthError;

/// Errors from talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{action} access denied for {name}: {reason}")]
    AccessDenied {
        action: &'static str,
        name: String,
        reason: String,
    },
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("blob unknown: {name}@{digest}")]
    BlobUnknown { name: String, digest: Digest },
    #[error("{registry}: unexpected status {status} for {what}: {message}")]
    Status {
        registry: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach registry {registry}")]
    Http {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("invalid registry address {0:?}")]
    InvalidUrl(String),
    #[error("registry {registry} sent no upload location")]
    NoLocation { registry: String },
    #[error("digest mismatch for {name}: expected {expected}, got {actual}")]
    DigestMismatch {
        name: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("size mismatch for {name}@{digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        name: String,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("manifest of {name} is larger than {limit} bytes")]
    ManifestTooLarge { name: String, limit: u64 },
    #[error("invalid manifest for {name}")]
    InvalidManifest {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported manifest media type {media_type:?} for {name}")]
    UnsupportedMediaType { name: String, media_type: String },
    #[error("no matching manifest for {platform} in the manifest list entries of {name}")]
    NoMatchingPlatform { name: String, platform: String },
    #[error("authentication with {registry} failed")]
    Auth {
        registry: String,
        #[source]
        source: AuthError,
    },
    #[error("content store error for {digest}")]
    Content {
        digest: Digest,
        #[source]
        source: ContentError,
    },
    #[error("cannot write blob {digest}")]
    Sink {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("background task failed: {0}")]
    Task(String),
    #[error("cannot build HTTP client")]
    Client(#[source] reqwest::Error),
}

impl RegistryError {
    /// Whether trying the same operation again may succeed (a dropped connection, a body
    /// cut short).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Http { source, .. } => {
                super::retry::RetryPolicy::retryable_error(source)
            }
            RegistryError::Status { status, .. } => {
                super::retry::RetryPolicy::retryable_status(*status)
            }
            _ => false,
        }
    }
}

/// The first entry of a registry's JSON error body: `(code, message)`.
pub(crate) fn registry_error_detail(body: &[u8]) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let body: Body = serde_json::from_slice(body).ok()?;
    let e = body.errors.into_iter().next()?;
    Some((e.code, e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registry_error_bodies() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[]}]}"#;
        assert_eq!(
            registry_error_detail(body),
            Some(("UNAUTHORIZED".into(), "authentication required".into()))
        );
        assert_eq!(registry_error_detail(b"<html>"), None);
        assert_eq!(registry_error_detail(br#"{"errors":[]}"#), None);
    }

    #[test]
    fn messages_name_image_and_registry() {
        let e = RegistryError::AccessDenied {
            action: "pull",
            name: "127.0.0.1:5000/x".into(),
            reason: "unauthorized".into(),
        };
        assert_eq!(
            e.to_string(),
            "pull access denied for 127.0.0.1:5000/x: unauthorized"
        );
        let e = RegistryError::ManifestUnknown("127.0.0.1:5000/x:latest".into());
        assert_eq!(e.to_string(), "manifest unknown: 127.0.0.1:5000/x:latest");
    }
}
