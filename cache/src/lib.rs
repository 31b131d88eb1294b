//! The store: a content-addressed blob store (verified, atomic, safe for concurrent
//! processes), the metadata database (tags, cache index, snapshot records), locking, and
//! garbage collection with size limits.
//!
//! [`Store::open`] resolves nothing by itself: the CLI picks the root with
//! [`root_from_env`] and passes it in. Everything is synchronous `std::fs`; async callers
//! use blocking threads.
//!
//! Locks, always taken in this order so they cannot deadlock: `locks-v1/gc.lock` (shared
//! by code that adds blobs and then references them, exclusive for prune), then
//! `locks-v1/meta.lock` (exclusive for the span of one database transaction). Blob
//! ingest itself needs no lock: temp files are private and the final rename is atomic.

pub mod content;
pub mod digest;
pub mod gc;
pub mod layout;
pub mod lock;
pub mod meta;
mod store;

pub use content::{
    BlobWriter, ContentError, ContentStore, Descriptor, FsContentStore, MemContentStore,
};
pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use gc::{GcError, PruneOptions, PruneReport};
pub use layout::{Layout, LayoutError, resolve_root, root_from_env};
pub use lock::{LockError, LockGuard, LockMode};
pub use meta::{
    CacheEntry, ImageRecord, LeaseRecord, Meta, MetaError, MetaTxn, RefOwner, TagRecord,
};
pub use store::{Store, StoreError, StoreUsage};
