//! Which source paths a `COPY`/`ADD` source names: wildcard expansion with Go's
//! `filepath.Match` per path element (BuildKit's `ResolveWildcards`), symlink following
//! for the source path itself, and the `.dockerignore` view of the build context (an
//! excluded path does not exist).

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::context::Matcher;
use crate::context::glob::FileGlob;

use super::FileOpError;
use super::meta::io_err;
use super::root::resolve;

/// BuildKit's `containsWildcards`: `*`, `?` or `[` not escaped by a backslash.
pub(crate) fn has_wildcards(s: &str) -> bool {
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

/// A path relative to a context root as the ignore matcher sees it: slash separated, each
/// invalid UTF-8 byte as U+FFFD (as Go's matcher reads such bytes).
pub(crate) fn match_path(rel: &Path) -> String {
    let mut out = String::new();
    for chunk in rel.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    if out.is_empty() { ".".to_owned() } else { out }
}

/// The visibility rule for a source root: everything, or what `.dockerignore` keeps (an
/// excluded directory stays visible when an exception may re-include something below it,
/// as BuildKit's context transfer sends such a directory as a parent).
pub(crate) fn visibility(ignore: Option<&Matcher>) -> impl Fn(&Path, &Metadata) -> bool + '_ {
    move |rel: &Path, meta: &Metadata| match ignore {
        None => true,
        Some(m) => {
            let p = match_path(rel);
            !m.matches(&p) || (meta.is_dir() && m.may_reinclude_below(&p))
        }
    }
}

/// Expands `path` (absolute, inside `root`) into the matching paths relative to `root`,
/// in lexical order. Without wildcards the path itself is returned (existing or not). With
/// them, the part before the first wildcard element is resolved like a source path and
/// the rest is matched element by element below it, never entering symlinked directories.
pub(crate) fn expand(
    root: &Path,
    path: &str,
    follow: bool,
    visible: &dyn Fn(&Path, &Metadata) -> bool,
) -> Result<Vec<PathBuf>, FileOpError> {
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let Some(first_wild) = comps.iter().position(|c| has_wildcards(c)) else {
        return Ok(vec![comps.iter().collect()]);
    };
    let base: PathBuf = comps[..first_wild].iter().collect();
    let base = resolve(root, &Path::new("/").join(base), follow, visible)?;
    let mut frontier = vec![base];
    for comp in &comps[first_wild..] {
        let glob = FileGlob::new(comp).map_err(|source| FileOpError::Pattern {
            pattern: path.to_owned(),
            source,
        })?;
        let mut next = Vec::new();
        for dir in &frontier {
            let abs = root.join(dir);
            match std::fs::symlink_metadata(&abs) {
                Ok(m) if m.is_dir() && visible(dir, &m) => {}
                _ => continue,
            }
            for name in sorted_names(&abs, dir)? {
                let child = dir.join(&name);
                if !glob.matches(&match_path(Path::new(&name))) {
                    continue;
                }
                match std::fs::symlink_metadata(root.join(&child)) {
                    Ok(m) if visible(&child, &m) => next.push(child),
                    _ => {}
                }
            }
        }
        frontier = next;
    }
    Ok(frontier)
}

/// The names in directory `abs` (shown as `rel`), in byte order.
pub(crate) fn sorted_names(abs: &Path, rel: &Path) -> Result<Vec<std::ffi::OsString>, FileOpError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(abs).map_err(io_err("cannot read directory", rel))? {
        names.push(
            entry
                .map_err(io_err("cannot read directory", rel))?
                .file_name(),
        );
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}
