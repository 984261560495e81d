"""Run the probe in a container with all GPUs requested, and fall back to no GPUs if the daemon refuses.

`--gpus all` is DeviceRequest(count=-1, capabilities=[["gpu"]]). A daemon without the NVIDIA Container
Toolkit refuses it at start; the refusal is itself the finding (no-gpu-runtime), and the probe then runs
without GPUs so everything else about the image is still measured. Every container is labelled and removed.

Rendered images carry the probe (/opt/envcheck/probe.py, baked in by the template). Images people already run
(`image:` and `dockerfile:` stacks) are probed unchanged: the probe enters their container at run time, never as a
layer. The container is created with an anonymous volume at /opt/envcheck, the probe's files are put into it with
the archive API (`put_archive`) before it starts, and it is removed with its volume. A bind mount of this
machine's copy would not do: the path exists only here, not on a remote daemon (`--on`, DOCKER_HOST=ssh://...).
Nor would an archive put into the image's own tree: the sandbox's root is read-only, and Docker refuses an archive
there. Into a volume it is taken, also before the container ever ran: Docker 20.10's containerExtractToDir
(daemon/archive.go) mounts a created container's root and volumes, and refuses a read-only root only when the
target is not in a writable volume; a volume's files are the container's own, wherever the daemon is. (Read from
the daemon's source; the Docker tests of tests/test_image_runs.py run it on 20.10 with a non-root USER.) The image's
ENTRYPOINT is replaced by its Python (so `ENTRYPOINT ["/bin/false"]` or a server that never ends does not matter);
its ENV, USER and WORKDIR are kept, as a user's `docker run` keeps them.
"""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck import labels
from envcheck.engine.client import docker_errors
from envcheck.inputs.options import DEFAULTS
from envcheck.probe import PROBE_COMMAND, PROBE_FILES, parse_output
from envcheck.probe.boot import MINIMUM
from envcheck.results.model import RunInfo

GPU_REFUSALS = ("could not select device driver", "unknown runtime specified nvidia", "nvidia-container-cli")
TAIL_CHARS = 4000
PROBE_DIR = "/opt/envcheck"  # where the probe's files lie in every container, baked in or put there at run time
BOOT = f"{PROBE_DIR}/boot.py"  # the probe's entry for images it is not baked into: any Python can parse it
# The PATH Docker gives a container whose image sets none (the daemon's default, oci.DefaultPathEnv).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Where Pythons live in images that keep theirs off the PATH (conda's base, python:*, Debian/Ubuntu's).
WELL_KNOWN_PYTHONS = ("/opt/conda/bin/python", "/usr/local/bin/python3", "/usr/bin/python3")
LINK_HOPS = 4  # symlinks followed from a candidate (Docker resolves each one fully; more means a loop)
# Go's os.FileMode type bits, as the archive API's stat reports a path: a regular file has none of them.
GO_MODE_TYPE = (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)
GO_MODE_SYMLINK = 1 << 27
# The command of the container in which paths are looked up: it is never started, but Docker refuses to create a
# container of an image that has neither ENTRYPOINT nor CMD.
NEVER_STARTED = ["/envcheck-never-started"]


@dataclass
class RunOutcome:
    exit_code: int | None
    stdout: str
    stderr: str
    gpu_requested: bool
    gpu_refusal: str | None = None
    timed_out: bool = False
    error: str | None = None
    seconds: float = 0.0
    probe: dict[str, Any] | None = field(default=None)

    def info(self) -> RunInfo:
        """What a result records of the run (the probe's own document is kept separately)."""
        return RunInfo(
            self.exit_code,
            self.gpu_requested,
            self.gpu_refusal,
            self.timed_out,
            self.error,
            self.seconds,
            self.stderr[-TAIL_CHARS:],
        )


def gpu_request() -> list[Any]:
    import docker.types

    return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]


# The probe needs no network and writes only scratch files: its container gets no network, no capabilities, no
# privilege escalation, a read-only root with a tmpfs /tmp (HOME too, for caches), and memory and PID limits.
# GPUs still work: the NVIDIA runtime injects devices and libraries whatever the capabilities.
SANDBOX = {
    "network_mode": "none",
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "read_only": True,
    "tmpfs": {"/tmp": "rw,nosuid,nodev,size=2g"},
    "mem_limit": "8g",
    "pids_limit": 4096,
}
SANDBOX_ENV = {"HOME": "/tmp"}


def marks_of(stack: str, matrix_file: Path | None) -> dict[str, str]:
    """The labels of every container envcheck makes for a stack (and its matrix, so `clean` finds it)."""
    marks = {labels.OWNER: "1", labels.STACK: stack}
    if matrix_file:
        marks[labels.MATRIX] = labels.matrix_id(matrix_file)
    return marks


def probe_archive() -> bytes:
    """The probe's files as a tar for the archive API, flat, owned by root and world-readable (0644), so an image
    whose USER is not root can read them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, source in sorted(PROBE_FILES.items()):
            data = source.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(source.stat().st_mtime)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def python_candidates(attrs: dict[str, Any]) -> list[str]:
    """Where a user's `python` would be found in an image (its inspect data): each directory of the PATH its
    Config.Env sets (Docker's default PATH if none), `python3` then `python`, then the places images keep a Python
    off the PATH."""
    env = (attrs.get("Config") or {}).get("Env") or []
    path = next((e[5:] for e in env if isinstance(e, str) and e.startswith("PATH=")), DEFAULT_PATH)
    found = [f"{d.rstrip('/')}/{name}" for d in path.split(":") if d.startswith("/") for name in ("python3", "python")]
    return list(dict.fromkeys([*found, *WELL_KNOWN_PYTHONS]))


def path_stat(api: Any, container: str, path: str) -> dict[str, Any] | None:
    """What the archive API's stat says of a path in a container (name, mode, linkTarget), or None if there is none.
    HEAD /containers/ID/archive answers with the stat alone; the SDK has no call for it (its get_archive would
    stream the whole file)."""
    import docker.utils

    response = api.head(api._url("/containers/{0}/archive", container), params={"path": path}, timeout=api.timeout)
    if response.status_code == 404:
        return None
    api._raise_for_status(response)
    header = response.headers.get("X-Docker-Container-Path-Stat")
    return docker.utils.decode_json_header(header) if header else None


def is_executable(api: Any, container: str, path: str) -> bool:
    """The path is, or links to, a regular file someone may execute. Docker's stat of a symlink names its target
    resolved within the container's root; that target is checked in turn."""
    for _ in range(LINK_HOPS):
        stat = path_stat(api, container, path)
        if stat is None:
            return False
        mode = int(stat.get("mode") or 0)
        if mode & GO_MODE_SYMLINK and stat.get("linkTarget"):
            path = str(stat["linkTarget"])
            continue
        return not mode & GO_MODE_TYPE and bool(mode & 0o111)
    return False


def find_python(
    api: Any,
    image: str,
    attrs: dict[str, Any],
    stack: str,
    given: str | None = None,
    on_start: Callable[[str], None] | None = None,
    matrix_file: Path | None = None,
) -> tuple[str | None, list[str]]:
    """The interpreter the probe runs with in an image it is not baked into, and the paths looked at: `given` (a
    stack's `python:`) if it is there, else the first of python_candidates. Found without running anything, in a
    container that is created and never started (distroless images have no shell to ask), and run as found: a
    venv's python is a symlink whose target alone would not be that venv. Labelled as a probe's container is."""
    candidates = [given] if given else python_candidates(attrs)
    container = f"envcheck-{stack}-look-{uuid.uuid4().hex[:12]}"
    if on_start:
        on_start(container)
    try:
        api.create_container(image, entrypoint=NEVER_STARTED, labels=marks_of(stack, matrix_file), name=container)
        return next((c for c in candidates if is_executable(api, container, c)), None), candidates
    finally:
        try:
            api.remove_container(container, force=True, v=True)
        except docker_errors():
            pass  # never created (the daemon refused it), or already gone


def too_old(document: dict[str, Any]) -> str | None:
    """The probe's own refusal of an interpreter older than it runs on (boot.py's one JSON line), as a sentence for
    a result's error; None for a probe document."""
    if document.get("error") != "python-too-old":
        return None
    version = document.get("python")
    short = ".".join(version.split(".")[:2]) if isinstance(version, str) else "?"
    short = "".join(c for c in short if c.isalnum() or c == ".")[:20] or "?"
    needs = ".".join(map(str, MINIMUM))
    return f"Python {short} in this image is too old for the probe (it needs Python {needs} or newer)"


def _run_once(
    api: Any,
    image: str,
    marks: dict[str, str],
    command: list[str],
    gpus: bool,
    timeout: float,
    sandbox: bool,
    on_start: Callable[[str], None] | None,
    python: str | None,
    env: dict[str, str] | None,
) -> RunOutcome:
    host_config = api.create_host_config(
        device_requests=gpu_request() if gpus else None, **(SANDBOX if sandbox else {})
    )
    # Named before it exists: Ctrl-C or SIGTERM may land while the daemon creates it and before its id comes back,
    # and the name is then how it is found and removed (here, or by another thread through on_start).
    container = f"envcheck-{marks[labels.STACK]}-{uuid.uuid4().hex[:12]}"
    if on_start:
        on_start(container)
    start = time.monotonic()
    try:
        if python:  # the probe enters at run time; the image's ENV (with env over it), USER and WORKDIR stay
            api.create_container(
                image,
                entrypoint=[python],
                command=command,
                host_config=host_config,
                environment=env or None,
                volumes=[PROBE_DIR],
                labels=marks,
                name=container,
            )
            api.put_archive(container, PROBE_DIR, probe_archive())
        else:
            api.create_container(
                image,
                command=command,
                host_config=host_config,
                environment=SANDBOX_ENV if sandbox else None,
                labels=marks,
                name=container,
            )
        api.start(container)
        timed_out = False
        try:
            exit_code = api.wait(container, timeout=timeout)["StatusCode"]
        except docker_errors():
            # The wait timed out (requests' ReadTimeout) or the daemon went away: stop the container either way.
            timed_out = True
            exit_code = None
            api.kill(container)
        stdout = api.logs(container, stdout=True, stderr=False).decode("utf-8", "replace")
        stderr = api.logs(container, stdout=False, stderr=True).decode("utf-8", "replace")
        return RunOutcome(exit_code, stdout, stderr, gpus, timed_out=timed_out, seconds=time.monotonic() - start)
    finally:
        try:
            api.remove_container(container, force=True, v=True)  # with the volume the probe's files were put in
        except docker_errors():
            pass  # never created (the daemon refused it), or already gone


def run_probe(
    api: Any,
    image: str,
    stack: str,
    args: list[str] | None = None,
    timeout: float = DEFAULTS.run_timeout,
    command: list[str] | None = None,
    sandbox: bool = True,
    on_start: Callable[[str], None] | None = None,
    matrix_file: Path | None = None,
    python: str | None = None,
    env: dict[str, str] | None = None,
) -> RunOutcome:
    """Run the probe (or another command) with GPUs; if the daemon cannot give GPUs, record why and run again
    without. A container still running after timeout seconds is killed; every container is removed. sandbox
    (the default) runs it with least privilege (SANDBOX); a stack opts out with `sandbox: false`. on_start receives
    each container's name before it is created (so another thread can remove it on Ctrl-C). matrix_file labels the
    container as that matrix's (labels.MATRIX). python: the image does not carry the probe; it is put into the
    container and run with this interpreter (find_python), as `python /opt/envcheck/boot.py ARGS`, with `env` set over
    the image's own environment (a stack's `env:`)."""
    command = command or ([BOOT] if python else PROBE_COMMAND) + (args or [])
    marks = marks_of(stack, matrix_file)
    try:
        outcome = _run_once(api, image, marks, command, True, timeout, sandbox, on_start, python, env)
    except docker_errors() as exc:
        message = str(getattr(exc, "explanation", None) or exc)
        if not any(marker in message.lower() for marker in GPU_REFUSALS):
            return RunOutcome(None, "", "", True, error=message.strip())
        try:
            outcome = _run_once(api, image, marks, command, False, timeout, sandbox, on_start, python, env)
        except docker_errors() as exc2:
            return RunOutcome(None, "", "", False, gpu_refusal=message.strip(), error=str(exc2).strip())
        outcome.gpu_refusal = message.strip()
    outcome.probe = parse_output(outcome.stdout)
    if outcome.probe is None and not outcome.error:
        outcome.error = (
            f"the probe was killed after {timeout:.0f}s (--run-timeout)"
            if outcome.timed_out
            else f"the probe printed no JSON (exit code {outcome.exit_code})"
        )
    return outcome
