//! The store: a content-addressed blob store (verified, atomic, safe for concurrent
//! processes), the metadata database (tags, cache index, snapshot records), locking, and
//! garbage collection with size limits.

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
