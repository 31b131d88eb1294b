//! Application of a layer tar (gzip, zstd or plain, told by magic bytes) onto a directory:
//! entries are created with their modes, owners (when root), xattrs and mtimes, OCI whiteouts
//! and opaque markers delete lower content, and no entry can write outside the destination
//! (see [`super::secure_root`]).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use tar::EntryType;

use super::fsmeta::{is_overlay_xattr, set_mtime};
use super::secure_root::{PathError, Resolved, SecureRoot, clean};
use super::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::compress::{CompressError, decompressed_reader};

/// Errors of applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The destination is missing or not a directory.
    #[error("destination {0} is not a directory")]
    Destination(PathBuf),
    /// The layer's compression could not be read.
    #[error("cannot decompress layer")]
    Decompress(#[source] CompressError),
    /// The tar stream is corrupt or truncated.
    #[error("cannot read layer tar")]
    Read(#[source] io::Error),
    /// An entry name (or hard link target) is unsafe or cannot be resolved.
    #[error("entry {name:?} rejected")]
    Path {
        /// The name as found in the tar.
        name: String,
        /// Why.
        #[source]
        source: PathError,
    },
    /// A hard link points at something that is not in the destination.
    #[error("hard link {name:?} points at missing or unlinkable {target:?}")]
    LinkTarget {
        /// The link's name.
        name: String,
        /// Its target as found in the tar.
        target: String,
    },
    /// A whiteout names nothing (`.wh.`, `.wh..`, `.wh...`).
    #[error("invalid whiteout {0:?}")]
    InvalidWhiteout(String),
    /// An entry type rbuild does not extract (e.g. GNU sparse files).
    #[error("entry {name:?} has unsupported type {kind}")]
    Unsupported {
        /// The name as found in the tar.
        name: String,
        /// The tar type flag.
        kind: char,
    },
    /// Creating or changing something in the destination failed.
    #[error("cannot write {path}")]
    Write {
        /// What was being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What apply may do beyond plain files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Set owners from the tar (needs root).
    pub same_owner: bool,
    /// Create device nodes (needs root); otherwise they are skipped.
    pub devices: bool,
}

impl Default for ApplyOptions {
    /// Owners and devices exactly when running as root.
    fn default() -> Self {
        let root = nix::unistd::Uid::effective().is_root();
        Self {
            same_owner: root,
            devices: root,
        }
    }
}

/// Counts of what apply did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Entries created (whiteouts excluded).
    pub entries: u64,
    /// Whiteouts and opaque markers processed.
    pub whiteouts: u64,
    /// Regular file bytes written.
    pub file_bytes: u64,
    /// Entries skipped (device nodes without privilege).
    pub skipped: u64,
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Write {
        path: path.to_owned(),
        source,
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Removes whatever is at `path` (not following a symlink), if anything.
fn remove_any(path: &Path) -> Result<(), ApplyError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(write_err(path)),
        Ok(_) => fs::remove_file(path).map_err(write_err(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(write_err(path)(e)),
    }
}

struct Applier<'o> {
    root: SecureRoot,
    opts: &'o ApplyOptions,
    /// Real paths (relative to the root) this layer created, and all their ancestors: what an
    /// opaque marker or a whiteout of this same layer must leave alone.
    touched: HashSet<PathBuf>,
    /// Directory metadata, applied once everything below is written.
    dirs: BTreeMap<PathBuf, (u32, i64)>,
    stats: ApplyStats,
    is_root: bool,
}

impl Applier<'_> {
    fn touch(&mut self, rel: &Path) {
        for a in rel.ancestors() {
            if a.as_os_str().is_empty() || !self.touched.insert(a.to_owned()) {
                break;
            }
        }
    }

    fn resolve(
        &self,
        name: &[u8],
        comps: &[OsString],
        create: bool,
    ) -> Result<Option<Resolved>, ApplyError> {
        self.root
            .resolve(comps, create)
            .map_err(|source| ApplyError::Path {
                name: lossy(name),
                source,
            })
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ApplyError> {
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let name = entry.path_bytes().into_owned();
        let comps = clean(&name).map_err(|source| ApplyError::Path {
            name: lossy(&name),
            source,
        })?;
        let Some(base) = comps.last() else {
            // The root itself ("./"): its metadata belongs to whoever owns the destination.
            return Ok(());
        };
        let base = base.as_bytes().to_vec();
        if base.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&name, &comps, &base);
        }
        let res = self
            .resolve(&name, &comps, true)?
            .ok_or_else(|| ApplyError::Path {
                name: lossy(&name),
                source: PathError::Invalid,
            })?;
        let path = res.path();
        let header = entry.header().clone();
        let mode = header.mode().map_err(ApplyError::Read)? & 0o7777;
        let mtime = i64::try_from(header.mtime().map_err(ApplyError::Read)?).unwrap_or(i64::MAX);
        let xattrs = pax_xattrs(&mut entry)?;

        // The last component is replaced, never written through: a symlink planted there
        // by an earlier entry or layer is removed, not followed.
        let existing = fs::symlink_metadata(&path).ok();
        let keep_dir =
            kind == EntryType::Directory && existing.as_ref().is_some_and(|m| m.is_dir());
        if existing.is_some() && !keep_dir {
            remove_any(&path)?;
        }
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(write_err(&path))?;
                let n = io::copy(&mut entry, &mut f).map_err(ApplyError::Read)?;
                self.stats.file_bytes += n;
            }
            EntryType::Directory => {
                if !keep_dir {
                    fs::create_dir(&path).map_err(write_err(&path))?;
                }
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| ApplyError::Read(io::Error::other("symlink without target")))?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &path)
                    .map_err(write_err(&path))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| ApplyError::Read(io::Error::other("hard link without target")))?
                    .into_owned();
                self.hard_link(&name, &target, &path)?;
                // A link shares its inode's metadata, which the first name already set.
                self.stats.entries += 1;
                self.touch(&res.rel);
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if kind != EntryType::Fifo && !self.opts.devices {
                    self.stats.skipped += 1;
                    return Ok(());
                }
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header
                    .device_major()
                    .map_err(ApplyError::Read)?
                    .unwrap_or(0);
                let minor = header
                    .device_minor()
                    .map_err(ApplyError::Read)?
                    .unwrap_or(0);
                mknod(
                    &path,
                    sflag,
                    Mode::from_bits_truncate(0o600),
                    makedev(u64::from(major), u64::from(minor)),
                )
                .map_err(|e| write_err(&path)(e.into()))?;
            }
            other => {
                return Err(ApplyError::Unsupported {
                    name: lossy(&name),
                    kind: char::from(other.as_byte()),
                });
            }
        }
        self.touch(&res.rel);
        self.stats.entries += 1;
        let is_symlink = kind == EntryType::Symlink;
        // Owner before mode (chown clears setuid bits), xattrs after chown (it clears
        // security.capability), mtime last.
        if self.opts.same_owner {
            let uid = header.uid().map_err(ApplyError::Read)?;
            let gid = header.gid().map_err(ApplyError::Read)?;
            let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
                return Err(ApplyError::Read(io::Error::other(
                    "uid or gid out of range",
                )));
            };
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(write_err(&path))?;
        }
        if kind == EntryType::Directory {
            self.dirs.insert(path.clone(), (mode, mtime));
        } else if !is_symlink {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(write_err(&path))?;
        }
        for (k, v) in &xattrs {
            self.set_xattr(&path, k, v)?;
        }
        if kind != EntryType::Directory {
            set_mtime(&path, mtime).map_err(write_err(&path))?;
        }
        Ok(())
    }

    fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> Result<(), ApplyError> {
        if is_overlay_xattr(name) {
            // A layer must not smuggle overlayfs control attributes into a snapshot.
            return Ok(());
        }
        match xattr::set(path, name, value) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => Ok(()),
            Err(e)
                if !self.is_root
                    && e.raw_os_error() == Some(nix::libc::EPERM)
                    && !name.starts_with("user.") =>
            {
                Ok(())
            }
            Err(e) => Err(write_err(path)(e)),
        }
    }

    fn hard_link(&self, name: &[u8], target: &[u8], path: &Path) -> Result<(), ApplyError> {
        let bad = || ApplyError::LinkTarget {
            name: lossy(name),
            target: lossy(target),
        };
        let tcomps = clean(target).map_err(|source| ApplyError::Path {
            name: lossy(target),
            source,
        })?;
        let src = self
            .resolve(target, &tcomps, false)?
            .ok_or_else(bad)?
            .path();
        match fs::symlink_metadata(&src) {
            // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never its target.
            Ok(m) if !m.is_dir() => fs::hard_link(&src, path).map_err(write_err(path)),
            _ => Err(bad()),
        }
    }

    fn whiteout(&mut self, name: &[u8], comps: &[OsString], base: &[u8]) -> Result<(), ApplyError> {
        self.stats.whiteouts += 1;
        let is_opaque = base == OPAQUE_MARKER.as_bytes();
        let target = &base[WHITEOUT_PREFIX.len()..];
        if !is_opaque && target.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // Other `.wh..wh.` names are aufs bookkeeping (e.g. `.wh..wh.plnk`): no meaning here.
            return Ok(());
        }
        if matches!(target, b"" | b"." | b"..") {
            return Err(ApplyError::InvalidWhiteout(lossy(name)));
        }
        let parents = &comps[..comps.len() - 1];
        let Some(dir) =
            self.root
                .resolve_dir(parents, false)
                .map_err(|source| ApplyError::Path {
                    name: lossy(name),
                    source,
                })?
        else {
            return Ok(()); // nothing below a missing directory to delete
        };
        let dir_rel: PathBuf = dir.iter().collect();
        if is_opaque {
            return self.clear_opaque(&dir_rel);
        }
        let rel = dir_rel.join(std::ffi::OsStr::from_bytes(target));
        if self.touched.contains(&rel) {
            return Ok(()); // whiteouts hide lower layers only
        }
        remove_any(&self.root.root().join(rel))
    }

    /// Deletes everything below `dir_rel` that this layer did not create.
    fn clear_opaque(&self, dir_rel: &Path) -> Result<(), ApplyError> {
        let abs = self.root.root().join(dir_rel);
        let rd = match fs::read_dir(&abs) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(write_err(&abs)(e)),
        };
        for ent in rd {
            let ent = ent.map_err(write_err(&abs))?;
            let rel = dir_rel.join(ent.file_name());
            if !self.touched.contains(&rel) {
                remove_any(&ent.path())?;
            } else if ent.file_type().map_err(write_err(&abs))?.is_dir() {
                self.clear_opaque(&rel)?;
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), ApplyError> {
        // Deepest first; a directory replaced later in the layer by something else is skipped.
        for (path, (mode, mtime)) in std::mem::take(&mut self.dirs).into_iter().rev() {
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                        .map_err(write_err(&path))?;
                    set_mtime(&path, mtime).map_err(write_err(&path))?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The `SCHILY.xattr.*` records of an entry.
fn pax_xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<Vec<(String, Vec<u8>)>, ApplyError> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(ApplyError::Read)? {
        for ext in exts {
            let ext = ext.map_err(ApplyError::Read)?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                out.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Applies the layer read from `layer` onto `dest`, which must be an existing directory.
pub fn apply<R: Read>(
    layer: R,
    dest: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats, ApplyError> {
    if !fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
        return Err(ApplyError::Destination(dest.to_owned()));
    }
    let mut reader = decompressed_reader(layer).map_err(ApplyError::Decompress)?;
    let mut ap = Applier {
        root: SecureRoot::new(dest),
        opts,
        touched: HashSet::new(),
        dirs: BTreeMap::new(),
        stats: ApplyStats::default(),
        is_root: nix::unistd::Uid::effective().is_root(),
    };
    {
        let mut archive = tar::Archive::new(&mut reader);
        for entry in archive.entries().map_err(ApplyError::Read)? {
            ap.entry(entry.map_err(ApplyError::Read)?)?;
        }
    }
    ap.finish_dirs()?;
    // Read to the end so the decoder checks the compressed stream's trailer (CRC, checksum).
    io::copy(&mut reader, &mut io::sink()).map_err(ApplyError::Read)?;
    Ok(ap.stats)
}
