"""What an image needs from a host: its minimum NVIDIA driver and the GPUs it runs on, read from what the probe saw.

NVIDIA's toolkit answers neither "which driver does this image need?" nor "which GPUs does it run on?": the answer is
in the image, in three places the probe reads — the CUDA runtime the framework's loader really finds (else the CUDA
the framework was built with, else a CUDA base image's CUDA_VERSION), and the SASS and PTX compiled into the
framework's binaries. With the knowledge data's tables (minimum driver per CUDA release, each major's minor-version
compatibility floor, the PTX ISA each CUDA release writes) that gives: the driver that runs the runtime natively,
the older one that runs it through minor-version compatibility (without PTX JIT of newer code), the driver whose JIT
compiles the binaries' newest PTX, and for each GPU generation whether kernels are native, JIT-compiled from PTX, or
missing. Any image: envcheck's own, a Dockerfile's, or one named with `image:` / `envcheck probe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envcheck.diagnosis.probe_facts import Facts
from envcheck.knowledge import GpuCode, Knowledge, Version


@dataclass(frozen=True)
class HostNeeds:
    """An image's needs from a host's driver and GPUs (None where the probe could not tell)."""

    cuda: Version | None  # the CUDA runtime the image runs
    cuda_from: str | None  # where that was read: the loaded libcudart, the framework's build, the base image's env
    driver: Version | None  # the minimum driver that runs that runtime natively
    driver_minor_compat: Version | None  # the older one that runs it through minor-version compatibility
    ptx_isa: Version | None  # the newest PTX ISA in the binaries
    driver_for_ptx: Version | None  # the oldest driver whose JIT compiles that PTX
    code: GpuCode | None  # the SASS and PTX in the binaries
    require_cuda: str | None  # NVIDIA_REQUIRE_CUDA as the image sets it (the container toolkit checks it)

    def gpus(self) -> dict[str, list[str]]:
        """Compute capabilities by how kernels reach them: native (SASS for X.Y runs on X.Y up to X.x), by PTX JIT
        (the newest PTX target not newer than the GPU, where no SASS fits), none (older than every target, a major
        in between with neither, newer than every target without PTX)."""
        found: dict[str, list[str]] = {"native": [], "ptx_jit": [], "none": []}
        if self.code is None or not (self.code.sass or self.code.ptx):
            return found
        lowest: dict[int, Version] = {}
        for sm in self.code.sass:
            lowest[sm.major] = min(lowest.get(sm.major, sm), sm)
        ptx_from = min(self.code.ptx) if self.code.ptx else None
        oldest = self.code.oldest
        found["none"].append(f"< {oldest.major}.{oldest.minor}")
        majors = sorted({*lowest, *(p.major for p in self.code.ptx)})
        previous = None
        for major in majors:
            if previous is not None and major > previous + 1:
                # Majors with no code of their own, named as one span (a probe of an odd image may list any
                # number): the PTX targets are among `majors`, so PTX reaches all of a span or none of it.
                first, last = previous + 1, major - 1
                span = f"{first}.x" if first == last else f"{first}.x–{last}.x"
                by_ptx = ptx_from is not None and ptx_from <= Version(f"{first}.0")
                found["ptx_jit" if by_ptx else "none"].append(span)
            previous = major
            if major in lowest:
                found["native"].append(f"{lowest[major].major}.{lowest[major].minor}–{major}.x")
                continue
            by_ptx = ptx_from is not None and ptx_from <= Version(f"{major}.0")
            if major != oldest.major or by_ptx:
                found["ptx_jit" if by_ptx else "none"].append(f"{major}.x")
        found["ptx_jit" if ptx_from is not None else "none"].append(f">= {majors[-1] + 1}.0")
        return found

    def said(self) -> str:
        """One paragraph for people, read after "needs: " (as `run` and `probe` print it)."""
        parts = []
        if self.cuda is not None and self.driver is not None:
            compat = (
                f", or >= {self.driver_minor_compat} through CUDA {self.cuda.major} minor-version compatibility "
                "(then without PTX JIT of newer code)"
                if self.driver_minor_compat and self.driver_minor_compat < self.driver
                else ""
            )
            parts.append(f"driver >= {self.driver} for CUDA {self.cuda} ({self.cuda_from}){compat}")
        elif self.cuda is not None:
            parts.append(f"a driver for CUDA {self.cuda} ({self.cuda_from}), whose minimum envcheck's data lacks")
        else:
            parts.append("no GPU driver: envcheck found no CUDA runtime in it, so nothing here runs on a GPU")
        if self.ptx_isa is not None and self.driver_for_ptx is not None:
            parts.append(f"PTX ISA {self.ptx_isa} JIT-compiles with driver >= {self.driver_for_ptx}")
        gpus = self.gpus()
        if gpus["native"] or gpus["ptx_jit"]:
            reach = [f"natively on compute capability {', '.join(gpus['native'])}"] if gpus["native"] else []
            reach += [f"by PTX JIT on {', '.join(gpus['ptx_jit'])}"] if gpus["ptx_jit"] else []
            parts.append("runs " + " and ".join(reach) + f"; not at all on {', '.join(gpus['none'])}")
        return "; ".join(parts) + "."

    def to_dict(self) -> dict[str, Any]:
        text = lambda v: str(v) if v is not None else None  # noqa: E731
        return {
            "cuda": text(self.cuda),
            "cuda_from": self.cuda_from,
            "min_driver": text(self.driver),
            "min_driver_minor_compat": text(self.driver_minor_compat),
            "ptx_isa": text(self.ptx_isa),
            "min_driver_for_ptx": text(self.driver_for_ptx),
            "gpus": self.gpus(),
            "require_cuda": self.require_cuda,
            "said": self.said(),
        }


def runtime_of(facts: Facts) -> tuple[Version | None, str | None]:
    """The CUDA runtime an image runs, and where that was read."""
    loaded = Version.lenient(facts.runtime_versions.get("cudart"))
    if loaded is not None:
        return loaded.prefix(2), "libcudart the loader finds"
    built = Version.lenient(facts.probe.get("build_cuda"))
    if built is not None and facts.cuda_build:
        return built.prefix(2), f"{facts.name} was built with it"
    env = facts.probe.get("env") if isinstance(facts.probe.get("env"), dict) else {}
    declared = Version.lenient(env.get("CUDA_VERSION"))
    if declared is not None:
        return declared.prefix(2), "the base image's CUDA_VERSION"
    return None, None


def driver_for_isa(isa: Version, k: Knowledge) -> Version | None:
    """The oldest driver whose JIT compiles PTX of this ISA: the minimum driver of the first CUDA that writes it."""
    cudas = [c for c in k.cuda_releases() if (k.ptx_isa(c) or Version("0")) >= isa]
    return k.min_driver(cudas[0]) if cudas else None


def host_needs(facts: Facts) -> HostNeeds:
    """What the image the probe ran in needs from a host, from the probe's facts and the knowledge data."""
    k = facts.knowledge
    cuda, source = runtime_of(facts)
    # A CPU-only build has no GPU code, whatever the knowledge data lists for the release's CUDA wheel.
    code = facts.code if facts.probe.get("is_cuda_build") is not False else None
    isas = [isa for isa in (code.ptx.values() if code else ()) if isa is not None]
    isa = max(isas) if isas else None
    env = facts.probe.get("env") if isinstance(facts.probe.get("env"), dict) else {}
    require = env.get("NVIDIA_REQUIRE_CUDA")
    return HostNeeds(
        cuda=cuda,
        cuda_from=source,
        driver=k.min_driver(cuda) if cuda else None,
        driver_minor_compat=k.minor_compat_floor(cuda.major) if cuda else None,
        ptx_isa=isa,
        driver_for_ptx=driver_for_isa(isa, k) if isa else None,
        code=code,
        require_cuda=require if isinstance(require, str) else None,
    )


def needs_of(probe: dict[str, Any] | None) -> HostNeeds | None:
    """What an image needs, from a result's stored probe document (None where no probe ran): computed each time it
    is shown rather than stored, so records of before this existed get it too and a correction of the knowledge
    data reaches every record."""
    return host_needs(Facts(probe=probe)) if isinstance(probe, dict) else None
