"""`envcheck plan`: will each stack use the GPU on a host with this driver and these GPUs? From knowledge alone.

A stack's verdict is the worst of knowledge.rules' checks: what lint predicts of the stack, how the driver runs
its CUDA runtime, and whether each GPU has native kernels or PTX the driver can JIT-compile (ok < warn < fails).
What an image or dockerfile stack's image holds is not in the matrix: once a probe has read it (a saved result in
results/, of the same stack definition; a dockerfile stack's also of the same content hash), the same checks run on
what that probe read (requirements.host_needs: the CUDA runtime it loads, the SASS and PTX in its binaries), and the
image's own faults the probe found (no framework, a CPU-only build, missing libraries) are carried over. Before
any probe it gets warn, probe-needed.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck.diagnosis.diagnose import diagnose_all
from envcheck.diagnosis.probe_facts import Facts
from envcheck.diagnosis.requirements import host_needs
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import Stack
from envcheck.knowledge import Knowledge, Version
from envcheck.knowledge.facts import Build
from envcheck.knowledge.rules import (
    Check,
    Level,
    cpu_only_check,
    driver_support,
    gpu_check,
    is_cpu_only,
    library_pins,
    runtime_cuda,
    stack_checks,
)
from envcheck.results.model import Diagnosis, Host, Result, Severity, Status

VERDICTS = {Level.OK: Status.OK, Level.WARN: Status.WARN, Level.FAILS: Status.FAILS}
# What a probe found wrong with an image itself, on any host: carried from a saved probe into the verdict.
IMAGE_CODES = (
    "framework-missing",
    "framework-import-failed",
    "tensorflow-missing",
    "cpu-only-build",
    "cuda-libs-missing",
    "cuda-libs-not-on-path",
    "cuda-mismatch",
    "cudnn-mismatch",
    "xla-toolchain-missing",
    "python-unsupported",
    "library-conflict",
)
# Then no driver or GPU matters.
NO_GPU_CODE = ("framework-missing", "framework-import-failed", "tensorflow-missing", "cpu-only-build")
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
    framework: str | None = None  # an image's, as its probe found it (a rendered stack's is the stack's)
    source: str | None = None  # the saved probe an image's verdict was read from, in words
    needs: dict[str, Any] | None = None  # what that probe says the image needs (HostNeeds.to_dict())
    probed: dict[str, Any] | None = None  # which record: digest, content hash, host, timestamp

    def add(self, check: Check) -> None:
        self.level = max(self.level, check.level)
        if check.code not in self.codes:
            self.codes.append(check.code)
        if check.message not in self.reasons:  # two frameworks of one environment on one driver say it alike
            self.reasons.append(check.message)

    @property
    def status(self) -> Status:
        return VERDICTS[self.level]

    @property
    def reason(self) -> str:
        said = "; ".join(self.reasons) or "built for this driver and GPU"
        return f"{said} ({self.source})" if self.source else said

    def as_dict(self) -> dict[str, Any]:
        data = {"stack": self.stack, "verdict": self.status.value, "codes": self.codes, "reason": self.reason}
        if self.probed is not None:  # an image read by a saved probe: what it needs, and which probe said so
            data.update(needs=self.needs, probed=self.probed)
        return data


def plan_stack(stack: Stack, host: PlannedHost, k: Knowledge, saved: Result | None = None) -> Verdict:
    """`saved`: for an image or dockerfile stack, the saved result whose probe read its image (saved_probes)."""
    verdict = Verdict(stack.name)
    if stack.kind != "rendered":
        if saved is None or saved.probe is None:
            verdict.add(probe_needed(stack))
            return verdict
        return plan_probed(stack, saved, host, k)
    if all(is_cpu_only(part) for part in stack.parts):
        for part in stack.parts:
            verdict.add(cpu_only_check(part))
        return verdict
    for check in stack_checks(stack, k):
        if check.level > Level.OK:
            verdict.add(check)
    for part in stack.parts:  # each framework of the environment on this driver and these GPUs
        if is_cpu_only(part):
            verdict.add(cpu_only_check(part))
            continue
        build = part.fw.build(k, part.version, part.variant, part.index)
        if build is None:
            continue
        cuda = shared_runtime(stack, part, build, k) or runtime_cuda(build, part.variant, k)
        support = driver_support(cuda, host.driver, k) if cuda else None
        driver = support.check() if support else None
        if driver:
            verdict.add(driver)
        for label, cc in host.gpus if build.code else ():
            found = gpu_check(build.code, build.label, label, cc, support, k, (build.framework, build.release))
            if found:
                verdict.add(found)
    return verdict


def shared_runtime(stack: Stack, part: Stack, build: Build, k: Knowledge) -> Version | None:
    """The CUDA runtime a framework whose CUDA wheels are ranges (jax[cudaNN]) gets beside another framework's exact
    pin of the same major in one environment: the resolver installs the one wheel that meets both, the pin (torch
    2.9.1's 12.8 next to jax[cuda12]'s >= 12.1, not the newest 12.x jax alone would get)."""
    if not build.cuda_range or build.cuda is None:
        return None
    for other in stack.parts:
        other_build = other.fw.build(k, other.version, other.variant, other.index) if other is not part else None
        pin = library_pins(other, other_build).get("cuda-runtime") if other_build else None
        if pin and pin[1] and pin[0].major == build.cuda.major:
            return pin[0].prefix(2)
    return None


def plan_probed(stack: Stack, saved: Result, host: PlannedHost, k: Knowledge) -> Verdict:
    """An image's verdict from what a saved probe read in it: the image's own faults, then how this driver runs the
    CUDA runtime it loads and whether each GPU has its SASS or PTX the driver can JIT-compile (the rules rendered
    stacks go through, on the probe's GpuCode instead of the knowledge data's)."""
    facts = Facts(probe=saved.probe or {})
    needs = host_needs(facts)
    verdict = Verdict(stack.name, framework=facts.framework if facts.version else None)
    image = saved.digest or saved.image or str(stack.image or stack.dockerfile)
    verdict.source = f"read from its probe of {image} on {saved.host.label}, {saved.date or 'undated'}"
    verdict.needs = needs.to_dict()
    verdict.probed = {
        "digest": saved.digest,
        "content_hash": saved.content_hash,
        "host": saved.host.label,
        "timestamp": saved.timestamp,
    }
    for found in diagnose_all(facts):
        if found.code in IMAGE_CODES:
            level = Level.FAILS if found.severity == Severity.ERROR else Level.WARN
            verdict.add(Check(found.code, level, found.summary.rstrip(".")))
    if any(code in NO_GPU_CODE for code in verdict.codes):
        return verdict
    if needs.cuda is None:
        verdict.reasons.append("its probe found no CUDA runtime version: driver and GPUs not checked")
        return verdict
    support = driver_support(needs.cuda, host.driver, k)
    driver = support.check() if support else None
    if driver:
        verdict.add(driver)
    elif support is None:
        verdict.reasons.append(f"envcheck's data has no minimum driver for CUDA {needs.cuda}: driver not checked")
    code = needs.code
    if host.gpus and (code is None or not (code.sass or code.ptx)):
        verdict.reasons.append("its probe read no GPU code from the framework's binaries: GPUs not checked")
        return verdict
    label = f"{facts.name} {facts.version}"
    for name, cc in host.gpus if code else ():
        found_gpu = gpu_check(code, label, name, cc, support, k, (facts.framework, str(facts.version)))
        if found_gpu:
            verdict.add(found_gpu)
    return verdict


def probe_needed(stack: Stack) -> Check:
    """The verdict's reason for a stack whose framework, wheels and CUDA only its image knows, before a probe read
    it."""
    what = f"the image {stack.image}" if stack.image else f"its own Dockerfile {stack.dockerfile}"
    return Check(
        "probe-needed",
        Level.WARN,
        f"{stack.name} names {what}: which framework, CUDA and GPU code it holds is known only by probing it, and "
        f"no saved probe of it is in results/: run `envcheck run {stack.name}` first (on any host), then plan "
        "answers from that probe",
    )


def saved_probes(results_dir: Path, stacks: list[Stack]) -> dict[str, Result]:
    """For each image or dockerfile stack, the newest saved result (of any host: what an image needs does not depend
    on where it ran) whose probe read that stack's image: a record of the same stack definition (its name aside), a
    dockerfile stack's also of its content hash now (the same files make the same image). An image stack named by
    tag is answered from the digest its newest probe read (the verdict names it); a new digest needs a new run."""
    from envcheck.render.dockerfile import user_content_hash
    from envcheck.results import store

    named = [s for s in stacks if s.kind != "rendered"]
    if not named:
        return {}
    records, _ = store.own_records(results_dir)  # unreadable lines are `table`'s and `import`'s to name
    wanted = {}
    for stack in named:
        definition = {k: v for k, v in stack.as_dict().items() if k != "name"}
        try:
            content = user_content_hash(stack) if stack.kind == "dockerfile" else None
        except ConfigError:
            continue  # a context that cannot be read now: no probe can be said to be of it
        wanted[stack.name] = (definition, content)
    found: dict[str, Result] = {}
    for record in records:
        if record.probe is None or not record.status.ran:
            continue
        definition = {k: v for k, v in record.definition.items() if k != "name"}
        for name, (want, content) in wanted.items():
            same = definition == want and (content is None or record.content_hash == content)
            if same and (name not in found or record.moment >= found[name].moment):
                found[name] = record
    return found


def plan(
    stacks: list[Stack], host: PlannedHost, k: Knowledge | None = None, probes: dict[str, Result] | None = None
) -> list[Verdict]:
    """A verdict per stack (`probes`: image and dockerfile stacks' saved probes, saved_probes()); a driver that is
    too old names the newest stack (of the same framework) that would work."""
    k = k or Knowledge.load()
    probes = probes or {}
    verdicts = [plan_stack(stack, host, k, probes.get(stack.name)) for stack in stacks]
    working: dict[str, list[tuple[Version, str]]] = {}
    for s, v in zip(stacks, verdicts, strict=True):
        if s.kind == "rendered" and "driver-too-old" not in v.codes and v.level != Level.FAILS:
            working.setdefault(s.framework, []).append((Version(s.version), s.name))
    for stack, v in zip(stacks, verdicts, strict=True):
        if "driver-too-old" in v.codes:
            fitting = working.get(v.framework or stack.framework)
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
            image=stack.image,
            predicted_only=True,
            reason=verdict.reason,
            diagnoses=[Diagnosis(code, Severity.PREDICTED, verdict.reason, "") for code in verdict.codes],
        )
        for stack, verdict in zip(stacks, verdicts, strict=True)
    ]
