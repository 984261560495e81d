"""Build a stack's image with the docker SDK's low-level API, streaming the log, skipping what is unchanged.

The image is tagged envcheck/NAME:<hash12> and labelled with the full content hash, so an image that carries
the current hash is reused without asking the daemon to build anything.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from envcheck import log
from envcheck.engine import CONTAINER_LABEL, docker_errors
from envcheck.errors import BaseImageMissing
from envcheck.render import BuildContext

HASH_LABEL = "envcheck.hash"
STACK_LABEL = "envcheck.stack"
STEP_RE = re.compile(r"Step (\d+)/(\d+) : (.*)")
TAIL_LINES = 30


@dataclass
class BuildOutcome:
    ok: bool
    image: str
    cached: bool
    seconds: float
    log_path: str
    error: str | None = None
    log_tail: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "cached": self.cached,
            "seconds": round(self.seconds, 1),
            "log": self.log_path,
            "error": self.error,
            "log_tail": self.log_tail or [],
        }


def current_image(api: Any, ctx: BuildContext) -> str | None:
    """The image id if an image tagged for this content hash exists and carries the same hash label."""
    try:
        attrs = api.inspect_image(ctx.tag)
    except docker_errors():
        return None
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return attrs["Id"] if labels.get(HASH_LABEL) == ctx.content_hash else None


def ensure_base(api: Any, ctx: BuildContext) -> None:
    """Pull the base if it is not here; explain how to make it when no registry answers."""
    base = ctx.stack.base
    try:
        api.inspect_image(base)
        return
    except docker_errors():
        pass
    log.info(f"[{ctx.stack.name}] base image {base} not present locally; pulling it")
    repository, _, tag = base.rpartition(":") if ":" in base.split("/")[-1] else (base, "", "latest")
    try:
        api.pull(repository, tag=tag)
        api.inspect_image(base)
    except docker_errors() as exc:
        raise BaseImageMissing(
            f"Stack {ctx.stack.name}: base image {base!r} is not present locally and cannot be pulled "
            f"({str(exc).strip()[:200]}). Create it locally with `make base` (debootstrap + docker import, for "
            f"debian:bookworm-slim), or `docker load`/`docker tag` an image of that name, then run again."
        ) from None


class _Progress:
    """Live build status: each step as it starts, and a heartbeat with the latest log line during long steps."""

    HEARTBEAT = 30.0

    def __init__(self, name: str, start: float) -> None:
        self.name, self.start = name, start
        self.last_step: str | None = None
        self.last_shown = start

    def update(self, step: re.Match[str] | None, line: str) -> None:
        now = time.monotonic()
        where = f"[{self.name}] step {step[1]}/{step[2]}" if step else f"[{self.name}]"
        elapsed = log.format_seconds(now - self.start)
        if step and step[0] != self.last_step:
            self.last_step = step[0]
            log.status(f"{where} ({elapsed}): {step[3][:80]}")
        elif log.is_tty() or now - self.last_shown >= self.HEARTBEAT:
            log.status(f"{where} ({elapsed}) {line.strip()[:80]}")
        else:
            return
        self.last_shown = now


def build(api: Any, ctx: BuildContext, force: bool = False) -> BuildOutcome:
    """Build ctx's image unless an image with the same content hash already exists (or force)."""
    start = time.monotonic()
    name = ctx.stack.name
    if not force and current_image(api, ctx):
        log.info(f"[{name}] image {ctx.tag} is up to date, not rebuilding")
        return BuildOutcome(True, ctx.tag, True, time.monotonic() - start, str(ctx.log_path))
    ensure_base(api, ctx)
    tail: list[str] = []
    error: str | None = None
    step: re.Match[str] | None = None
    progress = _Progress(name, start)
    with ctx.log_path.open("w", encoding="utf-8") as logfile:
        logfile.write(f"# envcheck build of {name} as {ctx.tag}\n")
        try:
            stream = api.build(
                path=str(ctx.directory),
                tag=ctx.tag,
                labels={HASH_LABEL: ctx.content_hash, STACK_LABEL: name, CONTAINER_LABEL: "1"},
                rm=True,
                forcerm=True,
                pull=False,
                nocache=force,
                decode=True,
            )
            for chunk in stream:
                text = chunk.get("stream") or chunk.get("status") or ""
                if "error" in chunk:
                    error = str(chunk.get("error")).strip()
                    text = f"ERROR: {error}\n"
                if not text:
                    continue
                logfile.write(text)
                logfile.flush()
                for line in text.splitlines():
                    if not line.strip():
                        continue
                    tail.append(line)
                    del tail[:-TAIL_LINES]
                    step = STEP_RE.match(line) or step
                    progress.update(step, line)
        except docker_errors() as exc:
            error = str(exc).strip()
            logfile.write(f"ERROR: {error}\n")
    seconds = time.monotonic() - start
    if error:
        log.info(f"[{name}] build failed after {log.format_seconds(seconds)}: {error[:200]} (log: {ctx.log_path})")
        return BuildOutcome(False, ctx.tag, False, seconds, str(ctx.log_path), error, tail)
    log.info(f"[{name}] built {ctx.tag} in {log.format_seconds(seconds)}")
    return BuildOutcome(True, ctx.tag, False, seconds, str(ctx.log_path))
