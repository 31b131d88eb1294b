use std::io::{Read, Write};
use std::process::{Command, Stdio};

use super::*;

/// Compressible but not trivial data: words drawn by a small LCG, so every block differs.
fn sample(len: usize) -> Vec<u8> {
    let words: [&[u8]; 8] = [
        b"layer ",
        b"tar ",
        b"digest ",
        b"\x00\x01\x02",
        b"rbuild ",
        b"zstd ",
        b"gzip\n",
        b"x",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let w = words[(state >> 61) as usize];
        out.extend_from_slice(w);
        if state & 0x10_0000 != 0 {
            out.push((state >> 24) as u8);
        }
    }
    out.truncate(len);
    out
}

fn run(data: &[u8], c: Compression, threads: usize) -> (Vec<u8>, LayerDigests) {
    let mut w = CompressWriter::with_threads(Vec::new(), c, threads).unwrap();
    // Odd write sizes exercise the batching across write calls.
    for chunk in data.chunks(77_777) {
        w.write_all(chunk).unwrap();
    }
    w.finish().unwrap()
}

fn decode_all(blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    decompressed_reader(blob)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn every_algorithm_roundtrips_with_correct_digests() {
    let data = sample(1024 * 1024 + 12_345);
    for c in [
        Compression::None,
        Compression::Gzip { level: 1 },
        Compression::DEFAULT_GZIP,
        Compression::Gzip { level: 0 },
        Compression::DEFAULT_ZSTD,
    ] {
        let (blob, d) = run(&data, c, 2);
        assert_eq!(d.diff_id, Sha256Digest::of(&data), "{c:?}");
        assert_eq!(d.uncompressed_size, data.len() as u64);
        assert_eq!(d.digest, Sha256Digest::of(&blob), "{c:?}");
        assert_eq!(d.size, blob.len() as u64);
        assert_eq!(decode_all(&blob), data, "{c:?}");
        if c == Compression::None {
            assert_eq!(d.digest, d.diff_id);
        } else if c != (Compression::Gzip { level: 0 }) {
            assert!(blob.len() < data.len() / 2, "{c:?} did not compress");
        }
    }
}

#[test]
fn empty_input_gives_valid_streams() {
    for c in [
        Compression::None,
        Compression::DEFAULT_GZIP,
        Compression::DEFAULT_ZSTD,
    ] {
        let (blob, d) = run(b"", c, 1);
        assert_eq!(d.diff_id, Sha256Digest::of(b""));
        assert!(decode_all(&blob).is_empty(), "{c:?}");
    }
}

#[test]
fn gzip_is_one_standard_member() {
    let data = sample(1024 * 1024 + 7);
    let (blob, _) = run(&data, Compression::DEFAULT_GZIP, 2);
    // The single-member decoder checks the CRC and ISIZE and stops at the member's end.
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, data);
    assert_eq!(&blob[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
}

#[test]
fn gzip_decompresses_with_gzip_tool() {
    let Ok(mut child) = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    else {
        eprintln!("skipping: gzip is not installed");
        return;
    };
    let data = sample(1024 * 1024 + 99);
    let (blob, _) = run(&data, Compression::DEFAULT_GZIP, 2);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&blob));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip -d failed");
    assert_eq!(out.stdout, data);
}

#[test]
fn output_does_not_depend_on_thread_count() {
    let data = sample(1024 * 1024 + 5);
    for c in [Compression::DEFAULT_GZIP, Compression::DEFAULT_ZSTD] {
        let (one, d1) = run(&data, c, 1);
        let (two, d2) = run(&data, c, 2);
        let (four, _) = run(&data, c, 4);
        assert_eq!(one, two, "{c:?}");
        assert_eq!(one, four, "{c:?}");
        assert_eq!(d1, d2);
    }
}

#[test]
fn zstd_single_frame_decodes_with_zstd_crate() {
    let data = sample(600_000);
    let (blob, _) = run(&data, Compression::Zstd { level: 5 }, 2);
    assert_eq!(zstd::decode_all(&blob[..]).unwrap(), data);
}

#[test]
fn detection_by_magic() {
    assert_eq!(detect(&[0x1f, 0x8b, 8]), Detected::Gzip);
    assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Detected::Zstd);
    assert_eq!(detect(b"ustar"), Detected::None);
    assert_eq!(detect(&[0x1f]), Detected::None);
    // A short uncompressed stream passes through untouched.
    assert_eq!(decode_all(b"ab"), b"ab");
}

#[test]
fn invalid_levels_are_errors() {
    assert!(matches!(
        CompressWriter::new(Vec::new(), Compression::Gzip { level: 10 }),
        Err(CompressError::InvalidLevel { .. })
    ));
    assert!(matches!(
        CompressWriter::new(Vec::new(), Compression::Zstd { level: 0 }),
        Err(CompressError::InvalidLevel { .. })
    ));
}

#[test]
fn corrupt_gzip_is_an_error_not_a_panic() {
    let data = sample(300_000);
    let (mut blob, _) = run(&data, Compression::DEFAULT_GZIP, 2);
    let n = blob.len();
    blob[n - 6] ^= 0xff; // inside the CRC
    let mut out = Vec::new();
    assert!(
        decompressed_reader(&blob[..])
            .unwrap()
            .read_to_end(&mut out)
            .is_err()
    );
}

#[test]
fn output_does_not_depend_on_write_sizes_or_flushes() {
    let data = sample(700_000);
    for c in [Compression::DEFAULT_GZIP, Compression::DEFAULT_ZSTD] {
        let (reference, _) = run(&data, c, 2);
        for chunk in [1_000, 512, 300_000, 1 << 21] {
            let mut w = CompressWriter::with_threads(Vec::new(), c, 2).unwrap();
            for (i, piece) in data.chunks(chunk).enumerate() {
                w.write_all(piece).unwrap();
                if i % 7 == 3 {
                    w.flush().unwrap();
                }
            }
            let (blob, _) = w.finish().unwrap();
            assert_eq!(blob, reference, "{c:?} chunk {chunk}");
        }
    }
}

/// Bytes from xorshift64: incompressible, reproducible.
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Decodes with the `gzip` tool (which checks CRC and ISIZE), or `None` if it is missing.
fn gzip_tool_decode(blob: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take().unwrap();
    let blob = blob.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&blob));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip -d failed");
    Some(out.stdout)
}

#[test]
fn incompressibility_is_told_by_the_histogram() {
    use super::pgzip::incompressible;
    assert!(incompressible(&random(128 * 1024, 7)));
    assert!(incompressible(&random(5000, 9)));
    assert!(!incompressible(&sample(128 * 1024)));
    assert!(!incompressible(&vec![0u8; 128 * 1024]));
    // An eighth of zeros is enough to compress the block.
    let mut mixed = random(128 * 1024, 3);
    mixed[..16 * 1024].fill(0);
    assert!(!incompressible(&mixed));
    // Short blocks are always compressed.
    assert!(!incompressible(&random(4095, 5)));
    assert!(!incompressible(&[]));
}

#[test]
fn random_data_is_stored_at_its_own_size() {
    let data = random(3 * 1024 * 1024 + 4321, 11);
    let (blob, d) = run(&data, Compression::DEFAULT_GZIP, 2);
    assert_eq!(decode_all(&blob), data);
    assert_eq!(d.digest, Sha256Digest::of(&blob));
    // 10 header + 8 trailer + 2 final block + 5 per stored block of at most 64 KiB.
    let overhead = blob.len() - data.len();
    assert!(
        overhead <= 20 + 5 * (data.len() / 0xffff + 64),
        "{overhead}"
    );
    if let Some(out) = gzip_tool_decode(&blob) {
        assert_eq!(out, data);
    }
}

/// Random, text and mixed inputs of awkward lengths, cut at many write sizes: every one
/// decodes (by flate2 and by the gzip tool) to its input, with the same bytes at every
/// thread count, and text stays compressed.
#[test]
fn mixed_inputs_roundtrip_and_are_deterministic() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    for case in 0..8 {
        // Runs of random and text bytes of random lengths, some shorter than a block,
        // some longer, so blocks of every mixture occur.
        let mut data = Vec::new();
        let runs = 1 + next(5);
        for r in 0..runs {
            let len = next(260 * 1024);
            if (case + r) % 2 == 0 {
                data.extend(random(len, (case * 31 + r) as u64));
            } else {
                data.extend(sample(len));
            }
        }
        let level = [1, 6, 9][case % 3];
        let c = Compression::Gzip { level };
        let (blob, d) = run(&data, c, 1 + case % 3);
        assert_eq!(decode_all(&blob), data, "case {case}");
        assert_eq!(d.diff_id, Sha256Digest::of(&data));
        let (again, _) = run(&data, c, 4);
        assert_eq!(
            again, blob,
            "case {case}: output depends on the thread count"
        );
        // Never more than stored blocks' framing over the input.
        assert!(blob.len() <= data.len() + 20 + 5 * (data.len() / 0xffff + 64));
        if case < 4
            && let Some(out) = gzip_tool_decode(&blob)
        {
            assert_eq!(out, data, "case {case}: gzip -d");
        }
    }
    let text = sample(2 * 1024 * 1024);
    let (blob, _) = run(&text, Compression::DEFAULT_GZIP, 2);
    assert!(blob.len() < text.len() / 2);
}
