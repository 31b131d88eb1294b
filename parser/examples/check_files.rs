//! Parses the Dockerfiles given as arguments and prints each verdict (a manual check).
fn main() {
    for path in std::env::args().skip(1) {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                println!("{path}: unreadable: {e}");
                continue;
            }
        };
        match rbuild_parser::parse(&text) {
            Ok(df) => println!(
                "{path}: ok, {} instructions, {} warnings",
                df.instructions.len(),
                df.warnings.len()
            ),
            Err(e) => println!("{path}:{}:{}: {}", e.span.line, e.span.col, e.message),
        }
    }
}
