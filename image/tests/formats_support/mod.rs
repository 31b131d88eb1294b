//! Helpers shared by the `formats*` integration tests: stores, tars and small images.
#![allow(dead_code)]

pub mod dockerd;

use std::collections::BTreeSet;
use std::io::Write;

use rbuild_cache::{ContentStore, Descriptor as BlobDescriptor, Digest, Store};
use rbuild_image::local::{ImageStore, RecordedImage};
use rbuild_image::oci::{
    Descriptor, History, ImageConfig, Manifest, RootFs, RuntimeConfig, canonical_json, media,
};
use tempfile::TempDir;

pub fn new_store() -> (TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("root")).unwrap();
    (dir, ImageStore::new(store))
}

/// A tar with the given regular files (deterministic headers).
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_600_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Adds a symlink entry to a tar under construction.
pub fn append_symlink(builder: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    builder.append_link(&mut header, path, target).unwrap();
}

pub fn append_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, data).unwrap();
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A layer tar whose content depends on `seed`.
pub fn layer(seed: &str) -> Vec<u8> {
    let body = format!("content of {seed}\n");
    tar_of(&[
        (&format!("files/{seed}.txt"), body.as_bytes()),
        ("etc/os-release", b"ID=test\n"),
    ])
}

/// A config for `layers` (uncompressed tars), with one history step per layer and one
/// empty step.
pub fn config_for(layers: &[Vec<u8>], created: &str) -> ImageConfig {
    let mut history: Vec<History> = (0..layers.len())
        .map(|i| History {
            created: Some(created.to_owned()),
            created_by: Some(format!("/bin/sh -c step {i}")),
            ..History::default()
        })
        .collect();
    history.push(History {
        created: Some(created.to_owned()),
        created_by: Some("/bin/sh -c #(nop)  CMD [\"sh\"]".to_owned()),
        empty_layer: true,
        ..History::default()
    });
    ImageConfig {
        created: Some(created.to_owned()),
        architecture: "amd64".to_owned(),
        os: "linux".to_owned(),
        config: Some(RuntimeConfig {
            cmd: Some(vec!["sh".to_owned()]),
            env: vec!["PATH=/usr/bin:/bin".to_owned()],
            ..RuntimeConfig::default()
        }),
        rootfs: RootFs {
            diff_ids: layers.iter().map(|l| Digest::sha256_of(l)).collect(),
            ..RootFs::default()
        },
        history,
        ..ImageConfig::default()
    }
}

/// Stores an image made of `layers` (gzip-compressed when `gzipped`) and tags it.
pub fn make_image(
    store: &ImageStore,
    tags: &[&str],
    layers: &[Vec<u8>],
    gzipped: bool,
) -> RecordedImage {
    make_image_at(store, tags, layers, gzipped, "2024-05-06T07:08:09Z")
}

pub fn make_image_at(
    store: &ImageStore,
    tags: &[&str],
    layers: &[Vec<u8>],
    gzipped: bool,
    created: &str,
) -> RecordedImage {
    let content = store.store().content();
    let mut descriptors = Vec::new();
    for l in layers {
        let (blob, media_type) = if gzipped {
            (gzip(l), media::OCI_LAYER_GZIP)
        } else {
            (l.clone(), media::OCI_LAYER_TAR)
        };
        let d = content.ingest(None, blob.as_slice()).unwrap();
        descriptors.push(Descriptor::new(media_type, d.digest, d.size));
    }
    let config = canonical_json("config", &config_for(layers, created)).unwrap();
    let manifest = Manifest::oci(
        Descriptor::new(
            media::OCI_CONFIG,
            Digest::sha256_of(&config),
            config.len() as u64,
        ),
        descriptors,
    );
    let manifest = canonical_json("manifest", &manifest).unwrap();
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    store.put_image(&manifest, &config, &tags).unwrap()
}

/// What a failed operation must leave unchanged: tags (name → manifest) and images.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub tags: Vec<(String, Digest)>,
    pub images: Vec<Digest>,
}

pub fn snapshot(store: &ImageStore) -> Snapshot {
    let meta = store.store().meta();
    Snapshot {
        tags: meta
            .list_tags()
            .unwrap()
            .into_iter()
            .map(|(n, r)| (n, r.digest))
            .collect(),
        images: meta
            .list_images()
            .unwrap()
            .into_iter()
            .map(|(d, _)| d)
            .collect(),
    }
}

pub fn blobs(store: &ImageStore) -> BTreeSet<BlobDescriptor> {
    store
        .store()
        .content()
        .list()
        .unwrap()
        .into_iter()
        .collect()
}

/// Asserts the metadata is as before and that pruning brings the blobs back to `before`.
pub fn assert_unchanged_after_prune(
    store: &ImageStore,
    snap: &Snapshot,
    before: &BTreeSet<BlobDescriptor>,
) {
    assert_eq!(&snapshot(store), snap);
    store.store().prune(&BTreeSet::new(), None).unwrap();
    assert_eq!(&blobs(store), before);
}

/// Names of the entries of a tar, in order.
pub fn tar_entries(data: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(data);
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The content of one entry of a tar.
pub fn tar_file(data: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == name {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut out).unwrap();
            return Some(out);
        }
    }
    None
}
