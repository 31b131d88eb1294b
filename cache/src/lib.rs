//! The store: a content-addressed blob store (verified, atomic, safe for concurrent
//! processes), the metadata database (tags, cache index, snapshot records), locking, and
//! garbage collection with size limits.
