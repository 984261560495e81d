"""Podman as the Slurm tasks' runtime on this machine (issue 28): a configuration of its own, passed in the
environment (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF, REGISTRY_AUTH_FILE), so the
tasks' `podman pull`/`podman run`, exactly as render writes them, use a storage root in the test's directory, the
test registry and its login, and never the machine's own. sbatch exports the submitting environment to the job,
as it does on a cluster where users keep their Podman configuration in their environment.

What rootful Podman needs in this VM (found by running it, Podman 4.3.1):
- the default ulimits (RLIMIT_NOFILE and RLIMIT_NPROC at their maximum) fail with `setrlimit RLIMIT_NPROC:
  Operation not permitted`: root here lacks CAP_SYS_RESOURCE and the runtime's own hard limits are lower, so
  default_ulimits asks for no more than they are;
- crun refuses this VM's hybrid cgroups ("cgroups in hybrid mode not supported, drop all controllers from
  cgroupv2": hugetlb sits on the unified hierarchy); runc, which Docker uses here, accepts them, so the engine's
  runtime is runc (no kernel-wide change such as moving hugetlb to a v1 hierarchy);
- cgroup_manager cgroupfs and the events log in a file (no systemd here).
The registry of the fleet tests serves plain HTTP on 127.0.0.1, so registries.conf marks it insecure (Podman,
unlike Docker, does not trust loopback registries without TLS).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

NPROC = 32768
NOFILE = 16384


def missing() -> str | None:
    """Why Podman cannot run the tasks here (None: it can)."""
    absent = [b for b in ("podman", "runc") if shutil.which(b) is None]
    return f"{', '.join(absent)} not installed (apt-get install podman runc)" if absent else None


def configure(root: Path, registry: str) -> dict[str, str]:
    """Podman's configuration files under root; the environment that makes podman use them."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n'
    )
    (root / "containers.conf").write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={NOFILE}:{NOFILE}", "nproc={NPROC}:{NPROC}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{root}/events.log"\n'
    )
    (root / "registries.conf").write_text(f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n')
    return {
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
        "REGISTRY_AUTH_FILE": str(root / "auth.json"),
    }


def login(env: dict[str, str], registry: str, user: str, password_file: Path) -> subprocess.CompletedProcess[str]:
    """podman login with the password on stdin, from a file (never on a command line)."""
    with password_file.open() as password:
        return subprocess.run(
            ["podman", "login", "--username", user, "--password-stdin", registry],
            stdin=password,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )


def reset(env: dict[str, str], root: Path) -> None:
    """Every image and container of this storage root, then the root itself."""
    subprocess.run(["podman", "system", "reset", "--force"], env=env, capture_output=True, timeout=120)
    shutil.rmtree(root, ignore_errors=True)
