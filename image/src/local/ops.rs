//! `images`, `tag` and `rmi`.

use std::collections::{BTreeMap, BTreeSet};

use rbuild_cache::{Digest, MetaTxn, TagRecord};

use super::reference::{familiar, familiar_tag, split_tag};
use super::{
    ImageStore, LocalError, by_id_prefix, normalize_tag, parse_reference, resolve_in, short_id,
    tags_of,
};
use crate::oci::parse_rfc3339;

/// One line of `rbuild images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    /// Familiar repository (`busybox`), or `<none>` for an untagged image.
    pub repository: String,
    /// Tag, or `<none>`.
    pub tag: String,
    /// The image id (config digest).
    pub id: Digest,
    pub manifest: Digest,
    /// The config's `created`, as written there.
    pub created: Option<String>,
    /// `created` in Unix seconds, when it parses.
    pub created_unix: Option<u64>,
    /// Bytes of manifest, config and layers as stored.
    pub size: u64,
}

/// What `rmi` did, in order, as Docker prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveEvent {
    /// A tag was removed (familiar `busybox:latest`).
    Untagged(String),
    /// An image record was removed; its blobs are now garbage unless something else holds
    /// them. Carries the image id.
    Deleted(Digest),
}

const NONE: &str = "<none>";

impl ImageStore {
    /// Every image: one row per tag, and one `<none>` row per untagged image id; newest
    /// first, then by repository and tag.
    pub fn list(&self) -> Result<Vec<ImageRow>, LocalError> {
        let (images, tags) = self
            .store()
            .meta()
            .read(|tx| Ok::<_, LocalError>((tx.list_images()?, tx.list_tags()?)))?;
        let mut tags_by_manifest: BTreeMap<&Digest, Vec<&str>> = BTreeMap::new();
        for (name, record) in &tags {
            tags_by_manifest
                .entry(&record.digest)
                .or_default()
                .push(name);
        }
        let mut rows = Vec::new();
        let mut tagged_ids = BTreeSet::new();
        let mut untagged = BTreeMap::new();
        for (manifest, record) in &images {
            let created = self
                .read_manifest(manifest)
                .and_then(|m| self.read_config(&m))?
                .created;
            let row = |repository: String, tag: String| ImageRow {
                repository,
                tag,
                id: record.config.clone(),
                manifest: manifest.clone(),
                created_unix: created.as_deref().and_then(parse_rfc3339),
                created: created.clone(),
                size: record.size,
            };
            match tags_by_manifest.get(manifest) {
                Some(names) => {
                    tagged_ids.insert(record.config.clone());
                    for name in names {
                        let (repo, tag) = split_tag(name);
                        rows.push(row(familiar(repo).to_owned(), tag.to_owned()));
                    }
                }
                None => {
                    untagged
                        .entry(record.config.clone())
                        .or_insert_with(|| row(NONE.to_owned(), NONE.to_owned()));
                }
            }
        }
        rows.extend(
            untagged
                .into_values()
                .filter(|r| !tagged_ids.contains(&r.id)),
        );
        rows.sort_by(|a, b| {
            b.created_unix
                .cmp(&a.created_unix)
                .then_with(|| a.repository.cmp(&b.repository))
                .then_with(|| a.tag.cmp(&b.tag))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(rows)
    }

    /// Points `dst` at the image `src` names; returns the normalised `dst`.
    pub fn tag(&self, src: &str, dst: &str) -> Result<String, LocalError> {
        let dst = normalize_tag(dst)?;
        self.store().meta().write(|tx| {
            let (manifest, _, _) = resolve_in(tx, src)?;
            tx.put_tag(&dst, &TagRecord::now(manifest))?;
            Ok::<_, LocalError>(())
        })?;
        Ok(dst)
    }

    /// `rmi`: each name is handled on its own (in its own transaction), as Docker does, so
    /// one unknown name does not stop the others.
    ///
    /// A tag is removed; the image goes when its last tag does. An id removes the image and
    /// its only tag, and with `force` every tag; without `force` an id with several tags is
    /// refused.
    pub fn remove(
        &self,
        names: &[String],
        force: bool,
    ) -> Vec<(String, Result<Vec<RemoveEvent>, LocalError>)> {
        names
            .iter()
            .map(|name| {
                let result = self.store().meta().write(|tx| remove_one(tx, name, force));
                (name.clone(), result)
            })
            .collect()
    }
}

fn remove_one(tx: &mut MetaTxn, name: &str, force: bool) -> Result<Vec<RemoveEvent>, LocalError> {
    let mut events = Vec::new();
    // By tag: untag, and delete the image when no tag is left.
    if let Ok(reference) = parse_reference(name)
        && let super::Reference::Tag { repository, tag } = &reference
    {
        let full = format!("{repository}:{tag}");
        if let Some(record) = tx.get_tag(&full)? {
            tx.remove_tag(&full)?;
            events.push(RemoveEvent::Untagged(familiar_tag(&full)));
            if tags_of(tx, &record.digest)?.is_empty()
                && let Some(image) = tx.remove_image(&record.digest)?
            {
                events.push(RemoveEvent::Deleted(image.config));
            }
            return Ok(events);
        }
    }
    let by_digest = match parse_reference(name) {
        Ok(super::Reference::Digest { digest, .. }) => {
            tx.get_image(&digest)?.map(|record| vec![(digest, record)])
        }
        _ => None,
    };
    let matches = match by_digest {
        Some(m) => m,
        None => by_id_prefix(tx, name)?.ok_or_else(|| LocalError::NotFound(name.to_owned()))?,
    };
    // By id (or digest): every manifest of that id, and every tag on them.
    let mut tags = Vec::new();
    for (manifest, _) in &matches {
        tags.extend(tags_of(tx, manifest)?);
    }
    if tags.len() > 1 && !force {
        return Err(LocalError::MultipleReferences(
            short_id(&matches[0].1.config).to_owned(),
        ));
    }
    for tag in &tags {
        tx.remove_tag(tag)?;
        events.push(RemoveEvent::Untagged(familiar_tag(tag)));
    }
    let mut deleted = BTreeSet::new();
    for (manifest, _) in &matches {
        if let Some(image) = tx.remove_image(manifest)? {
            deleted.insert(image.config);
        }
    }
    events.extend(deleted.into_iter().map(RemoveEvent::Deleted));
    Ok(events)
}
