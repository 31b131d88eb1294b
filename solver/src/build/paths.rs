//! Paths inside a root filesystem: resolved with symlinks followed *inside* the root (an
//! absolute link target means the root, `..` stops at it), so nothing outside is ever
//! reached. Used for `RUN --mount` sources and by the fallback file operations.

use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Why a path could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("too many levels of symbolic links at {0:?}")]
    SymlinkLoop(String),
    #[error("cannot read link {path}")]
    ReadLink {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Symlink hops allowed while resolving one path (Linux's MAXSYMLINKS).
const MAX_HOPS: u32 = 40;

/// Resolves the absolute (or root-relative) `path` inside `root`, following symlinks
/// within the root; the last component's link is followed only with `follow_last`.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf, PathError> {
    let mut todo: Vec<OsString> = components(Path::new(path));
    todo.reverse();
    let mut done: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            done.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&done);
        candidate.push(&name);
        let is_last = todo.is_empty();
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && (!is_last || follow_last) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(PathError::SymlinkLoop(path.to_owned()));
                }
                let target = fs::read_link(&candidate).map_err(|source| PathError::ReadLink {
                    path: candidate.clone(),
                    source,
                })?;
                if target.is_absolute() {
                    done.clear();
                }
                let mut parts = components(&target);
                parts.reverse();
                todo.extend(parts);
            }
            _ => done.push(name),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&done);
    Ok(out)
}

pub(super) fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}
