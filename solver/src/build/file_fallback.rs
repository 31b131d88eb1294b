//! A minimal stand-in for `rbuild_solver::fileop` (written on another branch): plain
//! `COPY` of files, directories and last-component wildcards, `WORKDIR` directories and
//! inline files, with `--chown` (ids or names from the destination's passwd/group) and
//! octal `--chmod`. Its signature is the real module's, so replacing it is a one-line
//! change in `build::file`. Everything it does not do is a clear "not supported" error.
//!
//! Paths inside a root are resolved with symlinks followed *inside* that root (an absolute
//! link target means the root), so nothing is ever read or written outside it.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_graph::{CopyAction, FileOp, MkdirAction, MkfileAction};

use crate::cancel::CancelToken;
use crate::context::Matcher;
use crate::context::glob::FileGlob;

use super::paths::components;
pub use super::paths::resolve_in_root;

/// One input of a file op, indexed like the vertex inputs.
#[derive(Debug, Clone, Copy)]
pub struct FileSource<'a> {
    pub root: &'a Path,
    /// `.dockerignore` rules of a build context.
    pub ignore: Option<&'a Matcher>,
    /// Keep the owners of copied files (stages, images); context files belong to root.
    pub keep_owner: bool,
}

/// What an op wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    #[error("{0:?}: not found")]
    NotFound(String),
    #[error(transparent)]
    Path(#[from] super::paths::PathError),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid user {spec:?}")]
    User {
        spec: String,
        #[source]
        source: rbuild_executor::user::UserError,
    },
    #[error("invalid pattern {0:?}")]
    Pattern(String),
    #[error("file operation input {0} is missing")]
    MissingInput(usize),
    #[error("{0} is not supported yet")]
    Unsupported(String),
    #[error("cancelled")]
    Cancelled,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FileOpError + '_ {
    move |source| FileOpError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Applies `op` to the tree at `dest` (which is `inputs[0].root`).
pub fn apply(
    op: &FileOp,
    dest: &Path,
    inputs: &[FileSource<'_>],
    cancel: &CancelToken,
) -> Result<FileStats, FileOpError> {
    match op {
        FileOp::Copy(c) => copy(c, dest, inputs, cancel),
        FileOp::Mkdir(m) => mkdir(m, dest),
        FileOp::Mkfile(m) => mkfile(m, dest),
    }
}

fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Owner ids for a `--chown` spec, resolved in the destination's passwd and group.
fn owner(spec: Option<&str>, dest: &Path) -> Result<Option<(u32, u32)>, FileOpError> {
    let Some(spec) = spec else { return Ok(None) };
    let read = |p: &str| -> Option<String> {
        let path = resolve_in_root(dest, p, true).ok()?;
        fs::read_to_string(path).ok()
    };
    let passwd = read("/etc/passwd");
    let group = read("/etc/group");
    let creds = rbuild_executor::user::resolve(spec, passwd.as_deref(), group.as_deref()).map_err(
        |source| FileOpError::User {
            spec: spec.to_owned(),
            source,
        },
    )?;
    Ok(Some((creds.uid, creds.gid)))
}

fn parse_chmod(chmod: Option<&str>) -> Result<Option<u32>, FileOpError> {
    match chmod {
        None => Ok(None),
        Some(m) => u32::from_str_radix(m, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .map(Some)
            .ok_or_else(|| FileOpError::Unsupported(format!("--chmod={m}"))),
    }
}

/// Creates the missing directories of `dir` (resolved inside `root`), owned by `owner`.
fn mkdir_all(
    root: &Path,
    dir: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<PathBuf, FileOpError> {
    let mut sofar = String::new();
    let mut path = root.to_path_buf();
    for part in components(Path::new(dir)) {
        sofar.push('/');
        sofar.push_str(&part.to_string_lossy());
        path = resolve_in_root(root, &sofar, true)?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(FileOpError::Io {
                    path: path.clone(),
                    source: io::Error::from(io::ErrorKind::NotADirectory),
                });
            }
            Err(_) => {
                fs::create_dir(&path).map_err(io_err(&path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(io_err(&path))?;
                if let Some((u, g)) = owner {
                    std::os::unix::fs::lchown(&path, Some(u), Some(g)).map_err(io_err(&path))?;
                }
            }
        }
    }
    Ok(path)
}

fn mkdir(m: &MkdirAction, dest: &Path) -> Result<FileStats, FileOpError> {
    let owner = owner(m.owner.as_deref(), dest)?;
    if !m.parents {
        let parent = Path::new(&m.path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let p = resolve_in_root(dest, &parent, true)?;
        if !p.is_dir() {
            return Err(FileOpError::NotFound(parent));
        }
    }
    mkdir_all(dest, &m.path, m.mode, owner)?;
    Ok(FileStats::default())
}

fn mkfile(m: &MkfileAction, dest: &Path) -> Result<FileStats, FileOpError> {
    let owner = owner(m.owner.as_deref(), dest)?;
    let path = resolve_in_root(dest, &m.path, false)?;
    remove_non_dir(&path)?;
    fs::write(&path, m.data.as_bytes()).map_err(io_err(&path))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(m.mode)).map_err(io_err(&path))?;
    if let Some((u, g)) = owner {
        std::os::unix::fs::lchown(&path, Some(u), Some(g)).map_err(io_err(&path))?;
    }
    Ok(FileStats {
        files: 1,
        bytes: m.data.len() as u64,
    })
}

/// Removes a file or link in the way of a new entry, never following it.
fn remove_non_dir(path: &Path) -> Result<(), FileOpError> {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() => fs::remove_file(path).map_err(io_err(path)),
        _ => Ok(()),
    }
}

/// One matched source: its resolved path and the name it is copied under.
struct Matched<'a> {
    path: PathBuf,
    name: OsString,
    input: FileSource<'a>,
}

/// The context-relative path of `path` for `.dockerignore` checks.
fn rel_of(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let s = rel.to_string_lossy().into_owned();
    Some(if s.is_empty() { ".".to_owned() } else { s })
}

fn ignored(input: &FileSource<'_>, path: &Path) -> bool {
    match (input.ignore, rel_of(input.root, path)) {
        (Some(m), Some(rel)) => m.matches(&rel),
        _ => false,
    }
}

fn copy(
    c: &CopyAction,
    dest: &Path,
    inputs: &[FileSource<'_>],
    cancel: &CancelToken,
) -> Result<FileStats, FileOpError> {
    if !c.exclude.is_empty() {
        return Err(FileOpError::Unsupported("COPY --exclude".into()));
    }
    if c.parents {
        return Err(FileOpError::Unsupported("COPY --parents".into()));
    }
    let chown = owner(c.chown.as_deref(), dest)?;
    let chmod = parse_chmod(c.chmod.as_deref())?;
    let mut matched = Vec::new();
    let mut any_wildcard = false;
    for src in &c.sources {
        let input = *inputs
            .get(src.input)
            .ok_or(FileOpError::MissingInput(src.input))?;
        let path = src.path.trim_end_matches('/');
        let (parent, last) = match path.rsplit_once('/') {
            Some((p, l)) => (p, l),
            None => ("", path),
        };
        if src.allow_wildcard && has_wildcards(path) {
            any_wildcard = true;
            if has_wildcards(parent) {
                return Err(FileOpError::Unsupported(format!(
                    "wildcards in directories ({path})"
                )));
            }
            let glob = FileGlob::new(last).map_err(|_| FileOpError::Pattern(last.to_owned()))?;
            let dir = resolve_in_root(input.root, parent, true)?;
            let mut names: Vec<OsString> = fs::read_dir(&dir)
                .map_err(io_err(&dir))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .filter(|n| glob.matches(&n.to_string_lossy()))
                .collect();
            names.sort();
            let before = matched.len();
            for name in names {
                let p = resolve_in_root(
                    input.root,
                    &format!("{parent}/{}", name.to_string_lossy()),
                    src.follow_symlinks,
                )?;
                if !ignored(&input, &dir.join(&name)) {
                    matched.push(Matched {
                        path: p,
                        name,
                        input,
                    });
                }
            }
            if matched.len() == before && !src.allow_empty_wildcard {
                return Err(FileOpError::NotFound(src.path.clone()));
            }
        } else {
            let p = resolve_in_root(input.root, path, src.follow_symlinks)?;
            if fs::symlink_metadata(&p).is_err() || (ignored(&input, &p) && !p.is_dir()) {
                return Err(FileOpError::NotFound(src.path.clone()));
            }
            if src.unpack && p.is_file() && looks_like_archive(&p) {
                return Err(FileOpError::Unsupported("ADD of a local archive".into()));
            }
            let name = Path::new(last)
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            matched.push(Matched {
                path: p,
                name,
                input,
            });
        }
    }

    let dest_is_dir_hint = c.dest.ends_with('/') || matched.len() > 1 || any_wildcard;
    let dest_path = resolve_in_root(dest, &c.dest, true)?;
    let dest_exists_dir = dest_path.is_dir();
    let mut stats = FileStats::default();
    for m in &matched {
        if cancel.is_cancelled() {
            return Err(FileOpError::Cancelled);
        }
        let meta = fs::symlink_metadata(&m.path).map_err(io_err(&m.path))?;
        if meta.is_dir() {
            // A directory copies its contents.
            let target = mkdir_all(dest, &c.dest, 0o755, chown)?;
            copy_dir_contents(&m.path, &target, m.input, chown, chmod, cancel, &mut stats)?;
        } else if dest_is_dir_hint || dest_exists_dir {
            let dir = mkdir_all(dest, &c.dest, 0o755, chown)?;
            copy_entry(
                &m.path,
                &dir.join(&m.name),
                &meta,
                m.input,
                chown,
                chmod,
                &mut stats,
            )?;
        } else {
            let parent = Path::new(&c.dest)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dir = mkdir_all(dest, &parent, 0o755, chown)?;
            let name = Path::new(&c.dest).file_name().unwrap_or(m.name.as_os_str());
            copy_entry(
                &m.path,
                &dir.join(name),
                &meta,
                m.input,
                chown,
                chmod,
                &mut stats,
            )?;
        }
    }
    Ok(stats)
}

fn looks_like_archive(p: &Path) -> bool {
    let name = p.to_string_lossy();
    [".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar.zst"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

fn copy_dir_contents(
    src: &Path,
    dst: &Path,
    input: FileSource<'_>,
    chown: Option<(u32, u32)>,
    chmod: Option<u32>,
    cancel: &CancelToken,
    stats: &mut FileStats,
) -> Result<(), FileOpError> {
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(io_err(src))?
        .collect::<Result<_, _>>()
        .map_err(io_err(src))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if cancel.is_cancelled() {
            return Err(FileOpError::Cancelled);
        }
        let path = e.path();
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let excluded = ignored(&input, &path);
        let target = dst.join(e.file_name());
        if meta.is_dir() {
            // An excluded directory may still hold re-included files.
            if excluded && !input.ignore.is_some_and(|m| m.has_exceptions()) {
                continue;
            }
            let fresh = !target.is_dir();
            if fresh {
                remove_non_dir(&target)?;
                fs::create_dir(&target).map_err(io_err(&target))?;
            }
            copy_dir_contents(&path, &target, input, chown, chmod, cancel, stats)?;
            if excluded
                && fresh
                && fs::read_dir(&target)
                    .map_err(io_err(&target))?
                    .next()
                    .is_none()
            {
                fs::remove_dir(&target).map_err(io_err(&target))?;
                continue;
            }
            set_meta(&target, &meta, input, chown, chmod)?;
        } else if !excluded {
            copy_entry(&path, &target, &meta, input, chown, chmod, stats)?;
        }
    }
    Ok(())
}

fn copy_entry(
    src: &Path,
    dst: &Path,
    meta: &fs::Metadata,
    input: FileSource<'_>,
    chown: Option<(u32, u32)>,
    chmod: Option<u32>,
    stats: &mut FileStats,
) -> Result<(), FileOpError> {
    remove_non_dir(dst)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(src).map_err(io_err(src))?;
        std::os::unix::fs::symlink(&target, dst).map_err(io_err(dst))?;
        let (uid, gid) = ids(meta, input, chown);
        std::os::unix::fs::lchown(dst, Some(uid), Some(gid)).map_err(io_err(dst))?;
        return Ok(());
    }
    if !ft.is_file() {
        return Err(FileOpError::Unsupported(format!(
            "copying special file {}",
            src.display()
        )));
    }
    if dst.is_dir() {
        return Err(FileOpError::Io {
            path: dst.to_owned(),
            source: io::Error::from(io::ErrorKind::IsADirectory),
        });
    }
    let n = fs::copy(src, dst).map_err(io_err(src))?;
    stats.files += 1;
    stats.bytes += n;
    set_meta(dst, meta, input, chown, chmod)
}

fn ids(meta: &fs::Metadata, input: FileSource<'_>, chown: Option<(u32, u32)>) -> (u32, u32) {
    match chown {
        Some(ids) => ids,
        None if input.keep_owner => (meta.uid(), meta.gid()),
        None => (0, 0),
    }
}

/// Owner, mode (after the owner: chown clears setuid bits) and mtime of a copied entry.
fn set_meta(
    dst: &Path,
    meta: &fs::Metadata,
    input: FileSource<'_>,
    chown: Option<(u32, u32)>,
    chmod: Option<u32>,
) -> Result<(), FileOpError> {
    let (uid, gid) = ids(meta, input, chown);
    std::os::unix::fs::lchown(dst, Some(uid), Some(gid)).map_err(io_err(dst))?;
    let mode = chmod.unwrap_or(meta.mode() & 0o7777);
    fs::set_permissions(dst, fs::Permissions::from_mode(mode)).map_err(io_err(dst))?;
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        dst,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| FileOpError::Io {
        path: dst.to_owned(),
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_graph::CopySource;

    fn source(input: usize, path: &str) -> CopySource {
        CopySource {
            input,
            path: path.into(),
            include_patterns: vec![],
            required_paths: vec![],
            unpack: false,
            follow_symlinks: true,
            dir_contents_only: true,
            allow_wildcard: true,
            allow_empty_wildcard: true,
        }
    }

    fn copy_op(sources: Vec<CopySource>, dest: &str) -> FileOp {
        FileOp::Copy(CopyAction {
            sources,
            dest: dest.into(),
            chown: None,
            chmod: None,
            exclude: vec![],
            parents: false,
            create_dest_path: true,
        })
    }

    #[test]
    fn copies_files_dirs_and_wildcards_but_not_ignored_files() {
        let ctx = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::write(ctx.path().join("a.txt"), "a").unwrap();
        fs::write(ctx.path().join("b.txt"), "b").unwrap();
        fs::write(ctx.path().join("secret.txt"), "s").unwrap();
        fs::create_dir(ctx.path().join("d")).unwrap();
        fs::write(ctx.path().join("d/x"), "x").unwrap();
        let ignore = Matcher::new(&["secret.txt"]).unwrap();
        let inputs = [
            FileSource {
                root: root.path(),
                ignore: None,
                keep_owner: true,
            },
            FileSource {
                root: ctx.path(),
                ignore: Some(&ignore),
                keep_owner: false,
            },
        ];
        let cancel = CancelToken::new();
        let op = copy_op(vec![source(1, "/*.txt"), source(1, "/d")], "/app/");
        let stats = apply(&op, root.path(), &inputs, &cancel).unwrap();
        assert_eq!(stats.files, 3);
        assert_eq!(
            fs::read_to_string(root.path().join("app/a.txt")).unwrap(),
            "a"
        );
        assert_eq!(fs::read_to_string(root.path().join("app/x")).unwrap(), "x");
        assert!(!root.path().join("app/secret.txt").exists());

        let op = copy_op(vec![source(1, "/a.txt")], "/renamed");
        apply(&op, root.path(), &inputs, &cancel).unwrap();
        assert_eq!(
            fs::read_to_string(root.path().join("renamed")).unwrap(),
            "a"
        );
        let op = copy_op(vec![source(1, "/secret.txt")], "/s");
        assert!(matches!(
            apply(&op, root.path(), &inputs, &cancel),
            Err(FileOpError::NotFound(_))
        ));
    }

    #[test]
    fn symlinks_in_the_destination_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", root.path().join("up")).unwrap();
        std::os::unix::fs::symlink("../../..", root.path().join("rel")).unwrap();
        assert_eq!(
            resolve_in_root(root.path(), "/up/etc", true).unwrap(),
            root.path().join("etc")
        );
        assert_eq!(
            resolve_in_root(root.path(), "/rel/x", true).unwrap(),
            root.path().join("x")
        );
        let op = FileOp::Mkfile(MkfileAction {
            path: "/up/f".into(),
            mode: 0o600,
            data: "d".into(),
            owner: None,
        });
        let inputs = [FileSource {
            root: root.path(),
            ignore: None,
            keep_owner: true,
        }];
        apply(&op, root.path(), &inputs, &CancelToken::new()).unwrap();
        assert_eq!(fs::read_to_string(root.path().join("f")).unwrap(), "d");
    }
}
