//! Loading build graphs from the front end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use rbuild_frontend::{BuildOptions, NoopResolver, lower_source};
use rbuild_graph::{Digest, Graph, Op, SourceOp, VertexMeta};

use crate::{CacheKey, ExecContext, Executor, Solver, load_graph, load_graph_with};

/// Executes graph ops by recording their kind; outputs are the digest of the op kind and
/// the inputs' outputs.
#[derive(Debug, Default)]
struct KindExec {
    ran: Mutex<BTreeMap<Digest, &'static str>>,
}

#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
struct Never;

impl Executor<Digest, Op> for KindExec {
    type Output = Digest;
    type Error = Never;

    async fn execute(
        &self,
        key: &Digest,
        op: &Op,
        inputs: Vec<Digest>,
        _: ExecContext<Digest>,
    ) -> Result<Digest, Never> {
        let previous = self.ran.lock().unwrap().insert(key.clone(), op.kind());
        assert!(previous.is_none(), "{key} ran twice");
        let mut text = op.kind().to_string();
        for i in inputs {
            text.push_str(i.as_str());
        }
        Ok(Digest::sha256(text.as_bytes()))
    }

    async fn cache_key(
        &self,
        key: &Digest,
        _: &Op,
        inputs: &[CacheKey],
    ) -> Result<Option<CacheKey>, Never> {
        Ok(Some(CacheKey::derive(&[key.as_str().as_bytes()], inputs)))
    }
}

const DOCKERFILE: &str = "\
FROM alpine:3.19 AS base
RUN echo base > /base

FROM base AS build
COPY . /src
RUN make -C /src

FROM base AS unused
RUN echo never

FROM base
COPY --from=build /src/out /out
RUN ls /out
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowered_dockerfile_runs_only_the_target_ancestry() {
    let lowered = lower_source(DOCKERFILE, &BuildOptions::default(), &NoopResolver).unwrap();
    let graph = &lowered.graph;
    let dag = load_graph(graph).unwrap();
    assert_eq!(dag.len(), graph.vertices().len());
    for v in graph.vertices() {
        assert_eq!(dag.op(&v.digest), Some(&v.op));
        assert_eq!(
            dag.inputs(&v.digest).unwrap(),
            v.inputs.iter().collect::<Vec<_>>()
        );
    }

    // The front end already prunes unused stages; the solver prunes further to what the
    // requested output needs: here the `build` stage, not the final one.
    let build = graph
        .stages()
        .iter()
        .find(|s| s.name.as_deref() == Some("build"))
        .unwrap()
        .output
        .clone();
    let solver = Solver::new(KindExec::default()).with_jobs(2);
    let solved = solver
        .solve(&dag, std::slice::from_ref(&build))
        .await
        .unwrap();
    let ran = solver.executor().ran.lock().unwrap().clone();
    assert_eq!(
        ran.keys().cloned().collect::<BTreeSet<_>>(),
        graph.ancestors(&build)
    );
    assert!(ran.len() < graph.vertices().len(), "the final stage ran");
    assert!(ran.values().any(|k| *k == "exec"));
    assert!(solved.outputs.contains_key(&build));
    assert_eq!(solved.cache_keys.len(), ran.len());

    // The target needs every vertex of the pruned graph, each once.
    let target = graph.target().unwrap().clone();
    let solver = Solver::new(KindExec::default()).with_jobs(2);
    let solved = solver.solve(&dag, &[target.clone(), build]).await.unwrap();
    assert_eq!(solved.executed, graph.vertices().len());
    assert_eq!(solved.outputs.len(), 2);
    assert!(
        !graph
            .vertices()
            .iter()
            .any(|v| v.meta.stage.as_deref() == Some("unused"))
    );
}

#[tokio::test]
async fn hand_built_graph_loads_with_metadata() {
    let mut graph = Graph::new();
    let meta = |d: &str| VertexMeta {
        description: d.to_string(),
        ..VertexMeta::default()
    };
    let scratch = graph
        .add(Op::Source(SourceOp::Scratch), vec![], meta("scratch"))
        .unwrap();
    let merged = graph
        .add(
            Op::Merge(rbuild_graph::MergeOp {}),
            vec![scratch.clone(), scratch.clone()],
            meta("merge"),
        )
        .unwrap();
    graph.set_target(merged.clone()).unwrap();

    let dag = load_graph_with(&graph, |v| v.meta.description.clone()).unwrap();
    assert_eq!(dag.op(&merged).map(String::as_str), Some("merge"));
    assert_eq!(dag.inputs(&merged).unwrap(), [&scratch, &scratch]);
    assert_eq!(dag.topological().collect::<Vec<_>>(), [&scratch, &merged]);

    let dag = load_graph(&graph).unwrap();
    let solver = Solver::new(KindExec::default());
    let solved = solver
        .solve(&dag, std::slice::from_ref(&merged))
        .await
        .unwrap();
    assert_eq!(solved.executed, 2);
}
