"""Stacks through the whole pipeline: render → build → run (probe) → diagnose → saved result.

Builds run in parallel threads (--jobs), each with its own daemon connection; probes run one at a time in
the main thread as builds finish, so a GPU is never shared. Nothing here raises for a stack that fails: the
failure becomes its status and the matrix goes on. Every result is saved (atomically) the moment it exists,
and the table is rewritten after each, so Ctrl-C or a crash loses nothing that had finished.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import fcntl
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck import __version__, log
from envcheck.build import BuildOutcome, build, current_image
from envcheck.diagnose import Facts, diagnose, uses_gpu
from envcheck.engine import connect, host_facts
from envcheck.errors import BaseImageMissing
from envcheck.knowledge import Knowledge, annotate_peaks
from envcheck.lint import predict
from envcheck.matrix import Matrix, Stack
from envcheck.probe import probe_nvml
from envcheck.render import BuildContext, render
from envcheck.report import RAN, load_result, save_result, write_table
from envcheck.run import run_probe

RESULT_SCHEMA = 1


@dataclass
class Options:
    ca_bundle: Path | None = None
    force: bool = False
    no_cache: bool = False
    run_timeout: float = 600.0
    build_timeout: float = 3600.0
    probe_args: list[str] = field(default_factory=list)
    jobs: int = 1
    host_label: str | None = None


def paths(root: Path) -> dict[str, Path]:
    """Where a matrix's outputs go: next to the matrix file."""
    return {"build": root / "build", "results": root / "results", "docs": root / "docs"}


def host_info(api: Any, label: str | None = None) -> dict[str, Any]:
    """The host as results record it, with a fingerprint of what decides a result: driver, GPUs, Docker's GPU
    runtimes and the kernel. A saved result is reused only on a host with the same fingerprint."""
    facts = host_facts(api)
    facts["label"] = label or facts.get("hostname") or "unknown host"
    nvml = probe_nvml()
    facts.update(driver=nvml["driver"], cuda_driver=nvml["cuda_driver"], gpus=[g["name"] for g in nvml["gpus"]])
    decisive = {k: facts.get(k) for k in ("driver", "gpus", "runtimes", "cdi_devices", "kernel")}
    facts["fingerprint"] = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]
    return facts


@contextmanager
def results_lock(results_dir: Path) -> Iterator[None]:
    """One matrix run at a time per results directory: a second one waits instead of interleaving writes."""
    results_dir.mkdir(parents=True, exist_ok=True)
    with (results_dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"another envcheck run is using {results_dir}; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def gpu_name(probe: dict[str, Any]) -> str | None:
    """The first GPU's product name, from TensorFlow or NVML."""
    names = [g.get("device_name") for g in probe.get("gpus") or []]
    names += [g.get("name") for g in (probe.get("nvml") or {}).get("gpus") or []]
    return next((n for n in names if n), None)


class MatrixRun:
    """Checks stacks of one matrix and keeps their results and table current as each one finishes."""

    def __init__(self, matrix: Matrix, options: Options) -> None:
        self.matrix = matrix
        self.options = options
        self.where = paths(matrix.root)
        self.api = connect()
        self.host = host_info(self.api, options.host_label)
        self.clients: list[Any] = []

    def run(self, stacks: list[Stack]) -> list[dict[str, Any]]:
        with results_lock(self.where["results"]), log.board([s.name for s in stacks]) as board:
            self.board = board
            contexts = {s.name: render(s, self.where["build"], self.options.ca_bundle) for s in stacks}
            results: dict[str, dict[str, Any]] = {}
            to_build = []
            for stack in stacks:
                reused = self.reusable(contexts[stack.name])
                if reused:
                    results[stack.name] = reused
                    board.set(stack.name, f"{reused['status']} (unchanged image and host: result reused)")
                else:
                    to_build.append(stack)
                    for finding in predict(stack):
                        log.warning(f"predicted for {stack.name}: {finding}")
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.options.jobs))
            try:
                futures = {pool.submit(self.build, contexts[s.name]): s for s in to_build}
                for future in concurrent.futures.as_completed(futures):
                    stack = futures[future]
                    results[stack.name] = self.finish(contexts[stack.name], future.result())
            except BaseException:
                for client in self.clients:  # closing a build's connection makes the daemon cancel it
                    client.close()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
        return [results[s.name] for s in stacks]

    def reusable(self, ctx: BuildContext) -> dict[str, Any] | None:
        if self.options.force:
            return None
        saved = load_result(self.where["results"], ctx.stack.name)
        if (
            saved
            and saved.get("content_hash") == ctx.content_hash
            and (saved.get("host") or {}).get("fingerprint") == self.host["fingerprint"]
            and saved.get("status") in RAN
            and current_image(self.api, ctx)
        ):
            return {**saved, "reused": True}
        return None

    def build(self, ctx: BuildContext) -> BuildOutcome | str:
        """In a worker thread, with its own connection; returns the outcome, or the error for a missing base."""
        api = connect(timeout=int(self.options.build_timeout) + 60)
        self.clients.append(api)
        name = ctx.stack.name
        try:
            return build(
                api,
                ctx,
                self.options.force,
                self.options.build_timeout,
                lambda text, beat: self.board.set(name, text, beat),
                self.options.no_cache,
            )
        except BaseImageMissing as exc:
            return str(exc)

    def finish(self, ctx: BuildContext, built: BuildOutcome | str) -> dict[str, Any]:
        """Probe and diagnose a built stack (in the main thread), save its result, refresh the table."""
        stack = ctx.stack
        result = self.new_result(ctx)
        if isinstance(built, str):
            result.update(error=built, build={"ok": False, "log": str(ctx.log_path), "error": built})
            log.info(built)
        else:
            result["build"] = built.as_dict()
            if not built.ok:
                result["status"] = "timeout" if built.timed_out else "build-failed"
                result["error"] = f"build failed: {built.error} (log: {built.log_path})"
            else:
                self.board.set(stack.name, "running the probe")
                self.probe(ctx, result)
        self.board.set(stack.name, result["status"] + (f": {result['error'][:100]}" if result["error"] else ""))
        save_result(self.where["results"], result)
        write_table(self.where["results"], self.where["docs"])
        return result

    def probe(self, ctx: BuildContext, result: dict[str, Any]) -> None:
        start = time.monotonic()
        outcome = run_probe(
            self.api, ctx.tag, ctx.stack.name, self.options.probe_args, timeout=self.options.run_timeout
        )
        result["run"] = outcome.as_dict()
        if outcome.probe is None:
            result["status"] = "timeout" if outcome.timed_out else "run-failed"
            result["error"] = outcome.error
            return
        probe = dict(outcome.probe)
        diagnoses = diagnose(Facts(probe=probe, gpu_refusal=outcome.gpu_refusal))
        result["benchmark"] = probe.pop("benchmark", [])
        annotate_peaks(result["benchmark"], gpu_name(probe), Knowledge.load())
        result["probe"] = probe
        result["diagnoses"] = [d.as_dict() for d in diagnoses]
        result["status"] = "gpu" if uses_gpu(probe, diagnoses) else "cpu-only"
        result["run"]["seconds"] = round(time.monotonic() - start, 1)

    def new_result(self, ctx: BuildContext) -> dict[str, Any]:
        return {
            "schema": RESULT_SCHEMA,
            "stack": ctx.stack.name,
            "image": ctx.tag,
            "content_hash": ctx.content_hash,
            "definition": ctx.stack.as_dict(),
            "envcheck": __version__,
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": self.host,
            "status": "build-failed",
            "error": None,
            "predicted": [f.as_dict() for f in predict(ctx.stack)],
            "probe": None,
            "diagnoses": [],
            "benchmark": [],
        }
