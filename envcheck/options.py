"""The options of building and running stacks, typed, and every environment fallback, resolved here and only here.

ENVCHECK_CA_BUNDLE stands in for --ca-bundle and ENVCHECK_HOST_LABEL for --host-label in every command that takes
them; DOCKER_HOST is the docker SDK's own (engine/client.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from envcheck.errors import ConfigError

ENV_CA_BUNDLE = "ENVCHECK_CA_BUNDLE"
ENV_HOST_LABEL = "ENVCHECK_HOST_LABEL"


@dataclass(frozen=True)
class Options:
    """How stacks are built and probed."""

    ca_bundle: Path | None = None
    force: bool = False  # build and probe again even when up to date (the layer cache still applies)
    no_cache: bool = False  # build without Docker's layer cache
    build_timeout: float = 3600.0
    run_timeout: float = 600.0
    jobs: int | None = None  # builds at once (None: per the building daemon's CPUs); probes run one at a time
    quick: bool = False  # the probe's short benchmark
    host_label: str | None = None
    package_cache: bool = True  # serve pip in builds from envcheck's package cache (engine/package_cache.py)

    @property
    def probe_args(self) -> list[str]:
        return ["--quick"] if self.quick else []


@dataclass(frozen=True)
class Placement:
    """Where stacks run: --on HOST… (or all) of the matrix file's `hosts:` or --hosts FILE, the registry that
    carries images there, and --build-on HOST (default: the daemon envcheck uses without --on)."""

    on: tuple[str, ...] = ()
    hosts_file: Path | None = None
    registry: str | None = None
    build_on: str | None = None
    image_from: str | None = None  # run/matrix: pull REGISTRY/NAME:<content hash> instead of building


def ca_bundle(value: str | None) -> Path | None:
    """--ca-bundle FILE | auto | none (default $ENVCHECK_CA_BUNDLE, else auto); auto takes pip's own bundle
    (PIP_CERT or `pip config get global.cert`) and is a no-op where pip has none, so builds behind a
    TLS-intercepting proxy work without a flag."""
    value = value if value is not None else os.environ.get(ENV_CA_BUNDLE, "auto")
    if value in ("", "none"):
        return None
    if value == "auto":
        value = os.environ.get("PIP_CERT", "")
        if not value:
            found = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", "global.cert"],
                capture_output=True,
                text=True,
                check=False,
            )
            value = found.stdout.strip()
        if not value:
            return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"CA bundle {value!r} (from --ca-bundle or {ENV_CA_BUNDLE}) is not a readable file; "
            "pass a PEM file, 'auto' (pip's configured bundle) or 'none'."
        )
    return path


def host_label(value: str | None) -> str | None:
    """--host-label, else $ENVCHECK_HOST_LABEL, else None (each command then names the host its own way)."""
    return value or os.environ.get(ENV_HOST_LABEL) or None
