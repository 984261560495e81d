"""Run the probe in a container with all GPUs requested, and fall back to no GPUs if the daemon refuses.

`--gpus all` is DeviceRequest(count=-1, capabilities=[["gpu"]]). A daemon without the NVIDIA Container
Toolkit refuses it at start; the refusal is itself the finding (no-gpu-runtime), and the probe then runs
without GPUs so everything else about the image is still measured. Every container is labelled and removed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck import labels
from envcheck.engine.client import docker_errors
from envcheck.inputs.options import DEFAULTS
from envcheck.probe import PROBE_COMMAND, parse_output
from envcheck.results.model import RunInfo

GPU_REFUSALS = ("could not select device driver", "unknown runtime specified nvidia", "nvidia-container-cli")
TAIL_CHARS = 4000


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


def _run_once(
    api: Any,
    image: str,
    marks: dict[str, str],
    command: list[str],
    gpus: bool,
    timeout: float,
    sandbox: bool,
    on_start: Callable[[str], None] | None,
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
            api.remove_container(container, force=True)
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
) -> RunOutcome:
    """Run the probe (or another command) with GPUs; if the daemon cannot give GPUs, record why and run again
    without. A container still running after timeout seconds is killed; every container is removed. sandbox
    (the default) runs it with least privilege (SANDBOX); a stack opts out with `sandbox: false`. on_start receives
    each container's name before it is created (so another thread can remove it on Ctrl-C). matrix_file labels the
    container as that matrix's (labels.MATRIX)."""
    command = command or PROBE_COMMAND + (args or [])
    marks = {labels.OWNER: "1", labels.STACK: stack}
    if matrix_file:
        marks[labels.MATRIX] = labels.matrix_id(matrix_file)
    try:
        outcome = _run_once(api, image, marks, command, True, timeout, sandbox, on_start)
    except docker_errors() as exc:
        message = str(getattr(exc, "explanation", None) or exc)
        if not any(marker in message.lower() for marker in GPU_REFUSALS):
            return RunOutcome(None, "", "", True, error=message.strip())
        try:
            outcome = _run_once(api, image, marks, command, False, timeout, sandbox, on_start)
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
