//! Figures for the benchmark targets, from one run: rbuild's gzip and zstd layer
//! compression against `pigz -6` and `zstd -T0 -3` on the same tar, plus apply and diff of the
//! tree, with medians over several rounds and rbuild's peak RSS.
//!
//! Every measurement is a child process timed by this one (ours is this binary re-run in a
//! child mode), baseline and ours back to back in alternating order, so load from other work
//! on the machine hits both alike. Run it with
//! `RBUILD_BENCH_BIG=1 RBUILD_BENCH_DIR=/var/tmp/rbuild-bench cargo bench -p rbuild-image --bench compare`;
//! `RBUILD_COMPARE_ROUNDS` sets the number of rounds (default 5). Sizes: see `common/mod.rs`.

mod common;

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use rbuild_image::compress::{CompressWriter, Compression};
use rbuild_image::layer::{ApplyOptions, DiffOptions, apply, archive_tree};

/// Set in a child to the measurement it runs: `gzip`, `zstd`, `apply` or `diff`.
const CHILD: &str = "RBUILD_COMPARE_CHILD";
const SRC: &str = "RBUILD_COMPARE_SRC";
const DST: &str = "RBUILD_COMPARE_DST";

/// The peak resident set of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Stdout as a plain buffered file: `io::Stdout` is line-buffered and would scan every byte
/// of binary output for newlines.
fn raw_stdout() -> io::BufWriter<File> {
    use std::os::fd::AsFd as _;
    let fd = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .expect("dup stdout");
    io::BufWriter::with_capacity(1 << 20, File::from(fd))
}

/// Child side: runs one measurement, writes any output to stdout and the peak RSS to stderr.
fn child(mode: &str) {
    let src = std::env::var_os(SRC).expect("source path");
    let src = Path::new(&src);
    match mode {
        "gzip" | "zstd" => {
            let c = if mode == "gzip" {
                Compression::DEFAULT_GZIP
            } else {
                Compression::DEFAULT_ZSTD
            };
            let mut input = BufReader::with_capacity(1 << 20, File::open(src).expect("open tar"));
            let mut w = CompressWriter::new(raw_stdout(), c).expect("encoder");
            io::copy(&mut input, &mut w).expect("compress");
            let (mut out, _) = w.finish().expect("finish");
            out.flush().expect("flush");
        }
        "apply" => {
            let dst = std::env::var_os(DST).expect("destination path");
            fs::create_dir(&dst).expect("scratch");
            let input = BufReader::with_capacity(1 << 20, File::open(src).expect("open tar"));
            apply(input, Path::new(&dst), &ApplyOptions::default()).expect("apply");
        }
        "diff" => {
            let (mut out, _) =
                archive_tree(src, raw_stdout(), &DiffOptions::default()).expect("diff");
            out.flush().expect("flush");
        }
        other => panic!("unknown child mode {other}"),
    }
    eprintln!("vmhwm_kib={}", vm_hwm_kib());
}

/// User plus system CPU seconds of every child waited for so far.
fn children_cpu() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(u.user_time()) + secs(u.system_time())
}

/// One run of a child: wall seconds, CPU seconds, bytes it wrote to stdout, its reported
/// peak RSS.
fn run(cmd: &mut Command) -> Run {
    let cpu_before = children_cpu();
    let start = Instant::now();
    let mut p = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = p.stdout.take().expect("stdout");
    let mut stderr = p.stderr.take().expect("stderr");
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let mut buf = vec![0u8; 1 << 20];
    let mut out = 0u64;
    loop {
        let n = stdout.read(&mut buf).expect("read child output");
        if n == 0 {
            break;
        }
        out += n as u64;
    }
    let status = p.wait().expect("wait");
    let secs = start.elapsed().as_secs_f64();
    let cpu = children_cpu() - cpu_before;
    let err = err.join().expect("stderr thread").expect("read stderr");
    assert!(status.success(), "{cmd:?} failed: {err}");
    let hwm = err
        .lines()
        .find_map(|l| l.strip_prefix("vmhwm_kib="))
        .and_then(|v| v.parse().ok());
    Run {
        secs,
        cpu,
        out,
        hwm,
    }
}

struct Run {
    secs: f64,
    cpu: f64,
    out: u64,
    hwm: Option<u64>,
}

/// Each run as it finishes, so a long session shows progress (stderr).
fn report(round: usize, name: &str, r: &Run) {
    eprintln!(
        "round {}: {name}: {:.2} s wall, {:.2} s CPU, peak RSS {} KiB",
        round + 1,
        r.secs,
        r.cpu,
        r.hwm.map_or_else(|| "-".to_owned(), |k| k.to_string())
    );
}

fn ours(mode: &str, src: &Path, dst: Option<&Path>) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("own path"));
    c.env(CHILD, mode).env(SRC, src);
    if let Some(d) = dst {
        c.env(DST, d);
    }
    c
}

fn tool(name: &str, args: &[&str], src: &Path) -> Command {
    let mut c = Command::new(name);
    c.args(args).arg(src);
    c
}

#[derive(Default)]
struct Samples {
    secs: Vec<f64>,
    cpu: Vec<f64>,
    out: u64,
    hwm_kib: u64,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Samples {
    fn add(&mut self, r: Run) {
        self.secs.push(r.secs);
        self.cpu.push(r.cpu);
        self.out = r.out;
        self.hwm_kib = self.hwm_kib.max(r.hwm.unwrap_or(0));
    }

    fn median(&self) -> f64 {
        median(&self.secs)
    }
}

fn main() {
    if let Ok(mode) = std::env::var(CHILD) {
        child(&mode);
        return;
    }
    // `cargo bench` passes `--bench` and maybe a filter; `cargo test --benches` passes neither
    // and only checks that this runs, on a small tree with one round.
    let rounds: usize = std::env::var("RBUILD_COMPARE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            5
        } else {
            1
        });
    let f = common::fixture();
    let have = |t: &str| {
        Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let (pigz, zstd) = (have("pigz"), have("zstd"));
    let names = [
        "pigz -6",
        "rbuild gzip 6",
        "zstd -T0 -3",
        "rbuild zstd 3",
        "rbuild apply",
        "rbuild diff",
    ];
    let mut s: Vec<Samples> = names.iter().map(|_| Samples::default()).collect();
    for r in 0..rounds {
        // Alternate which of each pair goes first.
        let pairs: [(usize, usize); 2] = if r % 2 == 0 {
            [(0, 1), (2, 3)]
        } else {
            [(1, 0), (3, 2)]
        };
        for (a, b) in pairs {
            for i in [a, b] {
                let cmd = match i {
                    0 if pigz => tool("pigz", &["-6", "-c"], &f.tar),
                    1 => ours("gzip", &f.tar, None),
                    2 if zstd => tool("zstd", &["-T0", "-3", "-c", "-q"], &f.tar),
                    3 => ours("zstd", &f.tar, None),
                    _ => continue,
                };
                let one = run(&mut { cmd });
                report(r, names[i], &one);
                s[i].add(one);
            }
        }
        let one = run(&mut ours("apply", &f.tar, Some(&f.scratch)));
        report(r, names[4], &one);
        s[4].add(one);
        fs::remove_dir_all(&f.scratch).expect("clean scratch");
        let one = run(&mut ours("diff", &f.tree, None));
        report(r, names[5], &one);
        s[5].add(one);
    }
    let mib = f.tar_len as f64 / (1024.0 * 1024.0);
    println!("input: layer tar of {mib:.0} MiB; {rounds} rounds; medians");
    println!(
        "{:<16} {:>9} {:>10} {:>10} {:>11} {:>12}  wall samples (s)",
        "", "median s", "MiB/s", "CPU s", "output MiB", "peak RSS MiB"
    );
    for (name, x) in names.iter().zip(&s) {
        if x.secs.is_empty() {
            println!("{name:<16} (tool not installed)");
            continue;
        }
        let m = x.median();
        let rss = if x.hwm_kib > 0 {
            format!("{:.1}", x.hwm_kib as f64 / 1024.0)
        } else {
            "-".to_owned()
        };
        let samples: Vec<String> = x.secs.iter().map(|v| format!("{v:.2}")).collect();
        println!(
            "{name:<16} {m:>9.3} {:>10.1} {:>10.2} {:>11.1} {rss:>12}  {}",
            mib / m,
            median(&x.cpu),
            x.out as f64 / (1024.0 * 1024.0),
            samples.join(" ")
        );
    }
    for (label, base, ours) in [("gzip", 0, 1), ("zstd", 2, 3)] {
        if !s[base].secs.is_empty() {
            // Per round too: each pair ran back to back under the same load.
            let per_round: Vec<f64> = s[base]
                .secs
                .iter()
                .zip(&s[ours].secs)
                .map(|(b, o)| b / o)
                .collect();
            println!(
                "{label}: rbuild / baseline throughput = {:.2} (medians); per round median {:.2}; \
                 CPU time baseline / rbuild = {:.2}",
                s[base].median() / s[ours].median(),
                median(&per_round),
                median(&s[base].cpu) / median(&s[ours].cpu),
            );
        }
    }
}
