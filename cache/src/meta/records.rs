//! The records stored in the metadata database, serialised as JSON.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Seconds since the Unix epoch, the time unit of every record.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a tag points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// Manifest digest.
    pub digest: Digest,
    /// When the tag was set, in Unix seconds.
    pub created: u64,
}

impl TagRecord {
    pub fn now(digest: Digest) -> TagRecord {
        TagRecord {
            digest,
            created: now_unix(),
        }
    }
}

/// What the store knows about an image, keyed by manifest digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub config: Digest,
    /// Total size of manifest, config and layers as stored.
    pub size: u64,
    /// When the image entered the store, in Unix seconds.
    pub created: u64,
}

/// A temporary claim on blobs, e.g. by a build in progress; expired leases stop counting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub created: u64,
    /// Unix seconds after which the lease no longer protects anything.
    pub expires: Option<u64>,
}

/// Who holds a reference to a blob.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefOwner {
    /// A stored image, by manifest digest; owns manifest, config and layers.
    Image(Digest),
    /// A lease, by id.
    Lease(String),
    /// A cache-index entry or other record, by an id the caller chooses.
    Cache(String),
}

impl RefOwner {
    pub(super) fn key(&self) -> String {
        match self {
            RefOwner::Image(d) => format!("image/{d}"),
            RefOwner::Lease(id) => format!("lease/{id}"),
            RefOwner::Cache(id) => format!("cache/{id}"),
        }
    }

    pub(super) fn lease_id(key: &str) -> Option<&str> {
        key.strip_prefix("lease/")
    }
}
