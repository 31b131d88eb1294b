//! Small filesystem helpers shared by diff and apply: extended attributes and times on paths,
//! never following a symlink in the last component.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

/// Prefixes of overlayfs' private attributes: they describe the snapshot, not the image, and
/// must neither leave an upper directory nor be restored by apply.
const OVERLAY_XATTR_PREFIXES: [&str; 2] = ["trusted.overlay.", "user.overlay."];

pub(crate) fn is_overlay_xattr(name: &str) -> bool {
    OVERLAY_XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::ENOTSUP) || e.kind() == io::ErrorKind::Unsupported
}

/// All extended attributes of `path` except overlayfs' own, sorted by name. A filesystem
/// without xattr support yields none. Names that are not UTF-8 cannot be PAX keys: error.
pub(crate) fn read_xattrs(path: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if unsupported(&e) => return Ok(out),
        Err(e) => return Err(e),
    };
    for name in names {
        let name = name.into_string().map_err(|n| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("xattr name {n:?} is not utf-8"),
            )
        })?;
        if is_overlay_xattr(&name) {
            continue;
        }
        // An attribute removed between list and get is simply gone.
        if let Some(value) = xattr::get(path, &name)? {
            out.insert(name, value);
        }
    }
    Ok(out)
}

/// Reads one attribute, treating "unsupported" as absent.
pub(crate) fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    match xattr::get(path, name) {
        Err(e) if unsupported(&e) => Ok(None),
        other => other,
    }
}

/// Sets atime and mtime of `path` (itself, not a symlink's target) to `secs`.
pub(crate) fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let t = TimeSpec::new(secs, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}
