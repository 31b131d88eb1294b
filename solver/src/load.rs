//! Loading an [`rbuild_graph::Graph`] into the scheduler: vertex digest as key, the
//! vertex's op (or anything derived from the vertex) as op, its inputs in order.

use rbuild_graph::{Digest, Graph, Op, Vertex};

use crate::dag::{Dag, DagError};

/// The graph as a DAG of ops keyed by vertex digest.
pub fn load_graph(graph: &Graph) -> Result<Dag<Digest, Op>, DagError<Digest>> {
    load_graph_with(graph, |v| v.op.clone())
}

/// The graph as a DAG keyed by vertex digest whose ops are `op(vertex)`, for executors
/// that also want the vertex's metadata (description, Dockerfile location).
pub fn load_graph_with<O>(
    graph: &Graph,
    mut op: impl FnMut(&Vertex) -> O,
) -> Result<Dag<Digest, O>, DagError<Digest>> {
    let mut builder = Dag::builder();
    for v in graph.vertices() {
        builder.add(v.digest.clone(), op(v), v.inputs.iter().cloned())?;
    }
    builder.build()
}
