#!/usr/bin/env bash
# Installs what rbuild needs on a fresh Debian machine with the Rust toolchain, builds it,
# and runs the main job on the example in examples/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    need=()
    for pkg in graphviz skopeo umoci oci-image-tool docker.io busybox-static; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
    if ((${#need[@]})); then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    fi
fi
cargo build --release --locked
./target/release/rbuild check examples/
./target/release/rbuild graph --format dot examples/ > target/example-graph.dot
if command -v dot >/dev/null; then
    dot -Tsvg target/example-graph.dot > target/example-graph.svg
    echo "graph rendered to target/example-graph.svg"
fi
./target/release/rbuild graph --format json examples/ | head -n 40
