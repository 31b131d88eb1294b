//! The final filesystem of an image: its layers applied in order with
//! [`crate::layer::apply`] (whiteouts applied, owners kept when root), into a directory
//! (`type=local`) or a deterministic tar (`type=tar`).
//!
//! A local export never leaves a half tree that looks complete. The tree is built in a temp
//! directory first, so a failed layer leaves the destination untouched. A missing or empty
//! destination is then replaced by one rename. A destination with files in it is merged
//! into, as BuildKit does (files the image does not have are kept, so `-o .` never deletes
//! anything): entry by entry with renames only, so every file is either the old or the new
//! one, never half written.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_cache::{ContentStore, Digest};

use super::{OutputError, Progress, ProgressReader};
use crate::layer::{ApplyOptions, DiffOptions, apply, archive_tree};
use crate::local::ImageStore;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Applies every layer of the manifest onto `root`, an empty directory.
fn unpack_into(
    store: &ImageStore,
    manifest: &Digest,
    root: &Path,
    progress: &dyn Progress,
) -> Result<(), OutputError> {
    let manifest = store.read_manifest(manifest)?;
    let content = store.store().content();
    // A temp dir is 0700; an image root without its own `./` entry is 0755, as in Docker.
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).map_err(io_err(root))?;
    let total = manifest.layers.iter().map(|l| l.size).sum();
    progress.start("unpacking layers", Some(total));
    let options = ApplyOptions::default();
    for layer in &manifest.layers {
        let reader = ProgressReader::new(content.open(&layer.digest)?, progress);
        apply(reader, root, &options).map_err(|source| OutputError::Apply {
            layer: layer.digest.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Writes the image's filesystem into `dest` (see the module docs for how).
pub(crate) fn write_local(
    store: &ImageStore,
    manifest: &Digest,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<(), OutputError> {
    // A symlink to a directory is followed (as buildx does) and merged into, never
    // replaced: the rename would replace the link, not fill its target.
    let is_link = fs::symlink_metadata(dest).is_ok_and(|m| m.file_type().is_symlink());
    let existing = match fs::metadata(dest) {
        Ok(m) if m.is_dir() => {
            Some(is_link || fs::read_dir(dest).map_err(io_err(dest))?.next().is_some())
        }
        Ok(_) => return Err(OutputError::NotADirectory(dest.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound && is_link => {
            return Err(OutputError::NotADirectory(dest.to_path_buf()));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(dest)(e)),
    };
    match existing {
        Some(true) => {
            // Inside the destination: the same filesystem, so the merge is renames only.
            let temp = tempfile::Builder::new()
                .prefix(".rbuild-export-")
                .tempdir_in(dest)
                .map_err(io_err(dest))?;
            unpack_into(store, manifest, temp.path(), progress)?;
            merge(temp.path(), dest)?;
            temp.close().map_err(io_err(dest))?;
        }
        _ => {
            let parent = match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            fs::create_dir_all(&parent).map_err(io_err(&parent))?;
            let temp = tempfile::Builder::new()
                .prefix(".rbuild-export-")
                .tempdir_in(&parent)
                .map_err(io_err(&parent))?;
            unpack_into(store, manifest, temp.path(), progress)?;
            if existing == Some(false) {
                fs::remove_dir(dest).map_err(io_err(dest))?;
            }
            let built = temp.keep();
            if let Err(e) = fs::rename(&built, dest) {
                let _ = fs::remove_dir_all(&built);
                return Err(io_err(dest)(e));
            }
        }
    }
    Ok(())
}

/// Moves every entry of `src` into `dst`, descending where both sides are directories;
/// `dst` directories then take the metadata of their `src` counterparts.
fn merge(src: &Path, dst: &Path) -> Result<(), OutputError> {
    let mut entries = fs::read_dir(src)
        .map_err(io_err(src))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(src))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let from_dir = entry.file_type().map_err(io_err(&from))?.is_dir();
        match fs::symlink_metadata(&to) {
            Ok(m) if m.is_dir() && from_dir => {
                merge(&from, &to)?;
                copy_dir_metadata(&from, &to)?;
                continue;
            }
            Ok(m) if m.is_dir() => fs::remove_dir_all(&to).map_err(io_err(&to))?,
            // rename() replaces a file or symlink atomically, but not with a directory.
            Ok(_) if from_dir => fs::remove_file(&to).map_err(io_err(&to))?,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&to)(e)),
        }
        fs::rename(&from, &to).map_err(io_err(&to))?;
    }
    Ok(())
}

fn copy_dir_metadata(from: &Path, to: &Path) -> Result<(), OutputError> {
    let meta = fs::metadata(from).map_err(io_err(from))?;
    if nix::unistd::Uid::effective().is_root() {
        std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid())).map_err(io_err(to))?;
    }
    fs::set_permissions(to, meta.permissions()).map_err(io_err(to))?;
    let mtime = meta.modified().map_err(io_err(from))?;
    let dir = fs::File::open(to).map_err(io_err(to))?;
    dir.set_modified(mtime).map_err(io_err(to))?;
    Ok(())
}

/// Writes the image's filesystem as a tar to `out`: entries sorted, headers normalised,
/// no whiteouts, so the same image gives the same bytes. The tree is unpacked in a temp
/// directory under the store root first.
pub(crate) fn write_tar<W: Write>(
    store: &ImageStore,
    manifest: &Digest,
    out: W,
    progress: &dyn Progress,
) -> Result<W, OutputError> {
    let root = store.store().root();
    let temp = tempfile::Builder::new()
        .prefix(".export-")
        .tempdir_in(root)
        .map_err(io_err(root))?;
    unpack_into(store, manifest, temp.path(), progress)?;
    progress.start("writing tar", None);
    let counted = super::ProgressWriter::new(out, progress);
    let (counted, _) =
        archive_tree(temp.path(), counted, &DiffOptions::default()).map_err(OutputError::Tar)?;
    temp.close().map_err(io_err(root))?;
    Ok(counted.into_inner())
}
