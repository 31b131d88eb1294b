//! Tests of the file ops on temporary directories: a context, a stage filesystem and a
//! destination root, lowered ops built the way the front end builds them.

mod chmod;
mod copy;
mod escape;
mod filter;
mod make;
mod owner;
mod unpack;
mod wildcard;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_graph::{CopyAction, CopySource, FileOp};

use super::{FileOpError, FileSource, FileStats, apply};
use crate::CancelToken;
use crate::context::Matcher;

/// A destination root (input 0), a build context (input 1) and a stage (input 2).
pub(super) struct Fx {
    _tmp: tempfile::TempDir,
    pub dest: PathBuf,
    pub ctx: PathBuf,
    pub stage: PathBuf,
    pub ignore: Option<Matcher>,
}

pub(super) fn fx() -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let ctx = tmp.path().join("ctx");
    let stage = tmp.path().join("stage");
    for d in [&dest, &ctx, &stage] {
        fs::create_dir(d).unwrap();
    }
    Fx {
        _tmp: tmp,
        dest,
        ctx,
        stage,
        ignore: None,
    }
}

impl Fx {
    pub fn inputs(&self) -> Vec<FileSource<'_>> {
        vec![
            FileSource {
                root: &self.dest,
                ignore: None,
                keep_owner: true,
            },
            FileSource {
                root: &self.ctx,
                ignore: self.ignore.as_ref(),
                keep_owner: false,
            },
            FileSource {
                root: &self.stage,
                ignore: None,
                keep_owner: true,
            },
        ]
    }

    pub fn run(&self, op: &FileOp) -> Result<FileStats, FileOpError> {
        apply(op, &self.dest, &self.inputs(), &CancelToken::new())
    }

    pub fn copy(&self, action: CopyAction) -> Result<FileStats, FileOpError> {
        self.run(&FileOp::Copy(action))
    }

    pub fn d(&self, rel: &str) -> PathBuf {
        self.dest.join(rel.trim_start_matches('/'))
    }
}

/// Writes `content` at `rel` below `root`, creating parents.
pub(super) fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

pub(super) fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub(super) fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

pub(super) fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub(super) fn owner(path: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

/// Whether the test may change owners and make device nodes; prints why not.
pub(super) fn is_root(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipping {test}: needs root (chown)");
    }
    root
}

/// A context source as the front end lowers `COPY <path>`.
pub(super) fn ctx_src(path: &str) -> CopySource {
    src(1, path)
}

/// A `COPY --from` source (input 2), lowered the same way.
pub(super) fn stage_src(path: &str) -> CopySource {
    src(2, path)
}

fn src(input: usize, path: &str) -> CopySource {
    CopySource {
        input,
        path: path.to_owned(),
        include_patterns: Vec::new(),
        required_paths: Vec::new(),
        unpack: false,
        follow_symlinks: true,
        dir_contents_only: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
    }
}

/// `COPY sources... dest`.
pub(super) fn action(sources: Vec<CopySource>, dest: &str) -> CopyAction {
    CopyAction {
        sources,
        dest: dest.to_owned(),
        chown: None,
        chmod: None,
        exclude: Vec::new(),
        parents: false,
        create_dest_path: true,
    }
}

/// Relative paths of everything below `root`, sorted, directories with a trailing `/`.
pub(super) fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}
