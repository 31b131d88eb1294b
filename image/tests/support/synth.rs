//! Synthetic images built in the test: a config and layers made of real tar bytes, stored
//! in a content store, with OCI or Docker schema 2 manifests and indexes.

use rbuild_cache::{ContentStore, Descriptor, Digest};
use serde_json::json;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// An image whose every blob is in the store it was built in.
#[derive(Debug, Clone)]
pub struct SynthImage {
    pub manifest_digest: Digest,
    pub manifest: Vec<u8>,
    pub media_type: &'static str,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl SynthImage {
    pub fn blobs(&self) -> Vec<Descriptor> {
        std::iter::once(self.config.clone())
            .chain(self.layers.iter().cloned())
            .collect()
    }
}

/// An uncompressed tar of `files` (path, content), with fixed metadata.
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut chunks = data.chunks(65535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(u8::from(last));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn put<S: ContentStore>(store: &S, data: &[u8]) -> Descriptor {
    store.ingest(Some(&Descriptor::of(data)), data).unwrap()
}

/// A two-layer image for `arch`; `seed` makes its content unique. `docker` picks Docker
/// schema 2 media types (gzip layers) over OCI ones (plain tar layers).
pub fn image<S: ContentStore>(store: &S, seed: &str, arch: &str, docker: bool) -> SynthImage {
    let tar1 = layer_tar(&[("etc/hello", format!("hello {seed}\n").as_bytes())]);
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let tar2 = layer_tar(&[("bin/tool", &big), ("etc/seed", seed.as_bytes())]);
    let (layer_type, l1, l2) = if docker {
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            gzip_stored(&tar1),
            gzip_stored(&tar2),
        )
    } else {
        (
            "application/vnd.oci.image.layer.v1.tar",
            tar1.clone(),
            tar2.clone(),
        )
    };
    let diff_ids = [Digest::sha256_of(&tar1), Digest::sha256_of(&tar2)];
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/tool"], "Labels": {"seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(Digest::to_string).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config_desc = put(store, &config);
    let layers = vec![put(store, &l1), put(store, &l2)];
    let (media_type, config_type) = if docker {
        (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
        )
    } else {
        (OCI_MANIFEST, "application/vnd.oci.image.config.v1+json")
    };
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": config_desc.digest, "size": config_desc.size},
        "layers": layers.iter().map(|l| json!({"mediaType": layer_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let manifest_desc = put(store, &manifest);
    SynthImage {
        manifest_digest: manifest_desc.digest,
        manifest,
        media_type,
        config: config_desc,
        layers,
    }
}

/// An index over `entries` (image, "os/arch[/variant]"), stored; returns its digest.
pub fn index<S: ContentStore>(store: &S, entries: &[(&SynthImage, &str)], docker: bool) -> Digest {
    let media_type = if docker { DOCKER_LIST } else { OCI_INDEX };
    let manifests: Vec<_> = entries
        .iter()
        .map(|(img, platform)| {
            let mut parts = platform.split('/');
            let os = parts.next().unwrap();
            let arch = parts.next().unwrap();
            let mut p = json!({"os": os, "architecture": arch});
            if let Some(v) = parts.next() {
                p["variant"] = json!(v);
            }
            json!({
                "mediaType": img.media_type,
                "digest": img.manifest_digest,
                "size": img.manifest.len(),
                "platform": p,
            })
        })
        .collect();
    let doc = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    }))
    .unwrap();
    put(store, &doc).digest
}
