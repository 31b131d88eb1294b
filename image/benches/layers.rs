//! Layer benchmarks: apply and diff of a generated tree, and gzip/zstd compression of its tar.
//!
//! The default tree is small so `cargo bench --no-run` and a quick run stay cheap; sizes are
//! set as described in `common/mod.rs`. The `compare` bench gives the medians of ours against
//! `pigz -6` and `zstd -T0 -3` with peak RSS, for the figures.

mod common;

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rbuild_image::compress::{CompressWriter, Compression};
use rbuild_image::layer::{ApplyOptions, DiffOptions, apply, archive_tree};

fn timed_apply(tar: &Path, scratch: &Path, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        fs::create_dir(scratch).expect("scratch");
        let input = BufReader::with_capacity(1 << 20, File::open(tar).expect("open tar"));
        let start = Instant::now();
        apply(input, scratch, &ApplyOptions::default()).expect("apply");
        total += start.elapsed();
        fs::remove_dir_all(scratch).expect("clean scratch");
    }
    total
}

fn compress_file(tar: &Path, c: Compression) -> u64 {
    let mut input = BufReader::with_capacity(1 << 20, File::open(tar).expect("open tar"));
    let mut w = CompressWriter::new(io::sink(), c).expect("encoder");
    io::copy(&mut input, &mut w).expect("compress");
    w.flush().expect("flush");
    let (_, d) = w.finish().expect("finish");
    d.size
}

fn benches(c: &mut Criterion) {
    let f = common::fixture();
    let mut g = c.benchmark_group("layer");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(f.tar_len));
    g.bench_function("diff_tree", |b| {
        b.iter(|| {
            archive_tree(&f.tree, io::sink(), &DiffOptions::default()).expect("diff");
        })
    });
    g.bench_function("apply", |b| {
        b.iter_custom(|n| timed_apply(&f.tar, &f.scratch, n))
    });
    for (name, comp) in [
        ("gzip6", Compression::DEFAULT_GZIP),
        ("zstd3", Compression::DEFAULT_ZSTD),
    ] {
        let size = compress_file(&f.tar, comp);
        eprintln!(
            "{name}: {} MiB -> {} MiB",
            f.tar_len / (1024 * 1024),
            size / (1024 * 1024)
        );
        g.bench_function(name, |b| b.iter(|| compress_file(&f.tar, comp)));
    }
    // The reference tools on the same file, in the same group, so load on the machine hits
    // both alike.
    for (name, tool, args) in [
        ("pigz6_external", "pigz", &["-6", "-c"][..]),
        ("zstd_T0_3_external", "zstd", &["-T0", "-3", "-c", "-q"][..]),
    ] {
        if run_tool(tool, args, &f.tar).is_err() {
            eprintln!("{tool} not found: skipping {name}");
            continue;
        }
        g.bench_function(name, |b| {
            b.iter(|| run_tool(tool, args, &f.tar).expect(tool))
        });
    }
    g.finish();
}

fn run_tool(tool: &str, args: &[&str], input: &Path) -> io::Result<()> {
    let status = std::process::Command::new(tool)
        .args(args)
        .arg(input)
        .stdout(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{tool} failed")))
    }
}

criterion_group!(layer_benches, benches);
criterion_main!(layer_benches);
