//! The registry client: image references, authentication (anonymous, basic, bearer tokens,
//! docker `config.json` and credential helpers), and pull/push over the OCI distribution
//! API with streaming, verified transfers, retries and Docker Hub mirrors.
//!
//! Everything is async on tokio; content-store work runs on blocking threads.

pub mod auth;
mod client;
mod error;
pub mod manifest;
mod pull;
mod push;
pub mod reference;
pub mod retry;
#[cfg(feature = "testing")]
pub mod testing;

pub use client::{RegistryClient, RegistryConfig};
pub use error::RegistryError;
pub use manifest::{ImageDescriptor, Platform};
pub use pull::{MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE, PulledImage, PulledManifest};
pub use push::{BlobPush, PushResult};
pub use reference::{Reference, ReferenceError};
pub use retry::RetryPolicy;
