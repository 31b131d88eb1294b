//! The sandbox helper as its own executable, for the executor's tests; the `rbuild`
//! binary exposes the same entry point as a hidden subcommand.

fn main() {
    rbuild_executor::sandbox_init_main()
}
