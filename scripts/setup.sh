#!/usr/bin/env bash
# Installs what rbuild needs on a fresh Debian machine with the Rust toolchain, builds it,
# and runs the main job on the example in examples/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release --locked
./target/release/rbuild check examples/
./target/release/rbuild graph --format dot examples/ > target/example-graph.dot
if command -v dot >/dev/null; then
    dot -Tsvg target/example-graph.dot > target/example-graph.svg
    echo "graph rendered to target/example-graph.svg"
fi
./target/release/rbuild graph --format json examples/ | head -n 40
