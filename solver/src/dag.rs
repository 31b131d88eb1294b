//! The scheduler's view of a build: vertices identified by a key, each with an op and
//! ordered inputs, checked (no unknown inputs, no cycles, no conflicting duplicates) and
//! held in a petgraph DAG in topological order.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use petgraph::Direction;
use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};

/// What identifies a vertex: a content digest in real builds, anything small in tests.
pub trait VertexKey:
    Ord + Clone + Hash + fmt::Debug + fmt::Display + Send + Sync + 'static
{
}

impl<T: Ord + Clone + Hash + fmt::Debug + fmt::Display + Send + Sync + 'static> VertexKey for T {}

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DagError<K: VertexKey> {
    #[error("vertex {vertex} has unknown input {input}")]
    UnknownInput { vertex: K, input: K },
    #[error("dependency cycle through vertex {0}")]
    Cycle(K),
    #[error("vertex {0} added twice with different inputs")]
    Conflict(K),
    #[error("requested output {0} is not in the graph")]
    UnknownOutput(K),
}

/// One vertex as stored: inputs are indices into the DAG's vertex list, in the order the
/// op expects them (duplicates allowed).
pub(crate) struct Node<K, O> {
    pub(crate) key: K,
    pub(crate) op: Arc<O>,
    pub(crate) inputs: Vec<usize>,
}

/// A checked DAG. Node `i` of the petgraph graph is vertex `i`; edges run from an input
/// to its user, one per distinct input.
pub struct Dag<K, O> {
    pub(crate) nodes: Vec<Node<K, O>>,
    index: BTreeMap<K, usize>,
    graph: DiGraph<(), ()>,
    /// Vertex indices, every input before its users.
    order: Vec<usize>,
}

impl<K: fmt::Debug, O> fmt::Debug for Dag<K, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dag")
            .field("vertices", &self.nodes.len())
            .field("keys", &self.index.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Collects vertices in any order (inputs may be added after their users); [`build`]
/// checks them.
///
/// [`build`]: DagBuilder::build
pub struct DagBuilder<K, O> {
    vertices: Vec<(K, O, Vec<K>)>,
    index: BTreeMap<K, usize>,
}

impl<K: fmt::Debug, O> fmt::Debug for DagBuilder<K, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DagBuilder")
            .field("keys", &self.index.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<K: VertexKey, O> Default for DagBuilder<K, O> {
    fn default() -> Self {
        DagBuilder {
            vertices: Vec::new(),
            index: BTreeMap::new(),
        }
    }
}

impl<K: VertexKey, O> DagBuilder<K, O> {
    pub fn new() -> DagBuilder<K, O> {
        DagBuilder::default()
    }

    /// Adds a vertex. The same key again with the same inputs is the same vertex (keys
    /// are content digests): the first op is kept. The same key with other inputs is a
    /// [`DagError::Conflict`].
    pub fn add(
        &mut self,
        key: K,
        op: O,
        inputs: impl IntoIterator<Item = K>,
    ) -> Result<&mut Self, DagError<K>> {
        let inputs: Vec<K> = inputs.into_iter().collect();
        if let Some(&i) = self.index.get(&key) {
            if self.vertices[i].2 != inputs {
                return Err(DagError::Conflict(key));
            }
            return Ok(self);
        }
        self.index.insert(key.clone(), self.vertices.len());
        self.vertices.push((key, op, inputs));
        Ok(self)
    }

    /// Checks every input and the absence of cycles.
    pub fn build(self) -> Result<Dag<K, O>, DagError<K>> {
        let mut graph = DiGraph::with_capacity(self.vertices.len(), self.vertices.len());
        for _ in &self.vertices {
            graph.add_node(());
        }
        let mut nodes = Vec::with_capacity(self.vertices.len());
        for (i, (key, op, inputs)) in self.vertices.into_iter().enumerate() {
            let mut resolved = Vec::with_capacity(inputs.len());
            for input in inputs {
                let Some(&j) = self.index.get(&input) else {
                    return Err(DagError::UnknownInput { vertex: key, input });
                };
                if !resolved.contains(&j) {
                    graph.add_edge(NodeIndex::new(j), NodeIndex::new(i), ());
                }
                resolved.push(j);
            }
            nodes.push(Node {
                key,
                op: Arc::new(op),
                inputs: resolved,
            });
        }
        let order = toposort(&graph, None)
            .map_err(|cycle| DagError::Cycle(nodes[cycle.node_id().index()].key.clone()))?
            .into_iter()
            .map(NodeIndex::index)
            .collect();
        Ok(Dag {
            nodes,
            index: self.index,
            graph,
            order,
        })
    }
}

impl<K: VertexKey, O> Dag<K, O> {
    pub fn builder() -> DagBuilder<K, O> {
        DagBuilder::new()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn contains(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    pub fn op(&self, key: &K) -> Option<&O> {
        self.index.get(key).map(|&i| &*self.nodes[i].op)
    }

    /// The inputs of `key` in op order.
    pub fn inputs(&self, key: &K) -> Option<Vec<&K>> {
        let &i = self.index.get(key)?;
        Some(
            self.nodes[i]
                .inputs
                .iter()
                .map(|&j| &self.nodes[j].key)
                .collect(),
        )
    }

    /// Every key, each input before its users.
    pub fn topological(&self) -> impl Iterator<Item = &K> {
        self.order.iter().map(|&i| &self.nodes[i].key)
    }

    pub(crate) fn position(&self, key: &K) -> Result<usize, DagError<K>> {
        self.index
            .get(key)
            .copied()
            .ok_or_else(|| DagError::UnknownOutput(key.clone()))
    }

    /// Indices of the distinct users of vertex `i`.
    pub(crate) fn users(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph
            .neighbors_directed(NodeIndex::new(i), Direction::Outgoing)
            .map(NodeIndex::index)
    }

    /// Number of distinct inputs of vertex `i`.
    pub(crate) fn distinct_inputs(&self, i: usize) -> usize {
        self.graph
            .neighbors_directed(NodeIndex::new(i), Direction::Incoming)
            .count()
    }

    /// Which vertices the given outputs depend on (themselves included), as a mask, and
    /// those vertices in topological order.
    pub(crate) fn reachable(&self, outputs: &[usize]) -> (Vec<bool>, Vec<usize>) {
        let mut needed = vec![false; self.nodes.len()];
        let mut todo: Vec<usize> = outputs.to_vec();
        while let Some(i) = todo.pop() {
            if !needed[i] {
                needed[i] = true;
                todo.extend(self.nodes[i].inputs.iter().copied());
            }
        }
        let order = self.order.iter().copied().filter(|&i| needed[i]).collect();
        (needed, order)
    }
}
