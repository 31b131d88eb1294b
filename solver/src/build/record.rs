//! Records of the build cache in the store's metadata database (`cache-index` table).
//!
//! - `step/v1/<cache key>` → [`StepRecord`]: the layers of a vertex's result.
//! - `blob/v1/<compression>/<snapshot key>` → [`BlobRecord`]: the exported blob of a built
//!   layer, so a second export does not diff and compress it again.
//!
//! Keys hold only cache keys, snapshot keys and compression names, never a path of this
//! machine or a time; values are versioned JSON, so records can be exported later (a
//! registry-backed cache) and a record of another version reads as a miss.

use rbuild_cache::Digest;
use serde::{Deserialize, Serialize};

use super::fs::{Layer, LayerBlob};
use crate::cache::CacheKey;

/// Version of [`StepRecord`] and [`BlobRecord`]; bump when their meaning changes.
pub const RECORD_VERSION: u32 = 1;

/// The database key of a step's result.
pub fn step_key(key: &CacheKey) -> Vec<u8> {
    format!("step/v1/{}", key.digest().as_str()).into_bytes()
}

/// The database key of a built layer's blob in one compression (`gzip`, `zstd`, `none`).
pub fn blob_key(compression: &str, snapshot: &str) -> Vec<u8> {
    format!("blob/v1/{compression}/{snapshot}").into_bytes()
}

/// A layer blob as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobDesc {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
}

impl From<&LayerBlob> for BlobDesc {
    fn from(b: &LayerBlob) -> Self {
        BlobDesc {
            media_type: b.media_type.clone(),
            digest: b.digest.clone(),
            size: b.size,
            diff_id: b.diff_id.clone(),
        }
    }
}

impl From<BlobDesc> for LayerBlob {
    fn from(b: BlobDesc) -> Self {
        LayerBlob {
            media_type: b.media_type,
            digest: b.digest,
            size: b.size,
            diff_id: b.diff_id,
        }
    }
}

/// One layer of a recorded result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub snapshot: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<BlobDesc>,
}

/// The result of one step: its filesystem's layers, base first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub version: u32,
    pub layers: Vec<LayerRecord>,
}

impl StepRecord {
    pub fn from_layers(layers: &[Layer]) -> StepRecord {
        StepRecord {
            version: RECORD_VERSION,
            layers: layers
                .iter()
                .map(|l| LayerRecord {
                    snapshot: l.snapshot.clone(),
                    blob: l.blob.as_ref().map(BlobDesc::from),
                })
                .collect(),
        }
    }

    pub fn into_layers(self) -> Vec<Layer> {
        self.layers
            .into_iter()
            .map(|l| Layer {
                snapshot: l.snapshot,
                blob: l.blob.map(LayerBlob::from),
            })
            .collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        // Plain structs, strings and integers: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` for bytes of another version or that do not parse: a miss, never a guess.
    pub fn decode(bytes: &[u8]) -> Option<StepRecord> {
        serde_json::from_slice::<StepRecord>(bytes)
            .ok()
            .filter(|r| r.version == RECORD_VERSION)
    }
}

/// The exported blob of a built layer; `blob: None` records that the layer is empty (no
/// blob, an `empty_layer` history entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub version: u32,
    pub blob: Option<BlobDesc>,
}

impl BlobRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<BlobRecord> {
        serde_json::from_slice::<BlobRecord>(bytes)
            .ok()
            .filter(|r| r.version == RECORD_VERSION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob() -> LayerBlob {
        LayerBlob {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            digest: Digest::sha256_of(b"blob"),
            size: 42,
            diff_id: Digest::sha256_of(b"tar"),
        }
    }

    #[test]
    fn step_records_round_trip_and_hold_no_paths() {
        let layers = vec![
            Layer {
                snapshot: "sha256:base".into(),
                blob: Some(blob()),
            },
            Layer {
                snapshot: "step-0123".into(),
                blob: None,
            },
        ];
        let rec = StepRecord::from_layers(&layers);
        let bytes = rec.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"version":1,"layers":[{"snapshot":"sha256:base""#));
        let back = StepRecord::decode(&bytes).unwrap();
        assert_eq!(back, rec);
        assert_eq!(back.into_layers(), layers);
    }

    #[test]
    fn other_versions_and_garbage_are_misses() {
        let mut rec = StepRecord::from_layers(&[]);
        rec.version = RECORD_VERSION + 1;
        assert_eq!(StepRecord::decode(&rec.encode()), None);
        assert_eq!(StepRecord::decode(b"not json"), None);
        assert_eq!(BlobRecord::decode(b"{}"), None);
        let empty = BlobRecord {
            version: RECORD_VERSION,
            blob: None,
        };
        assert_eq!(BlobRecord::decode(&empty.encode()), Some(empty));
    }

    #[test]
    fn keys_are_distinct_per_kind() {
        let k = CacheKey::derive(&[b"x"], &[]);
        let step = String::from_utf8(step_key(&k)).unwrap();
        assert_eq!(step, format!("step/v1/{}", k.digest().as_str()));
        assert_eq!(blob_key("gzip", "step-1"), b"blob/v1/gzip/step-1".to_vec());
        assert_ne!(blob_key("gzip", "a"), blob_key("zstd", "a"));
    }
}
