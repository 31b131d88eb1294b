//! `ADD` of a local tar archive: detection by content (plain tar, gzip, bzip2, xz or zstd,
//! as Docker's `DetectCompression` plus "the first tar header reads") and extraction into
//! the destination directory with moby's `Untar` rules: existing directories merge,
//! anything else is replaced, missing parents are created 0755 root-owned, owners come from
//! the archive unless `--chown` is given, times are restored (directories last). `.wh.`
//! names are ordinary files here (this is not a layer).
//!
//! Every entry is placed through [`rbuild_image::layer::SecureRoot`]: `..` in a name, or a
//! symlink (in the destination or planted by an earlier entry) leading above the
//! destination, is an error; nothing is ever written outside it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_image::layer::{PathError, SecureRoot, clean_entry_name};
use tar::EntryType;

use crate::CancelToken;

use super::meta::{Owner, io_err, set_mtime_secs, tolerable_xattr_error};
use super::{FileOpError, FileStats};

/// Compression of an archive, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// Docker's magic numbers (moby `compression.DetectCompression`).
pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        Compression::Gzip
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.len() >= 4
        && u32::from_le_bytes([head[0], head[1], head[2], head[3]]) & 0xffff_fff0 == 0x184d_2a50
    {
        // A zstd skippable frame.
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A decompressing reader over `file` (`Err` when the compressed stream cannot start).
fn decompressed(file: File) -> io::Result<Box<dyn Read>> {
    let mut file = BufReader::new(file);
    let mut head = [0u8; 6];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let joined = io::Cursor::new(head[..got].to_vec()).chain(file);
    Ok(match detect(&head[..got]) {
        Compression::None => Box::new(joined),
        // Concatenated members are legal in each format and read to the end, as Go does.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(joined)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(joined)),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new(joined, true)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(joined)?),
    })
}

/// Whether the regular file at `abs` is a tar archive (possibly compressed): its first
/// header decompresses and parses, checksum included. Anything else is copied as is.
pub(crate) fn is_archive(abs: &Path) -> bool {
    let Ok(file) = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(abs)
    else {
        return false;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(reader) = decompressed(file) else {
        return false;
    };
    let mut archive = tar::Archive::new(reader);
    let Ok(mut entries) = archive.entries() else {
        return false;
    };
    matches!(entries.next(), Some(Ok(_)))
}

/// Extracts the archive at `archive` (shown as `shown`) into the directory `dest`.
pub(crate) fn extract(
    archive: &Path,
    shown: &Path,
    dest: &Path,
    owner: Option<Owner>,
    cancel: &CancelToken,
    stats: &mut FileStats,
) -> Result<(), FileOpError> {
    let read_err = |source: io::Error| FileOpError::Archive {
        path: shown.to_owned(),
        source,
    };
    let file = File::open(archive).map_err(&read_err)?;
    let reader = decompressed(file).map_err(&read_err)?;
    let mut tar = tar::Archive::new(reader);
    let mut x = Extractor {
        root: SecureRoot::new(dest),
        archive: shown.to_owned(),
        owner,
        is_root: rustix::process::geteuid().is_root(),
        dirs: BTreeMap::new(),
        stats,
    };
    for entry in tar.entries().map_err(&read_err)? {
        if cancel.is_cancelled() {
            return Err(FileOpError::Cancelled);
        }
        x.entry(entry.map_err(&read_err)?)?;
    }
    x.finish_dirs()?;
    x.stats.archives += 1;
    Ok(())
}

struct Extractor<'s> {
    root: SecureRoot,
    archive: PathBuf,
    owner: Option<Owner>,
    is_root: bool,
    /// Directory times, set once everything below is written.
    dirs: BTreeMap<PathBuf, i64>,
    stats: &'s mut FileStats,
}

impl Extractor<'_> {
    fn unsafe_entry(&self, name: &[u8], source: PathError) -> FileOpError {
        FileOpError::UnsafeEntry {
            archive: self.archive.clone(),
            name: String::from_utf8_lossy(name).into_owned(),
            source,
        }
    }

    fn bad_entry(&self, name: &[u8], why: &str) -> FileOpError {
        FileOpError::Archive {
            path: self.archive.clone(),
            source: io::Error::other(format!("entry {:?}: {why}", String::from_utf8_lossy(name))),
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), FileOpError> {
        let archive = self.archive.clone();
        let read_err = move |source: io::Error| FileOpError::Archive {
            path: archive.clone(),
            source,
        };
        let header = entry.header().clone();
        let kind = header.entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        let name = entry.path_bytes().into_owned();
        let comps = clean_entry_name(&name).map_err(|e| self.unsafe_entry(&name, e))?;
        if comps.is_empty() {
            // The archive's root ("./") is the destination, which exists: nothing to do.
            return Ok(());
        }
        let res = self
            .root
            .resolve(&comps, true)
            .map_err(|e| self.unsafe_entry(&name, e))?
            .ok_or_else(|| self.unsafe_entry(&name, PathError::Invalid))?;
        let path = res.path();
        let rel = res.rel.clone();
        let mode = header.mode().map_err(&read_err)? & 0o7777;
        let mtime = i64::try_from(header.mtime().map_err(&read_err)?).unwrap_or(i64::MAX);

        // The place is replaced, never written through; a directory onto a directory merges.
        let existing = std::fs::symlink_metadata(&path).ok();
        let merge = kind == EntryType::Directory && existing.as_ref().is_some_and(|m| m.is_dir());
        if let Some(m) = &existing
            && !merge
        {
            let removed = if m.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io_err("cannot replace", &rel))?;
        }
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)
                    .map_err(io_err("cannot create", &rel))?;
                let n = io::copy(&mut entry, &mut f).map_err(&read_err)?;
                if kind != EntryType::GNUSparse && n != header.size().map_err(&read_err)? {
                    return Err(self.bad_entry(&name, "truncated"));
                }
                self.stats.bytes += n;
                self.stats.files += 1;
            }
            EntryType::Directory => {
                if !merge {
                    std::fs::create_dir(&path).map_err(io_err("cannot create directory", &rel))?;
                    self.stats.dirs += 1;
                }
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.bad_entry(&name, "symlink without target"))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(io_err("cannot create symlink", &rel))?;
                self.stats.symlinks += 1;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.bad_entry(&name, "hard link without target"))?
                    .into_owned();
                let tcomps =
                    clean_entry_name(&target).map_err(|e| self.unsafe_entry(&target, e))?;
                let src = self
                    .root
                    .resolve(&tcomps, false)
                    .map_err(|e| self.unsafe_entry(&target, e))?
                    .map(|r| r.path())
                    .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()))
                    .ok_or_else(|| self.bad_entry(&name, "hard link to a missing entry"))?;
                std::fs::hard_link(&src, &path).map_err(io_err("cannot create hard link", &rel))?;
                // A link shares the metadata its first name set.
                self.stats.hardlinks += 1;
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match kind {
                    EntryType::Char => rustix::fs::FileType::CharacterDevice,
                    EntryType::Block => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                if ft != rustix::fs::FileType::Fifo && !self.is_root {
                    // Without privilege device nodes cannot exist (moby skips them in a
                    // user namespace too).
                    return Ok(());
                }
                let major = header.device_major().map_err(&read_err)?.unwrap_or(0);
                let minor = header.device_minor().map_err(&read_err)?.unwrap_or(0);
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &path,
                    ft,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| io_err("cannot create special file", &rel)(e.into()))?;
                self.stats.files += 1;
            }
            other => {
                return Err(self.bad_entry(
                    &name,
                    &format!("unsupported type {:?}", char::from(other.as_byte())),
                ));
            }
        }

        // Owner first (chown clears set-id bits and capabilities), then mode and xattrs.
        if self.is_root {
            let owner = match self.owner {
                Some(o) => o,
                None => {
                    let uid = header.uid().map_err(&read_err)?;
                    let gid = header.gid().map_err(&read_err)?;
                    match (u32::try_from(uid), u32::try_from(gid)) {
                        (Ok(uid), Ok(gid)) => Owner { uid, gid },
                        _ => return Err(self.bad_entry(&name, "uid or gid out of range")),
                    }
                }
            };
            std::os::unix::fs::lchown(&path, Some(owner.uid), Some(owner.gid))
                .map_err(io_err("cannot chown", &rel))?;
        }
        if kind != EntryType::Symlink {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(io_err("cannot chmod", &rel))?;
        }
        if let Some(exts) = entry.pax_extensions().map_err(&read_err)? {
            for ext in exts {
                let ext = ext.map_err(&read_err)?;
                let Some(key) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else {
                    continue;
                };
                match xattr::set(&path, key, ext.value_bytes()) {
                    Ok(()) => {}
                    // Best effort, as BuildKit's ADD asks of moby's Untar.
                    Err(e) if tolerable_xattr_error(&e) => {}
                    Err(e) => return Err(io_err("cannot set xattr on", &rel)(e)),
                }
            }
        }
        if kind == EntryType::Directory {
            self.dirs.insert(rel, mtime);
        } else {
            set_mtime_secs(&path, &rel, mtime)?;
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), FileOpError> {
        // Deepest first; one replaced later by a non-directory is skipped.
        for (rel, mtime) in std::mem::take(&mut self.dirs).into_iter().rev() {
            let path = self.root.root().join(&rel);
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                set_mtime_secs(&path, &rel, mtime)?;
            }
        }
        Ok(())
    }
}
