//! What a build vertex produces: a filesystem, passed between vertices by a cheap
//! reference. Either a stack of committed snapshot layers (base first) or the build context
//! directory itself, which is never copied wholesale.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbuild_cache::Digest;

use crate::context::Matcher;

/// A layer blob already known for a snapshot (a base image's layer, or a built layer
/// exported before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// sha256 of the uncompressed layer tar.
    pub diff_id: Digest,
}

/// One layer of a filesystem: a committed snapshot, by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Snapshot key in the store's snapshotter.
    pub snapshot: String,
    /// The blob of a base image's layer; `None` for a layer this build (or an earlier one)
    /// made, whose blob is computed at export and remembered per snapshot.
    pub blob: Option<LayerBlob>,
}

/// The build context: a directory on this machine and its `.dockerignore` rules.
#[derive(Debug)]
pub struct ContextDir {
    pub root: PathBuf,
    pub ignore: Matcher,
}

#[derive(Debug)]
enum Inner {
    Layers(Vec<Layer>),
    Context(ContextDir),
}

/// A vertex's result. Clones share the data.
#[derive(Debug, Clone)]
pub struct Fs(Arc<Inner>);

impl Fs {
    pub fn layers(layers: Vec<Layer>) -> Fs {
        Fs(Arc::new(Inner::Layers(layers)))
    }

    pub fn context(root: PathBuf, ignore: Matcher) -> Fs {
        Fs(Arc::new(Inner::Context(ContextDir { root, ignore })))
    }

    /// The layers, base first; `None` for the build context.
    pub fn as_layers(&self) -> Option<&[Layer]> {
        match &*self.0 {
            Inner::Layers(l) => Some(l),
            Inner::Context(_) => None,
        }
    }

    pub fn as_context(&self) -> Option<&ContextDir> {
        match &*self.0 {
            Inner::Context(c) => Some(c),
            Inner::Layers(_) => None,
        }
    }

    /// The context root, for messages.
    pub fn context_root(&self) -> Option<&Path> {
        self.as_context().map(|c| c.root.as_path())
    }
}
