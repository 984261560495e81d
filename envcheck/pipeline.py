"""One stack through the whole pipeline: render → build → run (probe) → diagnose → saved result.

Nothing here raises for a stack that fails: the failure becomes the stack's status, so a matrix goes on.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck import __version__, log
from envcheck.build import build
from envcheck.diagnose import ERROR, Facts, diagnose
from envcheck.errors import BaseImageMissing
from envcheck.knowledge import Knowledge, annotate_peaks
from envcheck.lint import predict
from envcheck.matrix import Matrix, Stack
from envcheck.render import render
from envcheck.report import save_result
from envcheck.run import run_probe

RESULT_SCHEMA = 1
# Statuses in which the stack built and its probe ran: the stack met its expectation.
RAN = {"gpu", "cpu-only"}


@dataclass
class Options:
    ca_bundle: Path | None = None
    force: bool = False
    run_timeout: float = 600.0
    probe_args: list[str] = field(default_factory=list)


def paths(matrix: Matrix) -> dict[str, Path]:
    """Where a matrix's outputs go: next to the matrix file."""
    return {"build": matrix.root / "build", "results": matrix.root / "results", "docs": matrix.root / "docs"}


def check_stack(api: Any, matrix: Matrix, stack: Stack, options: Options, host: dict[str, Any]) -> dict[str, Any]:
    """Build and probe one stack and save its result; returns the result."""
    where = paths(matrix)
    ctx = render(stack, where["build"], options.ca_bundle)
    result: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "stack": stack.name,
        "image": ctx.tag,
        "content_hash": ctx.content_hash,
        "definition": stack.as_dict(),
        "envcheck": __version__,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": host,
        "status": "build-failed",
        "error": None,
        "probe": None,
        "diagnoses": [],
        "benchmark": [],
    }
    predicted = predict(stack)
    result["predicted"] = [f.as_dict() for f in predicted]
    for finding in predicted:
        log.warning(f"predicted for {stack.name}: {finding}")
    with log.step(f"{stack.name}: build"):
        try:
            built = build(api, ctx, force=options.force)
            result["build"] = built.as_dict()
        except BaseImageMissing as exc:
            result["error"] = str(exc)
            result["build"] = {"ok": False, "log": str(ctx.log_path), "error": str(exc)}
            log.info(str(exc))
            return _save(matrix, result)
    if not built.ok:
        result["error"] = f"build failed: {built.error} (log: {built.log_path})"
        return _save(matrix, result)
    with log.step(f"{stack.name}: probe"):
        outcome = run_probe(api, ctx.tag, stack.name, options.probe_args, timeout=options.run_timeout)
    result["run"] = outcome.as_dict()
    if outcome.probe is None:
        result["status"] = "run-failed"
        result["error"] = outcome.error
        return _save(matrix, result)
    probe = dict(outcome.probe)
    diagnoses = diagnose(Facts(probe=probe, gpu_refusal=outcome.gpu_refusal))
    result["benchmark"] = probe.pop("benchmark", [])
    annotate_peaks(result["benchmark"], gpu_name(probe), Knowledge.load())
    result["probe"] = probe
    result["diagnoses"] = [d.as_dict() for d in diagnoses]
    uses_gpu = bool(probe.get("gpus")) and not any(d.severity == ERROR for d in diagnoses)
    result["status"] = "gpu" if uses_gpu else "cpu-only"
    return _save(matrix, result)


def gpu_name(probe: dict[str, Any]) -> str | None:
    """The first GPU's product name, from TensorFlow or NVML."""
    names = [g.get("device_name") for g in probe.get("gpus") or []]
    names += [g.get("name") for g in (probe.get("nvml") or {}).get("gpus") or []]
    return next((n for n in names if n), None)


def _save(matrix: Matrix, result: dict[str, Any]) -> dict[str, Any]:
    save_result(paths(matrix)["results"], result)
    return result
