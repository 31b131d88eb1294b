//! Typed operations inside one metadata transaction.

use std::collections::BTreeSet;

use redb::{ReadableMultimapTable, ReadableTable, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::records::{ImageRecord, LeaseRecord, RefOwner, TagRecord, now_unix};
use super::{CACHE_INDEX, IMAGES, LEASES, MetaError, REFS, TAGS};
use crate::digest::Digest;

/// A cache-index key and value.
pub type CacheEntry = (Vec<u8>, Vec<u8>);

/// One transaction on the metadata database; see [`Meta::write`](super::Meta::write) and [`Meta::read`](super::Meta::read).
pub struct MetaTxn {
    pub(super) tx: WriteTransaction,
}

impl std::fmt::Debug for MetaTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaTxn").finish_non_exhaustive()
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, MetaError> {
    serde_json::to_vec(value).map_err(MetaError::Encode)
}

fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, MetaError> {
    serde_json::from_slice(bytes).map_err(|source| MetaError::Corrupt {
        table,
        key: key.to_owned(),
        source,
    })
}

impl MetaTxn {
    /// Points `name` (`repository:tag`) at a manifest; returns the previous record.
    pub fn put_tag(
        &mut self,
        name: &str,
        record: &TagRecord,
    ) -> Result<Option<TagRecord>, MetaError> {
        let mut table = self.tx.open_table(TAGS)?;
        let old = table.insert(name, encode(record)?.as_slice())?;
        old.map(|v| decode("tag", name, v.value())).transpose()
    }

    pub fn get_tag(&self, name: &str) -> Result<Option<TagRecord>, MetaError> {
        let table = self.tx.open_table(TAGS)?;
        let value = table.get(name)?;
        value.map(|v| decode("tag", name, v.value())).transpose()
    }

    pub fn remove_tag(&mut self, name: &str) -> Result<Option<TagRecord>, MetaError> {
        let mut table = self.tx.open_table(TAGS)?;
        let old = table.remove(name)?;
        old.map(|v| decode("tag", name, v.value())).transpose()
    }

    /// Every tag, sorted by name.
    pub fn list_tags(&self) -> Result<Vec<(String, TagRecord)>, MetaError> {
        let table = self.tx.open_table(TAGS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let name = k.value().to_owned();
            let record = decode("tag", &name, v.value())?;
            out.push((name, record));
        }
        Ok(out)
    }

    /// Records an image and makes it the owner of `blobs` plus its manifest and config,
    /// replacing any references it held before.
    pub fn put_image(
        &mut self,
        manifest: &Digest,
        record: &ImageRecord,
        blobs: &BTreeSet<Digest>,
    ) -> Result<(), MetaError> {
        self.tx
            .open_table(IMAGES)?
            .insert(manifest.as_str(), encode(record)?.as_slice())?;
        let mut all = blobs.clone();
        all.insert(manifest.clone());
        all.insert(record.config.clone());
        self.set_refs(&RefOwner::Image(manifest.clone()), &all)
    }

    pub fn get_image(&self, manifest: &Digest) -> Result<Option<ImageRecord>, MetaError> {
        let table = self.tx.open_table(IMAGES)?;
        let value = table.get(manifest.as_str())?;
        value
            .map(|v| decode("image", manifest.as_str(), v.value()))
            .transpose()
    }

    /// Forgets an image and the references it held; tags pointing at it are left alone.
    pub fn remove_image(&mut self, manifest: &Digest) -> Result<Option<ImageRecord>, MetaError> {
        let old = {
            let mut table = self.tx.open_table(IMAGES)?;
            let old = table.remove(manifest.as_str())?;
            old.map(|v| decode("image", manifest.as_str(), v.value()))
                .transpose()?
        };
        self.clear_refs(&RefOwner::Image(manifest.clone()))?;
        Ok(old)
    }

    /// Every image record, sorted by manifest digest.
    pub fn list_images(&self) -> Result<Vec<(Digest, ImageRecord)>, MetaError> {
        let table = self.tx.open_table(IMAGES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let key = k.value();
            let digest = Digest::parse(key).map_err(|_| MetaError::CorruptRef {
                owner: "images".to_owned(),
                value: key.to_owned(),
            })?;
            out.push((digest, decode("image", key, v.value())?));
        }
        Ok(out)
    }

    pub fn cache_put(&mut self, key: &[u8], value: &[u8]) -> Result<(), MetaError> {
        self.tx.open_table(CACHE_INDEX)?.insert(key, value)?;
        Ok(())
    }

    pub fn cache_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        let table = self.tx.open_table(CACHE_INDEX)?;
        let value = table.get(key)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    pub fn cache_remove(&mut self, key: &[u8]) -> Result<bool, MetaError> {
        let mut table = self.tx.open_table(CACHE_INDEX)?;
        let old = table.remove(key)?;
        Ok(old.is_some())
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn cache_scan(&self, prefix: &[u8]) -> Result<Vec<CacheEntry>, MetaError> {
        let table = self.tx.open_table(CACHE_INDEX)?;
        let mut out = Vec::new();
        for entry in table.range(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Replaces the set of blobs `owner` references.
    pub fn set_refs(
        &mut self,
        owner: &RefOwner,
        blobs: &BTreeSet<Digest>,
    ) -> Result<(), MetaError> {
        let key = owner.key();
        let mut table = self.tx.open_multimap_table(REFS)?;
        table.remove_all(key.as_str())?;
        for digest in blobs {
            table.insert(key.as_str(), digest.as_str())?;
        }
        Ok(())
    }

    /// Adds to the blobs `owner` references.
    pub fn add_refs(
        &mut self,
        owner: &RefOwner,
        blobs: &BTreeSet<Digest>,
    ) -> Result<(), MetaError> {
        if let RefOwner::Lease(id) = owner
            && self.tx.open_table(LEASES)?.get(id.as_str())?.is_none()
        {
            return Err(MetaError::LeaseNotFound(id.clone()));
        }
        let key = owner.key();
        let mut table = self.tx.open_multimap_table(REFS)?;
        for digest in blobs {
            table.insert(key.as_str(), digest.as_str())?;
        }
        Ok(())
    }

    pub fn clear_refs(&mut self, owner: &RefOwner) -> Result<(), MetaError> {
        let key = owner.key();
        self.tx
            .open_multimap_table(REFS)?
            .remove_all(key.as_str())?;
        Ok(())
    }

    /// The blobs `owner` references, sorted.
    pub fn refs(&self, owner: &RefOwner) -> Result<BTreeSet<Digest>, MetaError> {
        let key = owner.key();
        let table = self.tx.open_multimap_table(REFS)?;
        let mut out = BTreeSet::new();
        for value in table.get(key.as_str())? {
            out.insert(parse_ref(&key, value?.value())?);
        }
        Ok(out)
    }

    /// Starts (or renews) a lease; blobs added to it are kept until it is deleted or expires.
    pub fn create_lease(&mut self, id: &str, expires: Option<u64>) -> Result<(), MetaError> {
        let record = LeaseRecord {
            created: now_unix(),
            expires,
        };
        self.tx
            .open_table(LEASES)?
            .insert(id, encode(&record)?.as_slice())?;
        Ok(())
    }

    pub fn get_lease(&self, id: &str) -> Result<Option<LeaseRecord>, MetaError> {
        let table = self.tx.open_table(LEASES)?;
        let value = table.get(id)?;
        value.map(|v| decode("lease", id, v.value())).transpose()
    }

    /// Ends a lease and drops its references.
    pub fn delete_lease(&mut self, id: &str) -> Result<bool, MetaError> {
        let existed = self.tx.open_table(LEASES)?.remove(id)?.is_some();
        self.clear_refs(&RefOwner::Lease(id.to_owned()))?;
        Ok(existed)
    }

    /// Deletes every lease that expired before `now`; returns their ids.
    pub fn expire_leases(&mut self, now: u64) -> Result<Vec<String>, MetaError> {
        let expired: Vec<String> = {
            let table = self.tx.open_table(LEASES)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                let record: LeaseRecord = decode("lease", k.value(), v.value())?;
                if record.expires.is_some_and(|t| t <= now) {
                    out.push(k.value().to_owned());
                }
            }
            out
        };
        for id in &expired {
            self.delete_lease(id)?;
        }
        Ok(expired)
    }

    /// Every blob referenced by an image, a cache record or a lease live at `now`.
    pub fn referenced(&self, now: u64) -> Result<BTreeSet<Digest>, MetaError> {
        let leases = self.tx.open_table(LEASES)?;
        let refs = self.tx.open_multimap_table(REFS)?;
        let mut out = BTreeSet::new();
        for entry in refs.iter()? {
            let (owner, values) = entry?;
            let owner = owner.value();
            if let Some(id) = RefOwner::lease_id(owner) {
                let live = match leases.get(id)? {
                    Some(v) => decode::<LeaseRecord>("lease", id, v.value())?
                        .expires
                        .is_none_or(|t| t > now),
                    None => false,
                };
                if !live {
                    continue;
                }
            }
            for value in values {
                out.insert(parse_ref(owner, value?.value())?);
            }
        }
        Ok(out)
    }
}

fn parse_ref(owner: &str, value: &str) -> Result<Digest, MetaError> {
    Digest::parse(value).map_err(|_| MetaError::CorruptRef {
        owner: owner.to_owned(),
        value: value.to_owned(),
    })
}
