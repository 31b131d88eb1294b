//! `COPY`/`ADD`: every source is resolved and expanded first, then each match is copied
//! (or, for `ADD`, extracted) onto the destination with BuildKit's placement rules:
//!
//! - the directories on the way to the destination are created (0755, or the octal
//!   `--chmod`; owned by the `--chown` user);
//! - a destination ending in `/` is a directory; a file copied onto an existing directory
//!   goes inside it, else it becomes the destination;
//! - a directory source copies its contents into the destination;
//! - several source files need a directory destination (classic Docker's error; BuildKit
//!   would let each overwrite the previous).

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use rbuild_graph::CopyAction;

use crate::CancelToken;
use crate::context::Matcher;

use super::chmod::ModeSpec;
use super::meta::{Owner, Place};
use super::owner::{Missing, resolve_owner};
use super::root::{in_root, mkdir_all, resolve};
use super::select::{expand, has_wildcards, visibility};
use super::tree::{TreeOpts, copy_entry};
use super::unpack::{extract, is_archive};
use super::{FileOpError, FileSource, FileStats};

/// One resolved match of a source.
struct Planned<'a> {
    input: &'a FileSource<'a>,
    /// The path as matched (its base name names the copy inside a directory).
    named: PathBuf,
    /// The real path after following symlinks, relative to the input's root.
    real: PathBuf,
    meta: Metadata,
    archive: bool,
    contents: bool,
    include: Option<Matcher>,
}

fn pattern_err(patterns: &[String]) -> impl FnOnce(crate::context::PatternError) -> FileOpError {
    let pattern = patterns.join(", ");
    move |source| FileOpError::Pattern { pattern, source }
}

pub(crate) fn copy(
    action: &CopyAction,
    dest: &Path,
    inputs: &[FileSource<'_>],
    cancel: &CancelToken,
    stats: &mut FileStats,
) -> Result<(), FileOpError> {
    let owner = action
        .chown
        .as_deref()
        .map(|spec| resolve_owner(dest, spec, Missing::Error))
        .transpose()?;
    let mode = action
        .chmod
        .as_deref()
        .map(ModeSpec::parse)
        .transpose()
        .map_err(FileOpError::Chmod)?;
    let exclude = if action.exclude.is_empty() {
        None
    } else {
        Some(Matcher::new(&action.exclude).map_err(pattern_err(&action.exclude))?)
    };

    if !action.create_dest_path {
        // BuildKit: without `create_dest_path` the destination's parent must exist.
        let parent = Path::new(&action.dest).parent().unwrap_or(Path::new("/"));
        let real = resolve(dest, parent, true, &super::root::all_visible)?;
        if !dest.join(&real).is_dir() {
            return Err(FileOpError::NotFound(parent.display().to_string()));
        }
    }

    let mut planned = Vec::new();
    for src in &action.sources {
        if cancel.is_cancelled() {
            return Err(FileOpError::Cancelled);
        }
        let input = inputs
            .get(src.input)
            .ok_or(FileOpError::MissingInput(src.input))?;
        let visible = visibility(input.ignore);
        for required in &src.required_paths {
            let real = resolve(input.root, Path::new(required), false, &visible)?;
            let found =
                std::fs::symlink_metadata(input.root.join(&real)).is_ok_and(|m| visible(&real, &m));
            if !found {
                return Err(FileOpError::NotFound(required.clone()));
            }
        }
        let include = if src.include_patterns.is_empty() {
            None
        } else {
            Some(Matcher::new(&src.include_patterns).map_err(pattern_err(&src.include_patterns))?)
        };
        let wildcard = src.allow_wildcard && has_wildcards(&src.path);
        let matches = if wildcard {
            expand(input.root, &src.path, src.follow_symlinks, &visible)?
        } else {
            vec![Path::new(&src.path).components().collect()]
        };
        if matches.is_empty() {
            if src.allow_empty_wildcard {
                continue;
            }
            return Err(FileOpError::NotFound(src.path.clone()));
        }
        for named in matches {
            let real = resolve(input.root, &in_root(&named), src.follow_symlinks, &visible)?;
            let abs = input.root.join(&real);
            let meta = match std::fs::symlink_metadata(&abs) {
                Ok(m) if visible(&real, &m) => m,
                _ => return Err(FileOpError::NotFound(src.path.clone())),
            };
            let archive = src.unpack && meta.is_file() && is_archive(&abs);
            planned.push(Planned {
                input,
                named,
                real,
                meta,
                archive,
                contents: src.dir_contents_only,
                include: include.clone(),
            });
        }
    }

    let dir_named = action.dest.ends_with('/') || action.dest.ends_with("/.");
    let files = planned
        .iter()
        .filter(|p| !p.archive && !p.meta.is_dir())
        .count();
    if files > 1 && !dir_named {
        let real = resolve(
            dest,
            Path::new(&action.dest),
            true,
            &super::root::all_visible,
        )?;
        if !dest.join(real).is_dir() {
            return Err(FileOpError::MultipleSources(action.dest.clone()));
        }
    }

    let parent_mode = ModeSpec::parent_dir_mode(mode.as_ref());
    for p in &planned {
        if cancel.is_cancelled() {
            return Err(FileOpError::Cancelled);
        }
        if p.archive {
            let real = resolve(
                dest,
                Path::new(&action.dest),
                true,
                &super::root::all_visible,
            )?;
            mkdir_all(dest, &real, 0o755, owner)?;
            extract(
                &p.input.root.join(&p.real),
                &in_root(&p.named),
                &dest.join(&real),
                owner,
                cancel,
                stats,
            )?;
            continue;
        }
        let target = prepare_target(dest, &action.dest, p, parent_mode, owner)?;
        let opts = TreeOpts {
            owner,
            keep_owner: p.input.keep_owner,
            mode: mode.as_ref(),
            include: p.include.as_ref(),
            exclude: exclude.as_ref(),
            ignore: p.input.ignore,
            cancel,
        };
        copy_entry(
            p.input.root,
            &p.real,
            p.meta.clone(),
            Place::new(dest, target),
            &opts,
            stats,
        )?;
    }
    Ok(())
}

/// Where one match lands (relative to the destination root), with the directories on the
/// way created: BuildKit's `Copy` + `prepareTargetDir`.
fn prepare_target(
    dest: &Path,
    dest_path: &str,
    p: &Planned<'_>,
    parent_mode: u32,
    owner: Option<Owner>,
) -> Result<PathBuf, FileOpError> {
    let all = &super::root::all_visible;
    // `/a/b/` and `/a/b/.` need `/a/b`; `/a/b` needs `/a`.
    let ensure = if dest_path.ends_with('/') || dest_path.ends_with("/.") {
        Path::new(dest_path).to_path_buf()
    } else {
        Path::new(dest_path)
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
    };
    let ensure = resolve(dest, &ensure, true, all)?;
    mkdir_all(dest, &ensure, parent_mode, owner)?;

    let mut target = resolve(dest, Path::new(dest_path), true, all)?;
    let existing = std::fs::metadata(dest.join(&target)).ok();
    let src_dir = p.meta.is_dir();
    let into = match &existing {
        Some(m) => (src_dir && !p.contents) || (!src_dir && m.is_dir()),
        None => false,
    };
    if into && let Some(base) = p.named.file_name() {
        target.push(base);
    }
    let parent = if p.contents && src_dir && existing.is_none() {
        target.clone()
    } else {
        target.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    mkdir_all(dest, &parent, parent_mode, owner)?;
    Ok(target)
}
