//! Parse + lower a generated 5,000-line Dockerfile (target: under 20 ms on one core).
//!
//! `cargo bench --bench parse_lower`

use criterion::{Criterion, criterion_group, criterion_main};
use rbuild_frontend::{BuildOptions, NoopResolver};

fn bench(c: &mut Criterion) {
    let source = rbuild_frontend::bench_input::dockerfile(5_000);
    let opts = BuildOptions::default();
    c.bench_function("parse_lower_5000_lines", |b| {
        b.iter(|| {
            let df = rbuild_parser::parse(&source).expect("generated Dockerfile parses");
            rbuild_frontend::lower(&df, &opts, &NoopResolver).expect("generated Dockerfile lowers")
        })
    });
    c.bench_function("parse_5000_lines", |b| {
        b.iter(|| rbuild_parser::parse(&source).expect("generated Dockerfile parses"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
