//! Copying one source entry (a file, a symlink or a whole directory tree) to a place in the
//! destination, with `cp -a` semantics as BuildKit's copier has them: directories merge
//! into existing ones, anything else replaces what is there (never writing through a
//! symlink), hard links within the copy stay hard links, and owners, modes, xattrs and
//! times follow the source unless `--chown`/`--chmod` say otherwise.
//!
//! The tree is walked once, sequentially, into a list; directories are created in walk
//! order; file contents are then copied in parallel (`copy_file_range` through
//! `std::io::copy`); hard links follow, and directory metadata is set last, deepest first,
//! so that writing children does not disturb a directory's mtime.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustix::fs::OFlags;

use crate::CancelToken;
use crate::context::{AncestorHits, Matcher};

use super::chmod::ModeSpec;
use super::meta::{Owner, Place, copy_file_metadata, copy_metadata, io_err, set_times};
use super::select::{match_path, sorted_names};
use super::{FileOpError, FileStats};

/// Bytes asked of one `copy_file_range` call (the kernel caps it near 2 GiB anyway).
const COPY_CHUNK: usize = 1 << 30;

/// How entries are filtered, owned and moded.
pub(crate) struct TreeOpts<'a> {
    /// `--chown`, resolved.
    pub owner: Option<Owner>,
    /// Keep the source's owners when there is no `--chown` (else 0:0).
    pub keep_owner: bool,
    pub mode: Option<&'a ModeSpec>,
    /// `--parents` patterns: only entries matching one (or below a match) are copied.
    pub include: Option<&'a Matcher>,
    /// `--exclude` patterns.
    pub exclude: Option<&'a Matcher>,
    /// The context's `.dockerignore`, matched against paths relative to the source root.
    pub ignore: Option<&'a Matcher>,
    pub cancel: &'a CancelToken,
}

impl TreeOpts<'_> {
    fn owner_of(&self, meta: &Metadata) -> Owner {
        match self.owner {
            Some(o) => o,
            None if self.keep_owner => Owner {
                uid: meta.uid(),
                gid: meta.gid(),
            },
            None => Owner { uid: 0, gid: 0 },
        }
    }

    fn mode_of(&self, meta: &Metadata) -> u32 {
        match self.mode {
            Some(m) => m.apply(meta.mode(), meta.is_dir()),
            None => meta.mode() & 0o7777,
        }
    }

    fn check_cancel(&self) -> Result<(), FileOpError> {
        if self.cancel.is_cancelled() {
            Err(FileOpError::Cancelled)
        } else {
            Ok(())
        }
    }
}

#[derive(Debug)]
enum Kind {
    Dir,
    File,
    /// A further name of a file copied earlier in this walk.
    HardLink(usize),
    Symlink,
    Special,
}

struct Item {
    src: PathBuf,
    dst: Place,
    meta: Metadata,
    kind: Kind,
    /// The entry the copy was asked for (not something below it).
    top: bool,
}

/// A directory being walked.
struct Frame {
    src: PathBuf,
    /// Path relative to the source root (what `.dockerignore` sees).
    ctx: PathBuf,
    /// Path relative to the copied entry (what `--exclude`/`--parents` patterns see).
    comps: PathBuf,
    dst: Place,
    names: std::vec::IntoIter<OsString>,
    include: Option<AncestorHits>,
    exclude: Option<AncestorHits>,
    ignore: Option<AncestorHits>,
    /// The directory's own entry while it waits for an included descendant.
    pending: Option<Item>,
}

/// Copies the entry at `src_rel` of `src_root` (already resolved; its metadata `meta`) to
/// `dst` of the destination.
pub(crate) fn copy_entry(
    src_root: &Path,
    src_rel: &Path,
    meta: Metadata,
    dst: Place,
    opts: &TreeOpts<'_>,
    stats: &mut FileStats,
) -> Result<(), FileOpError> {
    let items = walk(src_root, src_rel, meta, dst, opts)?;
    write(&items, opts, stats)
}

fn kind_of(meta: &Metadata) -> Kind {
    let ft = meta.file_type();
    if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Special
    }
}

fn walk(
    src_root: &Path,
    src_rel: &Path,
    meta: Metadata,
    dst: Place,
    opts: &TreeOpts<'_>,
) -> Result<Vec<Item>, FileOpError> {
    let mut items = Vec::new();
    let mut links: HashMap<(u64, u64), usize> = HashMap::new();
    let src = src_root.join(src_rel);
    let is_dir = meta.is_dir();
    let top = Item {
        src: src.clone(),
        dst: dst.clone(),
        kind: kind_of(&meta),
        meta,
        top: true,
    };
    if !is_dir {
        items.push(top);
        return Ok(items);
    }
    items.push(top);
    let ctx_str = match_path(src_rel);
    let mut stack = vec![Frame {
        names: sorted_names(&src, src_rel)?.into_iter(),
        src,
        ctx: src_rel.to_owned(),
        comps: PathBuf::new(),
        dst,
        include: opts.include.map(|m| m.ancestors_of_children(".")),
        exclude: opts.exclude.map(|m| m.ancestors_of_children(".")),
        ignore: opts.ignore.map(|m| m.ancestors_of_children(&ctx_str)),
        pending: None,
    }];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.next() else {
            stack.pop();
            continue;
        };
        opts.check_cancel()?;
        let src = frame.src.join(&name);
        let ctx = frame.ctx.join(&name);
        let meta = match std::fs::symlink_metadata(&src) {
            Ok(m) => m,
            // Removed since the listing: not there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("cannot stat source", &ctx)(e)),
        };
        let comps = frame.comps.join(&name);
        let dst = frame.dst.join(&name);
        let is_dir = meta.is_dir();
        let ctx_str = match_path(&ctx);
        let comps_str = match_path(&comps);

        // Whether the entry itself is copied, and whether something below it may be.
        let mut wanted = true;
        let mut descend = is_dir;
        if let (Some(m), Some(hits)) = (opts.ignore, &frame.ignore)
            && m.matches_child(&ctx_str, hits)
        {
            wanted = false;
            descend &= m.may_reinclude_below(&ctx_str);
        }
        if let (Some(m), Some(hits)) = (opts.include, &frame.include)
            && !m.matches_child(&comps_str, hits)
        {
            wanted = false;
        }
        if let (Some(m), Some(hits)) = (opts.exclude, &frame.exclude)
            && m.matches_child(&comps_str, hits)
        {
            wanted = false;
            descend &= m.has_exceptions();
        }
        if !wanted && !descend {
            continue;
        }
        let hits = is_dir.then(|| {
            (
                opts.include
                    .zip(frame.include.as_ref())
                    .map(|(m, h)| m.descend(&comps_str, h)),
                opts.exclude
                    .zip(frame.exclude.as_ref())
                    .map(|(m, h)| m.descend(&comps_str, h)),
                opts.ignore
                    .zip(frame.ignore.as_ref())
                    .map(|(m, h)| m.descend(&ctx_str, h)),
            )
        });

        let mut kind = kind_of(&meta);
        if wanted {
            if let Kind::File = kind
                && meta.nlink() > 1
            {
                let key = (meta.dev(), meta.ino());
                match links.get(&key) {
                    Some(&first) => kind = Kind::HardLink(first),
                    None => {
                        // Its index once the waiting directories are in.
                        links.insert(key, items.len() + pending_count(&stack));
                    }
                }
            }
            // An included entry brings the directories it waits in.
            for f in stack.iter_mut() {
                if let Some(p) = f.pending.take() {
                    items.push(p);
                }
            }
        }
        let item = Item {
            src: src.clone(),
            dst: dst.clone(),
            meta,
            kind,
            top: false,
        };
        let Some((include, exclude, ignore)) = hits else {
            items.push(item);
            continue;
        };
        let pending = if wanted {
            items.push(item);
            None
        } else {
            Some(item)
        };
        let names = sorted_names(&src, &ctx)?.into_iter();
        stack.push(Frame {
            src,
            ctx,
            comps,
            dst,
            names,
            include,
            exclude,
            ignore,
            pending,
        });
    }
    Ok(items)
}

/// Pending directories are pushed before the entry that releases them; a hard link's
/// first name must point at its own index, after them.
fn pending_count(stack: &[Frame]) -> usize {
    stack.iter().filter(|f| f.pending.is_some()).count()
}

/// What happens to a directory's metadata once its contents are written.
enum DirMeta {
    /// Owner, mode, xattrs, times from the source.
    Full,
    /// Only times: the copy's own top directory when it existed already (BuildKit keeps
    /// the existing directory's owner and mode, but takes the source's mtime).
    TimesOnly,
}

fn write(items: &[Item], opts: &TreeOpts<'_>, stats: &mut FileStats) -> Result<(), FileOpError> {
    // Directories, in walk order (parents first). Entries in a directory created here
    // need no check for something already in their place.
    let mut dirs = Vec::new();
    let mut fresh: HashSet<&Path> = HashSet::new();
    for item in items {
        if !matches!(item.kind, Kind::Dir) {
            continue;
        }
        let existing = match std::fs::symlink_metadata(&item.dst.abs) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("cannot stat", &item.dst.rel)(e)),
        };
        let how = match existing {
            None => {
                std::fs::DirBuilder::new()
                    .create(&item.dst.abs)
                    .map_err(io_err("cannot create directory", &item.dst.rel))?;
                stats.dirs += 1;
                fresh.insert(&item.dst.abs);
                DirMeta::Full
            }
            Some(m) if !m.is_dir() => {
                return Err(FileOpError::NotADirectory(super::root::in_root(
                    &item.dst.rel,
                )));
            }
            Some(_) if item.top => DirMeta::TimesOnly,
            Some(_) => DirMeta::Full,
        };
        dirs.push((item, how));
    }

    // Files, symlinks and special files, in parallel.
    let files = AtomicU64::new(0);
    let symlinks = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    items
        .par_iter()
        .filter(|i| matches!(i.kind, Kind::File | Kind::Symlink | Kind::Special))
        .try_for_each(|item| -> Result<(), FileOpError> {
            opts.check_cancel()?;
            if !item.dst.abs.parent().is_some_and(|p| fresh.contains(p)) {
                make_empty_target(&item.dst)?;
            }
            match item.kind {
                Kind::File => {
                    let n = copy_file(item, opts)?;
                    bytes.fetch_add(n, Ordering::Relaxed);
                    files.fetch_add(1, Ordering::Relaxed);
                    // Its metadata went through the open descriptors.
                    return Ok(());
                }
                Kind::Symlink => {
                    let target = std::fs::read_link(&item.src)
                        .map_err(io_err("cannot read link", &item.dst.rel))?;
                    std::os::unix::fs::symlink(&target, &item.dst.abs)
                        .map_err(io_err("cannot create symlink", &item.dst.rel))?;
                    symlinks.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    make_special(item)?;
                    files.fetch_add(1, Ordering::Relaxed);
                }
            }
            copy_metadata(
                &item.src,
                &item.meta,
                &item.dst.abs,
                &item.dst.rel,
                opts.owner_of(&item.meta),
                opts.mode_of(&item.meta),
            )
        })?;
    stats.files += files.into_inner();
    stats.symlinks += symlinks.into_inner();
    stats.bytes += bytes.into_inner();

    // Hard links, once their first names exist.
    for item in items {
        let Kind::HardLink(first) = item.kind else {
            continue;
        };
        opts.check_cancel()?;
        make_empty_target(&item.dst)?;
        std::fs::hard_link(&items[first].dst.abs, &item.dst.abs)
            .map_err(io_err("cannot create hard link", &item.dst.rel))?;
        stats.hardlinks += 1;
    }

    // Directory metadata, deepest first.
    for (item, how) in dirs.into_iter().rev() {
        match how {
            DirMeta::Full => copy_metadata(
                &item.src,
                &item.meta,
                &item.dst.abs,
                &item.dst.rel,
                opts.owner_of(&item.meta),
                opts.mode_of(&item.meta),
            )?,
            DirMeta::TimesOnly => set_times(&item.dst.abs, &item.dst.rel, &item.meta)?,
        }
    }
    Ok(())
}

/// Clears the place for a non-directory: an existing directory is an error (BuildKit's
/// "cannot replace to directory"), anything else is removed, never followed.
fn make_empty_target(dst: &Place) -> Result<(), FileOpError> {
    match std::fs::symlink_metadata(&dst.abs) {
        Ok(m) if m.is_dir() => Err(FileOpError::ReplaceDirectory(super::root::in_root(
            &dst.rel,
        ))),
        Ok(_) => std::fs::remove_file(&dst.abs).map_err(io_err("cannot replace", &dst.rel)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot stat", &dst.rel)(e)),
    }
}

/// Copies a regular file: contents with `copy_file_range` (the kernel may share or
/// offload the blocks; plain read/write where it cannot), then owner, mode, xattrs and
/// times through the open descriptors. Returns the bytes copied.
fn copy_file(item: &Item, opts: &TreeOpts<'_>) -> Result<u64, FileOpError> {
    let rel = &item.dst.rel;
    let mut from = File::options()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(&item.src)
        .map_err(io_err("cannot open source for", rel))?;
    let mut to = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(&item.dst.abs)
        .map_err(io_err("cannot create", rel))?;
    // Up to the size the walk saw (as BuildKit's copier does): a growing file is cut there.
    let size = item.meta.len();
    let mut copied = 0u64;
    while copied < size {
        let want = usize::try_from(size - copied)
            .unwrap_or(COPY_CHUNK)
            .min(COPY_CHUNK);
        match rustix::fs::copy_file_range(&from, None, &to, None, want) {
            // Shrunk since the walk: what there is has been copied.
            Ok(0) => break,
            Ok(n) => copied += n as u64,
            Err(rustix::io::Errno::INTR) => {}
            // Not possible here (other filesystem, no kernel support): std's copy picks
            // what works, continuing where the kernel stopped (both offsets moved).
            Err(_) => {
                let mut rest = (&mut from).take(size - copied);
                copied += io::copy(&mut rest, &mut to).map_err(io_err("cannot copy", rel))?;
                break;
            }
        }
    }
    copy_file_metadata(
        &from,
        &item.meta,
        &to,
        rel,
        opts.owner_of(&item.meta),
        opts.mode_of(&item.meta),
    )?;
    Ok(copied)
}

/// Creates a device node, FIFO or socket like the source.
fn make_special(item: &Item) -> Result<(), FileOpError> {
    let ft = item.meta.file_type();
    let kind = if ft.is_char_device() {
        rustix::fs::FileType::CharacterDevice
    } else if ft.is_block_device() {
        rustix::fs::FileType::BlockDevice
    } else if ft.is_fifo() {
        rustix::fs::FileType::Fifo
    } else {
        rustix::fs::FileType::Socket
    };
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &item.dst.abs,
        kind,
        rustix::fs::Mode::from_raw_mode(0o600),
        item.meta.rdev(),
    )
    .map_err(|e| io_err("cannot create special file", &item.dst.rel)(e.into()))
}
