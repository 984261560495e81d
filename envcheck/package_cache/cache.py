"""A package cache every build shares: a PyPI caching mirror on the builds' own Docker network while envcheck builds.

The mirror is proxpi (PyPI: proxpi), a small caching proxy of the simple index that keeps every file it serves in
one directory under a size cap (least used files go first): pip in a build container asks it over plain HTTP, and
it asks the upstream index with this host's own settings and trust, so no CA bundle and no index credential enters
a build, and each wheel crosses the network once, however many stacks, reruns or --no-cache builds need it.
devpi-server would do as well but keeps a full index database and has no size cap. It runs as
envcheck/package_cache/mirror.py (what that adds to proxpi is listed there).

- Where it listens: on this machine's address on the builds' network (engine/network.py), never 0.0.0.0, and it
  answers only that network's containers. A daemon that is not on this machine (DOCKER_HOST=tcp://…, ssh://…,
  --build-on) cannot reach an address here: no cache, said once.
- What it asks: the index pip on this host would ask, read by pip's own option parser as `pip install` reads it
  (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_CONFIG_FILE, the config files' [global] and [install]), so a private
  index is never bypassed for PyPI; indexes that are not HTTP (file://) are left out, as a build could not read
  them either.
- One mirror per cache directory, shared by the runs that use it at once and ending with the last of them
  (locks in a control directory beside the cache; see mirror.py), so two runs starting together cannot race for
  the port and no mirror outlives its runs, even after kill -9.

The cache lives in the user's cache directory and survives --no-cache (that flag is about Docker's layers); its cap
is 25 GB or a quarter of its disk's free space, whichever is less (options.DEFAULTS; `ENVCHECK_PACKAGE_CACHE_SIZE`
overrides); `envcheck clean --package-cache` empties it. A mirror that cannot run costs nothing but the cache: the
build goes on without it, and says so once. Its directory, size and port are resolved in options.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck import log
from envcheck.engine.client import is_local
from envcheck.engine.network import build_network
from envcheck.errors import ConfigError
from envcheck.inputs import options
from envcheck.inputs.options import DEFAULTS, ENV_PACKAGE_CACHE_DIR, ENV_PACKAGE_CACHE_PORT
from envcheck.package_cache import mirror

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0  # the mirror notices within mirror.POLL that its last run has gone
PARTIAL = ".proxpi-partial"  # a download in progress

# pip's own option parser, as `pip install` reads its options (config files, PIP_CONFIG_FILE, PIP_* variables).
PIP_SETTINGS = """
import json
from pip._internal.commands import create_command
options, _ = create_command("install").parse_args([])
print(json.dumps({"index_url": options.index_url, "extra_index_urls": options.extra_index_urls,
                  "no_index": options.no_index}))
"""


def directory() -> Path:
    """The cache's directory, as options resolves it ($ENVCHECK_PACKAGE_CACHE_DIR, else the user's cache home)."""
    return options.package_cache_dir()


def size_cap(where: Path | None = None) -> int:
    """The cache's cap in bytes: $ENVCHECK_PACKAGE_CACHE_SIZE (through options), else the table's size or what it
    holds plus the table's share of its disk's free space, whichever is less (a cache that fills the disk fails the
    builds it exists for), and never below the table's floor."""
    given = options.package_cache_size_gb()
    if given is not None:
        return int(given * 1e9)
    where = where or directory()
    free = free_bytes(where)
    default = DEFAULTS.package_cache_size_gb * 1e9
    cap = default if free is None else min(default, usage(where).bytes + DEFAULTS.package_cache_disk_share * free)
    return int(max(cap, DEFAULTS.package_cache_min_gb * 1e9))


def free_bytes(path: Path) -> int | None:
    """Free space for an unprivileged writer on the file system path is (or would be) on."""
    for candidate in (path, *path.parents):
        try:
            found = os.statvfs(candidate)
        except OSError:
            continue
        return found.f_bavail * found.f_frsize
    return None


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


def control_directory(where: Path) -> Path:
    """Beside the cache, not in it: proxpi counts (and may evict) every file in its directory."""
    return where.parent / f".{where.name}.mirror"


def clear(where: Path | None = None) -> Usage:
    """Empty the cache; returns what it held. A mirror serving it now (a run is building) makes this an error."""
    where = where or directory()
    control = control_directory(where)
    if (control / "serving.lock").exists():
        held = mirror.try_lock(control / "serving.lock", fcntl.LOCK_SH)
        if held is None:
            raise ConfigError(f"the package cache {where} is in use by a running envcheck; clean it after that run")
        os.close(held)
    emptied = usage(where)
    if where.is_dir():
        shutil.rmtree(where)
    return emptied


@dataclass(frozen=True)
class IndexSettings:
    """The indexes pip on this host asks, as `pip install` reads them; only HTTP ones (the mirror fetches over HTTP)."""

    index_url: str
    extra_index_urls: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()  # extra indexes that are not HTTP (a file:// folder of this host)

    @property
    def proxpi_environment(self) -> dict[str, str]:
        return {
            "PROXPI_INDEX_URL": self.index_url,
            "PROXPI_EXTRA_INDEX_URLS": ",".join(self.extra_index_urls),
            "PROXPI_EXTRA_INDEX_TTLS": ",".join("180" for _ in self.extra_index_urls),
        }


def http_url(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme in ("http", "https") and "," not in url


def index_settings() -> IndexSettings | str:
    """What pip on this host would ask, or why the cache cannot stand in for it."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", PIP_SETTINGS], capture_output=True, text=True, timeout=60, check=False
        )
        found = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        found = None
    if not isinstance(found, dict) or not isinstance(found.get("index_url"), str):
        return "pip's index settings cannot be read here (is pip installed for this Python?)"
    if found.get("no_index"):
        return "pip is configured with no-index"
    if not http_url(found["index_url"]):
        return "pip's index-url is not an HTTP index the mirror can ask"
    extras = [u for u in found.get("extra_index_urls") or [] if isinstance(u, str)]
    return IndexSettings(
        directory_url(found["index_url"]),
        tuple(directory_url(u) for u in extras if http_url(u)),
        tuple(u for u in extras if not http_url(u)),
    )


def directory_url(url: str) -> str:
    """An index URL ending in '/': pip asks INDEX/PROJECT/ either way, proxpi joins project names onto it."""
    return url if url.endswith("/") else url + "/"


@dataclass
class PackageCache:
    """A run's use of the mirror serving `where` on host:port: started by this run or shared with one that runs at
    the same moment with the same settings, for the length of a `with package_cache(...)` block."""

    host: str
    port: int
    where: Path
    cap: int
    ca_bundle: Path | None
    index: IndexSettings
    allow: tuple[str, ...] = ()  # the builds' subnets (CIDR)
    network: str | None = None  # the Docker network builds run on to reach it
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    users: int | None = field(default=None, repr=False)  # our shared lock on users.lock while we use the mirror

    @property
    def index_url(self) -> str:
        return f"http://{self.host}:{self.port}/index/"

    @property
    def build_options(self) -> dict[str, Any]:
        """What a build through the cache adds: pip reads PIP_INDEX_URL and PIP_TRUSTED_HOST (the Dockerfile declares
        both), and the build's containers run on the network the mirror answers."""
        options: dict[str, Any] = {"buildargs": {"PIP_INDEX_URL": self.index_url, "PIP_TRUSTED_HOST": self.host}}
        if self.network:
            options["network_mode"] = self.network
        return options

    @property
    def control(self) -> Path:
        return control_directory(self.where)

    @property
    def log_path(self) -> Path:
        return self.where.parent / "package-cache.log"

    @property
    def fingerprint(self) -> str:
        """What a mirror must serve for a run to share it: the same address, indexes and trust (hashed: the index
        URLs may carry credentials, and the control directory is a file anyone on the host may read)."""
        settings = [self.host, self.port, self.index.index_url, *self.index.extra_index_urls, str(self.ca_bundle)]
        return hashlib.sha256(json.dumps(settings).encode()).hexdigest()

    def start(self) -> str | None:
        """Use the mirror of this directory, starting it if none runs; None when it answers, else why not."""
        try:
            import proxpi  # noqa: F401  (only that it is installed)
        except ImportError:
            return "proxpi is not installed (pip install proxpi)"
        try:
            self.where.mkdir(parents=True, exist_ok=True)
            self.control.mkdir(exist_ok=True)
            if not os.access(self.where, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
            starting = os.open(self.control / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            return f"cannot write the cache directory {self.where} ({exc.strerror or exc})"
        try:
            fcntl.flock(starting, fcntl.LOCK_EX)  # one run at a time starts, joins or leaves the mirror
            self.users = os.open(self.control / "users.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.users, fcntl.LOCK_SH)
            try:
                why = self._join_or_spawn()
            except OSError as exc:
                why = f"cannot start the mirror ({exc.strerror or exc})"
            if why:
                self._leave()
            return why
        finally:
            os.close(starting)

    def _join_or_spawn(self) -> str | None:
        state = self._running()
        if state is not None:
            if state.get("fingerprint") != self.fingerprint:
                return (
                    f"its mirror serves another envcheck run with other settings (index, address or CA bundle); "
                    f"set {ENV_PACKAGE_CACHE_DIR} to another directory to run both with a cache"
                )
            if self._answers(str(state.get("instance"))):
                return None
            self._reclaim(state)
        return self._spawn()

    def _running(self) -> dict[str, Any] | None:
        """The state of the mirror serving this directory now, or None when none does."""
        free = mirror.try_lock(self.control / "serving.lock", fcntl.LOCK_SH)
        if free is not None:
            os.close(free)
            return None
        try:
            state = json.loads((self.control / "state.json").read_text())
        except (OSError, ValueError):
            return {}  # starting or ending: it will not answer either
        return state if isinstance(state, dict) else {}

    def _reclaim(self, state: dict[str, Any]) -> None:
        """A mirror that holds the directory but does not answer (stopped, hung): end it, if it is one of ours."""
        pid = state.get("pid")
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, TypeError):
            return
        if b"envcheck.package_cache.mirror" in command:
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
            while self._running() is not None and time.monotonic() < deadline:
                time.sleep(0.1)

    def _spawn(self) -> str | None:
        instance = secrets.token_hex(16)
        env = {
            **os.environ,  # handed on whole, not read: the mirror asks the index with this host's settings (proxies)
            **self.index.proxpi_environment,
            "PROXPI_CACHE_DIR": str(self.where),
            "PROXPI_CACHE_SIZE": str(self.cap),
            # Wait for a download rather than streaming a second copy from the index beside it.
            "PROXPI_DOWNLOAD_TIMEOUT": str(DEFAULTS.build_timeout),  # a wheel may take as long as a build
            mirror.ENV_ALLOW: ",".join(self.allow),
            mirror.ENV_INSTANCE: instance,
            mirror.ENV_FINGERPRINT: self.fingerprint,
        }
        if self.ca_bundle:
            env["REQUESTS_CA_BUNDLE"] = str(self.ca_bundle)
        command = [sys.executable, "-m", "envcheck.package_cache.mirror", self.host, str(self.port), str(self.control)]
        with self.log_path.open("ab") as out:
            # A session of its own: Ctrl-C in the terminal must not end a mirror other runs may share; it ends
            # when its last run lets go of users.lock.
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return self._exit_reason()
            if self._answers(instance):
                return None
            time.sleep(0.2)
        self.process.kill()
        self.process.wait()
        return f"the mirror did not answer within {START_TIMEOUT:.0f}s (see {self.log_path})"

    def _exit_reason(self) -> str:
        """Why the mirror exited at start: its last line (it says why), with the port hint where it could not bind."""
        try:
            last = self.log_path.read_text(errors="replace").strip().splitlines()[-1]
        except (OSError, IndexError):
            last = ""
        if last.startswith("mirror: "):
            taken = self.process is not None and self.process.returncode == mirror.EXIT_LISTEN
            hint = f"; set {ENV_PACKAGE_CACHE_PORT} for another port" if taken else ""
            return last.removeprefix("mirror: ") + hint
        return f"the mirror exited at start (see {self.log_path})"

    def _answers(self, instance: str) -> bool:
        """Whether the mirror on host:port is the one named `instance` (not another directory's on the same port)."""
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=2) as answer:
                return json.loads(answer.read()).get("instance") == instance
        except (OSError, ValueError, AttributeError):
            return False

    def stop(self) -> None:
        """Let go of the mirror; when no other run uses it, wait until it has gone, so its port is free afterwards."""
        if self.users is None:
            return
        self._leave()
        deadline = time.monotonic() + STOP_TIMEOUT
        while self._running() is not None and time.monotonic() < deadline:
            if self._shared():
                return  # another run goes on with it
            time.sleep(0.1)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)  # ours, and gone (or going): reap it

    def _shared(self) -> bool:
        """Whether another run holds users.lock (shared); False while the ending mirror holds it or nobody does."""
        users = self.control / "users.lock"
        shared = mirror.try_lock(users, fcntl.LOCK_SH)
        if shared is None:
            return False  # the mirror holds it alone: it is ending
        os.close(shared)
        alone = mirror.try_lock(users, fcntl.LOCK_EX)
        if alone is None:
            return True
        os.close(alone)
        return False

    def _leave(self) -> None:
        if self.users is not None:
            os.close(self.users)
            self.users = None


def open_cache(api: Any, ca_bundle: Path | None) -> PackageCache | str:
    """The package cache for builds on api's daemon, running; or why there is none."""
    if not is_local(api):
        place = urllib.parse.urlsplit(str(getattr(api, "base_url", ""))).netloc.rpartition("@")[2] or "elsewhere"
        return f"the Docker daemon ({place}) is not on this machine, so its builds cannot reach a cache here"
    index = index_settings()
    if isinstance(index, str):
        return index
    network = build_network(api)
    if isinstance(network, str):
        return network
    where = directory()
    cache = PackageCache(
        network.address,
        options.package_cache_port(),
        where,
        size_cap(where),
        ca_bundle,
        index,
        (str(network.subnet),),
        network.name,
    )
    why = cache.start()
    return why or cache


@contextlib.contextmanager
def package_cache(api: Any, ca_bundle: Path | None) -> Iterator[PackageCache | None]:
    """The running cache for a block of builds, or None (said once) when it cannot run."""
    cache = open_cache(api, ca_bundle)
    if isinstance(cache, str):
        log.warning(f"package cache not used: {cache}; building without it")
        yield None
        return
    before = usage(cache.where)
    skipped = len(cache.index.left_out)
    left_out = f" ({skipped} extra indexes that are not HTTP left out)" if skipped else ""
    log.info(f"package cache: {cache.index_url} serving {cache.where} ({before.bytes / 1e9:.1f} GB){left_out}")
    try:
        yield cache
    finally:
        cache.stop()
        fetched = usage(cache.where) - before
        log.info(f"package cache: {fetched.files} files, {fetched.bytes / 1e9:.2f} GB fetched from the index this run")
