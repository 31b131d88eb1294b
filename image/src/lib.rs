//! Images: OCI and Docker formats, layer tar diff and safe apply, compression, the local
//! image store, importers and exporters (OCI layout, docker-archive), and the registry client.

pub mod registry;
