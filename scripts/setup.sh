#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine for envcheck: Docker engine (started), debootstrap, chromium (for the
# page tests), docker-registry and TLS tools (the many-hosts tests start their own registry and second daemon),
# the package with its test extras, NVIDIA's nvcc and cuobjdump (PyPI wheels, in .cuda-tools/) for the fat-binary
# test, and the local base image.
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
# the compiled fixtures: C shared objects (tests/test_probe_local.py) and nvcc's host code (tests/test_wheel_code.py)
command -v gcc >/dev/null || need_apt+=(gcc)
command -v g++ >/dev/null || need_apt+=(g++)
# the Slurm tests: a single-node cluster of their own (munge, slurmctld, slurmd), its accounting (slurmdbd on a MariaDB
# the tests start), and shellcheck for the job scripts
command -v slurmctld >/dev/null || need_apt+=(slurm-wlm)
command -v munged >/dev/null || need_apt+=(munge)
command -v slurmdbd >/dev/null || need_apt+=(slurmdbd)
command -v mariadbd >/dev/null || need_apt+=(mariadb-server)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
# the container runtimes the Slurm tests run for real (Podman with runc, Charliecloud)
command -v podman >/dev/null || need_apt+=(podman)
command -v runc >/dev/null || need_apt+=(runc)
command -v ch-run >/dev/null || need_apt+=(charliecloud)
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

# tests/test_wheel_code.py compiles GPU code with NVIDIA's nvcc and checks the probe's fat-binary reader against
# NVIDIA's cuobjdump. Both come from NVIDIA's PyPI wheels, which together make one CUDA toolkit tree under
# nvidia/cu13/ (nvcc, its crt headers, the runtime's headers and libraries, nvvm; cuobjdump). They go into
# .cuda-tools/ beside the test Python, not into it (so not in the test extras): CUDA runtime libraries in its
# site-packages would be found by the probe of a framework installed there. Reinstalled when the pins change.
cuda_tools=(nvidia-cuda-nvcc==13.5.37 nvidia-cuda-crt==13.5.37 nvidia-cuda-runtime==13.5.37 nvidia-nvvm==13.5.37
  nvidia-cuda-cuobjdump==13.5.37)
if [ "$(cat .cuda-tools/.installed 2>/dev/null)" != "${cuda_tools[*]}" ]; then
  echo "setup: installing NVIDIA's nvcc and cuobjdump (PyPI wheels) into .cuda-tools/"
  rm -rf .cuda-tools
  python3 -m pip install -q --no-deps --target .cuda-tools "${cuda_tools[@]}"
  echo "${cuda_tools[*]}" >.cuda-tools/.installed
fi

scripts/make-base.sh "${ENVCHECK_BASE:-debian:bookworm-slim}"
