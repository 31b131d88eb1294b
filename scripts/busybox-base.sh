#!/usr/bin/env bash
# Makes the example's base image offline: Debian's static busybox with every applet linked
# in /bin, /etc/passwd and /etc/group (root and nobody, as Docker Hub's busybox has), /root
# and /tmp, imported into the rbuild store as busybox:latest with CMD ["sh"].
#
#   scripts/busybox-base.sh [RBUILD]      (RBUILD: the binary, default target/release/rbuild)
set -euo pipefail
cd "$(dirname "$0")/.."
RBUILD=${1:-target/release/rbuild}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/tmp"
chmod 0755 "$root" "$root/bin" "$root/etc"
chmod 0700 "$root/root"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
tar -C "$root" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/rootfs.tar" .
"$RBUILD" import --change 'CMD ["sh"]' "$work/rootfs.tar" busybox:latest
