"""`envcheck plan`: will each stack use the GPU on a host with this driver and these GPUs? From knowledge alone.

Each check returns (verdict, code, reason) pieces; a stack's verdict is the worst of them: ok < warn < fails.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from envcheck.errors import ConfigError
from envcheck.knowledge import Knowledge, TFBuild, Version
from envcheck.lint import base_has_cuda_libs
from envcheck.matrix import Stack

OK, WARN, FAILS = "ok", "warn", "fails"
RANK = {OK: 0, WARN: 1, FAILS: 2}


@dataclass(frozen=True)
class Host:
    """The GPU host to plan for: its driver and the compute capability of each GPU (may be unknown)."""

    driver: Version
    gpus: tuple[tuple[str, Version], ...] = ()  # (label, compute capability)


@dataclass
class Verdict:
    stack: str
    verdict: str = OK
    codes: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def add(self, verdict: str, code: str, reason: str) -> None:
        if RANK[verdict] > RANK[self.verdict]:
            self.verdict = verdict
        if code not in self.codes:
            self.codes.append(code)
        self.reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        reason = "; ".join(self.reasons) or "built for this driver and GPU"
        return {"stack": self.stack, "verdict": self.verdict, "codes": self.codes, "reason": reason}


def needed_cuda(tf: TFBuild) -> Version:
    """The CUDA toolkit the runtime comes from (major.minor): TF's build, which its [and-cuda] pins match."""
    return tf.and_cuda.cuda_runtime.prefix(2) if tf.and_cuda else tf.cuda


def driver_verdict(tf: TFBuild, host: Host, k: Knowledge) -> tuple[str, str, str] | None:
    cuda = needed_cuda(tf)
    minimum = k.min_driver(cuda)
    if minimum is None or host.driver >= minimum:
        return None
    floor = k.minor_compat_floor(cuda.major)
    if floor is not None and host.driver >= floor:
        return (
            WARN,
            "minor-version-compat",
            f"driver {host.driver} is older than CUDA {cuda}'s {minimum}: it runs "
            f"through CUDA {cuda.major}.x minor-version compatibility, without PTX JIT of newer code",
        )
    newest = k.newest_cuda_for_driver(host.driver)
    supports = f", which supports CUDA up to {newest}" if newest else ", older than any CUDA 11 needs"
    return (
        FAILS,
        "driver-too-old",
        f"CUDA {cuda} needs driver >= {minimum} (>= {floor} with minor-version "
        f"compatibility); this host has {host.driver}{supports}",
    )


def plan_stack(stack: Stack, host: Host, k: Knowledge) -> Verdict:
    verdict = Verdict(stack.name)
    if stack.variant == "cpu":
        verdict.add(FAILS, "cpu-only-build", "tensorflow-cpu is built without CUDA and never uses a GPU")
        return verdict
    tf = k.tf_build(stack.tensorflow)
    if tf is None:
        verdict.add(WARN, "unknown-tensorflow", f"TensorFlow {stack.tensorflow} is not in envcheck's data; run it")
        return verdict
    if not tf.supports_python(stack.python):
        verdict.add(FAILS, "python-unsupported", f"TensorFlow {stack.tensorflow} supports Python {tf.python_range()}")
    if stack.variant == "plain" and not base_has_cuda_libs(stack.base):
        verdict.add(FAILS, "cuda-libs-missing", f"plain tensorflow on {stack.base} has no CUDA libraries")
    driver = driver_verdict(tf, host, k)
    if driver:
        verdict.add(*driver)
    for label, cc in host.gpus:
        kernels = tf.kernels_for(cc)
        if kernels == "none":
            verdict.add(
                FAILS,
                "compute-capability-unsupported",
                f"{label} (compute capability {cc}) is older than "
                f"TensorFlow {tf.release}'s oldest supported {tf.oldest_gpu}: the GPU is ignored",
            )
        elif kernels == "ptx":
            if driver and driver[0] == WARN:
                verdict.add(
                    FAILS,
                    "driver-too-old",
                    f"{label} needs PTX JIT, which minor-version compatibility does "
                    f"not allow: update the driver to >= {k.min_driver(needed_cuda(tf))}",
                )
            else:
                verdict.add(
                    WARN,
                    "ptx-jit",
                    f"{label} (compute capability {cc}) has no native kernels in TensorFlow "
                    f"{tf.release}: they are JIT-compiled from PTX (slow first start)",
                )
    return verdict


def plan(stacks: list[Stack], host: Host, k: Knowledge | None = None) -> list[dict[str, Any]]:
    """A verdict per stack; a driver that is too old names the newest stack that would work."""
    k = k or Knowledge.load()
    verdicts = [plan_stack(stack, host, k) for stack in stacks]
    working = [
        (Version.parse(s.tensorflow), s.name)
        for s, v in zip(stacks, verdicts, strict=True)
        if "driver-too-old" not in v.codes and v.verdict != FAILS
    ]
    newest = max(working)[1] if working else None
    for v in verdicts:
        if "driver-too-old" in v.codes:
            v.reasons.append(
                f"newest stack that would work on this driver: {newest}"
                if newest
                else "no stack in this matrix works on this driver"
            )
    return [v.as_dict() for v in verdicts]


def host_from_args(driver: str | None, ccs: list[str], gpus: list[str], k: Knowledge) -> Host | None:
    """The host described on the command line, or None when nothing was given (then NVML is asked)."""
    if driver is None and not ccs and not gpus:
        return None
    if driver is None:
        raise ConfigError("--compute-capability/--gpu need --driver too (for example --driver 535.54.03)")
    try:
        pairs = [(f"compute capability {cc}", Version.parse(cc)) for cc in ccs]
        version = Version.parse(driver)
    except ValueError as exc:
        raise ConfigError(f"{exc} (expected --driver like 535.54.03 and --compute-capability like 8.0)") from None
    for name in gpus:
        cc = k.gpu_compute_capability(name)
        if cc is None:
            raise ConfigError(
                f"unknown GPU {name!r}: envcheck's data knows no compute capability for it; "
                "pass --compute-capability X.Y instead"
            )
        pairs.append((name, cc))
    return Host(version, tuple(pairs))


def host_from_nvml() -> tuple[Host | None, str]:
    """This machine's driver and GPUs through NVML (the probe's own reader), or None and why there are none."""
    from envcheck.probe import probe_nvml

    nvml = probe_nvml()
    if not nvml["available"] or not nvml["driver"]:
        return None, f"no NVIDIA driver found on this host (NVML: {nvml['error']})"
    gpus = tuple(
        (f"GPU {g['index']} {g['name']}", Version.parse(g["compute_capability"]))
        for g in nvml["gpus"]
        if g.get("compute_capability")
    )
    return Host(Version.parse(nvml["driver"]), gpus), "" if gpus else "the driver reports no GPUs"


def predicted_records(
    stacks: list[Stack], verdicts: list[dict[str, Any]], host: Host, label: str | None
) -> list[dict[str, Any]]:
    """Verdicts as result records, marked predicted, so the table can show them beside measured cells."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    gpus = [name for name, _ in host.gpus]
    host_record = {
        "label": label or f"planned: driver {host.driver}" + (f", {', '.join(gpus)}" if gpus else ""),
        "driver": str(host.driver),
        "gpus": gpus,
        "predicted": True,
    }
    return [
        {
            "stack": stack.name,
            "definition": stack.as_dict(),
            "timestamp": now,
            "host": host_record,
            "status": verdict["verdict"],
            "predicted_only": True,
            "reason": verdict["reason"],
            "diagnoses": [
                {"code": code, "severity": "predicted", "summary": verdict["reason"], "fix": "", "evidence": []}
                for code in verdict["codes"]
            ],
            "benchmark": [],
        }
        for stack, verdict in zip(stacks, verdicts, strict=True)
    ]
