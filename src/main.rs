//! The `rbuild` command line.
fn main() {
    println!("rbuild {}", env!("CARGO_PKG_VERSION"));
}
