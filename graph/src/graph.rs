//! The build graph: content-addressed vertices in topological order, the output of every
//! stage and of the target, and its renderings for tools (JSON) and people (Graphviz).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::op::Op;

/// Version of the canonical encoding hashed into vertex digests. Bump it whenever the
/// encoding or the meaning of an op field changes, so old cache records cannot match.
pub const ENCODING_VERSION: u32 = 1;

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("vertex input {0} is not in the graph")]
    UnknownInput(Digest),
    #[error("stage output {0} is not in the graph")]
    UnknownOutput(Digest),
    #[error("vertex {0} does not match its op and inputs")]
    DigestMismatch(Digest),
}

/// Where in the Dockerfile a vertex comes from (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Location {
    pub line: usize,
    pub col: usize,
    pub end_line: usize,
}

/// What a vertex is for people: not part of its digest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VertexMeta {
    /// Progress name, e.g. `[build 3/5] RUN make`.
    pub description: String,
    /// Stage name (`build`, or `stage-2` for an unnamed one).
    pub stage: Option<String>,
    pub location: Option<Location>,
}

/// One node of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vertex {
    pub digest: Digest,
    pub op: Op,
    pub inputs: Vec<Digest>,
    pub meta: VertexMeta,
}

/// The hashed form of a vertex. Field order is the encoding: do not reorder.
#[derive(Serialize)]
struct Canonical<'a> {
    encoding: &'static str,
    version: u32,
    op: &'a Op,
    inputs: &'a [Digest],
}

/// The digest of `op` applied to `inputs` (in order): sha256 of a versioned canonical JSON
/// encoding (structs in declaration order, maps sorted, no whitespace).
pub fn vertex_digest(op: &Op, inputs: &[Digest]) -> Digest {
    let op = op.for_digest();
    let canonical = Canonical {
        encoding: "rbuild.vertex",
        version: ENCODING_VERSION,
        op: &op,
        inputs,
    };
    // Sized for a typical op so the encoding is not regrown token by token (serialising
    // into a buffer and hashing once beats feeding the hasher per token). Serialising
    // plain structs, strings, integers and BTreeMaps cannot fail.
    let mut bytes = Vec::with_capacity(1024);
    let _ = serde_json::to_writer(&mut bytes, &canonical);
    Digest::sha256(&bytes)
}

/// The result of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageOutput {
    pub index: usize,
    /// Lower-cased name, `None` for an unnamed stage.
    pub name: Option<String>,
    pub output: Digest,
}

/// Vertices in topological order (every input before its users), deduplicated by digest.
/// Deserialising checks every digest, the order and the outputs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "GraphData")]
pub struct Graph {
    vertices: Vec<Vertex>,
    #[serde(skip)]
    index: BTreeMap<Digest, usize>,
    stages: Vec<StageOutput>,
    target: Option<Digest>,
}

/// The serialised form of a [`Graph`], checked on the way in.
#[derive(Deserialize)]
struct GraphData {
    vertices: Vec<Vertex>,
    stages: Vec<StageOutput>,
    target: Option<Digest>,
}

impl TryFrom<GraphData> for Graph {
    type Error = GraphError;

    fn try_from(d: GraphData) -> Result<Graph, GraphError> {
        let mut g = Graph {
            vertices: d.vertices,
            index: BTreeMap::new(),
            stages: d.stages,
            target: d.target,
        };
        g.reindex()?;
        Ok(g)
    }
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Adds a vertex and returns its digest. Inputs must already be in the graph. Adding
    /// an identical op with identical inputs again returns the existing vertex (the first
    /// metadata wins).
    pub fn add(
        &mut self,
        op: Op,
        inputs: Vec<Digest>,
        meta: VertexMeta,
    ) -> Result<Digest, GraphError> {
        if let Some(missing) = inputs.iter().find(|d| !self.index.contains_key(*d)) {
            return Err(GraphError::UnknownInput(missing.clone()));
        }
        let digest = vertex_digest(&op, &inputs);
        if !self.index.contains_key(&digest) {
            self.index.insert(digest.clone(), self.vertices.len());
            self.vertices.push(Vertex {
                digest: digest.clone(),
                op,
                inputs,
                meta,
            });
        }
        Ok(digest)
    }

    /// Records the output of a stage.
    pub fn set_stage_output(&mut self, stage: StageOutput) -> Result<(), GraphError> {
        if !self.index.contains_key(&stage.output) {
            return Err(GraphError::UnknownOutput(stage.output));
        }
        self.stages.retain(|s| s.index != stage.index);
        self.stages.push(stage);
        self.stages.sort_by_key(|s| s.index);
        Ok(())
    }

    /// Records the vertex whose result is the build's result.
    pub fn set_target(&mut self, output: Digest) -> Result<(), GraphError> {
        if !self.index.contains_key(&output) {
            return Err(GraphError::UnknownOutput(output));
        }
        self.target = Some(output);
        Ok(())
    }

    pub fn vertices(&self) -> &[Vertex] {
        &self.vertices
    }

    pub fn vertex(&self, digest: &Digest) -> Option<&Vertex> {
        self.index.get(digest).map(|&i| &self.vertices[i])
    }

    pub fn stages(&self) -> &[StageOutput] {
        &self.stages
    }

    pub fn target(&self) -> Option<&Digest> {
        self.target.as_ref()
    }

    /// Digests of every vertex the given one depends on, itself included.
    pub fn ancestors(&self, digest: &Digest) -> std::collections::BTreeSet<Digest> {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = vec![digest.clone()];
        while let Some(d) = todo.pop() {
            if let Some(v) = self.vertex(&d)
                && seen.insert(d)
            {
                todo.extend(v.inputs.iter().cloned());
            }
        }
        seen
    }

    /// The graph as a JSON value for tools: stable order, one object per vertex.
    pub fn to_json(&self) -> serde_json::Value {
        let vertices: Vec<serde_json::Value> = self
            .vertices
            .iter()
            .map(|v| {
                serde_json::json!({
                    "digest": v.digest,
                    "op": v.op,
                    "inputs": v.inputs,
                    "description": v.meta.description,
                    "stage": v.meta.stage,
                    "line": v.meta.location.map(|l| l.line),
                })
            })
            .collect();
        serde_json::json!({
            "version": ENCODING_VERSION,
            "vertices": vertices,
            "stages": self.stages,
            "target": self.target,
        })
    }

    /// [`Graph::to_json`] pretty-printed.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&self.to_json()).unwrap_or_default()
    }

    /// The graph in Graphviz DOT: one cluster per stage, an edge from each input to its
    /// user.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph rbuild {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        let mut by_stage: BTreeMap<Option<&str>, Vec<&Vertex>> = BTreeMap::new();
        for v in &self.vertices {
            by_stage.entry(v.meta.stage.as_deref()).or_default().push(v);
        }
        // Clusters in order of first appearance, vertices outside any stage at top level.
        let mut order: Vec<Option<&str>> = Vec::new();
        for v in &self.vertices {
            let s = v.meta.stage.as_deref();
            if !order.contains(&s) {
                order.push(s);
            }
        }
        for (i, stage) in order.iter().enumerate() {
            let indent = if stage.is_some() { "    " } else { "  " };
            if let Some(name) = stage {
                let _ = writeln!(out, "  subgraph cluster_{i} {{");
                let _ = writeln!(out, "    label=\"{}\";", dot_escape(name));
            }
            for v in &by_stage[stage] {
                let label = if v.meta.description.is_empty() {
                    v.op.kind().to_string()
                } else {
                    v.meta.description.clone()
                };
                let _ = writeln!(
                    out,
                    "{indent}\"{}\" [label=\"{}\\n{}\"];",
                    v.digest.hex(),
                    dot_escape(&truncate(&label, 80)),
                    v.digest.short()
                );
            }
            if stage.is_some() {
                out.push_str("  }\n");
            }
        }
        for v in &self.vertices {
            for input in &v.inputs {
                let _ = writeln!(out, "  \"{}\" -> \"{}\";", input.hex(), v.digest.hex());
            }
        }
        if let Some(t) = &self.target {
            let _ = writeln!(out, "  \"{}\" [penwidth=2];", t.hex());
        }
        out.push_str("}\n");
        out
    }

    /// Rebuilds the digest index and checks every digest, the topological order and the
    /// outputs.
    fn reindex(&mut self) -> Result<(), GraphError> {
        self.index.clear();
        for (i, v) in self.vertices.iter().enumerate() {
            if let Some(missing) = v.inputs.iter().find(|d| !self.index.contains_key(*d)) {
                return Err(GraphError::UnknownInput(missing.clone()));
            }
            if vertex_digest(&v.op, &v.inputs) != v.digest {
                return Err(GraphError::DigestMismatch(v.digest.clone()));
            }
            self.index.insert(v.digest.clone(), i);
        }
        let outputs = self
            .stages
            .iter()
            .map(|s| &s.output)
            .chain(self.target.as_ref());
        for o in outputs {
            if !self.index.contains_key(o) {
                return Err(GraphError::UnknownOutput(o.clone()));
            }
        }
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > max || line.len() < s.len() {
        let mut t: String = line.chars().take(max).collect();
        t.push_str("...");
        t
    } else {
        line.to_string()
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
