"""A package cache every build shares: a PyPI caching mirror envcheck runs on the Docker bridge while it builds.

The mirror is proxpi (PyPI: proxpi), a small caching proxy of the simple index that keeps every file it serves in
one directory under a size cap (least used files go first): pip in a build container asks it over plain HTTP on the
bridge, and it asks the upstream index with this host's own trust settings (the CA bundle pip uses here, or
--ca-bundle), so no CA bundle enters a build and each wheel crosses the network once, however many stacks, reruns
or --no-cache builds need it. devpi-server would do as well but keeps a full index database and has no size cap;
proxpi is one process, one directory of wheels, and a cap. It runs as envcheck/engine/mirror.py: proxpi's app with
a race fixed that sent parallel builds asking for the same wheel to the upstream index.

The cache lives in the user's cache directory and survives --no-cache (that flag is about Docker's layers);
`envcheck clean --package-cache` empties it. A mirror that cannot start (no proxpi, the bridge address not on
this host as with a remote daemon, the port taken) costs nothing but the cache: the build goes on without it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envcheck import log
from envcheck.engine.client import docker_errors
from envcheck.errors import ConfigError

ENV_DIR = "ENVCHECK_PACKAGE_CACHE_DIR"
ENV_SIZE = "ENVCHECK_PACKAGE_CACHE_SIZE"
ENV_PORT = "ENVCHECK_PACKAGE_CACHE_PORT"
DEFAULT_SIZE_GB = 25.0  # the default matrix's wheels (four TensorFlow CUDA sets, PyTorch, JAX) take about 20 GB
DEFAULT_PORT = 3141
START_TIMEOUT = 20.0
PARTIAL = ".proxpi-partial"  # a download in progress


def directory() -> Path:
    """$ENVCHECK_PACKAGE_CACHE_DIR, else envcheck/packages in the user's cache directory (XDG_CACHE_HOME)."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "envcheck" / "packages"


def size_cap() -> int:
    """The cache's cap in bytes: $ENVCHECK_PACKAGE_CACHE_SIZE in GB (default 25)."""
    text = os.environ.get(ENV_SIZE, "")
    try:
        gigabytes = float(text) if text else DEFAULT_SIZE_GB
    except ValueError:
        gigabytes = -1.0
    if not gigabytes > 0:
        raise ConfigError(f"{ENV_SIZE}={text!r} is not a positive number of gigabytes (default {DEFAULT_SIZE_GB:g})")
    return int(gigabytes * 1e9)


@dataclass(frozen=True)
class Usage:
    """What the cache holds: every file in it came from the upstream index once."""

    files: int
    bytes: int

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.files - other.files, self.bytes - other.bytes)


def usage(where: Path | None = None) -> Usage:
    where = where or directory()
    sizes = [p.stat().st_size for p in where.rglob("*") if p.is_file() and not p.name.endswith(PARTIAL)]
    return Usage(len(sizes), sum(sizes)) if where.is_dir() else Usage(0, 0)


def clear(where: Path | None = None) -> Usage:
    """Empty the cache; returns what it held."""
    where = where or directory()
    held = usage(where)
    if where.is_dir():
        shutil.rmtree(where)
    return held


def upstream_index() -> str | None:
    """The index pip on this host uses (`pip config get global.index-url`); None: proxpi's default, PyPI."""
    found = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.index-url"], capture_output=True, text=True, check=False
    )
    url = found.stdout.strip()
    return url if url.startswith(("http://", "https://")) else None


def bridge_gateway(api: Any) -> str | None:
    """The address of the Docker bridge on the daemon's host: build containers reach the host there."""
    try:
        configs = api.inspect_network("bridge").get("IPAM", {}).get("Config") or []
    except docker_errors():
        return None
    return next((c["Gateway"] for c in configs if c.get("Gateway") and ":" not in c["Gateway"]), None)


class PackageCache:
    """One proxpi process serving the cache directory on the bridge address, for the length of a `with` block."""

    def __init__(self, host: str, port: int, where: Path, cap: int, ca_bundle: Path | None) -> None:
        self.host, self.port, self.where, self.cap, self.ca_bundle = host, port, where, cap, ca_bundle
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = where.parent / "package-cache.log"

    @property
    def index_url(self) -> str:
        return f"http://{self.host}:{self.port}/index/"

    @property
    def buildargs(self) -> dict[str, str]:
        """What a build passes: pip reads PIP_INDEX_URL and PIP_TRUSTED_HOST (the Dockerfile declares both)."""
        return {"PIP_INDEX_URL": self.index_url, "PIP_TRUSTED_HOST": self.host}

    def start(self) -> str | None:
        """Start the mirror; None when it answers, else why it could not start."""
        try:
            import proxpi  # noqa: F401  (only that it is installed)
        except ImportError:
            return "proxpi is not installed (pip install proxpi)"
        try:
            with socket.create_server((self.host, self.port)):
                pass
        except OSError as exc:
            return f"cannot listen on {self.host}:{self.port} ({exc.strerror or exc}; set {ENV_PORT} for another port)"
        self.where.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PROXPI_CACHE_DIR": str(self.where),
            "PROXPI_CACHE_SIZE": str(self.cap),
            # Wait for a download instead of redirecting pip to the upstream URL, which a build could not reach
            # without the CA bundle this cache exists to keep out.
            "PROXPI_DOWNLOAD_TIMEOUT": "3600",
        }
        if upstream := upstream_index():
            env["PROXPI_INDEX_URL"] = upstream
        if self.ca_bundle:
            env["REQUESTS_CA_BUNDLE"] = str(self.ca_bundle)
        command = [sys.executable, "-m", "envcheck.engine.mirror", self.host, str(self.port)]
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"the mirror exited at start (see {self.log_path})"
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return None
            except OSError:
                time.sleep(0.2)
        self.stop()
        return f"the mirror did not answer within {START_TIMEOUT:.0f}s (see {self.log_path})"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


@contextlib.contextmanager
def package_cache(api: Any, ca_bundle: Path | None) -> Iterator[PackageCache | None]:
    """The running cache for a block of builds, or None (said once) when it cannot run."""
    host = bridge_gateway(api)
    if host is None:
        log.warning("package cache not used: the Docker daemon has no bridge network here; building without it")
        yield None
        return
    port = int(os.environ.get(ENV_PORT) or DEFAULT_PORT)
    cache = PackageCache(host, port, directory(), size_cap(), ca_bundle)
    why = cache.start()
    if why:
        log.warning(f"package cache not used: {why}; building without it")
        yield None
        return
    before = usage(cache.where)
    log.info(f"package cache: {cache.index_url} serving {cache.where} ({before.bytes / 1e9:.1f} GB)")
    try:
        yield cache
    finally:
        cache.stop()
        fetched = usage(cache.where) - before
        log.info(f"package cache: {fetched.files} files, {fetched.bytes / 1e9:.2f} GB fetched from the index this run")
