//! Base-image metadata for the front end: an image's canonical reference, manifest digest
//! and configuration (env, working dir, user, ONBUILD triggers...). The CLI plugs in the
//! registry-backed resolver of `rbuild-image`; tests and `rbuild graph` use the in-memory
//! ones here.

use std::collections::BTreeMap;

use rbuild_graph::{ImageConfig, Platform};

/// Why metadata could not be resolved (the registry answered with an error, the config
/// blob was malformed...). "Not available offline" is `Ok(None)`, not an error.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ResolveError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ResolveError {
    pub fn new(message: impl Into<String>) -> ResolveError {
        ResolveError {
            message: message.into(),
            source: None,
        }
    }
}

/// The metadata of one image for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The reference to pull (may differ from the one asked for, e.g. a mirror).
    pub canonical_ref: String,
    /// Manifest digest (`sha256:...`) when known.
    pub digest: Option<String>,
    /// The image configuration, including `OnBuild` triggers and history.
    pub config: ImageConfig,
}

/// Looks base images up. `reference` is normalised (`docker.io/library/alpine:3.19`).
pub trait ImageResolver {
    /// `Ok(None)` means "not available" (offline, unknown): the base then becomes an
    /// unresolved source vertex with an empty config, never a Dockerfile error.
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ResolvedImage>, ResolveError>;
}

/// Knows nothing: every base is unresolved.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopResolver;

impl ImageResolver for NoopResolver {
    fn resolve(&self, _: &str, _: &Platform) -> Result<Option<ResolvedImage>, ResolveError> {
        Ok(None)
    }
}

/// A fixed set of images, keyed by normalised reference (any platform).
#[derive(Debug, Clone, Default)]
pub struct MemoryResolver {
    images: BTreeMap<String, ResolvedImage>,
}

impl MemoryResolver {
    pub fn new() -> MemoryResolver {
        MemoryResolver::default()
    }

    /// Adds an image under `reference`, which must be the normalised form.
    pub fn insert(&mut self, reference: impl Into<String>, image: ResolvedImage) {
        self.images.insert(reference.into(), image);
    }

    /// Builder form of [`MemoryResolver::insert`].
    pub fn with(mut self, reference: impl Into<String>, image: ResolvedImage) -> MemoryResolver {
        self.insert(reference, image);
        self
    }
}

impl ImageResolver for MemoryResolver {
    fn resolve(
        &self,
        reference: &str,
        _: &Platform,
    ) -> Result<Option<ResolvedImage>, ResolveError> {
        Ok(self.images.get(reference).cloned())
    }
}
