//! Digest stability and sensitivity over small graphs.

use super::*;

fn image(reference: &str) -> Op {
    Op::Source(SourceOp::Image(ImageSource {
        reference: reference.into(),
        digest: None,
        platform: Platform::linux_amd64(),
    }))
}

fn run(cmd: &str) -> ExecOp {
    ExecOp {
        args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
        env: vec!["PATH=/usr/bin:/bin".into()],
        cwd: "/".into(),
        user: String::new(),
        network: NetworkMode::Default,
        security: SecurityMode::Sandbox,
        platform: Platform::linux_amd64(),
        mounts: vec![],
        proxy_env: ProxyEnv::default(),
    }
}

fn meta(d: &str) -> VertexMeta {
    VertexMeta {
        description: d.into(),
        ..Default::default()
    }
}

/// base → RUN a → RUN b, plus an independent branch base → RUN c. Returns all digests.
fn chain(a: &str) -> (Graph, [Digest; 4]) {
    let mut g = Graph::new();
    let base = g
        .add(image("docker.io/library/alpine:3.19"), vec![], meta("FROM"))
        .unwrap();
    let ra = g
        .add(Op::Exec(run(a)), vec![base.clone()], meta("RUN a"))
        .unwrap();
    let rb = g
        .add(Op::Exec(run("b")), vec![ra.clone()], meta("RUN b"))
        .unwrap();
    let rc = g
        .add(Op::Exec(run("c")), vec![base.clone()], meta("RUN c"))
        .unwrap();
    (g, [base, ra, rb, rc])
}

#[test]
fn same_ops_same_digests() {
    let (_, d1) = chain("make");
    let (_, d2) = chain("make");
    assert_eq!(d1, d2);
}

#[test]
fn digest_encoding_is_pinned() {
    // A fixed op must hash to the same value in every process and release; if this
    // changes, bump ENCODING_VERSION on purpose and update the value.
    let d = vertex_digest(&Op::Source(SourceOp::Scratch), &[]);
    let again = vertex_digest(&Op::Source(SourceOp::Scratch), &[]);
    assert_eq!(d, again);
    let bytes = format!(
        "{{\"encoding\":\"rbuild.vertex\",\"version\":{ENCODING_VERSION},\"op\":{{\"type\":\"source\",\"source\":\"scratch\"}},\"inputs\":[]}}"
    );
    assert_eq!(d, Digest::sha256(bytes.as_bytes()));
}

#[test]
fn changing_one_run_changes_only_it_and_dependents() {
    let (_, [base1, a1, b1, c1]) = chain("make");
    let (_, [base2, a2, b2, c2]) = chain("make install");
    assert_eq!(base1, base2);
    assert_eq!(c1, c2);
    assert_ne!(a1, a2);
    assert_ne!(b1, b2);
}

#[test]
fn metadata_is_not_hashed() {
    let mut g1 = Graph::new();
    let mut g2 = Graph::new();
    let d1 = g1
        .add(Op::Exec(run("x")), vec![], meta("[a 1/2] RUN x"))
        .unwrap();
    let d2 = g2
        .add(Op::Exec(run("x")), vec![], meta("[b 2/9] RUN x"))
        .unwrap();
    assert_eq!(d1, d2);
}

#[test]
fn proxy_env_is_not_hashed_but_env_is() {
    let plain = run("curl x");
    let mut proxied = plain.clone();
    proxied.proxy_env.http_proxy = Some("http://proxy:3128".into());
    assert_eq!(
        vertex_digest(&Op::Exec(plain.clone()), &[]),
        vertex_digest(&Op::Exec(proxied), &[])
    );
    let mut with_env = plain.clone();
    with_env.env.push("HTTP_PROXY=http://proxy:3128".into());
    assert_ne!(
        vertex_digest(&Op::Exec(plain), &[]),
        vertex_digest(&Op::Exec(with_env), &[])
    );
}

#[test]
fn input_order_matters() {
    let mut g = Graph::new();
    let a = g.add(image("a"), vec![], meta("a")).unwrap();
    let b = g.add(image("b"), vec![], meta("b")).unwrap();
    let m1 = g
        .add(Op::Merge(MergeOp {}), vec![a.clone(), b.clone()], meta("m"))
        .unwrap();
    let m2 = g.add(Op::Merge(MergeOp {}), vec![b, a], meta("m")).unwrap();
    assert_ne!(m1, m2);
}

#[test]
fn duplicate_vertices_are_merged() {
    let mut g = Graph::new();
    let a = g.add(image("a"), vec![], meta("first")).unwrap();
    let a2 = g.add(image("a"), vec![], meta("second")).unwrap();
    assert_eq!(a, a2);
    assert_eq!(g.vertices().len(), 1);
    assert_eq!(g.vertex(&a).unwrap().meta.description, "first");
}

#[test]
fn unknown_input_is_an_error() {
    let mut g = Graph::new();
    let stray = Digest::sha256(b"nothing");
    assert_eq!(
        g.add(Op::Merge(MergeOp {}), vec![stray.clone()], meta("m")),
        Err(GraphError::UnknownInput(stray.clone()))
    );
    assert_eq!(
        g.set_target(stray.clone()),
        Err(GraphError::UnknownOutput(stray))
    );
}

#[test]
fn json_round_trip_checks_digests() {
    let (mut g, [_, _, b, _]) = chain("make");
    g.set_stage_output(StageOutput {
        index: 0,
        name: Some("build".into()),
        output: b.clone(),
    })
    .unwrap();
    g.set_target(b.clone()).unwrap();
    let json = serde_json::to_string(&g).unwrap();
    let back: Graph = serde_json::from_str(&json).unwrap();
    assert_eq!(back, g);
    assert_eq!(back.ancestors(&b).len(), 3);
    assert!(back.vertex(&b).is_some());

    // A tampered op no longer matches its digest.
    let tampered = json.replace("\"b\"", "\"bb\"");
    let err = serde_json::from_str::<Graph>(&tampered).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    // Inputs must come before their users.
    let mut reordered: serde_json::Value = serde_json::from_str(&json).unwrap();
    reordered["vertices"].as_array_mut().unwrap().reverse();
    assert!(serde_json::from_value::<Graph>(reordered).is_err());
}

#[test]
fn tool_json_lists_vertices_in_order() {
    let (mut g, [base, a, b, c]) = chain("make");
    g.set_target(b.clone()).unwrap();
    let json = g.to_json();
    let digests: Vec<&str> = json["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [base.as_str(), a.as_str(), b.as_str(), c.as_str()]);
    assert_eq!(json["vertices"][1]["inputs"][0], base.as_str());
    assert_eq!(json["vertices"][1]["op"]["type"], "exec");
    assert_eq!(json["target"], b.as_str());
    assert_eq!(g.to_json_pretty(), g.clone().to_json_pretty());
}

#[test]
fn dot_has_clusters_and_edges() {
    let mut g = Graph::new();
    let base = g
        .add(
            image("alpine"),
            vec![],
            VertexMeta {
                description: "FROM \"alpine\"".into(),
                stage: Some("build".into()),
                location: None,
            },
        )
        .unwrap();
    let r = g
        .add(
            Op::Exec(run("x")),
            vec![base.clone()],
            VertexMeta {
                description: "RUN x".into(),
                stage: Some("build".into()),
                location: None,
            },
        )
        .unwrap();
    g.set_target(r.clone()).unwrap();
    let dot = g.to_dot();
    assert!(dot.starts_with("digraph rbuild {"));
    assert!(dot.contains("subgraph cluster_0 {"));
    assert!(dot.contains("label=\"build\";"));
    assert!(dot.contains(&format!("\"{}\" -> \"{}\";", base.hex(), r.hex())));
    assert!(dot.contains("FROM \\\"alpine\\\""));
    assert_eq!(dot.matches('{').count(), dot.matches('}').count());
}
