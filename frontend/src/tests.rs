//! Unit tests of the lowering rules.

use super::*;

fn lower_str(
    src: &str,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
) -> Result<Lowered, FrontendError> {
    let df = rbuild_parser::parse(src).expect("test Dockerfile parses");
    lower(&df, opts, resolver)
}

#[test]
fn smoke() {
    let l = lower_str("FROM alpine AS build\nARG V=1\nWORKDIR /src\nCOPY . .\nRUN make $V\nFROM scratch\nCOPY --from=build /src/out /out\nENTRYPOINT [\"/out\"]\n", &BuildOptions::default(), &NoopResolver).unwrap();
    println!("{}", l.graph.to_json_pretty());
    println!("{}", serde_json::to_string_pretty(&l.config).unwrap());
    println!("{:?}", l.warnings);
}
