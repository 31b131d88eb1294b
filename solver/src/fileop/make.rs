//! `Mkdir` (`WORKDIR`) and `Mkfile` (inline documents), as BuildKit's file backend does
//! them: the path is resolved inside the root (symlinks followed within it), created
//! directories get the mode and owner, an existing directory is left alone.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rbuild_graph::{MkdirAction, MkfileAction};

use super::meta::{Owner, io_err};
use super::owner::{Missing, resolve_owner};
use super::root::{all_visible, in_root, mkdir_all, resolve};
use super::{FileOpError, FileStats};

fn owner(dest: &Path, spec: Option<&str>) -> Result<Option<Owner>, FileOpError> {
    spec.filter(|s| !s.is_empty())
        .map(|s| resolve_owner(dest, s, Missing::Root))
        .transpose()
}

pub(crate) fn mkdir(
    action: &MkdirAction,
    dest: &Path,
    stats: &mut FileStats,
) -> Result<(), FileOpError> {
    let owner = owner(dest, action.owner.as_deref())?;
    let mode = action.mode & 0o777;
    let rel = resolve(dest, Path::new(&action.path), true, &all_visible)?;
    if action.parents {
        stats.dirs += mkdir_all(dest, &rel, mode, owner)?.len() as u64;
        return Ok(());
    }
    let abs = dest.join(&rel);
    match std::fs::create_dir(&abs) {
        Ok(()) => {}
        // BuildKit: an existing entry, whatever it is, is no error without `parents`.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(io_err("cannot create directory", &rel)(e)),
    }
    if let Some(o) = owner {
        std::os::unix::fs::lchown(&abs, Some(o.uid), Some(o.gid))
            .map_err(io_err("cannot chown", &rel))?;
    }
    std::fs::set_permissions(&abs, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("cannot chmod", &rel))?;
    stats.dirs += 1;
    Ok(())
}

pub(crate) fn mkfile(
    action: &MkfileAction,
    dest: &Path,
    stats: &mut FileStats,
) -> Result<(), FileOpError> {
    let owner = owner(dest, action.owner.as_deref())?;
    let rel = resolve(dest, Path::new(&action.path), true, &all_visible)?;
    if rel.as_os_str().is_empty() {
        return Err(FileOpError::ReplaceDirectory(in_root(&rel)));
    }
    let abs = dest.join(&rel);
    if std::fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir()) {
        return Err(FileOpError::ReplaceDirectory(in_root(&rel)));
    }
    // The path is fully resolved, so it is not a symlink: write the file in place (as
    // BuildKit's os.WriteFile does), without following anything swapped in since.
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&abs)
        .map_err(io_err("cannot create", &rel))?;
    f.write_all(action.data.as_bytes())
        .map_err(io_err("cannot write", &rel))?;
    if let Some(o) = owner {
        std::os::unix::fs::lchown(&abs, Some(o.uid), Some(o.gid))
            .map_err(io_err("cannot chown", &rel))?;
    }
    std::fs::set_permissions(&abs, std::fs::Permissions::from_mode(action.mode & 0o777))
        .map_err(io_err("cannot chmod", &rel))?;
    stats.files += 1;
    stats.bytes += action.data.len() as u64;
    Ok(())
}
