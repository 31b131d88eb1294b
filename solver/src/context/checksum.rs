//! Checksums of exactly the context files a `COPY`/`ADD` source list selects.
//!
//! The digest is blake3 over a length-prefixed encoding of, per source in the given
//! order and per match in sorted order, every selected entry in sorted path order:
//! its path relative to the match, its type, its permission bits (`mode & 0o7777`), the
//! content hash of a file, the target of a symlink (never the target's content), and a
//! digest of its extended attributes (sorted, without `security.selinux`; for files
//! cached with the content hash, as changing them moves ctime). A directory contributes
//! its own mode, and its selected entries' names and types appear as their own records,
//! so a chmod, rename, file↔symlink swap or retarget always changes the digest. Owners
//! (uid/gid: context files count as 0) and timestamps never enter it. Excluded paths are
//! skipped entirely; an excluded directory is entered only if an exception may
//! re-include something below it, and then recorded only if something was.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use rustix::fs::OFlags;
use rustix::io::Errno;
use xattr::FileExt;

use super::glob::{FileGlob, PatternError};
use super::ignore::{AncestorHits, Matcher};
use super::metacache::{FileHashes, FileKey, HashStats, MetaCache};
use rbuild_graph::clean_path as clean;

/// Domain separation for the digest encoding; bump when the encoding changes.
const DIGEST_HEADER: &[u8] = b"rbuild.context.selection.v1\0";
/// Symlink hops allowed while resolving a source, as Linux allows (MAXSYMLINKS).
const MAX_SYMLINK_HOPS: u32 = 40;
/// Read buffer size; chunks this large are hashed with blake3's rayon mode.
const CHUNK: usize = 1 << 20;
/// Directory levels walked in parallel; deeper ones are walked iteratively.
const PARALLEL_WALK_DEPTH: usize = 6;
/// Below this a chunk is hashed on one thread (rayon overhead would dominate).
const PARALLEL_CHUNK_MIN: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error("cannot open build context {path}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("{0:?} not found in the build context")]
    NotFound(String),
    #[error("too many levels of symbolic links resolving {0:?}")]
    SymlinkLoop(String),
    #[error("{0} changed type while the context was read")]
    Changed(PathBuf),
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ChecksumError + '_ {
    move |source| ChecksumError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The result of [`checksum_selection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// blake3 of the canonical encoding of the selection.
    pub digest: [u8; 32],
    /// Number of selected entries (files, directories, symlinks, others).
    pub entries: u64,
    /// What this run read (cache hits are files it did not read).
    pub stats: HashStats,
}

impl Checksum {
    /// The digest as `blake3:<hex>`.
    pub fn to_digest_string(&self) -> String {
        format!("blake3:{}", hex::encode(self.digest))
    }
}

struct Entry {
    /// Path relative to the match root; empty for the match root itself.
    rel: Vec<u8>,
    abs: PathBuf,
    meta: Metadata,
}

enum Item {
    Marker(Vec<u8>),
    Entry(Entry),
}

#[derive(Default)]
struct Counters {
    files_hashed: AtomicU64,
    bytes_read: AtomicU64,
    cache_hits: AtomicU64,
}

/// Checksums the files that `sources` (COPY/ADD source paths, relative to `root`, with
/// `filepath.Match` wildcards per path element) select from the context at `root`,
/// leaving out everything `excludes` excludes. A directory source selects its subtree;
/// symlinks in a source path itself are followed (within the context), symlinks inside
/// a selected tree are recorded as links. A source that selects nothing is an error.
///
/// With a `cache`, files whose metadata is unchanged since they were hashed are not
/// read again, and newly hashed files are remembered in it.
pub fn checksum_selection<S: AsRef<str>>(
    root: &Path,
    sources: &[S],
    excludes: &Matcher,
    cache: Option<&MetaCache>,
) -> Result<Checksum, ChecksumError> {
    checksum_selection_listed(root, sources, excludes, cache).map(|(sum, _)| sum)
}

/// [`checksum_selection`], also returning what it covered as a [`Listing`] (the encoded
/// entries it hashed, kept rather than dropped: no extra reads or hashing).
pub fn checksum_selection_listed<S: AsRef<str>>(
    root: &Path,
    sources: &[S],
    excludes: &Matcher,
    cache: Option<&MetaCache>,
) -> Result<(Checksum, Listing), ChecksumError> {
    let root = std::fs::canonicalize(root).map_err(|source| ChecksumError::Root {
        path: root.to_owned(),
        source,
    })?;
    // Taken before any file is looked at: hashes of files changed after this instant
    // minus the racy window are not remembered.
    let racy_cutoff = cache.map(|c| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let cutoff = now.saturating_sub(c.racy_window().as_nanos());
        i64::try_from(cutoff).unwrap_or(i64::MAX)
    });

    let mut items = vec![Item::Marker(DIGEST_HEADER.to_vec())];
    for source in sources {
        let source = source.as_ref();
        let cleaned = clean_source(source);
        items.push(Item::Marker(record(b'S', cleaned.as_bytes())));
        let wildcard = has_wildcards(&cleaned);
        let mut selected_any = false;
        for matched in expand(&root, &cleaned)? {
            let Some(real) = resolve_in_root(&root, &matched)? else {
                if wildcard {
                    continue;
                }
                return Err(ChecksumError::NotFound(source.to_owned()));
            };
            let mark = items.len();
            items.push(Item::Marker(record(b'M', matched.as_os_str().as_bytes())));
            if select(&root, &matched, &real, excludes, &mut items)? {
                selected_any = true;
            } else {
                items.truncate(mark);
            }
        }
        // A wildcard that matches nothing keys as empty (BuildKit does the same); whether
        // that is an error is the copy's decision (`allow_empty_wildcard`).
        if !selected_any && !wildcard {
            return Err(ChecksumError::NotFound(source.to_owned()));
        }
    }

    let counters = Counters::default();
    let records: Vec<Option<Vec<u8>>> = items
        .par_iter()
        .map(|item| match item {
            Item::Marker(_) => Ok(None),
            Item::Entry(e) => encode_entry(e, cache, racy_cutoff, &counters).map(Some),
        })
        .collect::<Result<_, _>>()?;
    let mut hasher = blake3::Hasher::new();
    let mut entries = 0;
    for (item, rec) in items.iter().zip(&records) {
        match (item, rec) {
            (Item::Marker(m), _) => {
                hasher.update(m);
            }
            (Item::Entry(_), Some(r)) => {
                entries += 1;
                hasher.update(r);
            }
            (Item::Entry(_), None) => {}
        }
    }
    let stats = HashStats {
        files_hashed: counters.files_hashed.into_inner(),
        bytes_read: counters.bytes_read.into_inner(),
        cache_hits: counters.cache_hits.into_inner(),
    };
    if let Some(c) = cache {
        c.count(stats.files_hashed, stats.bytes_read, stats.cache_hits);
    }
    let sum = Checksum {
        digest: *hasher.finalize().as_bytes(),
        entries,
        stats,
    };
    Ok((sum, Listing { items, records }))
}

/// The entries one selection checksum covered, in hashing order; turned into
/// [`ListedEntry`]s only when asked ([`Listing::entries`]), so keeping one is free.
pub struct Listing {
    items: Vec<Item>,
    records: Vec<Option<Vec<u8>>>,
}

impl std::fmt::Debug for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listing")
            .field("items", &self.items.len())
            .finish()
    }
}

/// One selected entry as the checksum saw it: enough to say what changed between two
/// selections (never a key: `data` and `xattrs` are truncated digests).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListedEntry {
    /// Context path as the source names it (`src/main.rs`, `.` for the context root).
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// First 8 bytes of blake3 of the content (file), target (symlink) or device (other);
    /// zero for a directory.
    pub data: u64,
    /// First 8 bytes of the extended-attribute digest.
    pub xattrs: u64,
}

/// The type of a [`ListedEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

impl EntryKind {
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "directory",
            EntryKind::Symlink => "symlink",
            EntryKind::Other => "special file",
        }
    }
}

impl Listing {
    /// The selected entries, in hashing order (per source, per match, sorted paths). A
    /// path selected by two sources appears twice.
    pub fn entries(&self) -> Vec<ListedEntry> {
        let mut out = Vec::with_capacity(self.records.len());
        let mut matched: &[u8] = b"";
        for (item, rec) in self.items.iter().zip(&self.records) {
            match (item, rec) {
                (Item::Marker(m), _) if m.first() == Some(&b'M') => matched = &m[9..],
                (Item::Entry(e), Some(r)) => {
                    if let Some(entry) = listed(matched, &e.rel, r) {
                        out.push(entry);
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// Decodes one record made by `encode_entry` (`E`, path, kind, perm, payload, xattrs).
fn listed(matched: &[u8], rel: &[u8], rec: &[u8]) -> Option<ListedEntry> {
    let at = 1 + 8 + rel.len();
    let kind = match *rec.get(at)? {
        KIND_FILE => EntryKind::File,
        KIND_DIR => EntryKind::Dir,
        KIND_SYMLINK => EntryKind::Symlink,
        _ => EntryKind::Other,
    };
    let mode = u32::from_le_bytes(rec.get(at + 1..at + 5)?.try_into().ok()?);
    let rest = rec.get(at + 5..)?;
    let split = rest.len().checked_sub(32)?;
    let (payload, xattrs) = rest.split_at(split);
    let first8 = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
    let data = match kind {
        EntryKind::Dir => 0,
        EntryKind::File => first8(payload.get(..32)?),
        _ => first8(blake3::hash(payload).as_bytes()),
    };
    let mut path = matched.to_vec();
    if path == b"." || path.is_empty() {
        path.clear();
    }
    if !rel.is_empty() {
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(rel);
    }
    let path = if path.is_empty() {
        ".".to_owned()
    } else {
        lossy(&path)
    };
    Some(ListedEntry {
        path,
        kind,
        mode,
        data,
        xattrs: first8(xattrs),
    })
}

/// Cleans a source path and keeps it inside the context (`..` stops at the root, as
/// BuildKit scopes sources); the context root itself is `.`.
fn clean_source(source: &str) -> String {
    let rooted = clean(&format!("/{source}"));
    match rooted.strip_prefix('/') {
        Some("") | None => ".".to_owned(),
        Some(rel) => rel.to_owned(),
    }
}

/// Expands wildcards as BuildKit's `ResolveWildcards` does: the elements before the
/// first one with a wildcard are resolved like any source path (following symlinks);
/// below that the tree is walked without following symlinked directories, and each
/// element is matched with Go's `filepath.Match`. A literal source is returned as is.
fn expand(root: &Path, cleaned: &str) -> Result<Vec<PathBuf>, ChecksumError> {
    let comps: Vec<&str> = cleaned.split('/').collect();
    let Some(first_wild) = comps.iter().position(|c| has_wildcards(c)) else {
        return Ok(vec![PathBuf::from(cleaned)]);
    };
    let base: PathBuf = comps[..first_wild].iter().collect();
    let Some(real_base) = resolve_in_root(root, &base)? else {
        return Ok(Vec::new());
    };
    // (path as the source names it, path in the context)
    let mut frontier = vec![(base, real_base)];
    for comp in &comps[first_wild..] {
        let glob = has_wildcards(comp)
            .then(|| FileGlob::new(comp))
            .transpose()?;
        let mut next = Vec::new();
        for (named, real) in &frontier {
            let dir = root.join(real);
            if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            match &glob {
                Some(glob) => {
                    for name in sorted_names(&dir)? {
                        if glob.matches(&lossy(name.as_bytes())) {
                            next.push((named.join(&name), real.join(&name)));
                        }
                    }
                }
                None => {
                    if std::fs::symlink_metadata(dir.join(comp)).is_ok() {
                        next.push((named.join(comp), real.join(comp)));
                    }
                }
            }
        }
        frontier = next;
    }
    Ok(frontier.into_iter().map(|(named, _)| named).collect())
}

/// BuildKit's `containsWildcards`: `*`, `?` or `[` not escaped by a backslash.
fn has_wildcards(s: &str) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Resolves `rel` inside `root`, following symlinks in every element but never leaving
/// the root (absolute targets restart at the root, `..` stops there). `None` when the
/// path does not exist.
fn resolve_in_root(root: &Path, rel: &Path) -> Result<Option<PathBuf>, ChecksumError> {
    let mut pending: Vec<OsString> = components(rel);
    pending.reverse();
    let mut stack: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            stack.pop();
            continue;
        }
        if comp == "." || comp.is_empty() {
            continue;
        }
        stack.push(comp);
        let abs: PathBuf = std::iter::once(root.as_os_str().to_owned())
            .chain(stack.iter().cloned())
            .collect();
        let meta = match std::fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None);
            }
            Err(source) => return Err(ChecksumError::Io { path: abs, source }),
        };
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(ChecksumError::SymlinkLoop(rel.display().to_string()));
            }
            let target = std::fs::read_link(&abs).map_err(io_err(&abs))?;
            stack.pop();
            if target.is_absolute() {
                stack.clear();
            }
            let mut more = components(&target);
            more.reverse();
            pending.extend(more);
        }
    }
    Ok(Some(stack.iter().collect()))
}

fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Adds the entries of one match to `items`; false when nothing was selected.
fn select(
    root: &Path,
    matched: &Path,
    real: &Path,
    excludes: &Matcher,
    items: &mut Vec<Item>,
) -> Result<bool, ChecksumError> {
    let abs = root.join(real);
    let meta = std::fs::symlink_metadata(&abs).map_err(io_err(&abs))?;
    let real_str = context_path(real);
    let excluded = excludes.matches(&context_path(matched)) || excludes.matches(&real_str);
    let is_dir = meta.is_dir();
    if excluded && !(is_dir && excludes.may_reinclude_below(&real_str)) {
        return Ok(false);
    }
    let mark = items.len();
    items.push(Item::Entry(Entry {
        rel: Vec::new(),
        abs: abs.clone(),
        meta,
    }));
    if is_dir {
        let start = DirToWalk {
            hits: excludes.ancestors_of_children(&real_str),
            abs: abs.clone(),
            ctx: real.to_owned(),
            rel: Vec::new(),
        };
        walk(&start, 0, excludes, items)?;
    }
    Ok(!excluded || items.len() > mark + 1)
}

/// Appends the selected entries below `abs` (context path `ctx`) in sorted order.
/// The top levels are walked in parallel (a walk of an unchanged context is all stat
/// calls); deeper levels iteratively, so no directory depth can exhaust a stack.
fn walk(
    dir: &DirToWalk,
    depth: usize,
    excludes: &Matcher,
    items: &mut Vec<Item>,
) -> Result<(), ChecksumError> {
    if depth >= PARALLEL_WALK_DEPTH {
        return walk_deep(dir, excludes, items);
    }
    let names = sorted_names(&dir.abs)?;
    let subtrees: Vec<Vec<Item>> = names
        .par_iter()
        .map(|name| {
            let mut out = Vec::new();
            if let Some(child) = visit(dir, name, excludes)? {
                let excluded = child.excluded;
                out.push(Item::Entry(child.entry));
                if let Some(sub) = child.dir {
                    walk(&sub, depth + 1, excludes, &mut out)?;
                    // An excluded directory only counts as the parent of re-included
                    // entries.
                    if excluded && out.len() == 1 {
                        out.clear();
                    }
                }
            }
            Ok(out)
        })
        .collect::<Result<_, ChecksumError>>()?;
    items.extend(subtrees.into_iter().flatten());
    Ok(())
}

/// Sequential depth-first walk with an explicit stack, same order and rules as `walk`.
fn walk_deep(
    start: &DirToWalk,
    excludes: &Matcher,
    items: &mut Vec<Item>,
) -> Result<(), ChecksumError> {
    struct Frame {
        dir: DirToWalk,
        names: std::vec::IntoIter<OsString>,
        /// Index in `items` of this directory's own entry when it is excluded.
        excluded_at: Option<usize>,
    }
    let mut stack = vec![Frame {
        dir: start.clone(),
        names: sorted_names(&start.abs)?.into_iter(),
        excluded_at: None,
    }];
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.names.next() else {
            if let Some(done) = stack.pop()
                && let Some(at) = done.excluded_at
                && items.len() == at + 1
            {
                items.truncate(at);
            }
            continue;
        };
        let Some(child) = visit(&top.dir, &name, excludes)? else {
            continue;
        };
        let at = items.len();
        items.push(Item::Entry(child.entry));
        if let Some(dir) = child.dir {
            let names = sorted_names(&dir.abs)?.into_iter();
            stack.push(Frame {
                dir,
                names,
                excluded_at: child.excluded.then_some(at),
            });
        }
    }
    Ok(())
}

/// A directory a walk descends into.
#[derive(Clone)]
struct DirToWalk {
    abs: PathBuf,
    /// Path relative to the context root.
    ctx: PathBuf,
    /// Path relative to the match root.
    rel: Vec<u8>,
    /// Which exclude patterns match one of its ancestors or itself.
    hits: AncestorHits,
}

struct Visited {
    entry: Entry,
    excluded: bool,
    dir: Option<DirToWalk>,
}

/// Stats one directory child and applies the excludes; `None` when it is excluded (and
/// cannot have re-included entries below) or vanished since the listing.
fn visit(
    parent: &DirToWalk,
    name: &OsStr,
    excludes: &Matcher,
) -> Result<Option<Visited>, ChecksumError> {
    let child_abs = parent.abs.join(name);
    let meta = match std::fs::symlink_metadata(&child_abs) {
        Ok(m) => m,
        // Removed since the directory was listed: it is simply not there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ChecksumError::Io {
                path: child_abs,
                source,
            });
        }
    };
    let child_ctx = parent.ctx.join(name);
    let ctx_str = context_path(&child_ctx);
    let is_dir = meta.is_dir();
    let excluded = excludes.matches_child(&ctx_str, &parent.hits);
    if excluded && !(is_dir && excludes.may_reinclude_below(&ctx_str)) {
        return Ok(None);
    }
    let mut child_rel = parent.rel.to_vec();
    if !child_rel.is_empty() {
        child_rel.push(b'/');
    }
    child_rel.extend_from_slice(name.as_bytes());
    Ok(Some(Visited {
        entry: Entry {
            rel: child_rel.clone(),
            abs: child_abs.clone(),
            meta,
        },
        excluded,
        dir: is_dir.then(|| DirToWalk {
            hits: excludes.descend(&ctx_str, &parent.hits),
            abs: child_abs,
            ctx: child_ctx,
            rel: child_rel,
        }),
    }))
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>, ChecksumError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        names.push(entry.map_err(io_err(dir))?.file_name());
    }
    // Byte order, independent of locale and filesystem listing order.
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// A context-relative path as the ignore matcher sees it: slash separated, `.` for the
/// root, and each byte of invalid UTF-8 as U+FFFD (as Go's regexp reads such bytes).
fn context_path(p: &Path) -> String {
    let s = lossy(p.as_os_str().as_bytes());
    if s.is_empty() { ".".to_owned() } else { s }
}

fn lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    out
}

fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn record(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut buf = vec![tag];
    put(&mut buf, bytes);
    buf
}

const KIND_FILE: u8 = 1;
const KIND_DIR: u8 = 2;
const KIND_SYMLINK: u8 = 3;
const KIND_OTHER: u8 = 4;
/// `S_IFMT`: the file-type bits of `st_mode`.
const S_IFMT: u32 = 0o170000;

fn encode_entry(
    e: &Entry,
    cache: Option<&MetaCache>,
    racy_cutoff: Option<i64>,
    counters: &Counters,
) -> Result<Vec<u8>, ChecksumError> {
    let mut rec = Vec::with_capacity(96 + e.rel.len());
    rec.push(b'E');
    put(&mut rec, &e.rel);
    let ft = e.meta.file_type();
    let perm = (e.meta.mode() & 0o7777).to_le_bytes();
    if ft.is_file() {
        rec.push(KIND_FILE);
        rec.extend_from_slice(&perm);
        let hashes = hash_file(e, cache, racy_cutoff, counters)?;
        rec.extend_from_slice(&hashes.content);
        rec.extend_from_slice(&hashes.xattrs);
        return Ok(rec);
    } else if ft.is_dir() {
        rec.push(KIND_DIR);
        rec.extend_from_slice(&perm);
    } else if ft.is_symlink() {
        rec.push(KIND_SYMLINK);
        rec.extend_from_slice(&perm);
        let target = std::fs::read_link(&e.abs).map_err(io_err(&e.abs))?;
        put(&mut rec, target.as_os_str().as_bytes());
    } else {
        rec.push(KIND_OTHER);
        rec.extend_from_slice(&perm);
        rec.extend_from_slice(&(e.meta.mode() & S_IFMT).to_le_bytes());
        rec.extend_from_slice(&e.meta.rdev().to_le_bytes());
    }
    let path = e.abs.as_path();
    rec.extend_from_slice(&xattr_digest(
        path,
        || xattr::list(path),
        |name| xattr::get(path, name),
    )?);
    Ok(rec)
}

/// blake3 of an entry's extended attributes (not following symlinks), sorted by name;
/// `list` and `get` read them by path or from an open file. `security.selinux` is left
/// out: it describes the host's policy, not the context.
fn xattr_digest(
    path: &Path,
    list: impl FnOnce() -> std::io::Result<xattr::XAttrs>,
    get: impl Fn(&OsStr) -> std::io::Result<Option<Vec<u8>>>,
) -> Result<[u8; 32], ChecksumError> {
    let names = match list() {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(Errno::NOTSUP.raw_os_error()) => {
            return Ok(*blake3::hash(&0u64.to_le_bytes()).as_bytes());
        }
        Err(source) => {
            return Err(ChecksumError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut attrs: Vec<(OsString, Vec<u8>)> = Vec::new();
    for name in names {
        if name == "security.selinux" {
            continue;
        }
        // Removed between listing and reading: not there.
        if let Some(value) = get(&name).map_err(io_err(path))? {
            attrs.push((name, value));
        }
    }
    attrs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut enc = Vec::new();
    enc.extend_from_slice(&(attrs.len() as u64).to_le_bytes());
    for (name, value) in &attrs {
        put(&mut enc, name.as_bytes());
        put(&mut enc, value);
    }
    Ok(*blake3::hash(&enc).as_bytes())
}

/// The blake3 of a file's contents and its xattr digest, from the cache when its
/// metadata is unchanged (an xattr change moves ctime too), else read: contents
/// streamed in fixed-size chunks (memory stays flat whatever the size).
fn hash_file(
    e: &Entry,
    cache: Option<&MetaCache>,
    racy_cutoff: Option<i64>,
    counters: &Counters,
) -> Result<FileHashes, ChecksumError> {
    let listed = FileKey::of(&e.meta);
    let cache_key = e.abs.to_str();
    if let (Some(cache), Some(key)) = (cache, cache_key)
        && let Some(hashes) = cache.lookup(key, &listed)
    {
        counters.cache_hits.fetch_add(1, Ordering::Relaxed);
        return Ok(hashes);
    }
    // Never follow a symlink or block on a FIFO swapped in since the listing.
    let mut file = File::options()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(&e.abs)
        .map_err(|source| {
            if source.raw_os_error() == Some(Errno::LOOP.raw_os_error()) {
                ChecksumError::Changed(e.abs.clone())
            } else {
                ChecksumError::Io {
                    path: e.abs.clone(),
                    source,
                }
            }
        })?;
    let opened = file.metadata().map_err(io_err(&e.abs))?;
    if !opened.is_file() {
        return Err(ChecksumError::Changed(e.abs.clone()));
    }
    let before = FileKey::of(&opened);
    let mut hasher = blake3::Hasher::new();
    let size = usize::try_from(before.size).unwrap_or(CHUNK);
    let mut buf = vec![0u8; size.clamp(1, CHUNK)];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ChecksumError::Io {
                    path: e.abs.clone(),
                    source,
                });
            }
        };
        total += n as u64;
        if n >= PARALLEL_CHUNK_MIN {
            hasher.update_rayon(&buf[..n]);
        } else {
            hasher.update(&buf[..n]);
        }
    }
    let hashes = FileHashes {
        content: *hasher.finalize().as_bytes(),
        xattrs: xattr_digest(&e.abs, || file.list_xattr(), |name| file.get_xattr(name))?,
    };
    let after = FileKey::of(&file.metadata().map_err(io_err(&e.abs))?);
    counters.files_hashed.fetch_add(1, Ordering::Relaxed);
    counters.bytes_read.fetch_add(total, Ordering::Relaxed);
    // Remember only a stable read (nothing changed while reading, and the listing saw
    // the same file) of a file whose last change is safely older than this run.
    if let (Some(cache), Some(key), Some(cutoff)) = (cache, cache_key, racy_cutoff)
        && before == after
        && before == listed
        && after.ctime_ns < cutoff
    {
        cache.insert(key.to_owned(), after, hashes);
    }
    Ok(hashes)
}
