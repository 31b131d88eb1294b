//! Images: OCI and Docker formats, layer tar diff and safe apply, compression, the local
//! image store, importers and exporters (OCI layout, docker-archive), and the registry client.

pub mod archive;
pub mod compress;
pub mod digest;
pub mod export;
pub mod layer;
pub mod layout;
pub mod local;
pub mod oci;
pub mod registry;
pub mod unpack;

pub use digest::Sha256Digest;
