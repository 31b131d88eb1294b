//! The build-graph vocabulary shared by the front end and the solver: ops, vertices,
//! canonical digests and the image-config type.
//!
//! A vertex digest is the sha256 of a versioned, canonical JSON encoding of its op and
//! its inputs' digests in order ([`vertex_digest`]); metadata (description, Dockerfile
//! location, stage) is kept beside it and never hashed.

mod digest;
mod dockerignore;
mod graph;
mod image;
mod op;
mod platform;

pub use digest::{Digest, DigestError};
pub use dockerignore::{clean_path, parse_dockerignore};
pub use graph::{
    ENCODING_VERSION, Graph, GraphError, Location, StageOutput, Vertex, VertexMeta, vertex_digest,
};
pub use image::{ContainerConfig, Empty, Healthcheck, History, ImageConfig};
pub use op::{
    CacheSharing, ContextSource, CopyAction, CopySource, ExecOp, FileOp, GitSource, HttpSource,
    ImageSource, MergeOp, MkdirAction, MkfileAction, Mount, MountKind, NetworkMode, Op, ProxyEnv,
    SecurityMode, SourceOp,
};
pub use platform::{Platform, PlatformError};

#[cfg(test)]
mod tests;
