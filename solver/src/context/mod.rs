//! The build context: which files `.dockerignore` excludes, and content checksums of
//! exactly the files a `COPY`/`ADD` selects, for cache keys.
//!
//! - [`ignore`]: `.dockerignore` parsing, file choice and matching (moby's rules).
//! - [`checksum`]: blake3 digests of source selections (content, mode, type, link
//!   target, xattrs; not mtime or owners), files hashed in parallel.
//! - [`metacache`]: the persistent metadata cache that lets a no-op rebuild skip reading
//!   file contents, keyed on dev, inode, size, mtime, ctime and mode.

pub mod checksum;
pub mod glob;
pub mod ignore;
pub mod metacache;

pub use checksum::{
    Checksum, ChecksumError, EntryKind, ListedEntry, Listing, checksum_selection,
    checksum_selection_listed,
};
pub use glob::PatternError;
pub use ignore::{AncestorHits, Matcher, ignore_file_for};
pub use metacache::{CacheError, HashStats, MetaCache};
pub use rbuild_graph::clean_path as clean;
pub use rbuild_graph::parse_dockerignore as parse_ignore;
