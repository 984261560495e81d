"""Build a stack's image with the docker SDK's low-level API, streaming the log, skipping what is unchanged.

The image is tagged envcheck/NAME:<hash12> and labelled with the full content hash, so an image that carries
the current hash is reused without asking the daemon to build anything.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from envcheck import labels, log
from envcheck.engine.client import docker_errors
from envcheck.errors import BaseImageMissing
from envcheck.render.dockerfile import BuildContext, dockerfile_in_context
from envcheck.results.model import BuildInfo

STEP_RE = re.compile(r"Step (\d+)/(\d+) : (.*)")
TAIL_LINES = 30


def current_image(api: Any, ctx: BuildContext) -> str | None:
    """The image id if an image tagged for this content hash exists and carries the same hash label."""
    try:
        attrs = api.inspect_image(ctx.tag)
    except docker_errors():
        return None
    found = (attrs.get("Config") or {}).get("Labels") or {}
    return attrs["Id"] if found.get(labels.HASH) == ctx.content_hash else None


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


Progress = Callable[[str, bool], None]


def build_progress(name: str) -> Progress:
    """Progress as log lines (steps, not the chatter between them), for builds without a board row."""

    def progress(text: str, heartbeat: bool) -> None:
        if not heartbeat:
            log.info(f"[{name}] {text}")

    return progress


def build(
    api: Any,
    ctx: BuildContext,
    force: bool = False,
    timeout: float | None = None,
    progress: Progress | None = None,
    no_cache: bool = False,
    via_cache: dict[str, Any] | None = None,
    matrix_file: Path | None = None,
) -> BuildInfo:
    """Build ctx's image unless an image with the same content hash already exists (or force: build anyway,
    with Docker's layer cache unless no_cache).

    progress(text, heartbeat) receives progress: each step as it starts, and the latest log line (heartbeat).
    via_cache: the package cache's build arguments and network (PackageCache.build_options), while it runs; a
    dockerfile stack builds without it, with its own arguments and target (as_written).
    matrix_file: labels the image as that matrix's (labels.MATRIX), so `clean` of another matrix keeps it.
    A build running longer than timeout seconds is abandoned (closing the connection cancels it in the daemon).
    """
    start = time.monotonic()
    name = ctx.stack.name
    progress = progress or build_progress(name)
    if not force and current_image(api, ctx):
        progress(f"image {ctx.tag} is up to date, not rebuilding", False)
        if not ctx.log_path.exists():  # keep the log of the build that made it, when this context has one
            ctx.log_path.write_text(f"# {ctx.tag} was up to date (content hash {ctx.content_hash}); not rebuilt\n")
        return BuildInfo(True, cached=True, seconds=time.monotonic() - start, log=str(ctx.log_path))
    own = ctx.stack.kind == "dockerfile"
    if not own:  # a user's Dockerfile names its own bases: the daemon pulls those it lacks, as `docker build` does
        ensure_base(api, ctx)
    with ctx.log_path.open("w", encoding="utf-8") as logfile:
        logfile.write(f"# envcheck build of {name} as {ctx.tag}\n")
        if own:
            logfile.write(f"# the stack's own {ctx.dockerfile}, context {ctx.directory}\n")
        error, tail, timed_out = _stream(
            api,
            logfile,
            progress,
            timeout,
            path=str(ctx.directory),
            tag=ctx.tag,
            labels={
                labels.HASH: ctx.content_hash,
                labels.STACK: name,
                labels.OWNER: "1",
                **({labels.MATRIX: labels.matrix_id(matrix_file)} if matrix_file else {}),
            },
            nocache=no_cache,
            **(as_written(ctx) if own else via_cache or {}),
        )
    _remove_stage_images(api, name)
    seconds = time.monotonic() - start
    if error:
        progress(f"build failed after {log.format_seconds(seconds)}: {error[:150]} (log: {ctx.log_path})", False)
        return BuildInfo(False, False, seconds, str(ctx.log_path), error, tail, timed_out)
    progress(f"built {ctx.tag} in {log.format_seconds(seconds)}", False)
    return BuildInfo(True, seconds=seconds, log=str(ctx.log_path))


def as_written(ctx: BuildContext) -> dict[str, Any]:
    """A dockerfile stack's build as its user wrote it: their Dockerfile, build arguments and target, and neither
    the package cache nor the CA bundle (their Dockerfile is theirs, and so is how it reaches its indexes)."""
    stack = ctx.stack
    return {
        "dockerfile": dockerfile_in_context(stack),
        "buildargs": dict(stack.build_args),
        **({"target": stack.target} if stack.target else {}),
    }


def build_shared(
    api: Any, directory: Path, source: BuildContext, timeout: float, progress: Progress, via_cache: dict[str, Any]
) -> str | None:
    """Build the beginning several stacks share (render.SharedLayers), untagged: its layers become the cached
    first steps of each of their builds. None, or the error (the stacks' own builds then report it in full)."""
    ensure_base(api, source)
    with (directory / "build.log").open("w", encoding="utf-8") as logfile:
        logfile.write(f"# envcheck build of layers shared by several stacks, in {directory}\n")
        error, _, _ = _stream(api, logfile, progress, timeout, path=str(directory), **via_cache)
    return error


def _stream(
    api: Any, logfile: TextIO, progress: Progress, timeout: float | None, **build: Any
) -> tuple[str | None, list[str], bool]:
    """Run one build, writing its log and reporting its steps: (error or None, the log's last lines, timed out).
    A build running longer than timeout seconds is abandoned (closing the connection cancels it in the daemon)."""
    start = time.monotonic()
    tail: list[str] = []
    error: str | None = None
    timed_out = False
    step = ""
    try:
        stream = api.build(
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            timeout=timeout,  # also the longest silence tolerated between two log chunks
            **build,
        )
        for chunk in stream:
            text = chunk.get("stream") or chunk.get("status") or ""
            if "error" in chunk:
                error = str(chunk.get("error")).strip()
                text = f"ERROR: {error}\n"
            logfile.write(text)
            logfile.flush()
            for line in text.splitlines():
                if not line.strip():
                    continue
                tail.append(line)
                del tail[:-TAIL_LINES]
                match = STEP_RE.match(line)
                if match:
                    step = f"step {match[1]}/{match[2]}"
                    progress(f"building {step}: {match[3][:70]}", False)
                else:
                    progress(f"building {step}: {line.strip()[:70]}", True)
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError
    except (TimeoutError, *docker_errors(), *_read_timeouts()) as exc:
        if timeout is not None and (isinstance(exc, TimeoutError) or time.monotonic() - start >= timeout):
            timed_out = True
            error = f"the build took longer than {timeout:.0f}s (--build-timeout) and was stopped"
            api.close()  # drops the connection: the daemon cancels the build
        else:
            error = str(exc).strip()
        logfile.write(f"ERROR: {error}\n")
    return error, tail, timed_out


def _remove_stage_images(api: Any, name: str) -> None:
    """Remove the CA-bundle stage's image this build left (a 5 GB venv the final image copied): only the final
    image stays behind. One still in use (another build of the same stack right now) stays for `envcheck clean`."""
    try:
        stages = api.images(filters={"label": f"{labels.STAGE}={name}", "dangling": True})
    except docker_errors():
        return
    for image in stages:
        try:
            api.remove_image(image["Id"], noprune=False)
        except docker_errors():
            pass


def _read_timeouts() -> tuple[type[BaseException], ...]:
    import socket

    import urllib3.exceptions

    return (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError, socket.timeout)
