//! Paths inside a root filesystem: every path a file op reads or writes is resolved here,
//! following symlinks as if the root were `/` (an absolute target restarts at the root, a
//! `..` stops there), so nothing outside the root is ever reached. This is containerd's
//! `fs.RootPath`, which BuildKit's file op uses for sources and destinations alike.

use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::FileOpError;
use super::meta::{Owner, io_err};

/// Symlinks followed in one resolution before giving up (containerd's limit).
const MAX_HOPS: u32 = 255;

/// The components of `p` that name something (`..` kept, `.` and `/` dropped).
fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Resolves `path` (absolute inside the root; relative is taken from `/`) to a real path
/// relative to `root`. Symlinks in every component are followed, the last one only when
/// `follow_last`. Components that do not exist are kept as named (a later `..` still
/// removes them), so the result is where a new entry would be created. `visible` hides
/// entries (a `.dockerignore`d context file does not exist for a copy): a hidden entry is
/// treated as missing.
pub(crate) fn resolve(
    root: &Path,
    path: &Path,
    follow_last: bool,
    visible: &dyn Fn(&Path, &Metadata) -> bool,
) -> Result<PathBuf, FileOpError> {
    let mut pending = components(path);
    pending.reverse();
    let mut stack: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            stack.pop();
            continue;
        }
        stack.push(comp);
        if pending.is_empty() && !follow_last {
            break;
        }
        let rel: PathBuf = stack.iter().collect();
        let abs = root.join(&rel);
        let meta = match std::fs::symlink_metadata(&abs) {
            Ok(m) if visible(&rel, &m) => m,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            Err(e) => return Err(io_err("cannot resolve", &rel)(e)),
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        hops += 1;
        if hops > MAX_HOPS {
            return Err(FileOpError::SymlinkLoop(in_root(path)));
        }
        let target = std::fs::read_link(&abs).map_err(io_err("cannot read link", &rel))?;
        stack.pop();
        if target.as_os_str().as_bytes().first() == Some(&b'/') {
            stack.clear();
        }
        let mut more = components(&target);
        more.reverse();
        pending.extend(more);
    }
    Ok(stack.iter().collect())
}

/// Everything is visible (image and stage filesystems).
pub(crate) fn all_visible(_: &Path, _: &Metadata) -> bool {
    true
}

/// `rel` shown as a path inside the root (`/a/b`).
pub(crate) fn in_root(rel: &Path) -> PathBuf {
    Path::new("/").join(rel)
}

/// Creates the directory `rel` (a real path, as [`resolve`] returns) and its missing
/// parents, each with `mode` (set explicitly, whatever the umask) and, when given, `owner`
/// (else the creator's, root). An existing non-directory on the way is an error. Returns
/// the directories created, outermost first.
pub(crate) fn mkdir_all(
    root: &Path,
    rel: &Path,
    mode: u32,
    owner: Option<Owner>,
) -> Result<Vec<PathBuf>, FileOpError> {
    let mut created = Vec::new();
    let mut cur = PathBuf::new();
    for comp in components(rel) {
        if comp == ".." {
            // resolve() never returns `..`; refuse rather than climb.
            return Err(FileOpError::Escape(in_root(rel)));
        }
        cur.push(&comp);
        let abs = root.join(&cur);
        match std::fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => return Err(FileOpError::NotADirectory(in_root(&cur))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot create directory", &cur)(e)),
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&abs) {
            Ok(()) => {}
            // Created meanwhile by someone else: fine if it is a directory.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && abs.is_dir() => continue,
            Err(e) => return Err(io_err("cannot create directory", &cur)(e)),
        }
        if let Some(o) = owner {
            std::os::unix::fs::lchown(&abs, Some(o.uid), Some(o.gid))
                .map_err(io_err("cannot chown", &cur))?;
        }
        std::fs::set_permissions(&abs, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("cannot chmod", &cur))?;
        created.push(cur.clone());
    }
    Ok(created)
}
