//! Cache keys and the cache interface the scheduler consults before executing a vertex.
//!
//! A cache key names a vertex's result independently of this machine: it is derived from
//! what the executor says defines the op plus the cache keys of the vertex's inputs, in
//! order ([`CacheKey::derive`]). A change anywhere below a vertex therefore changes its
//! key, and a change elsewhere does not.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::Mutex;

use rbuild_graph::Digest;

/// Version of the encoding hashed by [`CacheKey::derive`]; bump it when that changes.
pub const CACHE_KEY_VERSION: u32 = 1;

/// The key of one vertex's result in a cache: a sha256 digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CacheKey(Digest);

impl CacheKey {
    /// The key of an op described by `parts` (the executor's canonical encoding of what
    /// determines the result) applied to inputs with the given keys, in input order.
    /// Every field is length-prefixed, so no two different part lists encode alike.
    pub fn derive(parts: &[&[u8]], inputs: &[CacheKey]) -> CacheKey {
        let mut buf = Vec::new();
        buf.extend_from_slice(b"rbuild.cachekey\0");
        buf.extend_from_slice(&CACHE_KEY_VERSION.to_be_bytes());
        push_field(&mut buf, &(parts.len() as u64).to_be_bytes());
        for part in parts {
            push_field(&mut buf, part);
        }
        push_field(&mut buf, &(inputs.len() as u64).to_be_bytes());
        for input in inputs {
            push_field(&mut buf, input.0.as_str().as_bytes());
        }
        CacheKey(Digest::sha256(&buf))
    }

    /// Uses an existing digest (for example one read back from a cache record) as a key.
    pub fn from_digest(digest: Digest) -> CacheKey {
        CacheKey(digest)
    }

    pub fn digest(&self) -> &Digest {
        &self.0
    }
}

fn push_field(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    buf.extend_from_slice(bytes);
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where vertex results are remembered between (and within) builds. `T` is the
/// executor's output: usually a small record pointing at snapshots and blobs, so a
/// lookup stays cheap and content is fetched only when a later step needs it.
///
/// Errors abort the solve: a cache that cannot tell must not produce a false hit.
pub trait Cache<T>: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    fn get(&self, key: &CacheKey) -> impl Future<Output = Result<Option<T>, Self::Error>> + Send;

    /// Records a result. Called as soon as a vertex succeeds, even if the solve is
    /// being cancelled, so a later build reuses everything that finished.
    fn put(
        &self,
        key: &CacheKey,
        value: &T,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Never hits, stores nothing (`--no-cache`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

impl<T: Sync> Cache<T> for NoCache {
    type Error = Infallible;

    async fn get(&self, _: &CacheKey) -> Result<Option<T>, Infallible> {
        Ok(None)
    }

    async fn put(&self, _: &CacheKey, _: &T) -> Result<(), Infallible> {
        Ok(())
    }
}

/// An in-process cache (tests, and memoisation across several solves of one run).
#[derive(Debug)]
pub struct MemoryCache<T> {
    entries: Mutex<HashMap<CacheKey, T>>,
}

impl<T> Default for MemoryCache<T> {
    fn default() -> Self {
        MemoryCache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> MemoryCache<T> {
    pub fn new() -> MemoryCache<T> {
        MemoryCache::default()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn contains(&self, key: &CacheKey) -> bool {
        self.lock().contains_key(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, T>> {
        // A panic while holding the lock cannot leave a HashMap half-updated.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Clone + Send + Sync> Cache<T> for MemoryCache<T> {
    type Error = Infallible;

    async fn get(&self, key: &CacheKey) -> Result<Option<T>, Infallible> {
        Ok(self.lock().get(key).cloned())
    }

    async fn put(&self, key: &CacheKey, value: &T) -> Result<(), Infallible> {
        self.lock().insert(key.clone(), value.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_separates_fields_and_orders_inputs() {
        let a = CacheKey::derive(&[b"a"], &[]);
        let b = CacheKey::derive(&[b"b"], &[]);
        assert_ne!(a, b);
        assert_eq!(a, CacheKey::derive(&[b"a"], &[]));
        // Field boundaries matter.
        assert_ne!(
            CacheKey::derive(&[b"ab", b"c"], &[]),
            CacheKey::derive(&[b"a", b"bc"], &[])
        );
        // Input order matters, and inputs are not parts.
        assert_ne!(
            CacheKey::derive(&[b"x"], &[a.clone(), b.clone()]),
            CacheKey::derive(&[b"x"], &[b.clone(), a.clone()])
        );
        assert_ne!(
            CacheKey::derive(&[b"x"], std::slice::from_ref(&a)),
            CacheKey::derive(&[b"x", a.digest().as_str().as_bytes()], &[])
        );
    }

    #[tokio::test]
    async fn memory_cache_round_trips() {
        let cache = MemoryCache::new();
        let k = CacheKey::derive(&[b"k"], &[]);
        assert_eq!(cache.get(&k).await, Ok(None));
        cache.put(&k, &7u32).await.unwrap();
        assert_eq!(cache.get(&k).await, Ok(Some(7)));
        assert_eq!(cache.len(), 1);
        assert_eq!(Cache::<u32>::get(&NoCache, &k).await, Ok(None));
    }
}
