//! Layer tars from directories: a whole tree, the difference between two trees (the fallback
//! when overlayfs is not available), or an overlayfs upper directory, whose whiteout devices
//! and opaque markers become OCI `.wh.` entries.
//!
//! Output is deterministic: a depth-first walk with siblings sorted by their name bytes (so
//! parents come before children), headers from [`super::tarfmt`], hard links within the layer
//! written as link entries to the first name in walk order, and mtimes optionally clamped to
//! `SOURCE_DATE_EPOCH`. The same tree always gives the same bytes.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::fsmeta::{get_xattr, read_xattrs};
use super::tarfmt::{Entry, Kind, TarWriter};
use super::{OPAQUE_MARKER, WHITEOUT_PREFIX};

/// Errors of producing a layer tar.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A file or directory of the input could not be read.
    #[error("cannot read {path}")]
    Read {
        /// What was being read.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing the tar stream failed.
    #[error("cannot write layer tar")]
    Write(#[source] io::Error),
    /// The root of a diff is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// The upper directory uses an overlayfs feature a layer tar cannot express by itself.
    #[error("{path}: overlay {feature} is not supported in layer diffs")]
    UnsupportedOverlay {
        /// The entry carrying the feature.
        path: PathBuf,
        /// `redirect_dir` or `metacopy`.
        feature: &'static str,
    },
    /// A file changed size while it was archived.
    #[error("{0} changed while it was archived")]
    Changed(PathBuf),
    /// `SOURCE_DATE_EPOCH` is set but is not a number of seconds.
    #[error("invalid SOURCE_DATE_EPOCH {0:?}")]
    InvalidEpoch(String),
}

/// How layer tars are normalised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// Clamp every mtime to at most this many seconds since the epoch.
    pub source_date_epoch: Option<i64>,
}

impl DiffOptions {
    /// Options from the environment: `SOURCE_DATE_EPOCH` when set and not empty.
    pub fn from_env() -> Result<Self, DiffError> {
        let var = std::env::var("SOURCE_DATE_EPOCH").ok();
        Ok(Self {
            source_date_epoch: parse_epoch(var.as_deref())?,
        })
    }
}

/// `SOURCE_DATE_EPOCH` as reproducible-builds.org defines it: unset or empty means none,
/// anything else must be an integer number of seconds.
fn parse_epoch(var: Option<&str>) -> Result<Option<i64>, DiffError> {
    match var {
        None | Some("") => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| DiffError::InvalidEpoch(v.to_owned())),
    }
}

/// Counts of what a diff wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Entries written, whiteouts included.
    pub entries: u64,
    /// Whiteout and opaque-marker entries among them.
    pub whiteouts: u64,
    /// Regular file content bytes.
    pub file_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Everything under the root.
    Tree,
    /// Changes of an upper tree against a lower tree.
    Diff,
    /// An overlayfs upper directory.
    Overlay,
}

/// A directory that is only written if something below it is (tree diffs include the parents
/// of every change, so apply recreates them with their metadata).
#[derive(Debug)]
struct Pending {
    rel: Vec<u8>,
    abs: PathBuf,
    meta: Metadata,
    xattrs: BTreeMap<String, Vec<u8>>,
}

struct Differ<'o, W: Write> {
    tar: TarWriter<W>,
    opts: &'o DiffOptions,
    mode: Mode,
    /// (dev, ino) of multiply linked files already written → their name in the layer.
    links: BTreeMap<(u64, u64), Vec<u8>>,
    pending: Vec<Pending>,
    stats: DiffStats,
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> DiffError + '_ {
    move |source| DiffError::Read {
        path: path.to_owned(),
        source,
    }
}

fn join_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        v.extend_from_slice(parent);
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>, DiffError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err(dir))? {
        names.push(entry.map_err(read_err(dir))?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn lstat_opt(path: &Path) -> Result<Option<Metadata>, DiffError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_err(path)(e)),
    }
}

fn same_type(a: &Metadata, b: &Metadata) -> bool {
    (a.mode() & nix::libc::S_IFMT) == (b.mode() & nix::libc::S_IFMT)
}

fn same_content(a: &Path, b: &Path) -> Result<bool, DiffError> {
    let mut fa = File::open(a).map_err(read_err(a))?;
    let mut fb = File::open(b).map_err(read_err(b))?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(read_err(a))?;
        let m = read_full(&mut fb, &mut bb).map_err(read_err(b))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn is_opaque(path: &Path) -> Result<bool, DiffError> {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        if get_xattr(path, name).map_err(read_err(path))?.as_deref() == Some(b"y") {
            return Ok(true);
        }
    }
    Ok(false)
}

fn has_any_xattr(path: &Path, names: [&str; 2]) -> Result<bool, DiffError> {
    for name in names {
        if get_xattr(path, name).map_err(read_err(path))?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

impl<W: Write> Differ<'_, W> {
    fn walk(&mut self, rel: &[u8], upper: &Path, lower: Option<&Path>) -> Result<(), DiffError> {
        let ups = sorted_names(upper)?;
        let lows = match lower {
            Some(l) => sorted_names(l)?,
            None => Vec::new(),
        };
        let (mut i, mut j) = (0, 0);
        while i < ups.len() || j < lows.len() {
            let order = match (ups.get(i), lows.get(j)) {
                (Some(u), Some(l)) => u.as_bytes().cmp(l.as_bytes()),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Equal => {
                    self.visit(rel, &ups[i], upper, lower)?;
                    i += 1;
                    j += 1;
                }
                std::cmp::Ordering::Less => {
                    self.visit(rel, &ups[i], upper, None)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.whiteout(rel, lows[j].as_bytes())?;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    fn visit(
        &mut self,
        parent: &[u8],
        name: &OsString,
        upper_dir: &Path,
        lower_dir: Option<&Path>,
    ) -> Result<(), DiffError> {
        let abs = upper_dir.join(name);
        let rel = join_rel(parent, name.as_bytes());
        let meta = fs::symlink_metadata(&abs).map_err(read_err(&abs))?;
        let ft = meta.file_type();
        if ft.is_socket() {
            // Sockets cannot be archived and are meaningless outside the running process.
            return Ok(());
        }
        if self.mode == Mode::Overlay {
            let xwhiteout = ft.is_file()
                && meta.len() == 0
                && has_any_xattr(&abs, ["trusted.overlay.whiteout", "user.overlay.whiteout"])?;
            if (ft.is_char_device() && meta.rdev() == 0) || xwhiteout {
                return self.whiteout(parent, name.as_bytes());
            }
            if ft.is_file()
                && has_any_xattr(&abs, ["trusted.overlay.metacopy", "user.overlay.metacopy"])?
            {
                return Err(DiffError::UnsupportedOverlay {
                    path: abs,
                    feature: "metacopy",
                });
            }
        }
        let lower_abs = lower_dir.map(|l| l.join(name));
        let lower_meta = match &lower_abs {
            Some(p) => lstat_opt(p)?,
            None => None,
        };
        let xattrs = read_xattrs(&abs).map_err(read_err(&abs))?;
        if ft.is_dir() {
            let mut opaque = false;
            if self.mode == Mode::Overlay {
                if has_any_xattr(&abs, ["trusted.overlay.redirect", "user.overlay.redirect"])? {
                    return Err(DiffError::UnsupportedOverlay {
                        path: abs,
                        feature: "redirect_dir",
                    });
                }
                opaque = is_opaque(&abs)?;
            }
            let lower_dir_abs = match (&lower_meta, lower_abs) {
                (Some(lm), Some(p)) if lm.is_dir() => Some(p),
                _ => None,
            };
            let changed = match (&lower_meta, &lower_dir_abs) {
                (Some(lm), Some(lp)) => {
                    // A directory's mtime and size move with its children; only its own
                    // metadata counts as a change (parents of changes are written anyway).
                    meta.mode() != lm.mode()
                        || meta.uid() != lm.uid()
                        || meta.gid() != lm.gid()
                        || xattrs != read_xattrs(lp).map_err(read_err(lp))?
                }
                _ => true,
            };
            if self.mode == Mode::Diff && !changed {
                self.pending.push(Pending {
                    rel: rel.clone(),
                    abs: abs.clone(),
                    meta,
                    xattrs,
                });
            } else {
                self.emit(&rel, &abs, &meta, xattrs)?;
            }
            if opaque {
                self.marker(&join_rel(&rel, OPAQUE_MARKER.as_bytes()))?;
            }
            self.walk(&rel, &abs, lower_dir_abs.as_deref())?;
            if self.pending.last().is_some_and(|p| p.rel == rel) {
                self.pending.pop();
            }
            return Ok(());
        }
        let changed = match (&lower_meta, &lower_abs) {
            (Some(lm), Some(lp)) if self.mode == Mode::Diff => {
                self.nondir_changed(&abs, &meta, &xattrs, lp, lm)?
            }
            _ => true,
        };
        if changed {
            self.emit(&rel, &abs, &meta, xattrs)?;
        }
        Ok(())
    }

    fn nondir_changed(
        &self,
        up: &Path,
        um: &Metadata,
        uxattrs: &BTreeMap<String, Vec<u8>>,
        low: &Path,
        lm: &Metadata,
    ) -> Result<bool, DiffError> {
        if !same_type(um, lm) || um.uid() != lm.uid() || um.gid() != lm.gid() {
            return Ok(true);
        }
        let ft = um.file_type();
        // Symlink permission bits are meaningless on Linux.
        if !ft.is_symlink() && um.mode() != lm.mode() {
            return Ok(true);
        }
        if ft.is_symlink() {
            let a = fs::read_link(up).map_err(read_err(up))?;
            let b = fs::read_link(low).map_err(read_err(low))?;
            if a != b {
                return Ok(true);
            }
        }
        if (ft.is_char_device() || ft.is_block_device()) && um.rdev() != lm.rdev() {
            return Ok(true);
        }
        if ft.is_file() && um.len() != lm.len() {
            return Ok(true);
        }
        if *uxattrs != read_xattrs(low).map_err(read_err(low))? {
            return Ok(true);
        }
        if ft.is_file() && (um.mtime(), um.mtime_nsec()) != (lm.mtime(), lm.mtime_nsec()) {
            // Same size, different mtime: only the bytes can tell. Files whose content is
            // equal are left out even though their mtime moved, keeping layers minimal.
            return Ok(!same_content(up, low)?);
        }
        Ok(false)
    }

    fn clamp(&self, mtime: i64) -> i64 {
        match self.opts.source_date_epoch {
            Some(e) => mtime.min(e),
            None => mtime,
        }
    }

    fn flush_pending(&mut self) -> Result<(), DiffError> {
        for p in std::mem::take(&mut self.pending) {
            self.emit_now(&p.rel, &p.abs, &p.meta, p.xattrs)?;
        }
        Ok(())
    }

    fn emit(
        &mut self,
        rel: &[u8],
        abs: &Path,
        meta: &Metadata,
        xattrs: BTreeMap<String, Vec<u8>>,
    ) -> Result<(), DiffError> {
        self.flush_pending()?;
        self.emit_now(rel, abs, meta, xattrs)
    }

    fn emit_now(
        &mut self,
        rel: &[u8],
        abs: &Path,
        meta: &Metadata,
        xattrs: BTreeMap<String, Vec<u8>>,
    ) -> Result<(), DiffError> {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            Kind::File
        };
        let mut e = Entry::new(rel.to_vec(), kind);
        e.mode = meta.mode() & 0o7777;
        e.uid = u64::from(meta.uid());
        e.gid = u64::from(meta.gid());
        e.mtime = self.clamp(meta.mtime());
        e.xattrs = xattrs;
        self.stats.entries += 1;
        match kind {
            Kind::Symlink => {
                e.link = fs::read_link(abs)
                    .map_err(read_err(abs))?
                    .into_os_string()
                    .into_vec();
            }
            Kind::Char | Kind::Block => {
                e.dev_major = nix::sys::stat::major(meta.rdev());
                e.dev_minor = nix::sys::stat::minor(meta.rdev());
            }
            Kind::File => {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = self.links.get(&key) {
                        // The inode already is in the layer: a link entry, which carries no
                        // data or attributes of its own.
                        let mut l = Entry::new(rel.to_vec(), Kind::HardLink);
                        l.link = first.clone();
                        l.mode = e.mode;
                        l.uid = e.uid;
                        l.gid = e.gid;
                        l.mtime = e.mtime;
                        return self.tar.append(&l, None).map_err(DiffError::Write);
                    }
                    self.links.insert(key, rel.to_vec());
                }
                e.size = meta.len();
                let mut f = File::open(abs).map_err(read_err(abs))?;
                self.stats.file_bytes += e.size;
                return self.tar.append(&e, Some(&mut f)).map_err(|err| {
                    if err.kind() == io::ErrorKind::UnexpectedEof {
                        DiffError::Changed(abs.to_owned())
                    } else {
                        DiffError::Write(err)
                    }
                });
            }
            _ => {}
        }
        self.tar.append(&e, None).map_err(DiffError::Write)
    }

    fn whiteout(&mut self, parent: &[u8], name: &[u8]) -> Result<(), DiffError> {
        let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
        wh.extend_from_slice(name);
        self.marker(&join_rel(parent, &wh))
    }

    /// Writes an empty whiteout or opaque-marker file (mode 0, owner 0, mtime 0: it only
    /// carries its name).
    fn marker(&mut self, rel: &[u8]) -> Result<(), DiffError> {
        self.flush_pending()?;
        self.stats.entries += 1;
        self.stats.whiteouts += 1;
        let e = Entry::new(rel.to_vec(), Kind::File);
        self.tar.append(&e, None).map_err(DiffError::Write)
    }
}

trait IntoVec {
    fn into_vec(self) -> Vec<u8>;
}

impl IntoVec for OsString {
    fn into_vec(self) -> Vec<u8> {
        std::os::unix::ffi::OsStringExt::into_vec(self)
    }
}

fn run<W: Write>(
    mode: Mode,
    upper: &Path,
    lower: Option<&Path>,
    out: W,
    opts: &DiffOptions,
) -> Result<(W, DiffStats), DiffError> {
    for root in std::iter::once(upper).chain(lower) {
        let m = fs::symlink_metadata(root).map_err(read_err(root))?;
        if !m.is_dir() {
            return Err(DiffError::NotADirectory(root.to_owned()));
        }
    }
    let mut d = Differ {
        tar: TarWriter::new(out),
        opts,
        mode,
        links: BTreeMap::new(),
        pending: Vec::new(),
        stats: DiffStats::default(),
    };
    d.walk(b"", upper, lower)?;
    let stats = d.stats;
    let out = d.tar.finish().map_err(DiffError::Write)?;
    Ok((out, stats))
}

/// Writes every entry under `root` (not `root` itself) as a layer tar.
pub fn archive_tree<W: Write>(
    root: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<(W, DiffStats), DiffError> {
    run(Mode::Tree, root, None, out, opts)
}

/// Writes the changes that turn `lower` into `upper`: added and changed entries (with their
/// parent directories) and whiteouts for deleted ones.
pub fn diff_trees<W: Write>(
    lower: &Path,
    upper: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<(W, DiffStats), DiffError> {
    run(Mode::Diff, upper, Some(lower), out, opts)
}

/// Writes an overlayfs upper directory as a layer: whiteout devices (char 0/0) become
/// `.wh.<name>`, opaque directories get a `.wh..wh..opq` entry, overlay xattrs are dropped.
pub fn diff_overlay_upper<W: Write>(
    upper: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<(W, DiffStats), DiffError> {
    run(Mode::Overlay, upper, None, out, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_parsing() {
        assert_eq!(parse_epoch(None).unwrap(), None);
        assert_eq!(parse_epoch(Some("")).unwrap(), None);
        assert_eq!(
            parse_epoch(Some("1700000000")).unwrap(),
            Some(1_700_000_000)
        );
        assert!(matches!(
            parse_epoch(Some("yesterday")),
            Err(DiffError::InvalidEpoch(_))
        ));
    }
}
