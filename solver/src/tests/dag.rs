//! DAG construction and its errors.

use super::toy::{Toy, solver};
use crate::{Dag, DagError, SolveError};

#[test]
fn unknown_input_is_named() {
    let mut b = Dag::builder();
    b.add("a", Toy::Sum(1), ["ghost"]).unwrap();
    let err = b.build().unwrap_err();
    assert_eq!(
        err,
        DagError::UnknownInput {
            vertex: "a",
            input: "ghost"
        }
    );
    assert_eq!(err.to_string(), "vertex a has unknown input ghost");
}

#[test]
fn cycles_are_rejected() {
    let mut b = Dag::builder();
    b.add("a", Toy::Sum(1), ["c"]).unwrap();
    b.add("b", Toy::Sum(1), ["a"]).unwrap();
    b.add("c", Toy::Sum(1), ["b"]).unwrap();
    b.add("free", Toy::Sum(1), []).unwrap();
    let err = b.build().unwrap_err();
    assert!(
        matches!(err, DagError::Cycle(k) if ["a", "b", "c"].contains(&k)),
        "{err:?}"
    );

    let mut b = Dag::builder();
    b.add("self", Toy::Sum(1), ["self"]).unwrap();
    let err = b.build().unwrap_err();
    assert_eq!(err, DagError::Cycle("self"));
    assert_eq!(err.to_string(), "dependency cycle through vertex self");
}

#[test]
fn same_key_with_other_inputs_conflicts() {
    let mut b = Dag::builder();
    b.add("a", Toy::Sum(1), []).unwrap();
    b.add("b", Toy::Sum(1), []).unwrap();
    b.add("c", Toy::Sum(1), ["a"]).unwrap();
    let err = b.add("c", Toy::Sum(1), ["b"]).unwrap_err();
    assert_eq!(err, DagError::Conflict("c"));
}

#[test]
fn inputs_may_be_added_after_their_users() {
    let mut b = Dag::builder();
    b.add("top", Toy::Sum(1), ["mid", "low"]).unwrap();
    b.add("mid", Toy::Sum(1), ["low"]).unwrap();
    b.add("low", Toy::Sum(1), []).unwrap();
    let dag = b.build().unwrap();
    assert_eq!(
        dag.topological().copied().collect::<Vec<_>>(),
        ["low", "mid", "top"]
    );
    assert_eq!(dag.inputs(&"top").unwrap(), [&"mid", &"low"]);
    assert!(dag.contains(&"mid") && !dag.contains(&"nope"));
    assert!(dag.inputs(&"nope").is_none());
}

#[tokio::test]
async fn unknown_output_is_an_error_not_a_panic() {
    let mut b = Dag::builder();
    b.add("a", Toy::Sum(1), []).unwrap();
    let dag = b.build().unwrap();
    let solver = solver(1);
    let err = solver.solve(&dag, &["zzz"]).await.unwrap_err();
    assert!(matches!(
        err,
        SolveError::Dag(DagError::UnknownOutput("zzz"))
    ));
    assert_eq!(err.to_string(), "requested output zzz is not in the graph");
    assert!(solver.executor().runs().is_empty());
    assert!(solver.cache_keys(&dag, &["zzz"]).await.is_err());
}

#[tokio::test]
async fn empty_request_does_nothing() {
    let dag: Dag<&str, Toy> = Dag::builder().build().unwrap();
    assert!(dag.is_empty());
    let solved = solver(1).solve(&dag, &[]).await.unwrap();
    assert!(solved.outputs.is_empty());
    assert_eq!(solved.executed, 0);
}
