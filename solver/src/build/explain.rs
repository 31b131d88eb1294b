//! `--explain`: what made each step's cache key, remembered per build of a Dockerfile,
//! and why a step missed the cache compared with the last build of the same Dockerfile.
//!
//! Every build records, under an id the caller derives from the context directory, the
//! Dockerfile and the target ([`build_key`]), a [`BuildRecord`]: per step its progress
//! name, its cache key, its op as keyed (environment values and inline file data as
//! digests: the record adds no values beyond what the progress name shows), its parents'
//! keys, and the digests of the context selections it read.
//! The listing of each selection (path, type, mode and truncated content digests per
//! entry) is kept beside it ([`listing_key`]), so a changed selection can name its
//! files. A rebuild that changes nothing writes nothing: records are compared first, and
//! a listing is written only for a selection digest the last record did not have.
//!
//! Records are versioned JSON in the cache index; another version reads as "no earlier
//! build", never as a wrong reason.

use std::collections::{BTreeMap, BTreeSet};

use rbuild_graph::{Digest, Op, Vertex};
use serde::{Deserialize, Serialize};

use crate::context::{EntryKind, ListedEntry};

/// Version of [`BuildRecord`] and [`StoredListing`]; bump when their meaning changes.
pub const EXPLAIN_VERSION: u32 = 1;

/// Files named per changed selection before the rest are counted.
const FILES_NAMED: usize = 5;

/// The database key of the last build record of build `id`.
pub fn build_key(id: &str) -> Vec<u8> {
    format!("explain/v1/build/{id}").into_bytes()
}

/// The database key of the listing of selection `digest` in build `id`'s records.
pub fn listing_key(id: &str, digest: &str) -> Vec<u8> {
    format!("explain/v1/sel/{id}/{digest}").into_bytes()
}

/// The id of the builds of one Dockerfile: sha256 of the context directory, the
/// Dockerfile path and the target (absolute paths as the caller resolves them).
pub fn build_id(context: &str, dockerfile: &str, target: Option<&str>) -> String {
    let text = format!("{context}\0{dockerfile}\0{}", target.unwrap_or(""));
    rbuild_cache::Digest::sha256_of(text.as_bytes())
        .hex()
        .to_owned()
}

/// What made the cache keys of one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub version: u32,
    /// Steps with a cache key, in graph order (parents first).
    pub steps: Vec<StepInputs>,
}

/// What made one step's cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInputs {
    /// Stage name (`build`, `stage-1`), if the step belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Progress name (`[build 2/4] COPY . /app`).
    pub name: String,
    /// The cache key.
    pub key: String,
    /// The op as keyed: environment values and inline data replaced by digests.
    pub op: serde_json::Value,
    /// Parents, in op input order.
    pub inputs: Vec<InputRef>,
    /// Digests of the context selections the key covers, in key order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
}

/// One parent of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    pub key: String,
    /// Index of the parent in [`BuildRecord::steps`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
}

/// A selection listing as stored: `(path, kind, mode, data, xattrs)` per entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredListing {
    pub version: u32,
    pub entries: Vec<(String, EntryKind, u32, u64, u64)>,
}

impl StoredListing {
    pub fn new(entries: &[ListedEntry]) -> StoredListing {
        StoredListing {
            version: EXPLAIN_VERSION,
            entries: entries
                .iter()
                .map(|e| (e.path.clone(), e.kind, e.mode, e.data, e.xattrs))
                .collect(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` for another version or bytes that do not parse.
    pub fn decode(bytes: &[u8]) -> Option<Vec<ListedEntry>> {
        let s: StoredListing = serde_json::from_slice(bytes).ok()?;
        (s.version == EXPLAIN_VERSION).then(|| {
            s.entries
                .into_iter()
                .map(|(path, kind, mode, data, xattrs)| ListedEntry {
                    path,
                    kind,
                    mode,
                    data,
                    xattrs,
                })
                .collect()
        })
    }
}

impl BuildRecord {
    pub fn encode(&self) -> Vec<u8> {
        // Plain structs, strings and JSON values: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` for another version or bytes that do not parse.
    pub fn decode(bytes: &[u8]) -> Option<BuildRecord> {
        serde_json::from_slice::<BuildRecord>(bytes)
            .ok()
            .filter(|r| r.version == EXPLAIN_VERSION)
    }

    /// Every selection digest the record refers to.
    pub fn selections(&self) -> BTreeSet<&str> {
        self.steps
            .iter()
            .flat_map(|s| s.context.iter().map(String::as_str))
            .collect()
    }
}

/// A short digest for messages: the algorithm and 12 hex digits.
fn short(d: &str) -> String {
    // By characters: a record read back is never trusted to be ASCII.
    match d.split_once(':') {
        Some((algo, hex)) => format!("{algo}:{}", hex.chars().take(12).collect::<String>()),
        None => d.chars().take(12).collect(),
    }
}

fn value_digest(v: &str) -> String {
    format!("blake3:{}", &blake3::hash(v.as_bytes()).to_hex()[..16])
}

/// The op as recorded: its keyed JSON with `env` values and inline file data replaced by
/// digests (a record must not keep build-arg values or file contents in clear).
pub fn op_summary(op_json: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(op_json).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        if let Some(env) = obj.get("env").and_then(|e| e.as_array()) {
            let map: serde_json::Map<String, serde_json::Value> = env
                .iter()
                .filter_map(|e| e.as_str())
                .map(|e| {
                    let (k, val) = e.split_once('=').unwrap_or((e, ""));
                    (k.to_owned(), serde_json::Value::String(value_digest(val)))
                })
                .collect();
            obj.insert("env".into(), serde_json::Value::Object(map));
        }
        if let Some(data) = obj.get("data").and_then(|d| d.as_str()) {
            let d = value_digest(data);
            obj.insert("data".into(), serde_json::Value::String(d));
        }
    }
    v
}

/// The instruction text of a progress name: `[build 2/4] COPY . /app` → `COPY . /app`.
pub fn step_text(name: &str) -> &str {
    if name.starts_with('[')
        && let Some(end) = name.find("] ")
    {
        return &name[end + 2..];
    }
    name
}

fn kind_of(op: &serde_json::Value) -> (&str, &str) {
    let t = op.get("type").and_then(|t| t.as_str()).unwrap_or("");
    let sub = op
        .get("source")
        .or_else(|| op.get("action"))
        .and_then(|s| s.as_str())
        .unwrap_or("");
    (t, sub)
}

/// Matches the steps of a new graph with the steps of the last build record: by stage,
/// instruction text and occurrence; failing that, as the only unmatched step of the same
/// stage and kind whose first parent matches the new step's first parent (an edited
/// instruction). Returns vertex digest → index in `old.steps`.
pub fn match_steps(
    vertices: &[Vertex],
    summaries: &BTreeMap<Digest, serde_json::Value>,
    old: &BuildRecord,
) -> BTreeMap<Digest, usize> {
    type Ident<'a> = (Option<&'a str>, &'a str, String, usize);
    let mut old_by_ident: BTreeMap<Ident<'_>, usize> = BTreeMap::new();
    let mut seen: BTreeMap<(Option<&str>, &str, String), usize> = BTreeMap::new();
    for (i, s) in old.steps.iter().enumerate() {
        let (t, sub) = kind_of(&s.op);
        let base = (s.stage.as_deref(), step_text(&s.name), format!("{t}/{sub}"));
        let n = seen.entry(base.clone()).or_default();
        old_by_ident.insert((base.0, base.1, base.2, *n), i);
        *n += 1;
    }
    let mut matched: BTreeMap<Digest, usize> = BTreeMap::new();
    let mut used: BTreeSet<usize> = BTreeSet::new();
    let mut seen: BTreeMap<(Option<&str>, &str, String), usize> = BTreeMap::new();
    let mut pending = Vec::new();
    for v in vertices {
        let Some(op) = summaries.get(&v.digest) else {
            continue;
        };
        let (t, sub) = kind_of(op);
        let base = (
            v.meta.stage.as_deref(),
            step_text(&v.meta.description),
            format!("{t}/{sub}"),
        );
        let n = seen.entry(base.clone()).or_default();
        let ident = (base.0, base.1, base.2, *n);
        *n += 1;
        match old_by_ident.get(&ident) {
            Some(&i) if !used.contains(&i) => {
                used.insert(i);
                matched.insert(v.digest.clone(), i);
            }
            _ => pending.push(v),
        }
    }
    // Edited instructions: the step after the same parent, in graph order so parents
    // are matched first.
    for v in pending {
        let Some(op) = summaries.get(&v.digest) else {
            continue;
        };
        // A source (a base image whose reference or digest changed) is the only one of
        // its kind in its stage.
        let parent = match v.inputs.first() {
            Some(p) => match matched.get(p) {
                Some(&i) => Some(i),
                None => continue,
            },
            None => None,
        };
        let candidates: Vec<usize> = old
            .steps
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                !used.contains(i)
                    && s.stage.as_deref() == v.meta.stage.as_deref()
                    && kind_of(&s.op) == kind_of(op)
                    && s.inputs.first().and_then(|r| r.step) == parent
            })
            .map(|(i, _)| i)
            .collect();
        if let [i] = candidates[..] {
            used.insert(i);
            matched.insert(v.digest.clone(), i);
        }
    }
    matched
}

/// What changed in an op between two builds, as reasons.
pub fn op_changes(
    old: &serde_json::Value,
    new: &serde_json::Value,
    old_name: &str,
    args: &BTreeSet<String>,
) -> Vec<String> {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return vec!["step definition changed".into()];
    };
    if kind_of(old) != kind_of(new) {
        return vec![format!(
            "instruction changed (was: {})",
            step_text(old_name)
        )];
    }
    let mut out = Vec::new();
    let null = serde_json::Value::Null;
    let fields: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let (kind, sub) = kind_of(new);
    for field in fields {
        let (a, b) = (o.get(field).unwrap_or(&null), n.get(field).unwrap_or(&null));
        if a == b {
            continue;
        }
        match (kind, sub, field.as_str()) {
            (_, _, "env") => out.extend(env_changes(a, b, args)),
            ("source", "image", "digest" | "reference") => {
                if out.iter().any(|r: &String| r.starts_with("base image")) {
                    continue;
                }
                let name = n.get("reference").and_then(|r| r.as_str()).unwrap_or("");
                let d = |v: Option<&serde_json::Value>| {
                    v.and_then(|d| d.as_str())
                        .map(short)
                        .unwrap_or_else(|| "unresolved".into())
                };
                out.push(format!(
                    "base image {name} changed: {} → {}",
                    d(o.get("digest")),
                    d(n.get("digest"))
                ));
            }
            ("source", "context", "exclude" | "include") => {
                out.push(".dockerignore rules changed".into());
            }
            ("exec", _, "args") => {
                out.push(format!("command changed (was: {})", step_text(old_name)))
            }
            ("exec", _, "cwd") => out.push("working directory changed (WORKDIR)".into()),
            ("exec", _, "user") => out.push("user changed (USER)".into()),
            ("exec", _, "mounts") => out.push("mounts changed (RUN --mount)".into()),
            ("exec", _, "network") => out.push("network mode changed (RUN --network)".into()),
            ("exec", _, "security") => out.push("security mode changed (RUN --security)".into()),
            ("file", "copy", "sources" | "dest") => out.push(format!(
                "instruction changed (was: {})",
                step_text(old_name)
            )),
            ("file", "copy", "chown" | "chmod" | "exclude" | "parents") => {
                out.push(format!("--{field} changed"))
            }
            ("file", "mkfile", "data") => out.push("inline document changed".into()),
            (_, _, "platform") => out.push("platform changed".into()),
            _ => out.push(format!("{field} changed")),
        }
    }
    out.dedup();
    if out.is_empty() {
        out.push("step definition changed".into());
    }
    out
}

fn env_changes(
    a: &serde_json::Value,
    b: &serde_json::Value,
    args: &BTreeSet<String>,
) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let what = if args.contains(name.as_str()) {
            "build arg"
        } else {
            "ENV"
        };
        match (a.get(name), b.get(name)) {
            (Some(x), Some(y)) if x != y => out.push(format!("{what} {name} changed")),
            (None, Some(_)) => out.push(format!("{what} {name} set")),
            (Some(_), None) => out.push(format!("{what} {name} unset")),
            _ => {}
        }
    }
    out
}

/// The differences between two listings of a selection, as reasons naming files.
pub fn listing_changes(old: &[ListedEntry], new: &[ListedEntry]) -> Vec<String> {
    let index = |l: &[ListedEntry]| -> BTreeMap<String, ListedEntry> {
        l.iter().map(|e| (e.path.clone(), e.clone())).collect()
    };
    let (o, n) = (index(old), index(new));
    let paths: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let mut out = Vec::new();
    for path in paths {
        let reason = match (o.get(path), n.get(path)) {
            (None, Some(e)) => format!("{} {path} added", e.kind.name()),
            (Some(e), None) => format!("{} {path} removed", e.kind.name()),
            (Some(a), Some(b)) if a.kind != b.kind => {
                format!(
                    "{path} type changed ({} → {})",
                    a.kind.name(),
                    b.kind.name()
                )
            }
            (Some(a), Some(b)) => {
                let mut what = Vec::new();
                if a.data != b.data {
                    what.push(match b.kind {
                        EntryKind::Symlink => "link target",
                        EntryKind::Other => "device",
                        _ => "content",
                    });
                }
                if a.mode != b.mode {
                    what.push("mode");
                }
                if a.xattrs != b.xattrs {
                    what.push("xattrs");
                }
                if what.is_empty() {
                    continue;
                }
                let mut r = format!("{} {path} {} changed", b.kind.name(), what.join(" and "));
                if a.mode != b.mode {
                    r.push_str(&format!(" ({:04o} → {:04o})", a.mode, b.mode));
                }
                r
            }
            (None, None) => continue,
        };
        out.push(reason);
    }
    if out.len() > FILES_NAMED {
        let more = out.len() - FILES_NAMED;
        out.truncate(FILES_NAMED);
        out.push(format!("and {more} more"));
    }
    out
}

/// A step as an explanation names it.
pub fn describe_vertex(v: &Vertex) -> String {
    match &v.op {
        Op::Source(rbuild_graph::SourceOp::Context(_)) => "the build context".into(),
        _ if v.meta.description.is_empty() => v.digest.short().to_owned(),
        _ => step_text(&v.meta.description).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind, mode: u32, data: u64) -> ListedEntry {
        ListedEntry {
            path: path.into(),
            kind,
            mode,
            data,
            xattrs: 0,
        }
    }

    #[test]
    fn listing_changes_name_each_kind_of_change() {
        let old = vec![
            entry("a.txt", EntryKind::File, 0o644, 1),
            entry("b.txt", EntryKind::File, 0o644, 2),
            entry("dir", EntryKind::Dir, 0o755, 0),
            entry("link", EntryKind::Symlink, 0o777, 3),
            entry("gone", EntryKind::File, 0o644, 4),
            entry("swap", EntryKind::File, 0o644, 5),
        ];
        let new = vec![
            entry("a.txt", EntryKind::File, 0o644, 9),
            entry("b.txt", EntryKind::File, 0o755, 2),
            entry("dir", EntryKind::Dir, 0o700, 0),
            entry("link", EntryKind::Symlink, 0o777, 8),
            entry("new", EntryKind::File, 0o644, 6),
            entry("swap", EntryKind::Symlink, 0o777, 5),
        ];
        let got = listing_changes(&old, &new);
        assert_eq!(
            got,
            [
                "file a.txt content changed",
                "file b.txt mode changed (0644 → 0755)",
                "directory dir mode changed (0755 → 0700)",
                "file gone removed",
                "symlink link link target changed",
                "and 2 more",
            ]
        );
        assert!(listing_changes(&old, &old).is_empty());
    }

    #[test]
    fn op_changes_name_args_env_and_base_digests() {
        let args: BTreeSet<String> = ["V".to_string()].into();
        let exec = |env: &[&str], args: &[&str]| {
            let op = serde_json::json!({"type":"exec","args":args,"env":env,"cwd":"/"});
            op_summary(&serde_json::to_vec(&op).unwrap())
        };
        let a = exec(&["V=1", "E=x"], &["echo"]);
        let b = exec(&["V=2", "E=x", "N=1"], &["echo"]);
        assert_eq!(
            op_changes(&a, &b, "[2/3] RUN echo", &args),
            ["ENV N set", "build arg V changed"]
        );
        // Values never reach the record.
        assert!(!a.to_string().contains("V=1"));
        let c = exec(&["V=1", "E=x"], &["echo hi"]);
        assert_eq!(
            op_changes(&a, &c, "[2/3] RUN echo", &args),
            ["command changed (was: RUN echo)"]
        );
        let img = |d: &str| serde_json::json!({"type":"source","source":"image","reference":"busybox","digest":d});
        assert_eq!(
            op_changes(
                &img("sha256:aaaaaaaaaaaaaaaa"),
                &img("sha256:bbbbbbbbbbbbbbbb"),
                "FROM busybox",
                &args
            ),
            ["base image busybox changed: sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb"]
        );
    }

    #[test]
    fn records_round_trip_and_other_versions_are_none() {
        let rec = BuildRecord {
            version: EXPLAIN_VERSION,
            steps: vec![StepInputs {
                stage: Some("build".into()),
                name: "[build 1/2] RUN x".into(),
                key: "sha256:k".into(),
                op: serde_json::json!({"type":"exec"}),
                inputs: vec![InputRef {
                    key: "sha256:p".into(),
                    step: None,
                }],
                context: vec!["blake3:c".into()],
            }],
        };
        assert_eq!(BuildRecord::decode(&rec.encode()), Some(rec.clone()));
        let mut other = rec;
        other.version += 1;
        assert_eq!(BuildRecord::decode(&other.encode()), None);
        assert_eq!(step_text("[build 1/2] RUN x"), "RUN x");
        assert_eq!(step_text("RUN x"), "RUN x");
        assert_eq!(short("sha256:ééééééééééééé"), "sha256:éééééééééééé");
        assert_ne!(
            build_id("/c", "/c/Dockerfile", None),
            build_id("/c", "/c/Dockerfile", Some("t"))
        );
    }
}
