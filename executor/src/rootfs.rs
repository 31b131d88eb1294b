//! Path handling inside a rootfs that is not yet our root: symlinks are resolved as if
//! the rootfs were `/`, so a hostile image cannot point a mount target or a file we read
//! (`/etc/passwd`) at the host.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Linux's limit on symlinks followed in one lookup.
const MAX_SYMLINKS: usize = 40;

/// Resolves `path` inside `root`, following symlinks with `root` as `/` and never leaving
/// it (`..` at the top stays at the top). Missing components are kept as they are.
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut pending: VecDeque<OsString> = components(path).collect();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&c);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut next: VecDeque<OsString> = components(&target).collect();
                next.extend(pending);
                pending = next;
            }
            _ => resolved.push(c),
        }
    }
    Ok(root.join(resolved))
}

fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_owned()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Reads a file of the rootfs (`/etc/passwd`), `None` when it does not exist.
pub fn read_in_root(root: &Path, path: &str) -> io::Result<Option<String>> {
    let p = resolve_in_root(root, Path::new(path))?;
    match std::fs::read(&p) {
        Ok(data) => Ok(Some(String::from_utf8_lossy(&data).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_and_relative_links_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/etc")).unwrap();
        symlink("/real/etc", root.join("etc")).unwrap();
        symlink("../../../../../host-secret", root.join("real/etc/hosts")).unwrap();
        symlink("/etc/../../x", root.join("up")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("/etc/passwd")).unwrap(),
            root.join("real/etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/etc/hosts")).unwrap(),
            root.join("host-secret")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("up/y")).unwrap(),
            root.join("x/y")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/../../etc")).unwrap(),
            root.join("real/etc")
        );
    }

    #[test]
    fn symlink_loops_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        let err = resolve_in_root(dir.path(), Path::new("/a/x")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn reading_a_link_to_a_host_file_reads_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        symlink("/etc/hostname", dir.path().join("etc/passwd")).unwrap();
        // /etc/hostname inside the root does not exist: the host's is never read.
        assert_eq!(read_in_root(dir.path(), "/etc/passwd").unwrap(), None);
        std::fs::write(dir.path().join("etc/hostname"), "inside").unwrap();
        assert_eq!(
            read_in_root(dir.path(), "/etc/passwd").unwrap().as_deref(),
            Some("inside")
        );
    }
}
