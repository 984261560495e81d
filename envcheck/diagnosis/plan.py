"""`envcheck plan`: will each stack use the GPU on a host with this driver and these GPUs? From knowledge alone.

A stack's verdict is the worst of knowledge.rules' checks: what lint predicts of the stack, how the driver runs
its CUDA runtime, and whether each GPU has native kernels or PTX the driver can JIT-compile (ok < warn < fails).
An image or dockerfile stack gets warn, probe-needed: what its image holds is not in the matrix, so knowledge alone
cannot say.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any

from envcheck.errors import ConfigError
from envcheck.inputs.matrix import Stack
from envcheck.knowledge import Knowledge, Version
from envcheck.knowledge.rules import (
    Check,
    Level,
    cpu_only_check,
    driver_support,
    gpu_check,
    is_cpu_only,
    runtime_cuda,
    stack_checks,
)
from envcheck.results.model import Diagnosis, Host, Result, Severity, Status

VERDICTS = {Level.OK: Status.OK, Level.WARN: Status.WARN, Level.FAILS: Status.FAILS}
FULL_VERSION = re.compile(r"[0-9]+(\.[0-9]+){0,3}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # in a GPU name: found by a search, so "A100\n" would pass and be saved


@dataclass(frozen=True)
class PlannedHost:
    """The GPU host to plan for: its driver and the compute capability of each GPU (may be unknown)."""

    driver: Version
    gpus: tuple[tuple[str, Version], ...] = ()  # (label, compute capability)


@dataclass
class Verdict:
    stack: str
    level: Level = Level.OK
    codes: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def add(self, check: Check) -> None:
        self.level = max(self.level, check.level)
        if check.code not in self.codes:
            self.codes.append(check.code)
        self.reasons.append(check.message)

    @property
    def status(self) -> Status:
        return VERDICTS[self.level]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) or "built for this driver and GPU"

    def as_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "verdict": self.status.value, "codes": self.codes, "reason": self.reason}


def plan_stack(stack: Stack, host: PlannedHost, k: Knowledge) -> Verdict:
    verdict = Verdict(stack.name)
    if stack.kind != "rendered":
        verdict.add(probe_needed(stack))
        return verdict
    if is_cpu_only(stack):
        verdict.add(cpu_only_check(stack))
        return verdict
    for check in stack_checks(stack, k):
        if check.level > Level.OK:
            verdict.add(check)
    build = stack.fw.build(k, stack.version, stack.variant, stack.index)
    if build is None:
        return verdict
    cuda = runtime_cuda(build, stack.variant, k)
    support = driver_support(cuda, host.driver, k) if cuda else None
    driver = support.check() if support else None
    if driver:
        verdict.add(driver)
    for label, cc in host.gpus if build.code else ():
        found = gpu_check(build.code, build.label, label, cc, support, k, (build.framework, build.release))
        if found:
            verdict.add(found)
    return verdict


def probe_needed(stack: Stack) -> Check:
    """The verdict's reason for a stack whose framework, wheels and CUDA only its image knows."""
    what = f"the image {stack.image}" if stack.image else f"its own Dockerfile {stack.dockerfile}"
    return Check(
        "probe-needed",
        Level.WARN,
        f"{stack.name} names {what}: which framework, CUDA and GPU code it holds is known only by probing it "
        f"(`envcheck run {stack.name}` on this host)",
    )


def plan(stacks: list[Stack], host: PlannedHost, k: Knowledge | None = None) -> list[Verdict]:
    """A verdict per stack; a driver that is too old names the newest stack (of the same framework) that would work."""
    k = k or Knowledge.load()
    verdicts = [plan_stack(stack, host, k) for stack in stacks]
    working: dict[str, list[tuple[Version, str]]] = {}
    for s, v in zip(stacks, verdicts, strict=True):
        if s.kind == "rendered" and "driver-too-old" not in v.codes and v.level != Level.FAILS:
            working.setdefault(s.framework, []).append((Version(s.version), s.name))
    for stack, v in zip(stacks, verdicts, strict=True):
        if "driver-too-old" in v.codes:
            fitting = working.get(stack.framework)
            v.reasons.append(
                f"newest stack that would work on this driver: {max(fitting)[1]}"
                if fitting
                else "no stack in this matrix works on this driver"
            )
    return verdicts


def host_from_args(driver: str | None, ccs: list[str], gpus: list[str], k: Knowledge) -> PlannedHost | None:
    """The host described on the command line, or None when nothing was given (then NVML is asked)."""
    if driver is None and not ccs and not gpus:
        return None
    if driver is None:
        raise ConfigError("--compute-capability/--gpu need --driver too (for example --driver 535.54.03)")
    bad = [v for v in [driver, *ccs] if not FULL_VERSION.fullmatch(v)]
    if bad:
        raise ConfigError(
            f"not a version: {', '.join(map(repr, bad))} (expected --driver like 535.54.03 and --compute-capability "
            "like 8.0)"
        )
    pairs = [(f"compute capability {cc}", Version(cc)) for cc in ccs]
    version = Version(driver)
    for name in gpus:
        if CONTROL.search(name):
            raise ConfigError(f"--gpu {name!r} is not a GPU name: it holds control characters")
        cc = k.gpu_compute_capability(name)
        if cc is None:
            raise ConfigError(
                f"unknown GPU {name!r}: envcheck's data knows no compute capability for it; "
                "pass --compute-capability X.Y instead"
            )
        pairs.append((name, cc))
    return PlannedHost(version, tuple(pairs))


def host_from_nvml() -> tuple[PlannedHost | None, str]:
    """This machine's driver and GPUs through NVML (the probe's own reader), or None and why there are none."""
    from envcheck.readers.nvml import probe_nvml

    nvml = probe_nvml()
    if not nvml["available"] or not nvml["driver"]:
        return None, f"no NVIDIA driver found on this host (NVML: {nvml['error']})"
    gpus = tuple(
        (f"GPU {g['index']} {g['name']}", Version(g["compute_capability"]))
        for g in nvml["gpus"]
        if g.get("compute_capability")
    )
    return PlannedHost(Version(nvml["driver"]), gpus), "" if gpus else "the driver reports no GPUs"


def predicted_results(
    stacks: list[Stack], verdicts: list[Verdict], host: PlannedHost, label: str | None
) -> list[Result]:
    """Verdicts as results marked predicted, so the table can show them beside measured cells."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    gpus = [name for name, _ in host.gpus]
    planned = Host(
        label=label or f"planned: driver {host.driver}" + (f", {', '.join(gpus)}" if gpus else ""),
        driver=str(host.driver),
        gpus=gpus,
        predicted=True,
    )
    return [
        Result(
            stack=stack.name,
            status=verdict.status,
            timestamp=now,
            host=planned,
            definition=stack.as_dict(),
            predicted_only=True,
            reason=verdict.reason,
            diagnoses=[Diagnosis(code, Severity.PREDICTED, verdict.reason, "") for code in verdict.codes],
        )
        for stack, verdict in zip(stacks, verdicts, strict=True)
    ]
