//! The generated layer shared by the layer benchmarks: a tree of text-like files and its tar.
//!
//! Sizes: `RBUILD_BENCH_BIG=1` uses the 20,000 files / 1 GiB; otherwise
//! `RBUILD_BENCH_FILES` and `RBUILD_BENCH_MB` override the defaults (400 files, 16 MiB).
//! `RBUILD_BENCH_DIR=DIR` keeps the tree and tar in `DIR` and reuses them on the next run
//! (generating 1 GiB takes a while); without it they live in a temp dir.

use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

use rbuild_image::layer::{DiffOptions, archive_tree};

/// A generated tree and the layer tar of it.
pub struct Fixture {
    _dir: Option<tempfile::TempDir>,
    pub tree: PathBuf,
    pub tar: PathBuf,
    pub tar_len: u64,
    pub scratch: PathBuf,
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

/// The tree and tar for this run's sizes, generated or reused.
pub fn fixture() -> Fixture {
    let big = std::env::var_os("RBUILD_BENCH_BIG").is_some_and(|v| v == "1");
    let (files, mb) = if big {
        (20_000, 1024)
    } else {
        (
            env_usize("RBUILD_BENCH_FILES", 400),
            env_usize("RBUILD_BENCH_MB", 16),
        )
    };
    let (temp, base) = match std::env::var_os("RBUILD_BENCH_DIR") {
        Some(d) => (None, PathBuf::from(d).join(format!("{files}-{mb}"))),
        None => {
            let t = tempfile::tempdir().expect("tempdir");
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    let tree = base.join("tree");
    let tar = base.join("layer.tar");
    let scratch = base.join("scratch");
    if scratch.exists() {
        fs::remove_dir_all(&scratch).expect("clean scratch");
    }
    let done = base.join("complete");
    if !done.exists() {
        if tree.exists() {
            fs::remove_dir_all(&tree).expect("clean tree");
        }
        generate(&tree, files, mb);
        let out = io::BufWriter::new(File::create(&tar).expect("create tar"));
        let (out, _) = archive_tree(&tree, out, &DiffOptions::default()).expect("archive");
        out.into_inner().expect("flush tar");
        fs::write(&done, b"").expect("mark fixture complete");
    }
    let tar_len = fs::metadata(&tar).expect("stat tar").len();
    eprintln!(
        "bench tree: {files} files, tar {} MiB",
        tar_len / (1024 * 1024)
    );
    Fixture {
        _dir: temp,
        tree,
        tar,
        tar_len,
        scratch,
    }
}

fn generate(tree: &std::path::Path, files: usize, mb: usize) {
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
}
