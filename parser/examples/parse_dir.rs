//! Parses every file of a directory and prints the slowest ones (a manual profiling aid).
use std::time::Instant;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: parse_dir DIR");
    let mut times = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let t = Instant::now();
        let _ = rbuild_parser::parse(&text).map(|d| d.dump());
        let _ = rbuild_parser::parse_raw(&text);
        times.push((t.elapsed(), text.len(), path));
    }
    let total: std::time::Duration = times.iter().map(|t| t.0).sum();
    times.sort();
    println!("{} files, total {total:?}", times.len());
    for (d, len, p) in times.iter().rev().take(5) {
        println!("{d:?} {len} {}", p.display());
    }
}
