"""One matrix on many Docker hosts (`--on HOST…` / `--on all`): build each image once where envcheck runs (or on
`--build-on HOST`), push it to the registry, and on every host at the same time pull it by digest and probe it,
one stack at a time per host (a host's GPUs are shared by its probes).

Image stacks (images people already run) are not built: the build host fetches the image to learn its digest, every
other host pulls it by that digest from its own registry, and an image only the build host has (built or loaded
there, never pushed) goes through envcheck's registry as built images do, tagged by its image id.

A host that is down, refuses, or stops answering costs only its own cells (status host-unreachable, with the
reason); the other hosts go on. Results are saved the moment each cell is done (records carry each host's label
and fingerprint, so reuse and the merged table work per host), and Ctrl-C removes the running containers on every
host and keeps every finished cell, as a one-host run does.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck import log
from envcheck.diagnosis.lint import predict
from envcheck.engine.client import connect, describe_host, docker_errors
from envcheck.engine.images import ImageUnusable, fetch, said
from envcheck.engine.registry import RegistryError, pull, push
from envcheck.errors import ConfigError, HostUnreachable
from envcheck.inputs.hosts import HostSpec, scrub
from envcheck.inputs.matrix import Matrix, Stack
from envcheck.inputs.options import Options
from envcheck.render.dockerfile import BuildContext
from envcheck.results import store
from envcheck.results.model import BuildInfo, Host, Result, Status
from envcheck.runs.pipeline import MatrixRun, Where, new_result


def row(stack: str, host: str) -> str:
    return f"{stack} @ {host}"


@dataclass
class FleetImage:
    """An image stack across the fleet: its context (the image id as content hash), what fetching it on the build host
    recorded, where it is there, and the digest every other host pulls (or why there is none)."""

    ctx: BuildContext
    built: BuildInfo
    here: Where
    elsewhere: str | None = None
    push_error: str | None = None

    def digest_on(self, target: Target) -> str | None:
        """The digest a host's record of it names: the build host's own, or the one the others pull."""
        return self.here.digest if target.is_build_host else self.elsewhere


@dataclass
class Target:
    """One host of the run: its connection, what its daemon says, and the stacks queued for it."""

    spec: HostSpec
    is_build_host: bool
    latest: Path
    api: Any = None
    host: Host | None = None
    down: str | None = None  # why it cannot be reached (then every cell of it is host-unreachable)
    container: str | None = None  # the name of the probe container running there now
    work: queue.Queue[tuple[BuildContext, BuildInfo | str, str | None, str | None] | None] = field(
        default_factory=queue.Queue
    )


class FleetRun:
    """Checks the stacks of one matrix on several hosts and merges their results into one table."""

    def __init__(
        self,
        matrix: Matrix,
        options: Options,
        hosts: list[HostSpec],
        registry: str | None,
        build_host: HostSpec | None = None,
    ) -> None:
        results = matrix.layout.results
        self.targets = [
            Target(h, h.name == build_host.name if build_host else h.is_default, store.host_dir(results, h.name))
            for h in hosts
        ]
        others = [t.spec.name for t in self.targets if not t.is_build_host]
        if others and not registry and any(s.kind != "image" for s in matrix.stacks):
            raise ConfigError(
                f"--on {' '.join(others)}: a host other than the build host gets its images from a registry, and "
                f"none is set. Add 'registry: HOST:PORT/PATH' to {matrix.path} (or to the hosts file), or pass "
                "--registry HOST:PORT/PATH."
            )
        self.options = options
        self.registry = registry
        self.stop = threading.Event()
        self.pipeline = MatrixRun(matrix, options, build_host)  # connects to the build host

    def run(self, stacks: list[Stack]) -> list[Result]:
        pipeline = self.pipeline
        contexts = pipeline.render(stacks)  # image stacks have none: they are fetched
        rows = [s.name for s in stacks] + [row(s.name, t.spec.name) for s in stacks for t in self.targets]
        cells: dict[tuple[str, str], Result] = {}
        with store.lock(pipeline.layout.results), log.board(rows) as board:
            pipeline.board = board
            self.connect_all()
            images = {s.name: self.fetch_image(s) for s in stacks if s.kind == "image"}
            wanted: dict[str, list[Target]] = {}
            for ctx in [*contexts.values(), *(image.ctx for image in images.values())]:
                image = images.get(ctx.stack.name)
                for target in self.targets:
                    name = row(ctx.stack.name, target.spec.name)
                    if target.down:
                        cells[(ctx.stack.name, target.spec.name)] = self.unreachable(target, ctx, target.down)
                        continue
                    digest = image.digest_on(target) if image else None
                    reused = pipeline.reusable(ctx, target.host, target.api, target.latest, digest)
                    if reused:
                        cells[(ctx.stack.name, target.spec.name)] = reused
                        board.set(name, f"{reused.status} (unchanged image and host: result reused)")
                    else:
                        wanted.setdefault(ctx.stack.name, []).append(target)
                        board.set(name, "waiting for the image")
            for name in contexts:
                if name not in wanted:
                    board.set(name, "nothing to do")
            workers = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(self.targets)))
            futures = [workers.submit(self.serve, t, cells) for t in self.targets if not t.down]
            try:
                for name, image in images.items():  # ready now: nothing to build
                    for target in wanted.get(name, []):
                        target.work.put((image.ctx, image.built, image.elsewhere, image.push_error))
                for ctx, built in pipeline.build_all([contexts[n] for n in contexts if n in wanted]):
                    digest, push_error = self.publish(ctx, built)
                    for target in wanted[ctx.stack.name]:
                        target.work.put((ctx, built, digest, push_error))
                for target in self.targets:
                    target.work.put(None)
                for future in futures:
                    while True:  # wait in slices, so Ctrl-C reaches this thread
                        try:
                            future.result(timeout=0.5)
                            break
                        except concurrent.futures.TimeoutError:
                            continue
            except BaseException:
                self.interrupt()
                workers.shutdown(wait=False, cancel_futures=True)
                raise
            workers.shutdown()
        return [cells[(s.name, t.spec.name)] for s in stacks for t in self.targets if (s.name, t.spec.name) in cells]

    def connect_all(self) -> None:
        """Reach every host at once (a host that does not answer within the ping timeout is down) and describe it."""

        def reach(target: Target) -> None:
            try:
                target.api = connect(timeout=int(self.options.run_timeout) + 120, spec=target.spec)
                target.host = describe_host(target.api, target.spec.name)
            except HostUnreachable as exc:
                target.down = str(exc)
            except docker_errors() as exc:
                why = scrub(str(exc), target.spec.docker)
                target.down = f"host {target.spec.name}'s Docker daemon failed to describe itself: {why}"
            if target.down:
                log.warning(f"{target.down}; its cells are marked host-unreachable, the other hosts go on")

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(self.targets))) as pool:
            list(pool.map(reach, self.targets))

    def fetch_image(self, stack: Stack) -> FleetImage:
        """An image stack's image on the build host, as it is (local, else pulled), and what the other hosts pull:
        its digest in its own registry, or, for an image only the build host has, the digest envcheck's registry
        gives it when pushed (tagged by its image id, so an unchanged image is not pushed again)."""
        ctx, built, here = self.pipeline.fetch_image(stack)
        image = FleetImage(ctx, built, here)
        if here.failed or all(t.is_build_host for t in self.targets):
            return image
        if here.digest and "@" in here.digest:  # a registry has it: every host pulls it from there
            image.elsewhere = here.digest
            return image
        if not self.registry:
            image.push_error = (
                f"{stack.image} is only on the build host's daemon (no registry knows it) and no registry is set to "
                "carry it to other hosts: push it to a registry and name it so, or add 'registry: HOST:PORT/PATH'"
            )
            return image
        try:
            self.pipeline.api.tag(here.image, *ctx.tag.rsplit(":", 1))  # what push sends, as it sends a build's tag
        except docker_errors() as exc:
            image.push_error = f"cannot tag {stack.image} as {ctx.tag} to push it: {said(exc)}"
            return image
        image.elsewhere, image.push_error = self.publish(ctx, built)
        return image

    def publish(self, ctx: BuildContext, built: BuildInfo | str) -> tuple[str | None, str | None]:
        """Push a built image (also when only the build host probes it: its records then name the digest):
        (digest, None), or (None, why not)."""
        if isinstance(built, str) or not built.ok or not self.registry:
            return None, None
        name = ctx.stack.name
        try:
            digest = push(self.pipeline.api, self.registry, ctx, lambda text: self.pipeline.set(name, text))
        except RegistryError as exc:
            self.pipeline.set(name, str(exc)[:120])
            return None, str(exc)
        self.pipeline.set(name, f"in {self.registry} as {digest.rsplit('@', 1)[1][:19]}…")
        return digest, None

    def serve(self, target: Target, cells: dict[tuple[str, str], Result]) -> None:
        """A host's thread: probe each stack as its image arrives, one at a time."""
        while not self.stop.is_set():
            item = target.work.get()
            if item is None:
                return
            ctx, built, digest, push_error = item
            result = self.cell(target, ctx, built, digest, push_error)
            if not self.stop.is_set():
                cells[(ctx.stack.name, target.spec.name)] = result

    def cell(
        self, target: Target, ctx: BuildContext, built: BuildInfo | str, digest: str | None, push_error: str | None
    ) -> Result:
        """One stack on one host; a daemon error no step handled becomes the cell's status, never the run's end."""
        try:
            return self.probe_on(target, ctx, built, digest, push_error)
        except docker_errors() as exc:
            reason = self.check(target)
            if reason:
                return self.unreachable(target, ctx, reason)
            failed = Where(target.api, row(ctx.stack.name, target.spec.name), target.latest, digest)
            why = scrub(str(exc), target.spec.docker)
            failed.failed = (Status.RUN_FAILED, f"host {target.spec.name}'s daemon refused: {why}")
            return self.pipeline.finish(ctx, built, target.host, [], failed)

    def probe_on(
        self, target: Target, ctx: BuildContext, built: BuildInfo | str, digest: str | None, push_error: str | None
    ) -> Result:
        name = row(ctx.stack.name, target.spec.name)
        if target.down:
            return self.unreachable(target, ctx, target.down)
        where = Where(
            target.api,
            name,
            target.latest,
            digest,
            on_start=lambda cid: setattr(target, "container", cid),
            unreachable=lambda: self.check(target),
            stop=self.stop,
        )
        ok = not isinstance(built, str) and built.ok
        if ctx.stack.kind == "image":
            self.fetch_on(target, ctx, built, digest, push_error, where)
        elif ok and not target.is_build_host:
            if push_error or not digest:
                where.failed = (Status.RUN_FAILED, push_error or "the image was not pushed")
            else:
                try:
                    pull(target.api, digest, ctx, lambda text: self.pipeline.set(name, text))
                except RegistryError as exc:
                    reason = self.check(target)
                    if reason:
                        return self.unreachable(target, ctx, reason)
                    where.failed = (Status.RUN_FAILED, str(exc))
        try:
            return self.pipeline.finish(ctx, built, target.host, predict(ctx.stack), where)
        finally:
            target.container = None

    def fetch_on(
        self,
        target: Target,
        ctx: BuildContext,
        built: BuildInfo | str,
        digest: str | None,
        push_error: str | None,
        where: Where,
    ) -> None:
        """An image stack's image on one host, into `where` (the image to probe and its digest), or why not: the
        build host has it by its reference, every other host pulls it by digest."""
        if isinstance(built, str) or not built.ok:
            where.failed = (Status.RUN_FAILED, built if isinstance(built, str) else str(built.error))
            return
        reference = str(ctx.stack.image) if target.is_build_host else digest
        if reference is None:
            where.failed = (Status.RUN_FAILED, push_error or f"{ctx.stack.image} has no digest other hosts can pull")
            return
        try:
            image = fetch(target.api, reference, lambda text: self.pipeline.set(where.row, text))
        except ImageUnusable as exc:
            reason = self.check(target)
            where.failed = (Status.HOST_UNREACHABLE, reason) if reason else (Status.RUN_FAILED, str(exc))
            return
        where.image, where.digest = image.image_id, image.digest

    def check(self, target: Target) -> str | None:
        """After a failure: is the host still there? If not, it is down for the rest of the run."""
        if target.down:
            return target.down
        try:
            connect(spec=target.spec).close()
        except HostUnreachable as exc:
            target.down = f"{exc} (it stopped answering during the run)"
            log.warning(f"{target.down}; its remaining cells are marked host-unreachable")
        return target.down

    def unreachable(self, target: Target, ctx: BuildContext, reason: str) -> Result:
        """The cell of a host that could not be reached, saved like any other so the table shows why."""
        host = target.host or Host(label=target.spec.name)
        image_stack = ctx.stack.kind == "image"
        result = new_result(
            ctx.stack,
            host,
            Status.HOST_UNREACHABLE,
            image=ctx.stack.image if image_stack else ctx.tag,
            content_hash=None if image_stack else ctx.content_hash,
            error=reason,
        )
        self.pipeline.set(row(ctx.stack.name, target.spec.name), f"{result.status}: {reason[:100]}")
        self.pipeline.save(result, target.latest)
        return result

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM: stop the hosts' threads and remove the probe containers running on every host."""
        self.stop.set()
        for target in self.targets:
            target.work.put(None)
            if target.container:
                try:
                    connect(timeout=30, spec=target.spec).remove_container(target.container, force=True)
                except (HostUnreachable, *docker_errors()):
                    pass
