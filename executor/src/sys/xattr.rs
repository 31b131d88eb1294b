//! Extended attributes of a path itself (never following a final symlink); the
//! snapshotter needs them for overlayfs' opaque-directory marker.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "nul byte in path"))
}

/// The value of `name` on `path`, `None` when the attribute is not set.
pub fn get(path: &Path, name: &std::ffi::CStr) -> io::Result<Option<Vec<u8>>> {
    let p = cpath(path)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: p and name are valid C strings; buf is writable for buf.len() bytes.
        let n = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < 1 << 16 => buf.resize(buf.len() * 4, 0),
            _ => return Err(err),
        }
    }
}

/// Sets `name` to `value` on `path`.
pub fn set(path: &Path, name: &std::ffi::CStr, value: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: p and name are valid C strings; value is readable for value.len() bytes.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
