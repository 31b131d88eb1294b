//! Resolution of tar entry names inside a destination directory without ever leaving it.
//!
//! Names are cleaned first: a leading `/` is dropped (absolute names are relative to the
//! layer root, as in containerd and moby) and any `..` component is refused. Every parent
//! component is then looked up with `lstat`, one at a time: directories are entered, missing
//! ones created, and symlinks resolved by hand as if the destination were `/` — an absolute
//! target restarts at the destination, and a `..` that would climb above it is an error. The
//! last component is never followed, so callers replace it instead of writing through it.
//! The destination is assumed not to be changed concurrently by anyone else.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Linux gives up after 40 symlinks in one lookup (ELOOP); so do we.
const MAX_SYMLINKS: usize = 40;

/// Why an entry name cannot be placed inside the destination.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The name is empty or has a NUL byte.
    #[error("empty or invalid name")]
    Invalid,
    /// The name has a `..` component.
    #[error("name has a '..' component")]
    ParentComponent,
    /// A symlink on the way resolves above the destination root.
    #[error("symlink {0} points outside the destination")]
    SymlinkEscape(PathBuf),
    /// Too many symlinks on the way.
    #[error("too many levels of symbolic links")]
    Loop,
    /// A parent component exists and is neither a directory nor a symlink to one.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// A lookup or a directory creation failed.
    #[error("cannot resolve {path}")]
    Io {
        /// The path being looked at.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Splits a tar name into its normal components (`..` is refused).
pub fn clean(name: &[u8]) -> Result<Vec<OsString>, PathError> {
    if name.contains(&0) {
        return Err(PathError::Invalid);
    }
    let mut out = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(PathError::ParentComponent),
            c => out.push(OsStr::from_bytes(c).to_owned()),
        }
    }
    Ok(out)
}

/// A place inside the root: `parent` is a real directory reached without symlinks.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub parent: PathBuf,
    pub name: OsString,
    /// The real path relative to the root.
    pub rel: PathBuf,
}

impl Resolved {
    /// The path of the place: `parent` joined with `name`.
    pub fn path(&self) -> PathBuf {
        self.parent.join(&self.name)
    }
}

/// The destination directory of an extraction.
#[derive(Debug)]
pub struct SecureRoot {
    root: PathBuf,
}

impl SecureRoot {
    /// A resolver for paths inside `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// The directory everything resolves inside.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves all but the last of `comps` to a real directory (creating missing ones when
    /// `create` is set; else `None` if one is missing) and pairs it with the last component.
    pub fn resolve(&self, comps: &[OsString], create: bool) -> Result<Option<Resolved>, PathError> {
        let Some((name, parents)) = comps.split_last() else {
            return Err(PathError::Invalid);
        };
        let Some(stack) = self.resolve_dir(parents, create)? else {
            return Ok(None);
        };
        let mut rel: PathBuf = stack.iter().collect();
        let parent = self.root.join(&rel);
        rel.push(name);
        Ok(Some(Resolved {
            parent,
            name: name.clone(),
            rel,
        }))
    }

    /// Resolves `comps` as a directory; returns its real components below the root.
    pub fn resolve_dir(
        &self,
        comps: &[OsString],
        create: bool,
    ) -> Result<Option<Vec<OsString>>, PathError> {
        let mut stack: Vec<OsString> = Vec::new();
        let mut cur = self.root.clone();
        let mut queue: VecDeque<OsString> = comps.iter().cloned().collect();
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            match c.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    // Only symlink targets put '..' in the queue; clean() refuses it in names.
                    if stack.pop().is_none() {
                        return Err(PathError::SymlinkEscape(cur));
                    }
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            let next = cur.join(&c);
            match fs::symlink_metadata(&next) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(PathError::Loop);
                    }
                    let target = fs::read_link(&next).map_err(|source| PathError::Io {
                        path: next.clone(),
                        source,
                    })?;
                    let bytes = target.as_os_str().as_bytes();
                    if bytes.first() == Some(&b'/') {
                        stack.clear();
                        cur = self.root.clone();
                    }
                    if bytes.contains(&0) {
                        return Err(PathError::Invalid);
                    }
                    for part in bytes.rsplit(|&b| b == b'/') {
                        queue.push_front(OsStr::from_bytes(part).to_owned());
                    }
                    continue;
                }
                Ok(_) => return Err(PathError::NotADirectory(next)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&next)
                        .map_err(|source| PathError::Io {
                            path: next.clone(),
                            source,
                        })?;
                }
                Err(source) => return Err(PathError::Io { path: next, source }),
            }
            stack.push(c);
            cur = next;
        }
        Ok(Some(stack))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn comps(s: &str) -> Vec<OsString> {
        clean(s.as_bytes()).unwrap()
    }

    #[test]
    fn clean_strips_root_and_dots_and_refuses_dotdot() {
        assert_eq!(comps("/a/./b//c/"), comps("a/b/c"));
        assert!(matches!(clean(b"a/../b"), Err(PathError::ParentComponent)));
        assert!(matches!(clean(b"a\0b"), Err(PathError::Invalid)));
    }

    #[test]
    fn symlinks_resolve_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/usr", root.join("abs")).unwrap();
        let sr = SecureRoot::new(&root);
        let r = sr.resolve(&comps("lib/x"), false).unwrap().unwrap();
        assert_eq!(r.path(), root.join("usr/lib/x"));
        let r = sr.resolve(&comps("abs/lib/y"), false).unwrap().unwrap();
        assert_eq!(r.path(), root.join("usr/lib/y"));
        assert_eq!(r.rel, PathBuf::from("usr/lib/y"));
        assert!(sr.resolve(&comps("missing/x"), false).unwrap().is_none());
    }

    #[test]
    fn escapes_and_loops_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(&root).unwrap();
        symlink("../..", root.join("up")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let sr = SecureRoot::new(&root);
        assert!(matches!(
            sr.resolve(&comps("up/x"), true),
            Err(PathError::SymlinkEscape(_))
        ));
        assert!(matches!(
            sr.resolve(&comps("loop1/x"), true),
            Err(PathError::Loop)
        ));
    }
}
