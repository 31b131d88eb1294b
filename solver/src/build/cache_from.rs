//! `--cache-from IMAGE`: steps of the target stage reused from the layers of an existing
//! image, as classic docker does: walking the image's history and layers from its base,
//! a step is a hit when everything below it matched, its history entry (and those of the
//! metadata instructions before it) reads the same as this build's, and the image's next
//! layer is then its result.
//!
//! History text proves a result only where it captures every input: a `RUN` (command,
//! build args in scope; ENV, USER, WORKDIR and SHELL have entries of their own) without
//! bind mounts, and a `WORKDIR`. A `COPY`/`ADD` entry names its sources, not their
//! content (classic docker writes a content hash there; BuildKit and rbuild do not), so a
//! copy is never a hit by its text: it runs, and only if the layer it made is the image's
//! layer byte for byte (same diffID) does the image's layer stand for it and the steps
//! after it may hit again ([`CacheFrom::verify`]). A miss, never a false hit. The base
//! must match too: the image's first history entries and layers must be the base's.
//! What matches is decided from the configs before the build ([`CacheFrom::plan`]);
//! layers are unpacked only when a step hits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use rbuild_executor::snapshot::{SnapshotError, Snapshotter};
use rbuild_graph::{Digest, ExecOp, FileOp, Graph, ImageConfig, MountKind, Op, SourceOp};
use rbuild_image::compress::{CompressWriter, Compression};
use rbuild_image::layer::{DiffOptions, diff_overlay_upper};
use rbuild_image::local::{Image, ImageStore};

use super::fs::{Fs, Layer};
use super::image::{ImageError, image_layers};
use crate::cache::CacheKey;

/// The snapshot key of the empty layer that stands for a step whose layer the cache
/// image left out (an `empty_layer` entry).
const EMPTY_LAYER: &str = "cachefrom-empty-layer";

/// An image whose layers may be reused.
#[derive(Debug, Clone)]
pub struct CacheImage {
    /// As the user named it, for messages.
    pub name: String,
    pub image: Image,
}

/// Where one step's result sits in a cache image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Index in the cache images.
    pub image: usize,
    /// The step's layers, base first: the image's layer `i`, or `None` for an empty
    /// layer where the image recorded a step as adding none (one layer per step, as a
    /// build makes them, so history and layers pair up at export).
    pub layers: Vec<Option<usize>>,
    /// A copy: never a hit by key, only after [`CacheFrom::verify`] compared its layer.
    pub verify: bool,
    /// Copies below this step that must have been verified for it to hit.
    pub requires: Vec<Digest>,
}

/// Errors of materialising a hit.
#[derive(Debug, thiserror::Error)]
pub enum CacheFromError {
    #[error("cannot unpack cache image {name}")]
    Unpack {
        name: String,
        #[source]
        source: Box<ImageError>,
    },
    #[error("snapshot")]
    Snapshot(#[from] SnapshotError),
    #[error("cannot diff a copied layer")]
    Diff(#[from] rbuild_image::layer::DiffError),
    #[error("cannot hash a copied layer")]
    Hash(#[from] rbuild_image::compress::CompressError),
}

/// The cache images of a build and which steps they hold.
#[derive(Debug)]
pub struct CacheFrom {
    images: Vec<CacheImage>,
    store: ImageStore,
    snapshotter: Arc<Snapshotter>,
    /// Vertex → hit, from the configs.
    plan: BTreeMap<Digest, Hit>,
    /// Cache key → hit, as keys are computed.
    keys: Mutex<BTreeMap<CacheKey, Hit>>,
    /// The layers of each cache image, unpacked on first use.
    unpacked: Mutex<BTreeMap<usize, Vec<Layer>>>,
    /// Copies whose layer was found equal to the image's.
    verified: Mutex<BTreeSet<Digest>>,
    /// How layers are diffed at export (`SOURCE_DATE_EPOCH`): diffIDs compare only so.
    diff: DiffOptions,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a step's result can be proven equal to a cache image's layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proof {
    /// Its history entry captures everything its result depends on.
    Text,
    /// By running it and comparing layers (a copy).
    Content,
    Never,
}

fn proof(op: &Op) -> Proof {
    match op {
        Op::Exec(ExecOp { mounts, .. }) => {
            let ok = mounts.iter().all(|m| match &m.kind {
                MountKind::Bind { .. } => false,
                MountKind::Cache { input, .. } => input.is_none(),
                MountKind::Tmpfs { .. } | MountKind::Secret { .. } | MountKind::Ssh { .. } => true,
            });
            if ok { Proof::Text } else { Proof::Never }
        }
        Op::File(FileOp::Mkdir(_)) => Proof::Text,
        Op::File(FileOp::Copy(_)) => Proof::Content,
        _ => Proof::Never,
    }
}

impl CacheFrom {
    /// Decides which steps of `graph`'s target chain each image holds. `config` is the
    /// config this build will write (its history, one non-empty entry per layer step).
    pub fn plan(
        graph: &Graph,
        config: &ImageConfig,
        images: Vec<CacheImage>,
        store: ImageStore,
        snapshotter: Arc<Snapshotter>,
        source_date_epoch: Option<i64>,
    ) -> CacheFrom {
        let plan = match chain(graph, &store) {
            Some(chain) => images
                .iter()
                .enumerate()
                .rev()
                .flat_map(|(i, img)| match_image(&chain, config, i, &img.image.config))
                .collect(),
            None => BTreeMap::new(),
        };
        CacheFrom {
            images,
            store,
            snapshotter,
            plan,
            keys: Mutex::default(),
            unpacked: Mutex::default(),
            verified: Mutex::default(),
            diff: DiffOptions { source_date_epoch },
        }
    }

    /// The steps the plan found, by vertex.
    pub fn planned(&self) -> &BTreeMap<Digest, Hit> {
        &self.plan
    }

    /// Notes the cache key of `vertex`, so a lookup of the key finds its hit.
    pub fn note(&self, vertex: &Digest, key: &CacheKey) {
        if let Some(hit) = self.plan.get(vertex) {
            lock(&self.keys).insert(key.clone(), hit.clone());
        }
    }

    /// The result of `key` from a cache image, if the plan has it. Blocks (unpacking).
    pub fn lookup(&self, key: &CacheKey) -> Result<Option<Fs>, CacheFromError> {
        let Some(hit) = lock(&self.keys).get(key).cloned() else {
            return Ok(None);
        };
        let verified = lock(&self.verified);
        if hit.verify || !hit.requires.iter().all(|d| verified.contains(d)) {
            return Ok(None);
        }
        drop(verified);
        self.materialize(&hit).map(Some)
    }

    /// The layers a hit stands for, unpacking its image on first use.
    fn materialize(&self, hit: &Hit) -> Result<Fs, CacheFromError> {
        let mut unpacked = lock(&self.unpacked);
        let layers = match unpacked.get(&hit.image) {
            Some(l) => l.clone(),
            None => {
                let img = &self.images[hit.image];
                let layers =
                    image_layers(&self.store, &self.snapshotter, &img.image).map_err(|source| {
                        CacheFromError::Unpack {
                            name: img.name.clone(),
                            source: Box::new(source),
                        }
                    })?;
                unpacked.insert(hit.image, layers.clone());
                layers
            }
        };
        drop(unpacked);
        let mut out = Vec::with_capacity(hit.layers.len());
        for l in &hit.layers {
            match l {
                // The plan checked the count against the config.
                Some(i) => out.extend(layers.get(*i).cloned()),
                None => out.push(self.empty_layer()?),
            }
        }
        Ok(Fs::layers(out))
    }

    /// For a copy the plan holds: if it ran on exactly the image's layers below it and
    /// made exactly the image's next layer (same diffID, diffed as export will), the
    /// image's layers from then on, and the steps after it may hit. Blocks (diffs the
    /// layer).
    pub fn verify(
        &self,
        vertex: &Digest,
        parent: &Fs,
        out: &Fs,
    ) -> Result<Option<Fs>, CacheFromError> {
        let Some(hit) = self.plan.get(vertex).filter(|h| h.verify) else {
            return Ok(None);
        };
        if !hit
            .requires
            .iter()
            .all(|d| lock(&self.verified).contains(d))
        {
            return Ok(None);
        }
        let (Some(parent), Some(out)) = (parent.as_layers(), out.as_layers()) else {
            return Ok(None);
        };
        let Some((last, below)) = hit.layers.split_last() else {
            return Ok(None);
        };
        let expected = self.materialize(&Hit {
            image: hit.image,
            layers: below.to_vec(),
            verify: false,
            requires: Vec::new(),
        })?;
        let keys = |l: &[Layer]| l.iter().map(|l| l.snapshot.clone()).collect::<Vec<_>>();
        let Some(expected) = expected.as_layers() else {
            return Ok(None);
        };
        if keys(parent) != keys(expected)
            || out.len() != parent.len() + 1
            || keys(&out[..parent.len()]) != keys(parent)
        {
            return Ok(None);
        }
        let made = self.snapshotter.committed(&out[parent.len()].snapshot)?;
        let writer = CompressWriter::new(std::io::sink(), Compression::None)?;
        let (writer, stats) = diff_overlay_upper(made.dir(), writer, &self.diff)?;
        let (_, digests) = writer.finish()?;
        let diff_id = rbuild_cache::Digest::from_sha256(*digests.diff_id.as_bytes());
        let theirs = &self.images[hit.image].image.config.rootfs.diff_ids;
        let same = match last {
            Some(i) => stats.entries > 0 && theirs.get(*i) == Some(&diff_id),
            None => stats.entries == 0,
        };
        if !same {
            return Ok(None);
        }
        lock(&self.verified).insert(vertex.clone());
        self.materialize(hit).map(Some)
    }

    fn empty_layer(&self) -> Result<Layer, SnapshotError> {
        let layer = Layer {
            snapshot: EMPTY_LAYER.to_owned(),
            blob: None,
        };
        match self.snapshotter.committed(EMPTY_LAYER) {
            Ok(_) => return Ok(layer),
            Err(SnapshotError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let active = self.snapshotter.prepare(EMPTY_LAYER, &[])?;
        match self.snapshotter.commit(active) {
            // Another build made it first.
            Ok(_) | Err(SnapshotError::Exists(_)) => Ok(layer),
            Err(e) => Err(e),
        }
    }
}

/// The target's chain of layer steps down to its base.
struct Chain {
    /// Layer steps, base first.
    steps: Vec<(Digest, Proof)>,
    /// The base's history (`created_by`, `empty_layer`) and layers.
    base_history: Vec<(String, bool)>,
    base_layers: Vec<rbuild_cache::Digest>,
}

/// Follows input 0 from the target down to its base (an image or scratch).
fn chain(graph: &Graph, store: &ImageStore) -> Option<Chain> {
    let mut steps = Vec::new();
    let mut cur = graph.vertex(graph.target()?)?;
    loop {
        match &cur.op {
            Op::Exec(_) | Op::File(_) | Op::Merge(_) => {
                steps.push((cur.digest.clone(), proof(&cur.op)));
                cur = graph.vertex(cur.inputs.first()?)?;
            }
            Op::Source(SourceOp::Scratch) => {
                steps.reverse();
                return Some(Chain {
                    steps,
                    base_history: Vec::new(),
                    base_layers: Vec::new(),
                });
            }
            Op::Source(SourceOp::Image(src)) => {
                let digest = rbuild_cache::Digest::parse(src.digest.as_deref()?).ok()?;
                let name = src.reference.split('@').next().unwrap_or(&src.reference);
                let name = match name.rfind(':') {
                    Some(i) if !name[i..].contains('/') => &name[..i],
                    _ => name,
                };
                let base = store.resolve(&format!("{name}@{}", digest.as_str())).ok()?;
                steps.reverse();
                return Some(Chain {
                    steps,
                    base_history: base
                        .config
                        .history
                        .iter()
                        .map(|h| (h.created_by.clone().unwrap_or_default(), h.empty_layer))
                        .collect(),
                    base_layers: base.config.rootfs.diff_ids.clone(),
                });
            }
            Op::Source(_) => return None,
        }
    }
}

/// The steps of `chain` that cache image `image` (number `index`) holds.
fn match_image(
    chain: &Chain,
    config: &ImageConfig,
    index: usize,
    image: &rbuild_image::oci::ImageConfig,
) -> BTreeMap<Digest, Hit> {
    let mut out = BTreeMap::new();
    let ours = &config.history;
    let theirs: Vec<(String, bool)> = image
        .history
        .iter()
        .map(|h| (h.created_by.clone().unwrap_or_default(), h.empty_layer))
        .collect();
    let diff_ids = &image.rootfs.diff_ids;
    let (bh, bl) = (chain.base_history.len(), chain.base_layers.len());
    let same_platform = image.os == config.os
        && image.architecture == config.architecture
        && image.variant.as_deref().unwrap_or("") == config.variant.as_deref().unwrap_or("");
    // Our history starts with the base's; theirs must too, and their layers likewise.
    let base_ok = same_platform
        && ours.len() >= bh
        && theirs.len() >= bh
        && diff_ids.len() >= bl
        && ours[..bh]
            .iter()
            .zip(&chain.base_history)
            .all(|(o, b)| o.created_by == b.0)
        && theirs[..bh] == chain.base_history[..]
        && diff_ids[..bl] == chain.base_layers[..];
    if !base_ok {
        return out;
    }
    // One non-empty entry of ours per layer step, in order.
    let entries: Vec<usize> = (bh..ours.len()).filter(|&j| !ours[j].empty_layer).collect();
    if entries.len() != chain.steps.len() {
        return out;
    }
    let mut layers: Vec<Option<usize>> = (0..bl).map(Some).collect();
    let mut used = bl;
    let mut next = bh;
    let mut requires = Vec::new();
    for ((vertex, proof), &j) in chain.steps.iter().zip(&entries) {
        if *proof == Proof::Never || theirs.len() <= j {
            break;
        }
        // Metadata instructions in between: the same text, no layer.
        let between_ok = (next..j).all(|k| theirs[k].0 == ours[k].created_by && theirs[k].1);
        if !between_ok || theirs[j].0 != ours[j].created_by {
            break;
        }
        if theirs[j].1 {
            layers.push(None);
        } else {
            if used >= diff_ids.len() {
                break;
            }
            layers.push(Some(used));
            used += 1;
        }
        let verify = *proof == Proof::Content;
        out.insert(
            vertex.clone(),
            Hit {
                image: index,
                layers: layers.clone(),
                verify,
                requires: requires.clone(),
            },
        );
        if verify {
            requires.push(vertex.clone());
        }
        next = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: &str) -> Digest {
        Digest::sha256(n.as_bytes())
    }

    fn layer(n: &str) -> rbuild_cache::Digest {
        rbuild_cache::Digest::sha256_of(n.as_bytes())
    }

    /// Our config: the base's entry, then `entries` as (created_by, adds a layer).
    fn ours(entries: &[(&str, bool)]) -> ImageConfig {
        let mut c = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Default::default()
        };
        for (by, layer) in std::iter::once(&("base", true)).chain(entries) {
            c.history.push(rbuild_graph::History {
                created_by: (*by).into(),
                empty_layer: !layer,
                ..Default::default()
            });
        }
        c
    }

    /// A cache image's config: the base's entry and layer, then `entries` as
    /// (created_by, layer it added).
    fn theirs(entries: &[(&str, Option<&str>)]) -> rbuild_image::oci::ImageConfig {
        let mut c = rbuild_image::oci::ImageConfig {
            created: None,
            author: None,
            architecture: "amd64".into(),
            variant: None,
            os: "linux".into(),
            os_version: None,
            os_features: Vec::new(),
            config: None,
            rootfs: Default::default(),
            history: Vec::new(),
            comment: None,
        };
        for (by, l) in std::iter::once(&("base", Some("base"))).chain(entries) {
            c.history.push(rbuild_image::oci::History {
                created_by: Some((*by).into()),
                empty_layer: l.is_none(),
                ..Default::default()
            });
            c.rootfs.diff_ids.extend(l.map(layer));
        }
        c
    }

    fn chain(steps: &[(&str, Proof)]) -> Chain {
        Chain {
            steps: steps.iter().map(|(n, p)| (d(n), *p)).collect(),
            base_history: vec![("base".into(), false)],
            base_layers: vec![layer("base")],
        }
    }

    #[test]
    fn steps_match_while_history_and_layers_agree() {
        let chain = chain(&[
            ("run1", Proof::Text),
            ("empty", Proof::Text),
            ("copy", Proof::Content),
            ("run2", Proof::Text),
            ("run3", Proof::Text),
        ]);
        let ours = ours(&[
            ("RUN a", true),
            ("ENV X=1", false),
            ("RUN true", true),
            ("COPY f /f", true),
            ("RUN b", true),
            ("RUN c", true),
        ]);
        let image = theirs(&[
            ("RUN a", Some("a")),
            ("ENV X=1", None),
            ("RUN true", None),
            ("COPY f /f", Some("f")),
            ("RUN b", Some("b")),
            ("RUN other", Some("c")),
        ]);
        let plan = match_image(&chain, &ours, 0, &image);
        assert_eq!(plan[&d("run1")].layers, [Some(0), Some(1)]);
        // The empty RUN gets an empty layer of its own.
        assert_eq!(plan[&d("empty")].layers, [Some(0), Some(1), None]);
        let copy = &plan[&d("copy")];
        assert!(copy.verify && copy.requires.is_empty());
        let run2 = &plan[&d("run2")];
        assert_eq!(run2.layers, [Some(0), Some(1), None, Some(2), Some(3)]);
        assert!(!run2.verify);
        assert_eq!(run2.requires, [d("copy")]);
        // Another command: no match, and none after it.
        assert!(!plan.contains_key(&d("run3")));
    }

    #[test]
    fn another_base_platform_or_metadata_matches_nothing_after_it() {
        let chain1 = chain(&[("run1", Proof::Text), ("run2", Proof::Text)]);
        let ours1 = ours(&[("RUN a", true), ("ENV X=1", false), ("RUN b", true)]);
        let good = theirs(&[
            ("RUN a", Some("a")),
            ("ENV X=1", None),
            ("RUN b", Some("b")),
        ]);
        assert_eq!(match_image(&chain1, &ours1, 0, &good).len(), 2);

        let mut other_base = good.clone();
        other_base.rootfs.diff_ids[0] = layer("other");
        assert!(match_image(&chain1, &ours1, 0, &other_base).is_empty());

        let mut arm = good.clone();
        arm.architecture = "arm64".into();
        assert!(match_image(&chain1, &ours1, 0, &arm).is_empty());

        let env2 = theirs(&[
            ("RUN a", Some("a")),
            ("ENV X=2", None),
            ("RUN b", Some("b")),
        ]);
        let plan = match_image(&chain1, &ours1, 0, &env2);
        assert_eq!(plan.keys().collect::<Vec<_>>(), [&d("run1")]);

        // A step that can never be proven stops the walk.
        let chain2 = chain(&[("merge", Proof::Never), ("run2", Proof::Text)]);
        assert!(match_image(&chain2, &ours1, 0, &good).is_empty());
        // Fewer layers in the image than its history says: no hit past them.
        let mut short = good;
        short.rootfs.diff_ids.pop();
        assert_eq!(match_image(&chain1, &ours1, 0, &short).len(), 1);
    }
}
