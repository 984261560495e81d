"""Stacks through the whole pipeline: render → build → run (probe) → diagnose → saved result.

Builds run in parallel threads (--jobs, default one per CPU of the building daemon, at most 4), each with its own
daemon connection, beginnings that stacks share built once before them; probes run one at a time in
the main thread as builds finish, so a GPU is never shared. Nothing here raises for a stack that fails: the
failure becomes its status and the matrix goes on. Every result is saved (atomically) the moment it exists,
and the table is rewritten after each, so Ctrl-C or a crash loses nothing that had finished.

An image stack (an image people already run) is neither rendered nor built: its image is fetched as it is (local,
else pulled), probed first, and recorded by digest; its saved result is reused while that digest, the host and the
stack are unchanged. Its probe, and a dockerfile stack's, enters the container at run time (engine/run.py) and runs
with the image's own Python. `envcheck probe IMAGE` runs the same steps for images named on the command line.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import functools
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envcheck import __version__, log
from envcheck.diagnosis import conflicts
from envcheck.diagnosis.diagnose import all_use_gpu, diagnose_all
from envcheck.diagnosis.lint import Finding, predict
from envcheck.diagnosis.probe_facts import Facts
from envcheck.engine import disk
from envcheck.engine.build import build, build_progress, build_shared, current_image
from envcheck.engine.clean import stale
from envcheck.engine.client import connect, describe_host, docker_errors, is_local
from envcheck.engine.images import ImageUnusable, other_platform, said
from envcheck.engine.images import fetch as fetch_image
from envcheck.engine.registry import RegistryError, pull, repository
from envcheck.engine.run import find_python, run_probe, too_old
from envcheck.errors import BaseImageMissing
from envcheck.inputs.hosts import HostSpec
from envcheck.inputs.matrix import Matrix, Stack
from envcheck.inputs.options import DEFAULTS, Options, ProbeOptions
from envcheck.knowledge import Knowledge
from envcheck.package_cache.cache import PackageCache, package_cache
from envcheck.render.dockerfile import BuildContext, render
from envcheck.render.shared import SharedLayers, shared_layers
from envcheck.results import publish, store
from envcheck.results.model import BuildInfo, Host, Result, Status


@dataclass
class Where:
    """Where a stack is probed: the daemon, the board's row, the host's own results directory (None: the results
    directory itself), the registry digest it was pulled by, and who to tell a container's id (for Ctrl-C)."""

    api: Any
    row: str
    latest: Path | None = None
    digest: str | None = None
    on_start: Callable[[str], None] | None = None
    unreachable: Callable[[], str | None] | None = None  # why the host stopped answering, if it did
    stop: threading.Event | None = None  # set on Ctrl-C: a probe cut short is not saved
    failed: tuple[Status, str] | None = None  # the stack could not reach this host (push or pull failed)
    image: str | None = None  # what to probe there when it is not the built tag: an image stack's id or digest


STACK_HINT = "name one with `python: /path/to/python` in the stack"  # how a matrix names an image's interpreter
PROBE_HINT = "name one with --python /path/to/python"  # and how `envcheck probe` does


def new_result(stack: Stack, host: Host, status: Status, **fields: Any) -> Result:
    """A result of `stack` on `host`, stamped now and by this envcheck; the same for a build here, a host of --on
    and a Kubernetes pod."""
    return Result(
        stack=stack.name,
        status=status,
        timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        host=host,
        definition=stack.as_dict(),
        envcheck=__version__,
        **fields,
    )


def judge(result: Result, probe: dict[str, Any], gpu_refusal: str | None = None) -> None:
    """What a probe's document says, into its result: the diagnoses, the benchmark, the document itself, and gpu or
    cpu-only; the same whether the probe ran under Docker or in a pod."""
    facts = Facts(probe=probe, gpu_refusal=gpu_refusal)
    result.diagnoses = diagnose_all(facts)
    result.benchmark = facts.benchmark
    result.probe = {k: v for k, v in probe.items() if k != "benchmark"}
    result.status = Status.GPU if all_use_gpu(facts, result.diagnoses) else Status.CPU_ONLY


def seen_by_probe(host: Host, probe: dict[str, Any]) -> Host:
    """A remote host's driver and GPUs as NVML reported them inside its container (this machine's NVML knows
    nothing of that host); its fingerprint stays the daemon's, so reuse does not depend on one probe."""
    nvml = probe.get("nvml") if isinstance(probe.get("nvml"), dict) else {}
    gpus = [g.get("name") for g in nvml.get("gpus") or [] if isinstance(g, dict) and isinstance(g.get("name"), str)]
    driver, cuda = nvml.get("driver"), nvml.get("cuda_driver")
    return dataclasses.replace(
        host,
        driver=driver if isinstance(driver, str) else host.driver,
        cuda_driver=cuda if isinstance(cuda, str) else host.cuda_driver,
        gpus=gpus or host.gpus,
    )


def fetched(api: Any, stack: Stack, progress: Callable[[str], None]) -> tuple[BuildInfo, str, str]:
    """An image stack's image on api's daemon, as it is (local, else pulled): (what a build records of it, its id,
    its digest). ImageUnusable says why it cannot be had."""
    start = time.monotonic()
    image = fetch_image(api, str(stack.image), progress)
    note = f"pulled {image.reference}" if image.pulled else f"{image.reference} was already here (not pulled)"
    return (
        BuildInfo(True, cached=not image.pulled, seconds=time.monotonic() - start, log=note),
        image.image_id,
        image.digest,
    )


def interpreter(
    api: Any, image: str, stack: Stack, on_start: Callable[[str], None] | None, matrix_file: Path | None, hint: str
) -> tuple[str | None, str | None]:
    """(the Python an image stack's probe runs with, None) or (None, why it cannot run there): an image for another
    platform than the daemon's, or one without a Python where a user's `python` would be found."""
    try:
        attrs = api.inspect_image(image)
        mismatch = other_platform(api, attrs)
        if mismatch:
            return None, mismatch
        python, looked = find_python(api, image, attrs, stack.name, stack.interpreter, on_start, matrix_file)
    except docker_errors() as exc:
        return None, f"the daemon refused to look into the image: {said(exc)}"
    if python:
        return python, None
    if stack.interpreter:
        return None, f"the Python named, {stack.interpreter}, is not an executable file in this image; {hint}"
    return None, f"no Python in this image (looked in: {', '.join(looked)}); {hint}"


def probe_stack(
    api: Any,
    image: str,
    stack: Stack,
    result: Result,
    options: Options,
    on_start: Callable[[str], None] | None = None,
    matrix_file: Path | None = None,
    hint: str = STACK_HINT,
) -> None:
    """Probe `image` as `stack` says and judge what the probe saw into `result`. A rendered stack's image carries
    the probe; any other gets it at run time, run with the image's own Python (`hint`: how to name another)."""
    start = time.monotonic()
    python = None
    if stack.kind != "rendered":
        python, why = interpreter(api, image, stack, on_start, matrix_file, hint)
        if why:
            result.status, result.error = Status.RUN_FAILED, why
            return
    outcome = run_probe(
        api,
        image,
        stack.name,
        ["--framework", stack.probe_framework, *options.probe_args],
        timeout=options.run_timeout,
        sandbox=stack.sandbox,
        on_start=on_start,
        matrix_file=matrix_file,
        python=python,
        env=dict(stack.env) if python else None,
    )
    result.run = outcome.info()
    refused = too_old(outcome.probe) if outcome.probe else None
    if outcome.probe is None or refused:
        result.status = Status.TIMEOUT if outcome.timed_out else Status.RUN_FAILED
        result.error = f"{refused}; {hint}" if refused else outcome.error
        return
    judge(result, outcome.probe, outcome.gpu_refusal)
    result.run.seconds = time.monotonic() - start


def image_stacks(options: ProbeOptions) -> list[Stack]:
    """`envcheck probe`'s images as image stacks, each named by its reference in the characters a stack name (and a
    container's) takes; an image named twice is probed once."""
    stacks: list[Stack] = []
    primary, *others = options.probe_framework.split(",")  # --framework torch,jax: both, in one process
    for reference in dict.fromkeys(options.images):
        base = re.sub(r"[^a-z0-9._-]+", "-", reference.lower()).strip("-._")[:90] or "image"
        name, taken, n = base, {s.name for s in stacks}, 1
        while name in taken:  # a/b and a-b read alike
            n += 1
            name = f"{base}-{n}"
        stacks.append(
            Stack.named(
                name,
                framework=primary,
                image=reference,
                interpreter=options.python,
                extra_frameworks=tuple((other, "", "") for other in others),
            )
        )
    return stacks


def probe_images(options: ProbeOptions) -> list[Result]:
    """`envcheck probe IMAGE...`: each image as an image stack of a matrix would be, on the default daemon, one at a
    time (the GPUs are shared), with nothing built or saved: the results are printed."""
    api = connect()
    host = describe_host(api, options.engine.host_label)
    stacks = image_stacks(options)
    results = []
    with log.board([s.name for s in stacks]) as board:
        for stack in stacks:
            result = new_result(stack, host, Status.RUN_FAILED, image=stack.image)
            try:
                progress = functools.partial(board.set, stack.name)
                result.build, image_id, result.digest = fetched(api, stack, progress)
            except ImageUnusable as exc:
                result.error = str(exc)
            else:
                board.set(stack.name, "running the probe")
                probe_stack(api, image_id, stack, result, options.engine, hint=PROBE_HINT)
                if result.probe and not is_local(api):
                    result.host = seen_by_probe(host, result.probe)
            board.set(stack.name, str(result.status) + (f": {result.error[:100]}" if result.error else ""))
            results.append(result)
    return results


class MatrixRun:
    """Checks stacks of one matrix and keeps their results and table current as each one finishes."""

    def __init__(
        self, matrix: Matrix, options: Options, build_host: HostSpec | None = None, image_from: str | None = None
    ) -> None:
        self.matrix = matrix
        self.image_from = image_from  # a registry: pull REGISTRY/NAME:<content hash> instead of building
        self.options = options
        self.layout = matrix.layout
        self.build_host = build_host  # the daemon that builds (and, without --on, probes): None is the default one
        self.api = connect(spec=build_host)
        self.clients: list[Any] = []
        self.board: log.Board | None = None
        self.via_cache: dict[str, Any] = {}  # the package cache's build arguments and network, while it runs
        self.saving = threading.Lock()

    def run(self, stacks: list[Stack]) -> list[Result]:
        host = describe_host(self.api, self.options.host_label)
        with store.lock(self.layout.results), log.board([s.name for s in stacks]) as board:
            self.board = board
            results = {s.name: self.check_image(s, host) for s in stacks if s.kind == "image"}
            stacks_built = [s for s in stacks if s.name not in results]
            contexts = self.render(stacks_built)
            to_build = []
            for stack in stacks_built:
                reused = self.reusable(contexts[stack.name], host)
                if reused:
                    results[stack.name] = reused
                    board.set(stack.name, f"{reused.status} (unchanged image and host: result reused)")
                else:
                    to_build.append(contexts[stack.name])
            predictions = {ctx.stack.name: predict(ctx.stack) for ctx in to_build}
            for name, findings in predictions.items():
                for finding in findings:
                    log.warning(f"predicted for {name}: {finding}")
            if self.image_from:
                for ctx in to_build:
                    built, where = self.fetch(ctx, self.image_from)
                    results[ctx.stack.name] = self.finish(ctx, built, host, predictions[ctx.stack.name], where)
            for ctx, built in self.build_all([] if self.image_from else to_build):
                results[ctx.stack.name] = self.finish(ctx, built, host, predictions[ctx.stack.name])
        return [results[s.name] for s in stacks]

    def fetch(self, ctx: BuildContext, registry: str) -> tuple[BuildInfo, Where]:
        """--image-from: the image a build job pushed (REGISTRY/NAME:<content hash>, the hash of this checkout's
        stack), pulled instead of built; the record names its digest. A CI job on a GPU runner needs no build."""
        name = ctx.stack.name
        reference = f"{repository(registry, ctx)}:{ctx.content_hash}"
        start = time.monotonic()
        try:
            pulled = pull(self.api, reference, ctx, lambda text: self.set(name, text))
            digests = self.api.inspect_image(reference).get("RepoDigests") or []
        except (RegistryError, *docker_errors()) as exc:
            why = (
                f"{exc}. The image of this stack as this checkout defines it (content hash {ctx.content_hash[:12]}) "
                f"is not in {registry}: build and push it first (envcheck build --push --registry {registry})."
            )
            return BuildInfo(False, error=why), Where(self.api, name, failed=(Status.RUN_FAILED, why))
        digest = next((d for d in digests if d.startswith(f"{repository(registry, ctx)}@")), None)
        note = f"pulled {reference}" if pulled else f"{reference} was already here"
        return BuildInfo(True, cached=True, seconds=time.monotonic() - start, log=note), Where(
            self.api, name, digest=digest
        )

    def check_image(self, stack: Stack, host: Host) -> Result:
        """An image stack on this run's daemon: its image fetched as it is, its saved result reused while the digest,
        the host and the stack are unchanged, else probed and saved."""
        ctx, built, where = self.fetch_image(stack)
        reused = None if where.failed else self.reusable(ctx, host, digest=where.digest)
        if reused:
            self.set(stack.name, f"{reused.status} (unchanged image and host: result reused)")
            return reused
        return self.finish(ctx, built, host, [], where)

    def fetch_image(
        self, stack: Stack, api: Any = None, row: str | None = None
    ) -> tuple[BuildContext, BuildInfo, Where]:
        """An image stack's image made present on api's daemon (the build host's by default) as it is: local if
        there, else pulled. Its context stands where a built stack's would (nothing is rendered in it): the image id is
        its content hash, under which a registry carries a local-only image to other hosts (same id, same image)."""
        api = api or self.api
        row = row or stack.name
        try:
            built, image_id, digest = fetched(api, stack, lambda text: self.set(row, text))
        except ImageUnusable as exc:
            ctx = BuildContext(stack, self.layout.build / stack.name, "")
            return ctx, BuildInfo(False, error=str(exc)), Where(api, row, failed=(Status.RUN_FAILED, str(exc)))
        ctx = BuildContext(stack, self.layout.build / stack.name, image_id.removeprefix("sha256:"))
        return ctx, built, Where(api, row, digest=digest, image=image_id)

    def build_only(self, stacks: list[Stack]) -> list[tuple[BuildContext, BuildInfo | str]]:
        """`envcheck build`: the same builds as a run (parallel, under the results lock), without probing. Image
        stacks are left out: there is nothing of theirs to build."""
        with store.lock(self.layout.results), log.board([s.name for s in stacks]) as board:
            self.board = board
            contexts = self.render(stacks)
            for stack in stacks:
                if stack.name not in contexts:
                    board.set(stack.name, f"the image {stack.image}: nothing to build")
            built = dict((ctx.stack.name, outcome) for ctx, outcome in self.build_all(list(contexts.values())))
        return [(contexts[s.name], built[s.name]) for s in stacks if s.name in contexts]

    def render(self, stacks: list[Stack]) -> dict[str, BuildContext]:
        """Contexts without the CA bundle: the content hash is the same either way, and whether a build needs the
        bundle is decided when it starts (prepare). Image stacks get none: they are fetched, not built."""
        return {s.name: render(s, self.layout.build) for s in stacks if s.kind != "image"}

    def prepare(self, ctx: BuildContext, cache: PackageCache | None) -> BuildContext:
        """The context a build uses: with the package cache pip needs no CA bundle, except for a stack whose own
        index (PyTorch's) pip still reaches directly. A dockerfile stack's is its own, as rendered."""
        if ctx.stack.kind != "rendered":
            return ctx
        needs_bundle = cache is None or ctx.stack.index_url is not None
        return render(ctx.stack, self.layout.build, self.options.ca_bundle if needs_bundle else None)

    @contextlib.contextmanager
    def package_cache(self, needed: bool = True) -> Iterator[PackageCache | None]:
        """The package cache while builds run, unless off or not needed (only rendered stacks' builds use it)."""
        if not self.options.package_cache or not needed:
            yield None
            return
        with package_cache(self.api, self.options.ca_bundle) as cache:
            yield cache

    def reusable(
        self, ctx: BuildContext, host: Any, api: Any = None, latest: Path | None = None, digest: str | None = None
    ) -> Result | None:
        """The saved result of this stack on this host (api's daemon; its results in `latest`), if the image and
        the host's fingerprint are what they were and the image is still there. An image stack's image is the one
        of `digest` (what the host runs, by registry digest or image id), and its stack as it was written."""
        if self.options.force:
            return None
        saved = store.load(latest or self.layout.results, ctx.stack.name)
        if not (
            saved
            and saved.host.fingerprint == host.fingerprint
            and saved.status.ran
            and saved.definition.get("sandbox", True) == ctx.stack.sandbox
        ):
            return None
        if ctx.stack.kind == "image":
            same = bool(digest) and saved.digest == digest and saved.definition == ctx.stack.as_dict()
        else:
            same = saved.content_hash == ctx.content_hash and current_image(api or self.api, ctx) is not None
        if not same:
            return None
        saved.reused = True
        return saved

    def build_all(self, contexts: list[BuildContext]) -> Iterator[tuple[BuildContext, BuildInfo | str]]:
        """Build in --jobs threads; yields each stack's outcome as it finishes. A beginning several stacks share
        (base + Python, the installer, the same NVIDIA pins) is built once first and their builds wait for it, so
        parallel builds neither repeat it nor lose the sharing. Ctrl-C closes the builds' connections, which makes
        the daemon cancel them. The package cache runs while any rendered stack's build does."""
        if not contexts:
            return
        warning = disk.shortfall(
            disk.daemon_disk(self.api), [c.stack for c in contexts], Knowledge.load(), self.cleanable()
        )
        if warning:
            log.warning(warning)
        with self.package_cache(any(c.stack.kind == "rendered" for c in contexts)) as cache:
            self.via_cache = cache.build_options if cache else {}
            prepared = [self.prepare(ctx, cache) for ctx in contexts]
            # Without Docker's layer cache nothing is shared, not even within one run.
            shared, waits = ([], {}) if self.options.no_cache else shared_layers(prepared)
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.options.jobs or self.default_jobs())
            finished: queue.Queue[tuple[BuildContext, concurrent.futures.Future[BuildInfo | str]]] = queue.Queue()
            waiting: dict[str | None, list[Callable[[], None]]] = {}
            closed = threading.Event()

            def start(task: Callable[[], Any]) -> concurrent.futures.Future[Any] | None:
                return None if closed.is_set() else pool.submit(task)

            def stack_task(ctx: BuildContext) -> Callable[[], None]:
                def submit() -> None:
                    future = start(lambda: self.build(ctx))
                    if future:
                        future.add_done_callback(lambda done: finished.put((ctx, done)))

                return submit

            def shared_task(layers: SharedLayers, source: BuildContext) -> Callable[[], None]:
                def run() -> None:
                    try:
                        self.build_shared(layers, source)
                    except Exception as exc:  # the stacks' own builds then report what is wrong
                        log.warning(f"layers shared by {', '.join(layers.stacks)} not built first: {exc}")
                    finally:
                        for submit in waiting.pop(layers.key, []):
                            submit()

                def submit() -> None:
                    start(run)

                return submit

            by_name = {ctx.stack.name: ctx for ctx in prepared}
            for layers in shared:
                waiting.setdefault(layers.after, []).append(shared_task(layers, by_name[layers.stacks[0]]))
            for ctx in prepared:
                waiting.setdefault(waits.get(ctx.stack.name), []).append(stack_task(ctx))
            try:
                for submit in waiting.pop(None, []):
                    submit()
                for _ in prepared:
                    ctx, future = finished.get()
                    yield ctx, future.result()
            except BaseException:
                closed.set()
                for client in self.clients:
                    client.close()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()

    def cleanable(self) -> int:
        """What `envcheck clean` of this matrix would free on the building daemon now (its outdated images)."""
        try:
            items, _ = stale(self.api, self.matrix)
        except (*docker_errors(), OSError):
            return 0
        return sum(item.size for item in items if item.kind == "image")

    def build_client(self) -> Any:
        """A connection of a build's own (worker threads do not share one), closed by Ctrl-C to cancel the build."""
        api = connect(timeout=int(self.options.build_timeout) + 60, spec=self.build_host)
        self.clients.append(api)
        return api

    def default_jobs(self) -> int:
        """--jobs when not given: one build per CPU of the daemon that builds, at most the table's jobs_cap."""
        try:
            cpus = int(self.api.info().get("NCPU") or 1)
        except (*docker_errors(), ValueError, TypeError):
            cpus = 1
        return max(1, min(cpus, DEFAULTS.jobs_cap))

    def build_shared(self, layers: SharedLayers, source: BuildContext) -> None:
        """In a worker thread: the layers some stacks share, before their builds (which report any failure)."""
        api = self.build_client()
        label = f"layers shared by {len(layers.stacks)} stacks"
        progress = build_progress(label)
        try:
            error = build_shared(
                api,
                layers.write(self.layout.build),
                source,
                self.options.build_timeout,
                progress,
                self.via_cache,
            )
        except BaseImageMissing:
            return  # each stack's build says so
        if error:
            log.warning(f"[{label}] not built first ({error[:150]}); each stack builds them itself")

    def build(self, ctx: BuildContext) -> BuildInfo | str:
        """In a worker thread, with its own connection; returns the outcome, or the error for a missing base. A
        daemon whose disk has less room than any build needs is not asked to try."""
        api = self.build_client()
        refused = disk.too_full(disk.daemon_disk(api))
        if refused:
            return refused
        name = ctx.stack.name
        board = self.board
        try:
            return build(
                api,
                ctx,
                self.options.force,
                self.options.build_timeout,
                (lambda text, beat: board.set(name, text, beat)) if board else None,
                self.options.no_cache,
                self.via_cache,
                self.matrix.path,
            )
        except BaseImageMissing as exc:
            return str(exc)

    def finish(
        self,
        ctx: BuildContext,
        built: BuildInfo | str,
        host: Any,
        predicted: list[Finding],
        where: Where | None = None,
    ) -> Result:
        """Probe and diagnose a built stack (in the main thread; `where`: on one host of --on, in its thread), save
        its result, refresh the table."""
        stack = ctx.stack
        where = where or Where(self.api, ctx.stack.name)
        image_stack = stack.kind == "image"  # named by its reference and digest: nothing of it was rendered or built
        result = new_result(
            stack,
            host,
            Status.BUILD_FAILED,
            image=stack.image if image_stack else ctx.tag,
            content_hash=None if image_stack else ctx.content_hash,
            digest=where.digest,
            predicted=[f.as_dict() for f in predicted],
        )
        if isinstance(built, str):
            result.error = built
            result.build = BuildInfo(False, log=str(ctx.log_path), error=built)
            log.info(built)
        elif where.failed:
            result.build = built
            result.status, result.error = where.failed
        else:
            result.build = built
            if not built.ok:
                result.status = Status.TIMEOUT if built.timed_out else Status.BUILD_FAILED
                result.error = f"build failed: {built.error}" + (f" (log: {built.log})" if built.log else "")
                full = disk.ran_out(built)
                conflict = conflicts.from_build(stack, built)
                if full:
                    result.diagnoses = [
                        disk.diagnosis(full, disk.daemon_disk(self.api), stack, Knowledge.load(), self.cleanable())
                    ]
                elif conflict:
                    result.diagnoses = [conflict]
            else:
                self.set(where.row, "running the probe")
                self.probe(ctx, result, where)
                if where.stop is not None and where.stop.is_set():
                    return result  # cut short by Ctrl-C: not a finding, not saved
                if result.probe and not is_local(where.api):
                    result.host = seen_by_probe(host, result.probe)
                reason = where.unreachable() if where.unreachable and not result.status.ran else None
                if reason:
                    result.status, result.error = Status.HOST_UNREACHABLE, reason
        self.set(where.row, str(result.status) + (f": {result.error[:100]}" if result.error else ""))
        self.save(result, where.latest)
        return result

    def save(self, result: Result, latest: Path | None = None) -> None:
        """Save one result and refresh the table; hosts' threads take turns."""
        with self.saving:
            store.save(self.layout.results, result, latest)
            publish.refresh(self.layout.results, self.layout.docs)

    def set(self, name: str, text: str) -> None:
        if self.board:
            self.board.set(name, text)

    def probe(self, ctx: BuildContext, result: Result, where: Where) -> None:
        probe_stack(
            where.api, where.image or ctx.tag, ctx.stack, result, self.options, where.on_start, self.matrix.path
        )
