//! Times the parser on a few large synthetic inputs (a manual check, not a test).
use std::time::Instant;

fn main() {
    let cases = [
        (
            "label pairs",
            format!("FROM a\nLABEL {}\n", "a=b ".repeat(15000)),
        ),
        (
            "expose words",
            format!("FROM a\nEXPOSE {}\n", "80 ".repeat(20000)),
        ),
        ("many lines", "FROM a\nRUN echo hi\n".repeat(20000)),
        (
            "continuations",
            format!("FROM a\nRUN {}x\n", "a \\\n".repeat(30000)),
        ),
        (
            "json",
            format!("FROM a\nCMD [{}\"x\"]\n", "\"a\", ".repeat(10000)),
        ),
        (
            "heredocs",
            format!("FROM a\nRUN {}\n", "<<A ".repeat(10000)),
        ),
        (
            "nested json",
            format!("FROM a\nCMD {}\n", "[".repeat(30000)),
        ),
        (
            "flags",
            format!("FROM a\nCOPY {} a b\n", "--x=y ".repeat(10000)),
        ),
    ];
    for (name, src) in cases {
        let t = Instant::now();
        let r = rbuild_parser::parse_raw(&src);
        let raw = t.elapsed();
        let t = Instant::now();
        let r2 = rbuild_parser::parse(&src);
        println!(
            "{name}: raw {raw:?} full {:?} ok={} {}",
            t.elapsed(),
            r.is_ok(),
            r2.is_ok()
        );
    }
}
