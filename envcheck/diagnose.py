"""Why the GPU is not used: small rules, one per cause, each reading probe facts and the daemon's answer.

A rule returns a Diagnosis or None. Rules run in registration order, which puts root causes (no runtime,
no TensorFlow, a CPU-only package) before their consequences. Codes are a public, stable vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass(frozen=True)
class Facts:
    """Everything a rule may read: the probe's JSON and, for containers, what Docker said."""

    probe: dict[str, Any]
    gpu_refusal: str | None = None
    in_container: bool = True

    @property
    def env(self) -> dict[str, str]:
        return self.probe.get("env") or {}

    @property
    def nvml(self) -> dict[str, Any]:
        return self.probe.get("nvml") or {}


@dataclass(frozen=True)
class Diagnosis:
    code: str
    severity: str
    summary: str
    fix: str
    evidence: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Rule = Callable[[Facts], "Diagnosis | None"]
RULES: list[Rule] = []


def rule(func: Rule) -> Rule:
    RULES.append(func)
    return func


@rule
def no_gpu_runtime(f: Facts) -> Diagnosis | None:
    if not f.gpu_refusal:
        return None
    return Diagnosis(
        "no-gpu-runtime",
        ERROR,
        "Docker could not give the container a GPU: the host has no NVIDIA Container Toolkit (or no GPU runtime).",
        "Install the NVIDIA Container Toolkit on the host, run `sudo nvidia-ctk runtime configure --runtime=docker`"
        " and restart the Docker daemon; then `docker run --gpus all` works.",
        [f"docker: {f.gpu_refusal[:300]}"],
    )


@rule
def tensorflow_missing(f: Facts) -> Diagnosis | None:
    if f.probe.get("tensorflow"):
        return None
    return Diagnosis(
        "tensorflow-missing",
        ERROR,
        "TensorFlow cannot be imported.",
        "Install it in this Python: `pip install 'tensorflow[and-cuda]'` (Linux, GPU) or check the import error.",
        [str(f.probe.get("tensorflow_error") or "tensorflow not importable")],
    )


@rule
def cpu_only_build(f: Facts) -> Diagnosis | None:
    if f.probe.get("is_cuda_build") is not False:
        return None
    return Diagnosis(
        "cpu-only-build",
        ERROR,
        f"This TensorFlow {f.probe.get('tensorflow')} is a CPU-only build (is_built_with_cuda() is False).",
        "Install the GPU-capable package instead: `pip uninstall tensorflow-cpu && pip install 'tensorflow[and-cuda]'`"
        " (the old `tensorflow-gpu` package no longer exists).",
        [f"tf.test.is_built_with_cuda() = False; build info: {f.probe.get('build_info')}"],
    )


HIDING_VALUES = {"", "-1", "none", "void", "nodevfiles"}


@rule
def gpus_hidden(f: Facts) -> Diagnosis | None:
    hidden = [
        f"{name}={f.env[name]!r}"
        for name in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
        if name in f.env and f.env[name].strip().lower() in HIDING_VALUES
    ]
    if not hidden:
        return None
    return Diagnosis(
        "gpus-hidden",
        ERROR,
        "GPUs are hidden from CUDA by an environment variable.",
        "Unset it (or list the GPU indices to use, e.g. CUDA_VISIBLE_DEVICES=0) in the image, the job script or "
        "the container's environment.",
        hidden,
    )


@rule
def no_driver(f: Facts) -> Diagnosis | None:
    if f.gpu_refusal or f.probe.get("gpus") or f.nvml.get("available"):
        return None
    evidence = [f"NVML: {f.nvml.get('error') or 'not available'}"]
    evidence.append("device nodes: " + (", ".join(f.probe.get("device_nodes") or []) or "no /dev/nvidia*"))
    where = "inside the container" if f.in_container else "on this host"
    return Diagnosis(
        "no-driver",
        ERROR,
        f"No NVIDIA driver is reachable {where}: NVML cannot start and no GPU is visible.",
        "Install the NVIDIA driver on the host (check with `nvidia-smi`); for containers also request GPUs "
        "(`--gpus all`) with the NVIDIA Container Toolkit installed.",
        evidence,
    )


def diagnose(facts: Facts) -> list[Diagnosis]:
    """All diagnoses for these facts, root causes first."""
    return [d for d in (r(facts) for r in RULES) if d is not None]
