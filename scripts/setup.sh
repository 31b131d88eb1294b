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

# The main job: build the example with a store of its own (offline: the busybox base comes
# from Debian's busybox-static), then run the image: its httpd serves the built pages.
export RBUILD_ROOT=${RBUILD_ROOT:-$PWD/target/example-store}
./scripts/busybox-base.sh ./target/release/rbuild
./target/release/rbuild build -t example-site:dev examples/
./target/release/rbuild run --rm --network none --entrypoint sh example-site:dev -c \
    'httpd -p 8080 -h /srv/www && sleep 0.3 && wget -q -O - http://127.0.0.1:8080/index.html'
./target/release/rbuild images
