//! OCI image layouts: a directory or a tar with `oci-layout`, `index.json` and
//! `blobs/sha256/<hex>`, written for a set of local images and read back into the store.
//!
//! `index.json` names every manifest twice, so every tool finds it: the tag in
//! `org.opencontainers.image.ref.name` (what `umoci ls` and `skopeo oci:DIR:TAG` read) and
//! the full name in `io.containerd.image.name` (what Docker 25+ and containerd read).
//! A `docker save` archive is this same layout plus `manifest.json` and `repositories`; see
//! [`crate::archive`].

mod write;

use std::fs;
use std::path::Path;

use crate::archive::{Collector, LoadError, LoadReport};
use crate::local::ImageStore;

pub use write::{
    ExportError, ExportImage, Flavor, image_for, plan, write_dir, write_dir_with, write_tar,
    write_tar_with,
};

/// Loads every image an OCI layout directory names (see [`crate::archive::load`] for the
/// rules), streaming its blobs into the store.
pub fn read_dir(store: &ImageStore, dir: &Path) -> Result<LoadReport, LoadError> {
    let mut collector = Collector::new(store)?;
    walk(&mut collector, dir, "")?;
    collector.finish()
}

fn walk(collector: &mut Collector<'_>, dir: &Path, prefix: &str) -> Result<(), LoadError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::ReadFile { path, source }
    };
    let mut entries = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let rel = format!("{prefix}{name}");
        let kind = entry.file_type().map_err(io_err(&path))?;
        if kind.is_dir() {
            walk(collector, &path, &format!("{rel}/"))?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err(&path))?;
            collector.add_symlink(&rel, &target.to_string_lossy());
        } else if kind.is_file() {
            let file = fs::File::open(&path).map_err(io_err(&path))?;
            let size = file.metadata().map_err(io_err(&path))?.len();
            collector.add_file(&rel, size, file)?;
        }
    }
    Ok(())
}
