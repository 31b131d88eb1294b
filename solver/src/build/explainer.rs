//! The live side of [`super::explain`] during one build: collects what made each step's
//! key as the keys are computed, says why a step missed the cache when it is about to
//! run, and at the end turns the collection into the writes that replace the last record.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use rbuild_cache::Meta;
use rbuild_graph::{Digest, Op, SourceOp, Vertex};
use serde::Serialize;

use super::explain::{
    BuildRecord, EXPLAIN_VERSION, InputRef, StepInputs, StoredListing, build_key, describe_vertex,
    listing_changes, listing_key, match_steps, op_changes, op_summary, step_text,
};
use crate::cache::CacheKey;
use crate::context::ListedEntry;

/// Database writes: records to put (key → value) and keys to remove.
pub type Writes = (BTreeMap<Vec<u8>, Vec<u8>>, Vec<Vec<u8>>);

/// Why one step missed the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheMiss {
    /// Progress name of the step.
    pub step: String,
    pub reasons: Vec<String>,
}

/// What the caller asks of explanations.
#[derive(Debug, Clone, Default)]
pub struct ExplainOptions {
    /// Identifies the builds of one Dockerfile ([`super::explain::build_id`]).
    pub id: String,
    /// Say why steps miss (recording happens either way).
    pub enabled: bool,
    /// Names of the Dockerfile's `ARG`s, so that an environment change can be called a
    /// build-arg change.
    pub args: BTreeSet<String>,
}

/// Why keys of this build are bypassed, for the reasons.
#[derive(Debug, Default)]
pub struct Bypass {
    /// `--no-cache`.
    pub all: bool,
    /// `--no-cache-filter` stage labels.
    pub stages: BTreeSet<String>,
    /// Keys never reused in this build: steps of those stages and everything after them.
    keys: Mutex<BTreeSet<CacheKey>>,
}

impl Bypass {
    pub fn new(all: bool, stages: BTreeSet<String>) -> Bypass {
        Bypass {
            all,
            stages,
            keys: Mutex::default(),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, BTreeSet<CacheKey>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes `key` of `vertex`: bypassed when its stage is filtered (sources excepted: a
    /// base image or the context is the same whatever the filter) or a parent is.
    pub fn note(&self, vertex: &Vertex, key: &CacheKey, inputs: &[CacheKey]) {
        let filtered = !matches!(vertex.op, Op::Source(_))
            && vertex
                .meta
                .stage
                .as_ref()
                .is_some_and(|s| self.stages.contains(s));
        let mut keys = self.keys();
        if filtered || inputs.iter().any(|k| keys.contains(k)) {
            keys.insert(key.clone());
        }
    }

    pub fn contains(&self, key: &CacheKey) -> bool {
        self.all || self.keys().contains(key)
    }
}

/// The explanation state of one build.
#[derive(Debug)]
pub struct Explainer {
    opts: ExplainOptions,
    meta: Meta,
    old: Option<BuildRecord>,
    old_bytes: Option<Vec<u8>>,
    old_selections: BTreeSet<String>,
    /// New vertex → index of its step in `old`.
    matches: BTreeMap<Digest, usize>,
    /// What made each key of this build, by vertex.
    live: Mutex<BTreeMap<Digest, StepInputs>>,
    /// Listings this build must store or explain with, by selection digest.
    listings: Mutex<BTreeMap<String, Vec<ListedEntry>>>,
    misses: Mutex<Vec<CacheMiss>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Explainer {
    /// Reads the last record of `opts.id` (one small read) and matches its steps with
    /// `vertices` (graph order).
    pub fn load(
        opts: ExplainOptions,
        meta: Meta,
        vertices: &[Vertex],
        op_bytes: impl Fn(&Op) -> Vec<u8>,
    ) -> Result<Explainer, rbuild_cache::MetaError> {
        let old_bytes = meta.cache_get(&build_key(&opts.id))?;
        let old = old_bytes.as_deref().and_then(BuildRecord::decode);
        let old_selections = old
            .as_ref()
            .map(|o| o.selections().into_iter().map(str::to_owned).collect())
            .unwrap_or_default();
        let matches = match (&old, opts.enabled) {
            (Some(old), true) => {
                let summaries = vertices
                    .iter()
                    .map(|v| (v.digest.clone(), op_summary(&op_bytes(&v.op))))
                    .collect();
                match_steps(vertices, &summaries, old)
            }
            _ => BTreeMap::new(),
        };
        Ok(Explainer {
            opts,
            meta,
            old,
            old_bytes,
            old_selections,
            matches,
            live: Mutex::default(),
            listings: Mutex::default(),
            misses: Mutex::default(),
        })
    }

    /// Whether the listing of a selection with this digest must be kept: the last record
    /// does not have it, or explanations may need it.
    pub fn wants_listing(&self, digest: &str) -> bool {
        self.opts.enabled || !self.old_selections.contains(digest)
    }

    pub fn keep_listing(&self, digest: String, entries: Vec<ListedEntry>) {
        lock(&self.listings).entry(digest).or_insert(entries);
    }

    /// Records what made `vertex`'s key.
    pub fn note_step(
        &self,
        vertex: &Vertex,
        op_json: &[u8],
        key: &CacheKey,
        inputs: &[CacheKey],
        context: Vec<String>,
    ) {
        let step = StepInputs {
            stage: vertex.meta.stage.clone(),
            name: vertex.meta.description.clone(),
            key: key.digest().as_str().to_owned(),
            op: op_summary(op_json),
            inputs: inputs
                .iter()
                .map(|k| InputRef {
                    key: k.digest().as_str().to_owned(),
                    step: None,
                })
                .collect(),
            context,
        };
        lock(&self.live).insert(vertex.digest.clone(), step);
    }

    pub fn enabled(&self) -> bool {
        self.opts.enabled
    }

    /// Why `vertex` missed the cache (it is about to run), remembered for the summary.
    pub fn explain(
        &self,
        vertex: &Vertex,
        vertices: &BTreeMap<Digest, Vertex>,
        bypass: &Bypass,
    ) -> Vec<String> {
        let reasons = self.reasons(vertex, vertices, bypass);
        lock(&self.misses).push(CacheMiss {
            step: vertex.meta.description.clone(),
            reasons: reasons.clone(),
        });
        reasons
    }

    fn reasons(
        &self,
        vertex: &Vertex,
        vertices: &BTreeMap<Digest, Vertex>,
        bypass: &Bypass,
    ) -> Vec<String> {
        let live = lock(&self.live);
        let Some(new) = live.get(&vertex.digest) else {
            return vec![
                match &vertex.op {
                    Op::Source(SourceOp::Http(_)) => "downloads (ADD from a URL) are not cached",
                    Op::Source(SourceOp::Git(_)) => "git sources are not cached",
                    Op::Source(SourceOp::Image(_)) => "the base image is not resolved to a digest",
                    _ => "a step it depends on is not cacheable",
                }
                .to_owned(),
            ];
        };
        if bypass.all {
            return vec!["--no-cache".into()];
        }
        let key = CacheKey::from_digest(new.key.parse().unwrap_or_else(|_| vertex.digest.clone()));
        if bypass.contains(&key) {
            if let Some(stage) = vertex
                .meta
                .stage
                .as_ref()
                .filter(|s| bypass.stages.contains(*s))
                && !matches!(vertex.op, Op::Source(_))
            {
                return vec![format!("stage {stage} is in --no-cache-filter")];
            }
            let parent = new
                .inputs
                .iter()
                .zip(&vertex.inputs)
                .find(|(r, _)| {
                    r.key
                        .parse()
                        .is_ok_and(|d| bypass.contains(&CacheKey::from_digest(d)))
                })
                .and_then(|(_, d)| vertices.get(d));
            return vec![match parent {
                Some(p) => format!(
                    "parent step {} runs again (--no-cache-filter)",
                    describe_vertex(p)
                ),
                None => "--no-cache-filter".into(),
            }];
        }
        let Some(old_build) = &self.old else {
            return vec!["no earlier build of this Dockerfile".into()];
        };
        let Some(old) = self
            .matches
            .get(&vertex.digest)
            .map(|&i| &old_build.steps[i])
        else {
            return vec!["new step (not in the last build of this Dockerfile)".into()];
        };
        if old.key == new.key {
            return vec![
                "same inputs as the last build, but its result is no longer in the cache".into(),
            ];
        }
        let mut out = Vec::new();
        if old.op != new.op {
            out.extend(op_changes(&old.op, &new.op, &old.name, &self.opts.args));
        }
        if old.context.len() != new.context.len() {
            out.push("context sources changed".into());
        } else {
            for (a, b) in old.context.iter().zip(&new.context) {
                if a != b {
                    out.extend(self.selection_changes(a, b));
                }
            }
        }
        if old.inputs.len() == new.inputs.len() {
            let inputs = old.inputs.iter().zip(&new.inputs).zip(&vertex.inputs);
            for (n, ((a, b), d)) in inputs.enumerate() {
                if a.key == b.key {
                    continue;
                }
                out.push(match vertices.get(d) {
                    Some(p) => match &p.op {
                        Op::Source(SourceOp::Context(_)) => {
                            "the build context's .dockerignore rules changed".into()
                        }
                        // Input 0 is the filesystem a step works on; others are sources.
                        Op::Source(SourceOp::Image(i)) if n == 0 => {
                            format!("base image {} changed", i.reference)
                        }
                        Op::Source(SourceOp::Image(i)) => {
                            format!("source image {} changed", i.reference)
                        }
                        _ => format!("parent step {} changed", describe_vertex(p)),
                    },
                    None => "a parent step changed".into(),
                });
            }
        } else if old.op == new.op {
            out.push("parent steps changed".into());
        }
        out.dedup();
        if out.is_empty() {
            out.push("cache key changed (another rbuild version or key settings)".into());
        }
        out
    }

    /// The files that differ between two selections.
    fn selection_changes(&self, old: &str, new: &str) -> Vec<String> {
        let listing = |digest: &str| -> Option<Vec<ListedEntry>> {
            if let Some(l) = lock(&self.listings).get(digest) {
                return Some(l.clone());
            }
            let bytes = self
                .meta
                .cache_get(&listing_key(&self.opts.id, digest))
                .ok()??;
            StoredListing::decode(&bytes)
        };
        match (listing(old), listing(new)) {
            (Some(a), Some(b)) => {
                let changes = listing_changes(&a, &b);
                if changes.is_empty() {
                    vec!["context files changed".into()]
                } else {
                    changes
                }
            }
            _ => vec!["context files changed".into()],
        }
    }

    /// The misses explained so far, in the order they ran.
    pub fn misses(&self) -> Vec<CacheMiss> {
        lock(&self.misses).clone()
    }

    /// Whether an earlier record was found.
    pub fn has_baseline(&self) -> bool {
        self.old.is_some()
    }

    /// The database writes that make this build the last record: `(puts, removals)`,
    /// both empty when the record is unchanged (a no-op rebuild writes nothing).
    pub fn finish(&self, graph_order: &[Vertex]) -> Writes {
        let live = lock(&self.live);
        let mut index: BTreeMap<&Digest, usize> = BTreeMap::new();
        let mut steps = Vec::new();
        for v in graph_order {
            let Some(step) = live.get(&v.digest) else {
                continue;
            };
            let mut step = step.clone();
            for (r, d) in step.inputs.iter_mut().zip(&v.inputs) {
                r.step = index.get(d).copied();
            }
            index.insert(&v.digest, steps.len());
            steps.push(step);
        }
        let record = BuildRecord {
            version: EXPLAIN_VERSION,
            steps,
        };
        let bytes = record.encode();
        if self.old_bytes.as_deref() == Some(bytes.as_slice()) {
            return (BTreeMap::new(), Vec::new());
        }
        let mut puts = BTreeMap::new();
        let new_selections: BTreeSet<String> =
            record.selections().into_iter().map(str::to_owned).collect();
        let listings = lock(&self.listings);
        for digest in new_selections.difference(&self.old_selections) {
            if let Some(entries) = listings.get(digest) {
                puts.insert(
                    listing_key(&self.opts.id, digest),
                    StoredListing::new(entries).encode(),
                );
            }
        }
        let removals = self
            .old_selections
            .difference(&new_selections)
            .map(|d| listing_key(&self.opts.id, d))
            .collect();
        puts.insert(build_key(&self.opts.id), bytes);
        (puts, removals)
    }
}

/// The text of a step for a miss line: `COPY . /app`.
pub fn miss_line(vertex: &Vertex, reasons: &[String]) -> String {
    format!(
        "{} — {}",
        step_text(&vertex.meta.description),
        reasons.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::EntryKind;
    use rbuild_graph::{MkdirAction, VertexMeta};

    fn vertex(n: u32) -> Vertex {
        let op = Op::File(rbuild_graph::FileOp::Mkdir(MkdirAction {
            path: format!("/d{n}"),
            mode: 0o755,
            parents: true,
            owner: None,
        }));
        Vertex {
            digest: Digest::sha256(format!("v{n}").as_bytes()),
            op,
            inputs: vec![],
            meta: VertexMeta {
                description: "[1/1] COPY . /app".into(),
                stage: None,
                location: None,
            },
        }
    }

    fn listed(data: u64) -> Vec<ListedEntry> {
        vec![ListedEntry {
            path: "a.txt".into(),
            kind: EntryKind::File,
            mode: 0o644,
            data,
            xattrs: 0,
        }]
    }

    /// Loads the explainer of build `id`, notes `v`'s key with `selection` and returns
    /// what it would write.
    fn run(meta: &Meta, v: &Vertex, selection: &str, data: u64) -> (Explainer, Writes) {
        let opts = ExplainOptions {
            id: "id".into(),
            enabled: true,
            args: BTreeSet::new(),
        };
        let x = Explainer::load(opts, meta.clone(), std::slice::from_ref(v), |op| {
            serde_json::to_vec(op).unwrap()
        })
        .unwrap();
        if x.wants_listing(selection) {
            x.keep_listing(selection.into(), listed(data));
        }
        let key = CacheKey::derive(&[selection.as_bytes()], &[]);
        let op = serde_json::to_vec(&v.op).unwrap();
        x.note_step(v, &op, &key, &[], vec![selection.into()]);
        let writes = x.finish(std::slice::from_ref(v));
        (x, writes)
    }

    fn apply(meta: &Meta, (puts, removals): &Writes) {
        meta.write(|tx| {
            for (k, v) in puts {
                tx.cache_put(k, v)?;
            }
            for k in removals {
                tx.cache_remove(k)?;
            }
            Ok::<_, rbuild_cache::MetaError>(())
        })
        .unwrap();
    }

    #[test]
    fn unchanged_builds_write_nothing_and_listings_follow_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = rbuild_cache::Store::open(dir.path()).unwrap();
        let meta = store.meta().clone();
        let v = vertex(1);

        let (x, first) = run(&meta, &v, "blake3:aa", 1);
        assert!(!x.has_baseline());
        assert_eq!(
            x.explain(&v, &BTreeMap::new(), &Bypass::default()),
            ["no earlier build of this Dockerfile"]
        );
        assert!(first.0.contains_key(&build_key("id")));
        assert!(first.0.contains_key(&listing_key("id", "blake3:aa")));
        apply(&meta, &first);

        // The same keys again: nothing to write.
        let (x, same) = run(&meta, &v, "blake3:aa", 1);
        assert!(x.has_baseline());
        assert!(same.0.is_empty() && same.1.is_empty(), "{same:?}");

        // Another selection: its listing replaces the old one, and the miss names the file.
        let (x, next) = run(&meta, &v, "blake3:bb", 2);
        assert_eq!(
            x.explain(&v, &BTreeMap::new(), &Bypass::default()),
            ["file a.txt content changed"]
        );
        assert!(next.0.contains_key(&listing_key("id", "blake3:bb")));
        assert_eq!(next.1, [listing_key("id", "blake3:aa")]);
        assert_eq!(x.misses().len(), 1);

        // Bypasses give their own reasons.
        let all = Bypass::new(true, BTreeSet::new());
        assert_eq!(x.explain(&v, &BTreeMap::new(), &all), ["--no-cache"]);
    }
}
