//! File metadata written by the file ops: owners, modes, timestamps and extended
//! attributes, always on the entry itself (never through a symlink).

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};

use super::FileOpError;
use super::root::in_root;

/// A numeric owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// An error constructor for an I/O failure on `rel` (a path relative to a root).
pub(crate) fn io_err(what: &'static str, rel: &Path) -> impl FnOnce(io::Error) -> FileOpError {
    let path = in_root(rel);
    move |source| FileOpError::Io { what, path, source }
}

/// Prefixes of overlayfs' private attributes: they describe a snapshot's layering, and a
/// source read from a raw snapshot directory must not carry them into another.
const OVERLAY_XATTR_PREFIXES: [&str; 2] = ["trusted.overlay.", "user.overlay."];

/// Sets owner, mode, xattrs and times of the created entry `abs` (shown as `rel`) from the
/// source `src` whose metadata is `meta`. Owner first (chown clears set-id bits and
/// `security.capability`), then mode (not on symlinks), xattrs, and times last.
pub(crate) fn copy_metadata(
    src: &Path,
    meta: &Metadata,
    abs: &Path,
    rel: &Path,
    owner: Owner,
    mode: u32,
) -> Result<(), FileOpError> {
    std::os::unix::fs::lchown(abs, Some(owner.uid), Some(owner.gid))
        .map_err(io_err("cannot chown", rel))?;
    let is_symlink = meta.file_type().is_symlink();
    if !is_symlink {
        std::fs::set_permissions(abs, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("cannot chmod", rel))?;
    }
    copy_xattrs(src, abs, rel)?;
    set_times(abs, rel, meta)
}

/// [`copy_metadata`] for a regular file just written through `dst`, from the open source
/// `src`: the same steps on the descriptors, without path lookups.
pub(crate) fn copy_file_metadata(
    src: &std::fs::File,
    meta: &Metadata,
    dst: &std::fs::File,
    rel: &Path,
    owner: Owner,
    mode: u32,
) -> Result<(), FileOpError> {
    std::os::unix::fs::fchown(dst, Some(owner.uid), Some(owner.gid))
        .map_err(io_err("cannot chown", rel))?;
    dst.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_err("cannot chmod", rel))?;
    {
        use xattr::FileExt;
        let names = match src.list_xattr() {
            Ok(n) => Some(n),
            Err(e) if tolerable_xattr_error(&e) => None,
            Err(e) => return Err(io_err("cannot list xattrs of source for", rel)(e)),
        };
        for name in names.into_iter().flatten() {
            let text = name.to_string_lossy();
            if OVERLAY_XATTR_PREFIXES.iter().any(|p| text.starts_with(p)) {
                continue;
            }
            let value = match src.get_xattr(&name) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(e) if tolerable_xattr_error(&e) => continue,
                Err(e) => return Err(io_err("cannot read xattr of source for", rel)(e)),
            };
            match dst.set_xattr(&name, &value) {
                Ok(()) => {}
                Err(e) if tolerable_xattr_error(&e) => {}
                Err(e) => return Err(io_err("cannot set xattr on", rel)(e)),
            }
        }
    }
    rustix::fs::futimens(dst, &timestamps(meta))
        .map_err(|e| io_err("cannot set times of", rel)(e.into()))
}

fn timestamps(meta: &Metadata) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    }
}

/// Sets `abs`'s access and modification times to those of `meta` (nanoseconds kept).
pub(crate) fn set_times(abs: &Path, rel: &Path, meta: &Metadata) -> Result<(), FileOpError> {
    rustix::fs::utimensat(CWD, abs, &timestamps(meta), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| io_err("cannot set times of", rel)(e.into()))
}

/// Sets both times of `abs` to `secs` (archive entries carry whole seconds).
pub(crate) fn set_mtime_secs(abs: &Path, rel: &Path, secs: i64) -> Result<(), FileOpError> {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let ts = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, abs, &ts, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| io_err("cannot set times of", rel)(e.into()))
}

/// Whether an xattr failure is one BuildKit tolerates: the destination filesystem or
/// namespace cannot hold the attribute (BuildKit logs and goes on).
pub(crate) fn tolerable_xattr_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::NOTSUP.raw_os_error()
            || code == rustix::io::Errno::PERM.raw_os_error()
            || code == rustix::io::Errno::ACCESS.raw_os_error()
    ) || e.kind() == io::ErrorKind::Unsupported
}

/// Copies every extended attribute of `src` (not following symlinks) to `dst`, except
/// overlayfs' private ones.
fn copy_xattrs(src: &Path, dst: &Path, rel: &Path) -> Result<(), FileOpError> {
    let names = match xattr::list(src) {
        Ok(n) => n,
        Err(e) if tolerable_xattr_error(&e) => return Ok(()),
        Err(e) => return Err(io_err("cannot list xattrs of source for", rel)(e)),
    };
    for name in names {
        let text = name.to_string_lossy();
        if OVERLAY_XATTR_PREFIXES.iter().any(|p| text.starts_with(p)) {
            continue;
        }
        let value = match xattr::get(src, &name) {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) if tolerable_xattr_error(&e) => continue,
            Err(e) => return Err(io_err("cannot read xattr of source for", rel)(e)),
        };
        match xattr::set(dst, &name, &value) {
            Ok(()) => {}
            Err(e) if tolerable_xattr_error(&e) => {}
            Err(e) => return Err(io_err("cannot set xattr on", rel)(e)),
        }
    }
    Ok(())
}

/// `abs` with `rel` (for messages), as one value.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub abs: PathBuf,
    pub rel: PathBuf,
}

impl Place {
    pub(crate) fn new(root: &Path, rel: PathBuf) -> Self {
        Place {
            abs: root.join(&rel),
            rel,
        }
    }

    pub(crate) fn join(&self, name: &std::ffi::OsStr) -> Self {
        Place {
            abs: self.abs.join(name),
            rel: self.rel.join(name),
        }
    }
}
