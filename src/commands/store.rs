//! Opening the store a command works on: `--root`, else `$RBUILD_ROOT`, else the default
//! for this user, as the cache crate resolves it.

use std::path::Path;

use anyhow::Context as _;
use rbuild_cache::{Store, root_from_env};
use rbuild_image::local::ImageStore;

pub fn open(root: Option<&Path>) -> anyhow::Result<ImageStore> {
    let root = root_from_env(root)?;
    let store =
        Store::open(&root).with_context(|| format!("cannot open store {}", root.display()))?;
    Ok(ImageStore::new(store))
}
