"""The building daemon's disk: room for the stacks before building, and a build that ran out of it named as such.

A full disk once made builds fail with Docker's `no space left on device` buried in the log tail, reported as a
plain build-failed, and every rerun tried those builds again (a "warm" rerun took 58 s instead of 0.4 s). Now,
where the daemon runs on this machine: before building, the free space of its data root is compared with what the
stacks' images take (knowledge `image_sizes_gb`, measured) and a shortfall is said up front, with what `envcheck
clean` would free; a build is not started with less than MIN_FREE_GB free; and a build that failed for want of
space is diagnosed `disk-full` with those numbers. A remote daemon's disk cannot be read from here: its builds are
still diagnosed from their log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from envcheck.engine.client import docker_errors, is_local
from envcheck.inputs.matrix import Stack
from envcheck.knowledge import Knowledge
from envcheck.results.model import BuildInfo, Diagnosis, Severity

CODE = "disk-full"
MIN_FREE_GB = 2.0  # below this no stack's build gets through (uv unpacks its wheels, then Docker commits a layer)
UNKNOWN_GB = 7.5  # a stack whose size the data does not hold: more than the largest measured (torch, 7.41)
NO_SPACE = ("no space left on device", "not enough space on the disk", "disk quota exceeded")
NOT_STARTED = "not built: the Docker daemon's disk has"


@dataclass(frozen=True)
class Disk:
    """The file system of a daemon's data root, as this machine sees it."""

    root: str
    free: int
    total: int

    def said(self) -> str:
        return f"{self.root}: {self.free / 1e9:.1f} GB free of {self.total / 1e9:.1f} GB"


def daemon_disk(api: Any) -> Disk | None:
    """The data root's disk of a daemon on this machine (DockerRootDir); None for a remote one or when unreadable."""
    if not is_local(api):
        return None
    try:
        root = str(api.info().get("DockerRootDir") or "")
        found = os.statvfs(root)
    except (*docker_errors(), OSError, ValueError):
        return None
    return Disk(root, found.f_bavail * found.f_frsize, found.f_blocks * found.f_frsize)


def image_gb(stack: Stack, knowledge: Knowledge) -> float:
    size = knowledge.image_size(stack.framework, stack.variant)
    return UNKNOWN_GB if size is None else size


def shortfall(disk: Disk | None, stacks: list[Stack], knowledge: Knowledge, cleanable: int) -> str | None:
    """The warning before building when the stacks' images may not fit, or None."""
    if disk is None or not stacks:
        return None
    need = sum(image_gb(s, knowledge) for s in stacks)
    if need * 1e9 <= disk.free:
        return None
    clean = f"; `envcheck clean` would free {cleanable / 1e9:.1f} GB" if cleanable else ""
    return (
        f"disk: the Docker daemon's data root {disk.said()}; the {len(stacks)} stacks to build take about "
        f"{need:.1f} GB (less where they share layers){clean}. Builds that do not fit fail as {CODE}."
    )


def too_full(disk: Disk | None) -> BuildInfo | None:
    """A build not started for want of space, or None when there is room to try."""
    if disk is None or disk.free >= MIN_FREE_GB * 1e9:
        return None
    return BuildInfo(False, error=f"{NOT_STARTED} {disk.free / 1e9:.1f} GB free, less than a build needs")


def ran_out(built: BuildInfo) -> list[str]:
    """The lines of a failed build that say the disk was full (none: it failed for another reason)."""
    if built.ok:
        return []
    lines = [built.error or "", *built.log_tail]
    return list(dict.fromkeys(line.strip() for line in lines if any(m in line.lower() for m in NO_SPACE))) or (
        [built.error] if built.error and built.error.startswith(NOT_STARTED) else []
    )


def diagnosis(evidence: list[str], disk: Disk | None, stack: Stack, knowledge: Knowledge, cleanable: int) -> Diagnosis:
    facts = [disk.said()] if disk else []
    facts.append(f"this stack's image takes about {image_gb(stack, knowledge):.1f} GB (less where it shares layers)")
    if cleanable:
        facts.append(f"`envcheck clean` would free {cleanable / 1e9:.1f} GB of this matrix's outdated images")
    return Diagnosis(
        CODE,
        Severity.ERROR,
        "The Docker daemon's disk is full: the build could not write its layers (no space left on device).",
        "Free space on the daemon's disk, then run again: `envcheck clean` (this matrix's outdated images), "
        "`envcheck clean --package-cache`, `docker system prune`; or move Docker's data root (`data-root` in "
        "/etc/docker/daemon.json) to a larger disk.",
        [*evidence[:3], *facts],
    )
