//! Fuzzes the Dockerfile parser: any UTF-8 input must parse or fail with an error (never
//! panic), and every span must lie inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_parser::ast::Span;

fn check(span: &Span, len: usize) {
    assert!(span.start <= span.end && span.end <= len, "{span:?} outside 0..{len}");
    assert!(span.line >= 1 && span.col >= 1 && span.end_line >= span.line, "{span:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let raw = rbuild_parser::parse_raw(text);
    match rbuild_parser::parse(text) {
        Ok(df) => {
            let raw = raw.expect("typed parse succeeded where the raw parse failed");
            assert_eq!(raw.dump(), df.dump());
            for n in &df.nodes {
                check(&n.span, text.len());
                check(&n.keyword.span, text.len());
                n.flags.iter().for_each(|f| check(&f.span, text.len()));
                n.heredocs.iter().for_each(|h| check(&h.span, text.len()));
            }
            for i in &df.instructions {
                check(&i.span, text.len());
            }
        }
        Err(e) => check(&e.span, text.len()),
    }
});
