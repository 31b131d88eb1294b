//! Removes directories a `RUN` layer holds only because overlayfs copied them up: the
//! sandbox creates mount points (`/etc/hosts`, `/proc`...) the image lacks and removes them
//! after the run, which leaves their parent directory in the upper dir with nothing in it
//! but a new mtime. Such a directory is dropped from the committed layer when it is empty,
//! not opaque, and the layers below have it with the same type, mode and owner — so a step
//! that changed nothing gives an empty layer, as with BuildKit. (Only a bare mtime change
//! of a directory is lost, which no image format keeps reliably anyway.)

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

fn is_opaque(path: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|name| matches!(xattr::get(path, name), Ok(Some(v)) if v == b"y"))
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// What the layers below (top first) have at `rel`: its metadata if it is a directory.
fn lower_dir(lowers: &[PathBuf], rel: &Path) -> Option<fs::Metadata> {
    for layer in lowers {
        if let Ok(m) = fs::symlink_metadata(layer.join(rel)) {
            return (m.is_dir() && !is_whiteout(&m)).then_some(m);
        }
        // An ancestor replaced, deleted or made opaque in this layer hides everything
        // below it.
        let mut ancestor = PathBuf::new();
        for part in rel.parent().into_iter().flat_map(Path::components) {
            ancestor.push(part);
            match fs::symlink_metadata(layer.join(&ancestor)) {
                Ok(m) if !m.is_dir() => return None,
                Ok(_) if is_opaque(&layer.join(&ancestor)) => return None,
                _ => {}
            }
        }
    }
    None
}

/// Prunes `rel` (a directory of `layer`) bottom-up; returns whether it was removed.
fn prune(layer: &Path, rel: &Path, lowers: &[PathBuf]) -> io::Result<bool> {
    let dir = layer.join(rel);
    let mut empty = true;
    let mut entries: Vec<_> = fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let m = fs::symlink_metadata(e.path())?;
        let removed = m.is_dir() && prune(layer, &rel.join(e.file_name()), lowers)?;
        empty &= removed;
    }
    if !empty || rel.as_os_str().is_empty() || is_opaque(&dir) {
        return Ok(false);
    }
    let here = fs::symlink_metadata(&dir)?;
    let same = lower_dir(lowers, rel)
        .is_some_and(|l| l.mode() == here.mode() && l.uid() == here.uid() && l.gid() == here.gid());
    if same {
        fs::remove_dir(&dir)?;
    }
    Ok(same)
}

/// Drops the copied-up, unchanged, empty directories of the committed layer `layer`,
/// whose parents are `lowers` (base first).
pub fn prune_copied_up_dirs(layer: &Path, lowers: &[PathBuf]) -> io::Result<()> {
    let top_first: Vec<PathBuf> = lowers.iter().rev().cloned().collect();
    prune(layer, Path::new(""), &top_first).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_unchanged_empty_copies_go() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let layer = dir.path().join("layer");
        for d in ["etc", "var/lib", "opt"] {
            fs::create_dir_all(base.join(d)).unwrap();
            fs::create_dir_all(layer.join(d)).unwrap();
        }
        // Changed mode: kept. New directory: kept. Non-empty: kept.
        fs::set_permissions(layer.join("opt"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(layer.join("new")).unwrap();
        fs::write(layer.join("var/lib/file"), "x").unwrap();
        prune_copied_up_dirs(&layer, &[base]).unwrap();
        assert!(!layer.join("etc").exists());
        assert!(layer.join("opt").exists());
        assert!(layer.join("new").exists());
        assert!(layer.join("var/lib/file").exists());
    }

    #[test]
    fn a_directory_hidden_by_a_replaced_parent_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let mid = dir.path().join("mid");
        let layer = dir.path().join("layer");
        fs::create_dir_all(base.join("a/b")).unwrap();
        fs::create_dir_all(&mid).unwrap();
        // `a` is a file in the middle layer: the base's `a/b` is gone.
        fs::write(mid.join("a"), "file").unwrap();
        fs::create_dir_all(layer.join("a/b")).unwrap();
        prune_copied_up_dirs(&layer, &[base, mid]).unwrap();
        assert!(layer.join("a/b").exists());
    }
}
