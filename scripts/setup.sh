#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine for envcheck: Docker engine (started), debootstrap, chromium (for the
# page tests), docker-registry and TLS tools (the many-hosts tests start their own registry and second daemon),
# the package with its test extras, and the local base image.
# Safe to run again: each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Docker as Debian packages it (with its recommends, as tested here); the browser without extras.
need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
# the many-hosts tests: a real registry with a password, certificates, a bridge for the second daemon
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v htpasswd >/dev/null || need_apt+=(apache2-utils)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v ip >/dev/null || need_apt+=(iproute2)
# the Docker tests start a daemon of their own in a network namespace, with NAT rules for its way out
command -v iptables >/dev/null || need_apt+=(iptables)
need_lean=()
command -v chromium >/dev/null || need_lean+=(chromium)  # the page tests drive it headless
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need_lean+=(fonts-noto-color-emoji)
if ((${#need_apt[@]} + ${#need_lean[@]})); then
  echo "setup: installing ${need_apt[*]} ${need_lean[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  if ((${#need_apt[@]})); then apt-get install -y -q "${need_apt[@]}" >/dev/null; fi
  if ((${#need_lean[@]})); then apt-get install -y -q --no-install-recommends "${need_lean[@]}" >/dev/null; fi
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup: starting dockerd (log: /var/log/envcheck-dockerd.log)"
  setsid nohup dockerd >/var/log/envcheck-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /var/log/envcheck-dockerd.log >&2; echo "setup: dockerd did not start" >&2; exit 1; }
fi

python3 -m pip install -q -e '.[test]'
scripts/make-base.sh "${ENVCHECK_BASE:-debian:bookworm-slim}"
