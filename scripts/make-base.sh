#!/usr/bin/env bash
# Create a Debian base image locally when no registry can be reached.
# Usage: make-base.sh [IMAGE] [SUITE] [MIRROR]   (defaults: debian:bookworm-slim bookworm deb.debian.org)
# A pullable or already-present image is left alone, so this is safe to run every time.
set -euo pipefail
image=${1:-debian:bookworm-slim}
suite=${2:-bookworm}
mirror=${3:-http://deb.debian.org/debian}

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "make-base: $image already present"
  exit 0
fi
if timeout 60 docker pull "$image" >/dev/null 2>&1; then
  echo "make-base: pulled $image"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "make-base: debootstrap is needed (apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d /tmp/envcheck-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "make-base: $image cannot be pulled; building it from Debian's packages ($suite, $mirror)"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# Trim like the official -slim images: no package lists or caches in the base layer.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import \
  --change 'CMD ["bash"]' \
  --change 'ENV LANG=C.UTF-8' \
  --message "envcheck make-base: debootstrap --variant=minbase $suite" - "$image" >/dev/null
echo "make-base: created $image"
