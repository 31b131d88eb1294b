//! `inspect` and `history`, shaped like Docker's output.

use std::collections::BTreeSet;

use rbuild_cache::Digest;
use serde::Serialize;

use super::reference::{familiar, familiar_tag, split_tag};
use super::{Image, ImageStore, LocalError};
use crate::oci::{RuntimeConfig, rfc3339};

/// `docker image inspect` for one image (the CLI prints a JSON array of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectInfo {
    pub id: Digest,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    pub created: String,
    pub docker_version: String,
    pub author: String,
    pub config: Option<RuntimeConfig>,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    pub size: u64,
    #[serde(rename = "RootFS")]
    pub root_fs: InspectRootFs,
    pub metadata: InspectMetadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectRootFs {
    #[serde(rename = "Type")]
    pub kind: String,
    pub layers: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectMetadata {
    /// When a tag last moved onto this image, RFC 3339; empty if never tagged.
    pub last_tag_time: String,
}

/// One line of `rbuild history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The image id on the top line, `<missing>` below it (the steps have no local ids).
    pub id: String,
    pub created: Option<String>,
    pub created_by: String,
    /// Stored size of the layer the step made; 0 for steps that made none.
    pub size: u64,
    pub comment: String,
    pub empty_layer: bool,
    /// Familiar tags, on the top line only.
    pub tags: Vec<String>,
}

/// What Docker shows for a zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl ImageStore {
    pub fn inspect(&self, name_or_id: &str) -> Result<InspectInfo, LocalError> {
        let image = self.resolve(name_or_id)?;
        let last_tag = self.store().meta().read(|tx| {
            let mut latest = None;
            for tag in &image.tags {
                if let Some(r) = tx.get_tag(tag)? {
                    latest = latest.max(Some(r.created));
                }
            }
            Ok::<_, LocalError>(latest)
        })?;
        Ok(inspect_info(&image, last_tag))
    }

    pub fn history(&self, name_or_id: &str) -> Result<Vec<HistoryRow>, LocalError> {
        Ok(history_rows(&self.resolve(name_or_id)?))
    }
}

fn inspect_info(image: &Image, last_tag: Option<u64>) -> InspectInfo {
    let config = &image.config;
    let repos: BTreeSet<&str> = image.tags.iter().map(|t| split_tag(t).0).collect();
    InspectInfo {
        id: image.id.clone(),
        repo_tags: image.tags.iter().map(|t| familiar_tag(t)).collect(),
        repo_digests: repos
            .into_iter()
            .map(|r| format!("{}@{}", familiar(r), image.manifest_digest))
            .collect(),
        parent: String::new(),
        comment: config.comment.clone().unwrap_or_default(),
        created: config
            .created
            .clone()
            .unwrap_or_else(|| ZERO_TIME.to_owned()),
        docker_version: String::new(),
        author: config.author.clone().unwrap_or_default(),
        config: config.config.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
        os: config.os.clone(),
        os_version: config.os_version.clone(),
        size: image.manifest.layers.iter().map(|l| l.size).sum(),
        root_fs: InspectRootFs {
            kind: config.rootfs.kind.clone(),
            layers: config.rootfs.diff_ids.clone(),
        },
        metadata: InspectMetadata {
            last_tag_time: last_tag.map(rfc3339).unwrap_or_default(),
        },
    }
}

fn history_rows(image: &Image) -> Vec<HistoryRow> {
    let mut layers = image.manifest.layers.iter();
    let mut rows: Vec<HistoryRow> = if image.config.history.is_empty() {
        // No history recorded: one anonymous step per layer, as Docker shows it.
        layers
            .map(|l| HistoryRow {
                id: String::new(),
                created: None,
                created_by: String::new(),
                size: l.size,
                comment: String::new(),
                empty_layer: false,
                tags: Vec::new(),
            })
            .collect()
    } else {
        image
            .config
            .history
            .iter()
            .map(|h| HistoryRow {
                id: String::new(),
                created: h.created.clone(),
                created_by: h.created_by.clone().unwrap_or_default(),
                size: if h.empty_layer {
                    0
                } else {
                    layers.next().map_or(0, |l| l.size)
                },
                comment: h.comment.clone().unwrap_or_default(),
                empty_layer: h.empty_layer,
                tags: Vec::new(),
            })
            .collect()
    };
    rows.reverse();
    for (i, row) in rows.iter_mut().enumerate() {
        if i == 0 {
            row.id = image.id.to_string();
            row.tags = image.tags.iter().map(|t| familiar_tag(t)).collect();
        } else {
            row.id = "<missing>".to_owned();
        }
    }
    rows
}
