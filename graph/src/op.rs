//! The operations a vertex performs. Everything here except [`ProxyEnv`] is part of a
//! vertex's digest, so every field is plain data with a fixed order (structs, `Vec`s,
//! `BTreeMap`s): two processes that build the same op get the same bytes.
//!
//! Inputs are referenced by index into the vertex's input list. Conventions:
//! - `Exec`: input 0 is the root filesystem; mounts name further inputs.
//! - `File`: input 0 is the filesystem the action applies to; copy sources name further
//!   inputs.
//! - `Merge`: the inputs, lowest layer first.

use serde::{Deserialize, Serialize};

use crate::platform::Platform;

/// One operation of the build graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    Source(SourceOp),
    Exec(ExecOp),
    File(FileOp),
    Merge(MergeOp),
}

impl Op {
    /// Short kind name (`source`, `exec`, `file`, `merge`).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Source(_) => "source",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Merge(_) => "merge",
        }
    }

    /// The op as it enters the digest: the same op without what must never change a
    /// digest (proxy settings).
    pub(crate) fn for_digest(&self) -> std::borrow::Cow<'_, Op> {
        match self {
            Op::Exec(e) if !e.proxy_env.is_empty() => {
                let mut e = e.clone();
                e.proxy_env = ProxyEnv::default();
                std::borrow::Cow::Owned(Op::Exec(e))
            }
            _ => std::borrow::Cow::Borrowed(self),
        }
    }
}

/// Where a filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum SourceOp {
    /// The empty filesystem.
    Scratch,
    /// A registry image.
    Image(ImageSource),
    /// A local directory sent by the client: the build context or a named context.
    Context(ContextSource),
    /// A file downloaded over HTTP(S) (`ADD https://...`).
    Http(HttpSource),
    /// A git repository (`ADD git@...`, `ADD https://host/repo.git#ref`).
    Git(GitSource),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSource {
    /// Normalised reference (`docker.io/library/alpine:3.19`).
    pub reference: String,
    /// Manifest digest when the resolver knew it; `None` for an unresolved (offline) base.
    pub digest: Option<String>,
    pub platform: Platform,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextSource {
    /// `context` for the main build context.
    pub name: String,
    /// Patterns to send (empty: everything not excluded).
    pub include: Vec<String>,
    /// `.dockerignore` patterns, in file order (order matters for `!` exceptions).
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSource {
    pub url: String,
    /// Name of the single file the download produces.
    pub filename: String,
    /// Expected `algo:hex` digest of the download (`ADD --checksum`).
    pub checksum: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitSource {
    /// Remote URL without the fragment.
    pub remote: String,
    /// Branch, tag or commit (`#ref`), `None` for the default branch.
    pub reference: Option<String>,
    /// Subdirectory (`#ref:subdir`).
    pub subdir: Option<String>,
    pub keep_git_dir: bool,
    /// Expected commit (`ADD --checksum`).
    pub checksum: Option<String>,
}

/// A process run in the root filesystem (`RUN`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOp {
    pub args: Vec<String>,
    /// `KEY=VALUE` in the order the stage defined them.
    pub env: Vec<String>,
    pub cwd: String,
    /// User spec (`name`, `uid`, `uid:gid`); empty for the image default (root).
    pub user: String,
    pub network: NetworkMode,
    pub security: SecurityMode,
    pub platform: Platform,
    pub mounts: Vec<Mount>,
    /// Proxy settings from build args that were not declared with `ARG`: visible to the
    /// process, never part of a digest.
    #[serde(default, skip_serializing_if = "ProxyEnv::is_empty")]
    pub proxy_env: ProxyEnv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    #[default]
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    #[default]
    Sandbox,
    Insecure,
}

/// `HTTP_PROXY` and friends, as BuildKit's `llb.ProxyEnv`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProxyEnv {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ftp_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_proxy: Option<String>,
}

impl ProxyEnv {
    pub fn is_empty(&self) -> bool {
        *self == ProxyEnv::default()
    }
}

/// A mount of a `RUN` (`--mount`, or the inline-document mount of a `#!` heredoc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path in the container.
    pub target: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountKind {
    /// A filesystem input mounted at the target.
    Bind {
        input: usize,
        /// Absolute path inside the input (`/` for all of it).
        source: String,
        readonly: bool,
    },
    /// A persistent cache directory shared between builds.
    Cache {
        id: String,
        sharing: CacheSharing,
        /// Seed content (`from=`), absent for an empty cache.
        input: Option<usize>,
        source: String,
        readonly: bool,
        uid: Option<u32>,
        gid: Option<u32>,
        mode: Option<u32>,
    },
    Tmpfs {
        /// Bytes; `None` for the kernel default.
        size: Option<u64>,
    },
    Secret {
        id: String,
        /// File path in the container (absent when exposed only as an env var).
        path: Option<String>,
        /// Environment variable to expose the value in.
        env: Option<String>,
        required: bool,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    Ssh {
        id: String,
        required: bool,
        uid: u32,
        gid: u32,
        mode: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// A filesystem change computed without running a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FileOp {
    /// `COPY` / `ADD`.
    Copy(CopyAction),
    /// `WORKDIR` (and the cache-mount permission fix-ups).
    Mkdir(MkdirAction),
    /// Inline documents (heredocs).
    Mkfile(MkfileAction),
}

/// Copies one or more sources into `dest` of input 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyAction {
    pub sources: Vec<CopySource>,
    /// Absolute destination; a trailing `/` means "into this directory".
    pub dest: String,
    /// `--chown` as written (after expansion); resolved against the destination's
    /// `/etc/passwd` and `/etc/group` when executed.
    pub chown: Option<String>,
    /// `--chmod`: octal (`0755`) or symbolic (`u+x`).
    pub chmod: Option<String>,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// `--parents`: keep the source's directory structure below its pivot.
    pub parents: bool,
    pub create_dest_path: bool,
}

/// One source of a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySource {
    /// Index into the vertex's inputs.
    pub input: usize,
    /// Absolute path (or wildcard pattern) inside that input.
    pub path: String,
    /// `--parents` patterns below `path`.
    pub include_patterns: Vec<String>,
    /// Paths that must exist.
    pub required_paths: Vec<String>,
    /// `ADD`: extract a tar archive instead of copying it.
    pub unpack: bool,
    pub follow_symlinks: bool,
    /// Copy a directory's contents, not the directory itself.
    pub dir_contents_only: bool,
    pub allow_wildcard: bool,
    /// A wildcard that matches nothing is not an error.
    pub allow_empty_wildcard: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirAction {
    pub path: String,
    pub mode: u32,
    pub parents: bool,
    /// Owner spec (`user[:group]`), `None` for root.
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkfileAction {
    pub path: String,
    pub mode: u32,
    pub data: String,
    pub owner: Option<String>,
}

/// Layers its inputs in order (`COPY --link`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MergeOp {}
