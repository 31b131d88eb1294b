//! `--chown` and the owner of `WORKDIR` directories: a `user[:group]` spec resolved through
//! the destination's `/etc/passwd` and `/etc/group`, with BuildKit's rules (its `readUser`):
//!
//! - a numeric user needs no entry and is also the group: `--chown=1000` is `1000:1000`;
//! - a user name takes its uid and primary gid from passwd;
//! - a group (numeric, or a name from the group file) replaces the gid;
//! - an empty group (`app:`) means the user's own, as `chown app:` does.
//!
//! BuildKit silently falls back to root for a name it cannot find; a copy fails here, as
//! classic `docker build` does (a typo must not hand files to root). A `WORKDIR` owner
//! keeps BuildKit's fallback, because `USER` may name a user an image creates later.

use std::io::Read;
use std::path::Path;

use rbuild_executor::user::{UserError, resolve as resolve_user};

use super::FileOpError;
use super::meta::Owner;
use super::root::{all_visible, resolve};

/// Largest passwd or group file read (BuildKit's limit).
const MAX_USER_FILE: u64 = 10 << 20;

/// What to do with a name missing from passwd or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    Error,
    Root,
}

/// Resolves `spec` against the files of the filesystem at `root`.
pub(crate) fn resolve_owner(
    root: &Path,
    spec: &str,
    missing: Missing,
) -> Result<Owner, FileOpError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, (!g.is_empty()).then_some(g)),
        None => (spec, None),
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let bad = |source: UserError| FileOpError::Chown {
        spec: spec.to_owned(),
        source,
    };
    let needs_passwd = !numeric(user);
    let needs_group = group.is_some_and(|g| !numeric(g));
    let passwd = if needs_passwd {
        read_user_file(root, "/etc/passwd")?
    } else {
        None
    };
    let groups = if needs_group {
        read_user_file(root, "/etc/group")?
    } else {
        None
    };
    let uid_only = match resolve_user(user, passwd.as_deref(), None) {
        Ok(c) => c,
        Err(UserError::NoUser(_)) if missing == Missing::Root => {
            rbuild_executor::user::Credentials {
                uid: 0,
                gid: 0,
                additional_gids: Vec::new(),
                home: "/".into(),
            }
        }
        Err(e) => return Err(bad(e)),
    };
    let mut owner = Owner {
        uid: uid_only.uid,
        // A numeric user is its own group; a name brings its primary group.
        gid: if numeric(user) {
            uid_only.uid
        } else {
            uid_only.gid
        },
    };
    if let Some(g) = group {
        // The user part is irrelevant here: resolve "0:<group>" for the gid alone.
        match resolve_user(&format!("0:{g}"), None, groups.as_deref()) {
            Ok(c) => owner.gid = c.gid,
            Err(UserError::NoGroup(_)) if missing == Missing::Root => owner.gid = 0,
            Err(e) => return Err(bad(e)),
        }
    }
    Ok(owner)
}

/// Reads `/etc/passwd` or `/etc/group` of the root (symlinks followed inside it); `None`
/// when it does not exist.
fn read_user_file(root: &Path, path: &str) -> Result<Option<String>, FileOpError> {
    let rel = resolve(root, Path::new(path), true, &all_visible)?;
    let abs = root.join(&rel);
    let file = match std::fs::File::open(&abs) {
        Ok(f) => f,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(super::meta::io_err("cannot open", &rel)(e)),
    };
    let meta = file
        .metadata()
        .map_err(super::meta::io_err("cannot open", &rel))?;
    if !meta.is_file() {
        return Err(FileOpError::NotAFile(super::root::in_root(&rel)));
    }
    let mut bytes = Vec::new();
    file.take(MAX_USER_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(super::meta::io_err("cannot read", &rel))?;
    if bytes.len() as u64 > MAX_USER_FILE {
        return Err(FileOpError::TooLarge(super::root::in_root(&rel)));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}
