//! The build context: which files `.dockerignore` excludes, and content checksums of
//! exactly the files a `COPY`/`ADD` selects, for cache keys.
//!
//! - [`ignore`]: `.dockerignore` parsing, file choice and matching (moby's rules).
//! - [`checksum`]: blake3 digests of source selections (content, mode, type, link
//!   target, xattrs; not mtime or owners), files hashed in parallel.
//! - [`metacache`]: the persistent metadata cache that lets a no-op rebuild skip reading
//!   file contents, keyed on dev, inode, size, mtime, ctime and mode.

pub mod checksum;
mod clean;
pub mod glob;
pub mod ignore;
pub mod metacache;

pub use checksum::{Checksum, ChecksumError, checksum_selection};
pub use clean::clean;
pub use glob::PatternError;
pub use ignore::{AncestorHits, Matcher, ignore_file_for, parse_ignore};
pub use metacache::{CacheError, HashStats, MetaCache};
