//! The file operations of a build (`Op::File`): `COPY`/`ADD` (with `ADD`'s archive
//! extraction), `WORKDIR`'s directory and inline documents, applied to a writable root
//! filesystem with the behaviour of BuildKit's file op (classic `docker build` where
//! BuildKit is silent).
//!
//! Every path written is resolved inside the destination root, symlinks followed as if
//! the root were `/`; every source path is resolved the same way inside its input. Nothing
//! outside the roots is read or written, whatever links the image or the context holds.
//!
//! - `root`: path resolution and directory creation inside a root;
//! - `select`: source wildcards and the `.dockerignore` view of the context;
//! - `tree`: the copy itself (one walk, parallel file copies);
//! - `unpack`: `ADD`'s tar detection and safe extraction;
//! - `owner`, `chmod`: `--chown` and `--chmod`;
//! - `make`: `Mkdir` and `Mkfile`.

use std::path::{Path, PathBuf};

use rbuild_graph::FileOp;

use crate::CancelToken;

pub mod chmod;
mod copy;
mod make;
mod meta;
mod owner;
mod root;
mod select;
mod tree;
pub mod unpack;

pub use chmod::{ChmodError, ModeSpec};
pub use meta::Owner;

/// One input of a file op.
#[derive(Debug, Clone, Copy)]
pub struct FileSource<'a> {
    /// Root of the input's filesystem (read-only for the op).
    pub root: &'a Path,
    /// For the build context: its `.dockerignore` matcher (excluded files do not exist
    /// for the copy).
    pub ignore: Option<&'a crate::context::Matcher>,
    /// Keep the source's uid/gid (stage and image inputs), or make them 0:0 (the build
    /// context).
    pub keep_owner: bool,
}

/// What an op wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Regular files (and device nodes, FIFOs, sockets) written.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Archives `ADD` extracted.
    pub archives: u64,
}

/// Why a file op failed. Paths are shown inside their root (`/app/x`).
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    #[error("{0:?}: not found")]
    NotFound(String),
    #[error("copy source refers to input {0}, which the op does not have")]
    MissingInput(usize),
    #[error("invalid --chown {spec:?}")]
    Chown {
        spec: String,
        #[source]
        source: rbuild_executor::user::UserError,
    },
    #[error(transparent)]
    Chmod(ChmodError),
    #[error("invalid pattern {pattern:?}")]
    Pattern {
        pattern: String,
        #[source]
        source: crate::context::PatternError,
    },
    #[error(
        "when copying more than one source file, the destination {0} must be a directory and end with a /"
    )]
    MultipleSources(String),
    #[error("cannot copy to non-directory: {0}")]
    NotADirectory(PathBuf),
    #[error("cannot replace directory {0} with a file")]
    ReplaceDirectory(PathBuf),
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("{0} is too large")]
    TooLarge(PathBuf),
    #[error("too many levels of symbolic links resolving {0}")]
    SymlinkLoop(PathBuf),
    #[error("{0} resolves outside the root")]
    Escape(PathBuf),
    #[error("cannot extract archive {path}")]
    Archive {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("archive {archive}: unsafe entry {name:?}")]
    UnsafeEntry {
        archive: PathBuf,
        name: String,
        #[source]
        source: rbuild_image::layer::PathError,
    },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
}

/// Applies `op` to the filesystem rooted at `dest` (a writable snapshot; `inputs[0]`'s
/// root). `inputs` is indexed like the vertex's inputs (`CopySource::input`).
pub fn apply(
    op: &FileOp,
    dest: &Path,
    inputs: &[FileSource<'_>],
    cancel: &CancelToken,
) -> Result<FileStats, FileOpError> {
    let mut stats = FileStats::default();
    if cancel.is_cancelled() {
        return Err(FileOpError::Cancelled);
    }
    match op {
        FileOp::Copy(action) => copy::copy(action, dest, inputs, cancel, &mut stats)?,
        FileOp::Mkdir(action) => make::mkdir(action, dest, &mut stats)?,
        FileOp::Mkfile(action) => make::mkfile(action, dest, &mut stats)?,
    }
    Ok(stats)
}

/// Where `path` (absolute inside the filesystem at `root`) really is on the host: symlinks
/// on the way are followed as if `root` were `/` (the last one only with `follow_last`), so
/// the result never leaves `root`. For `RUN --mount` sources.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf, FileOpError> {
    let rel = root::resolve(root, Path::new(path), follow_last, &root::all_visible)?;
    Ok(root.join(rel))
}

#[cfg(test)]
mod tests;
