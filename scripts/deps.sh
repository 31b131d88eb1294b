#!/usr/bin/env bash
# Installs the Debian packages rbuild's tests and tools use, when missing (root only;
# elsewhere it says what is missing and goes on).
set -euo pipefail
pkgs=(busybox-static pigz zstd graphviz skopeo umoci oci-image-tool docker.io docker-registry slirp4netns crun uidmap)
need=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
((${#need[@]})) || exit 0
if [ "$(id -u)" != 0 ]; then
    echo "deps: not root, not installing: ${need[*]}" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
