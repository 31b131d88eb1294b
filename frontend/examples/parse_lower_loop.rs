//! Runs parse (and lower) of the benchmark's generated 5,000-line Dockerfile N times, for
//! instruction-count profiling (`valgrind --tool=callgrind`, `perf stat`), which is
//! repeatable on a loaded machine where wall times are not.
//!
//! `cargo run --release -p rbuild-frontend --example parse_lower_loop -- [parse|lower] [N]`

use rbuild_frontend::{BuildOptions, NoopResolver};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "lower".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let source = rbuild_frontend::bench_input::dockerfile(5_000);
    let opts = BuildOptions::default();
    for _ in 0..n {
        let df = rbuild_parser::parse(&source).expect("generated Dockerfile parses");
        if mode == "lower" {
            let lowered = rbuild_frontend::lower(&df, &opts, &NoopResolver)
                .expect("generated Dockerfile lowers");
            std::hint::black_box(lowered);
        }
        std::hint::black_box(df);
    }
}
