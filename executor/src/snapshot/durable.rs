//! Making a few committed layers durable without syncing the whole filesystem.
//!
//! `syncfs` writes back everything dirty on the store's filesystem, other programs' data
//! included: on a shared machine that is often a few hundred milliseconds, while a
//! trivial `RUN` step's layer is a handful of small files. Syncing those files and
//! directories themselves costs a few journal commits, which the filesystem shares
//! between syncs issued at once, so they are issued from a few threads. Past
//! [`WALK_LIMIT`] entries (a `COPY` of a large tree) one `syncfs` is cheaper again.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Entries beyond which one `syncfs` replaces per-entry syncs.
pub const WALK_LIMIT: usize = 1024;

/// Threads issuing syncs at once.
const THREADS: usize = 8;

/// The regular files and directories under `dirs` (the dirs included), or `None` once
/// there are more than `limit`. Symlinks and special files (overlay whiteouts) cannot be
/// opened; their entries are made durable by syncing the directories holding them.
pub fn entries(dirs: &[&Path], limit: usize) -> io::Result<Option<Vec<PathBuf>>> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
            if out.len() + stack.len() > limit {
                return Ok(None);
            }
        }
        out.push(dir);
    }
    Ok(Some(out))
}

/// `fsync`s every path (files and directories, opened read-only), from a few threads.
pub fn sync_all(paths: &[PathBuf]) -> io::Result<()> {
    let next = Mutex::new(paths.iter());
    let first_error: Mutex<Option<io::Error>> = Mutex::new(None);
    let work = || {
        loop {
            let Some(p) = next.lock().unwrap_or_else(|e| e.into_inner()).next() else {
                return;
            };
            if let Err(e) = File::open(p).and_then(|f| f.sync_all()) {
                first_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(io::Error::new(e.kind(), format!("{}: {e}", p.display())));
                return;
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..THREADS.min(paths.len()).max(1) {
            s.spawn(work);
        }
    });
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_files_and_dirs_but_not_links_and_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("layer");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), "x").unwrap();
        std::fs::write(root.join("g"), "y").unwrap();
        std::os::unix::fs::symlink("g", root.join("link")).unwrap();
        let mut all = entries(&[&root], 100).unwrap().unwrap();
        all.sort();
        let rel: Vec<_> = all
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().to_owned())
            .collect();
        assert_eq!(
            rel,
            ["layer", "layer/a", "layer/a/b", "layer/a/b/f", "layer/g"].map(PathBuf::from)
        );
        assert!(entries(&[&root], 2).unwrap().is_none());
        sync_all(&all).unwrap();
        let missing = [root.join("gone")];
        assert!(sync_all(&missing).is_err());
    }
}
