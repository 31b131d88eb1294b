//! Layers: deterministic layer tars from a directory diff or an overlayfs upper directory, and
//! safe application of layer tars onto a directory.

mod apply;
mod diff;
mod fsmeta;
mod secure_root;
mod tarfmt;

pub use apply::{ApplyError, ApplyOptions, ApplyStats, apply};
pub use diff::{DiffError, DiffOptions, DiffStats, archive_tree, diff_overlay_upper, diff_trees};
pub use secure_root::{PathError, Resolved, SecureRoot, clean as clean_entry_name};

/// Name prefix of an OCI whiteout file: `.wh.<name>` deletes `<name>` of lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque marker: the directory's lower contents are hidden.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[cfg(test)]
mod tests;
