//! Layer benchmarks: apply and diff of a generated tree, and gzip/zstd compression of its tar.
//!
//! The default tree is small so `cargo bench --no-run` and a quick run stay cheap. Sizes:
//! `RBUILD_BENCH_BIG=1` uses the 20,000 files / 1 GiB; otherwise `RBUILD_BENCH_FILES`
//! and `RBUILD_BENCH_MB` override the defaults (400 files, 16 MiB).

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rbuild_image::compress::{CompressWriter, Compression};
use rbuild_image::layer::{ApplyOptions, DiffOptions, apply, archive_tree};

struct Fixture {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    tar: PathBuf,
    tar_len: u64,
    scratch: PathBuf,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Text-like data that compresses roughly as real layers do (about 3:1 with gzip -6).
fn fill(buf: &mut Vec<u8>, len: usize, seed: &mut u64) {
    const WORDS: [&[u8]; 16] = [
        b"the ",
        b"layer ",
        b"library ",
        b"\x7fELF\x02\x01",
        b"/usr/lib/",
        b"int ",
        b"return ",
        b"0x1f8b ",
        b"config ",
        b"{\"key\": ",
        b"value\", ",
        b"\n",
        b"    ",
        b"static ",
        b"rbuild ",
        b"\x00\x00\x00\x00",
    ];
    buf.clear();
    while buf.len() < len {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let s = *seed;
        buf.extend_from_slice(WORDS[(s >> 60) as usize]);
        // Some incompressible bytes, as in binaries.
        if s & 0x3 == 0 {
            buf.extend_from_slice(&s.to_le_bytes()[..6]);
        }
    }
    buf.truncate(len);
}

fn fixture() -> Fixture {
    let big = std::env::var_os("RBUILD_BENCH_BIG").is_some_and(|v| v == "1");
    let (files, mb) = if big {
        (20_000, 1024)
    } else {
        (
            env_usize("RBUILD_BENCH_FILES", 400),
            env_usize("RBUILD_BENCH_MB", 16),
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    let total = mb * 1024 * 1024;
    let per_file = total / files.max(1);
    let mut seed = 0x5eed_u64;
    let mut buf = Vec::new();
    for i in 0..files {
        // 100 files per directory, two levels, sizes varying around the mean.
        let d = tree.join(format!("d{:03}/s{:02}", i / 1000, (i / 100) % 10));
        fs::create_dir_all(&d).expect("mkdir");
        let size = per_file / 2 + (i * 7919) % per_file.max(1);
        fill(&mut buf, size, &mut seed);
        fs::write(d.join(format!("f{i:05}")), &buf).expect("write");
    }
    let tar = dir.path().join("layer.tar");
    let out = io::BufWriter::new(File::create(&tar).expect("create tar"));
    let (out, _) = archive_tree(&tree, out, &DiffOptions::default()).expect("archive");
    out.into_inner().expect("flush tar");
    let tar_len = fs::metadata(&tar).expect("stat tar").len();
    eprintln!(
        "bench tree: {files} files, tar {} MiB",
        tar_len / (1024 * 1024)
    );
    let scratch = dir.path().join("scratch");
    Fixture {
        _dir: dir,
        tree,
        tar,
        tar_len,
        scratch,
    }
}

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
    let f = fixture();
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
