//! Errors of a build: of one step ([`StepError`], what the op executor and cache report)
//! and of the whole build ([`BuildError`]).

use std::path::PathBuf;

use rbuild_graph::Digest;

use crate::blocking::BlockingError;
use crate::context::{ChecksumError, PatternError};

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("process {argv:?} did not complete successfully: exit code: {code}")]
    ExitCode {
        argv: Vec<String>,
        code: i32,
        /// The last lines the process wrote (stdout and stderr interleaved).
        last_lines: Vec<String>,
    },
    #[error("cannot run the step")]
    Sandbox(#[source] rbuild_executor::SandboxError),
    #[error("snapshot")]
    Snapshot(#[source] rbuild_executor::snapshot::SnapshotError),
    #[error("cannot load base image {reference}")]
    Image {
        reference: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot checksum the build context")]
    Checksum(#[source] ChecksumError),
    #[error("invalid .dockerignore pattern")]
    Pattern(#[source] PatternError),
    #[error(transparent)]
    File(#[from] crate::fileop::FileOpError),
    #[error("{0} is not supported yet")]
    Unsupported(String),
    #[error("secret {0} not found (pass it with --secret id={0},src=FILE)")]
    SecretNotFound(String),
    #[error("no SSH agent {0} forwarded (pass one with --ssh {0}=SOCKET)")]
    SshNotFound(String),
    #[error("build context {0:?} is not known (only the main context is supported)")]
    UnknownContext(String),
    #[error("vertex {0} is not in the graph")]
    UnknownVertex(Digest),
    #[error("the build context cannot be used as a filesystem here")]
    ContextAsLayers,
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache index")]
    Meta(#[source] rbuild_cache::MetaError),
    #[error("--cache-from")]
    CacheFrom(#[source] Box<super::cache_from::CacheFromError>),
    #[error(transparent)]
    Blocking(#[from] BlockingError),
    #[error("cancelled")]
    Cancelled,
}

impl StepError {
    /// The process output to show with the error, if any.
    pub fn last_lines(&self) -> &[String] {
        match self {
            StepError::ExitCode { last_lines, .. } => last_lines,
            _ => &[],
        }
    }
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot open store {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("invalid build graph")]
    Graph(#[source] crate::dag::DagError<Digest>),
    #[error("the build graph has no target")]
    NoTarget,
    /// A step failed; `vertex` says which (its description and Dockerfile location are
    /// in the graph).
    #[error("{description}")]
    Step {
        vertex: Digest,
        description: String,
        #[source]
        source: StepError,
    },
    #[error("cache index")]
    Cache(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A bug: a step panicked (the build stopped cleanly all the same).
    #[error("{description}: internal error (the step panicked)")]
    Panicked { description: String },
    #[error("cannot export the image")]
    Export(#[source] super::export::ExportError),
    #[error("build cancelled")]
    Cancelled,
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

impl BuildError {
    /// The failing vertex, if a step failed.
    pub fn vertex(&self) -> Option<&Digest> {
        match self {
            BuildError::Step { vertex, .. } => Some(vertex),
            _ => None,
        }
    }
}
