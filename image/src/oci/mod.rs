//! OCI image-spec and Docker image-format types: media types, descriptors, manifests,
//! indexes (manifest lists) and image configs.
//!
//! These are serde structs of our own rather than `oci-spec`'s: the image config must carry
//! Docker's extra fields (`Healthcheck`, `OnBuild`, `Shell`, `ArgsEscaped`), and what we
//! write must serialise in one stable field order so digests are reproducible
//! ([`canonical_json`]). Maps are `BTreeMap`, never `HashMap`; absent optional fields are
//! omitted. Parsing is lenient about unknown fields, and stored documents keep their
//! original bytes, so a loaded image keeps its digest.

mod config;
mod manifest;
pub mod media;
mod time;

pub use config::{Empty, HealthConfig, History, ImageConfig, RootFs, RuntimeConfig};
pub use manifest::{Descriptor, Index, Manifest, Platform};
pub use time::{parse_rfc3339, rfc3339};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Annotation naming a manifest in an OCI layout (the tag, as `umoci` and `skopeo` read it).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd and Docker 25+ put on index entries: the full image name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// Errors from encoding or decoding spec documents.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid {what} JSON")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode {what} JSON")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported {what} schemaVersion {version}")]
    SchemaVersion { what: &'static str, version: u32 },
}

/// The one serialisation used for every document rbuild writes: compact JSON with fields in
/// declaration order and map keys sorted, so the same value always has the same digest.
pub fn canonical_json<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, SpecError> {
    serde_json::to_vec(value).map_err(|source| SpecError::Encode { what, source })
}

/// Decodes a JSON document, naming it in the error.
pub fn from_json<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, SpecError> {
    serde_json::from_slice(bytes).map_err(|source| SpecError::Decode { what, source })
}

/// The platform of this host in OCI terms (`GOOS`/`GOARCH` spelling).
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    Platform {
        architecture: arch.to_owned(),
        os: std::env::consts::OS.to_owned(),
        ..Platform::default()
    }
}

#[cfg(test)]
mod tests;
