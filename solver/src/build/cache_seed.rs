//! `RUN --mount=type=cache,from=STAGE,source=DIR`: a cache directory that starts as a
//! copy of `DIR` in the stage. As in BuildKit, the seed is part of the cache's identity
//! (the same id seeded from different content gives different caches), and it is copied
//! only when that cache does not exist yet.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::StepError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StepError + '_ {
    move |source| StepError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Makes `dir` a copy of `seed` unless it exists: copied into a temp dir beside it, then
/// renamed into place, so a concurrent build or a crash never sees half a seed.
pub(super) fn seed_cache_dir(dir: &Path, seed: &Path) -> Result<(), StepError> {
    if dir.exists() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let temp = tempfile::Builder::new()
        .prefix(".seed-")
        .tempdir_in(parent)
        .map_err(io(parent))?;
    let copy = temp.path().join("d");
    copy_tree(seed, &copy)?;
    match std::fs::rename(&copy, dir) {
        Ok(()) => Ok(()),
        // Another build seeded it first: theirs is as good.
        Err(_) if dir.exists() => Ok(()),
        Err(e) => Err(io(dir)(e)),
    }
}

/// Copies a tree, keeping types, modes, owners and link targets (never following links).
fn copy_tree(from: &Path, to: &Path) -> Result<(), StepError> {
    let meta = std::fs::symlink_metadata(from).map_err(io(from))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(from).map_err(io(from))?;
        std::os::unix::fs::symlink(&target, to).map_err(io(to))?;
        std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())).map_err(io(to))?;
        return Ok(());
    }
    if ft.is_dir() {
        std::fs::create_dir(to).map_err(io(to))?;
        let mut names: Vec<PathBuf> = std::fs::read_dir(from)
            .map_err(io(from))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io(from))?;
        names.sort();
        for child in names {
            let name = child.file_name().unwrap_or_default();
            copy_tree(&child, &to.join(name))?;
        }
    } else if ft.is_file() {
        std::fs::copy(from, to).map_err(io(from))?;
    } else {
        // Devices, sockets and fifos have no place in a cache seed.
        return Ok(());
    }
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid())).map_err(io(to))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io(to))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_once_with_modes_and_links() {
        let t = tempfile::tempdir().unwrap();
        let seed = t.path().join("seed");
        std::fs::create_dir_all(seed.join("sub")).unwrap();
        std::fs::write(seed.join("sub/f"), "x").unwrap();
        std::fs::set_permissions(seed.join("sub/f"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        std::os::unix::fs::symlink("sub/f", seed.join("l")).unwrap();
        let dir = t.path().join("cache");
        seed_cache_dir(&dir, &seed).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("sub/f")).unwrap(), "x");
        let mode = std::fs::metadata(dir.join("sub/f")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        assert_eq!(
            std::fs::read_link(dir.join("l")).unwrap(),
            Path::new("sub/f")
        );
        // An existing cache keeps its content.
        std::fs::write(dir.join("sub/f"), "changed").unwrap();
        seed_cache_dir(&dir, &seed).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("sub/f")).unwrap(),
            "changed"
        );
        // A seed that is not there is an error.
        assert!(seed_cache_dir(&t.path().join("c2"), &t.path().join("none")).is_err());
    }
}
