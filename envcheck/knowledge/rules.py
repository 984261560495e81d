"""What the knowledge data implies: each rule once, called by `lint` (a stack before building), `plan` (a stack on
a described host) and `diagnose` (what a probe measured).

A rule returns Checks: a diagnosis code, how bad it is for using the GPU (Level) and a message; callers decide
how to show them (a located lint finding, a plan verdict, a diagnosis with a fix). Level.OK marks what is worth
saying but does not keep the GPU from being used (a matrix claim that disagrees with the build).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from envcheck.inputs.matrix import Stack
from envcheck.knowledge.facts import Build, GpuCode, Knowledge, TFBuild, Version

PIN_RE = re.compile(r"(?P<name>nvidia-(?P<lib>cudnn|cuda-runtime)-cu(?P<major>\d+))\s*==\s*(?P<version>\d+(\.\d+)*)")


class Level(IntEnum):
    OK = 0  # true and worth saying, but the GPU is still used
    WARN = 1  # the GPU is used, with a caveat (slow first start, compatibility mode)
    FAILS = 2  # the GPU will not be used


@dataclass(frozen=True)
class Check:
    code: str
    level: Level
    message: str
    key: str | None = None  # the matrix key it is about, so lint can point at it ("pip[1]" for one entry)


def base_has_cuda_libs(base: str) -> bool:
    """Whether a base image ships CUDA libraries (nvidia/cuda, NGC, *cuda* tags): a name heuristic."""
    return "cuda" in base.lower() or base.startswith(("nvcr.io/", "nvidia/"))


# -- a stack, from knowledge alone (lint and plan) ---------------------------------------------------------------


def is_cpu_only(stack: Stack) -> bool:
    """A stack whose package is built without CUDA: tensorflow-cpu, jax[cpu], torch from the cpu index."""
    return stack.variant in stack.fw.cpu_variants or stack.index == "cpu"


def cpu_only_check(stack: Stack) -> Check:
    message = f"{stack.fw.cpu_package} is built without CUDA and never uses a GPU"
    return Check("cpu-only-build", Level.FAILS, message)


def python_support(version: str, python: str, variant: str | None, build: Build) -> list[Check]:
    """Whether pip has a wheel of this release (and, for TensorFlow, of its [and-cuda] pins) for this Python."""
    if not build.supports_python(python):
        return [
            Check(
                "python-unsupported",
                Level.FAILS,
                f"{build.name} {version} supports Python {build.python_range()}, not {python}: pip will find no wheel",
                "python",
            )
        ]
    pins = build.and_cuda if isinstance(build, TFBuild) else None
    if variant == "and-cuda" and pins and pins.python and Version(python).prefix(2) not in pins.python:
        return [
            Check(
                "python-unsupported",
                Level.FAILS,
                f"TensorFlow {version}[and-cuda] cannot install on Python {python}: {pins.python_note}",
                "python",
            )
        ]
    return []


def _claim_fits(claimed: str, built: Version, at_least: bool) -> bool:
    """A claim fits at the precision the user wrote ("12" fits 12.2, "12.3" does not); for libraries installed
    as ranges, any newer version of the same major fits."""
    claim = Version(claimed)
    if at_least:
        return claim.major == built.major and claim >= built.prefix(len(claim.release))
    return claim == built.prefix(len(claim.release))


def claims(stack: Stack, build: Build) -> list[Check]:
    """The matrix's cuda/cudnn claims against the build: wrong labels, harmless at run time."""
    found = []
    what = f"{stack.fw.display_name} {stack.version} is " + (
        "installed with at least" if build.cuda_range else "built with"
    )
    if stack.cuda and build.cuda and not _claim_fits(stack.cuda, build.cuda, build.cuda_range):
        found.append(Check("cuda-mismatch", Level.OK, f"cuda: {stack.cuda} but {what} CUDA {build.cuda}", "cuda"))
    if stack.cudnn and build.cudnn and not _claim_fits(stack.cudnn, build.cudnn, build.cuda_range):
        found.append(Check("cudnn-mismatch", Level.OK, f"cudnn: {stack.cudnn} but {what} cuDNN {build.cudnn}", "cudnn"))
    return found


def pinned_libraries(stack: Stack, tf: TFBuild, k: Knowledge) -> list[Check]:
    """pip entries that pin a cuDNN or CUDA runtime wheel this TF build cannot use."""
    found = []
    for index, requirement in enumerate(stack.pip):
        pin = PIN_RE.fullmatch(requirement.strip())
        if not pin:
            continue
        version, major, key = Version(pin["version"]), int(pin["major"]), f"pip[{index}]"
        if pin["lib"] == "cudnn" and not k.cudnn_supports_cuda(version.major, major):
            message = f"pip pins {pin['name']}=={version}, but cuDNN {version.major} is not made for CUDA {major}"
            found.append(Check("cudnn-mismatch", Level.FAILS, message, key))
        elif major != tf.cuda.major:
            message = (
                f"pip pins {pin['name']} (CUDA {major}) but TensorFlow {stack.version} is built with CUDA {tf.cuda}"
            )
            found.append(Check("cuda-mismatch", Level.FAILS, message, key))
        elif pin["lib"] == "cudnn" and not stack.fw.cudnn_fits(version, tf.cudnn, known_release=True):
            message = (
                f"pip pins cuDNN {version} but TensorFlow {stack.version} needs cuDNN {tf.cudnn.major}.x at least "
                f"{tf.cudnn} (same major, equal or higher minor)"
            )
            found.append(Check("cudnn-mismatch", Level.FAILS, message, key))
        elif pin["lib"] == "cuda-runtime" and version.prefix(2) < tf.cuda:
            message = (
                f"pip pins CUDA runtime {version}, older than the CUDA {tf.cuda} TensorFlow {stack.version} "
                "is built with"
            )
            found.append(Check("cuda-mismatch", Level.FAILS, message, key))
    return found


def cuda_libraries(stack: Stack, build: Build) -> list[Check]:
    """Variants that install the framework without CUDA libraries onto a base that has none."""
    if stack.variant in stack.fw.variants_without_cuda_libraries and not base_has_cuda_libs(stack.base):
        return [
            Check(
                "cuda-libs-missing",
                Level.FAILS,
                f"variant {stack.variant} installs {stack.fw.display_name} without CUDA libraries and "
                f"base {stack.base} has none: use variant {stack.fw.gpu_variant()} or a CUDA base image",
                "variant",
            )
        ]
    if stack.variant == "and-cuda" and isinstance(build, TFBuild) and build.and_cuda is None:
        return [
            Check(
                "cuda-libs-missing",
                Level.FAILS,
                f"TensorFlow {stack.version} has no [and-cuda] extra (it exists from 2.14): pip installs "
                "TensorFlow without CUDA libraries",
                "variant",
            )
        ]
    return []


def availability(stack: Stack, build: Build) -> list[Check]:
    """A variant pip cannot install for this release (no such extra, index or wheel on PyPI)."""
    if not build.unavailable:
        return []
    return [Check("variant-unavailable", Level.FAILS, build.unavailable, "index" if stack.index else "variant")]


def known_issues(stack: Stack, build: Build) -> list[Check]:
    note = build.notes.get(stack.version)
    label = f"{stack.fw.display_name} {stack.version}"
    return [Check("known-issue", Level.WARN, f"{label}: {note}", stack.framework)] if note else []


def stack_checks(stack: Stack, k: Knowledge) -> list[Check]:
    """Everything the knowledge predicts about one stack, before building it: for a stack of several frameworks,
    each framework's own checks, then the libraries they pin differently (library_conflicts)."""
    if stack.several:
        return [*(check for part in stack.parts for check in stack_checks(part, k)), *library_conflicts(stack, k)]
    build = stack.fw.build(k, stack.version, stack.variant, stack.index)
    if build is None:
        oldest, newest = stack.fw.known(k)
        return [
            Check(
                f"unknown-{stack.framework}",
                Level.WARN,
                f"{stack.fw.display_name} {stack.version} is not in envcheck's data (it knows "
                f"{oldest}–{newest}); it will be verified by running",
                stack.framework,
            )
        ]
    return [
        *availability(stack, build),
        *python_support(stack.version, stack.python, stack.variant, build),
        *claims(stack, build),
        *(pinned_libraries(stack, build, k) if isinstance(build, TFBuild) else []),
        *cuda_libraries(stack, build),
        *known_issues(stack, build),
    ]


PINNED = {"cuda-runtime": "CUDA runtime", "cudnn": "cuDNN"}  # the NVIDIA wheels frameworks' installs pin, by PIN_RE


def library_pins(part: Stack, build: Build) -> dict[str, tuple[Version, bool]]:
    """The CUDA runtime and cuDNN a framework's install brings into an environment, each with whether it is an exact
    pin (==) rather than a range pip may fit to another framework's: TensorFlow [and-cuda]'s pinned wheels, else the
    data's CUDA and cuDNN of the release (exact unless its CUDA libraries come as ranges, as jax[cudaNN]'s do)."""
    if isinstance(build, TFBuild) and part.variant == "and-cuda" and build.and_cuda:
        pins = (PIN_RE.fullmatch(requirement) for requirement in build.and_cuda.packages)
        return {pin["lib"]: (Version(pin["version"]), True) for pin in pins if pin}
    if build.cuda is None or part.variant in part.fw.variants_without_cuda_libraries:
        return {}
    found = {"cuda-runtime": (build.cuda, not build.cuda_range)}
    if build.cudnn is not None:
        found["cudnn"] = (build.cudnn, not build.cuda_range)
    return found


def _clash(one: tuple[Version, bool], other: tuple[Version, bool]) -> bool:
    """Two pins of one wheel that no single version meets: majors apart, or two exact pins apart (compared as far
    as both are written: CUDA 12.8 from the data against TensorFlow's 12.2.140 wheel)."""
    (a, a_exact), (b, b_exact) = one, other
    width = min(len(a.release), len(b.release))
    return a.major != b.major or (a_exact and b_exact and a.release[:width] != b.release[:width])


def library_conflicts(stack: Stack, k: Knowledge) -> list[Check]:
    """Libraries two frameworks of one environment pin differently. One environment holds one nvidia-* wheel of each
    name: pins no version meets cannot both be installed (pip and uv refuse the set at once; installed one after the
    other, the second replaces the first's libraries and the first framework loads what it was not built with)."""
    pinned = []
    for part in stack.parts:
        build = None if is_cpu_only(part) else part.fw.build(k, part.version, part.variant, part.index)
        if build:
            pinned.append((part, library_pins(part, build)))
    checks = []
    for i, (first, first_pins) in enumerate(pinned):
        for second, second_pins in pinned[i + 1 :]:
            libs = [lib for lib in PINNED if lib in first_pins and lib in second_pins]
            apart = [lib for lib in libs if _clash(first_pins[lib], second_pins[lib])]
            if not apart:
                continue
            said = []
            for part, pins in ((first, first_pins), (second, second_pins)):
                what = " and ".join(f"{PINNED[lib]} {pins[lib][0]}{'' if pins[lib][1] else '+'}" for lib in apart)
                said.append(f"{part.fw.display_name} {part.version} [{part.variant}] pins {what}")
            checks.append(
                Check(
                    "library-conflict",
                    Level.FAILS,
                    f"{said[0]}; {said[1]}: one environment holds one wheel of each, so the install refuses the pair "
                    f"(the resolver sees both pins) or, installed one after the other, {second.fw.display_name}'s "
                    f"replace {first.fw.display_name}'s; use two environments (or images), or releases that pin alike",
                    second.framework,
                )
            )
    return checks


# -- a driver and GPUs (plan and diagnose) ------------------------------------------------------------------------


def runtime_cuda(build: Build, variant: str, k: Knowledge) -> Version | None:
    """The CUDA runtime a stack runs (major.minor; None when it brings none). TensorFlow's [and-cuda] brings its
    pin, or for ranges (2.20 on) the newest CUDA of that major the data knows, since pip takes the newest the range
    allows; so do jax[cudaNN]'s ranges. Otherwise the CUDA the build was made with."""
    if build.cuda is None:
        return None
    if isinstance(build, TFBuild):
        pins = build.and_cuda
        if variant != "and-cuda" or pins is None:
            return build.cuda
        if pins.ranges:
            return k.newest_cuda(pins.cuda_major) or pins.cuda_runtime.prefix(2)
        return pins.cuda_runtime.prefix(2)
    if build.cuda_range:
        return k.newest_cuda(build.cuda.major) or build.cuda.prefix(2)
    return build.cuda.prefix(2)


@dataclass(frozen=True)
class DriverSupport:
    """How a driver runs a CUDA runtime: natively, through minor-version compatibility, or not at all."""

    cuda: Version
    driver: Version
    minimum: Version
    floor: Version | None  # minor-version compatibility floor of the CUDA major
    newest: Version | None  # the newest CUDA this driver supports

    @property
    def level(self) -> Level:
        if self.driver >= self.minimum:
            return Level.OK
        return Level.WARN if self.minor_compat else Level.FAILS

    @property
    def minor_compat(self) -> bool:
        return self.driver < self.minimum and self.floor is not None and self.driver >= self.floor

    def check(self) -> Check | None:
        if self.level == Level.OK:
            return None
        if self.minor_compat:
            return Check(
                "minor-version-compat",
                Level.WARN,
                f"driver {self.driver} is older than CUDA {self.cuda}'s {self.minimum}: it runs through CUDA "
                f"{self.cuda.major}.x minor-version compatibility, without PTX JIT of newer code",
            )
        supports = f", which supports CUDA up to {self.newest}" if self.newest else ", older than any CUDA 11 needs"
        return Check(
            "driver-too-old",
            Level.FAILS,
            f"CUDA {self.cuda} needs driver >= {self.minimum} (>= {self.floor} with minor-version compatibility); "
            f"this host has {self.driver}{supports}",
        )

    def evidence(self) -> str:
        floor = f" (minor-version compatibility floor {self.floor})" if self.floor else ""
        return f"driver {self.driver} < {self.minimum}, the minimum for CUDA {self.cuda}{floor}"


def driver_support(cuda: Version, driver: Version, k: Knowledge) -> DriverSupport | None:
    """None when the data knows no minimum driver for this CUDA."""
    minimum = k.min_driver(cuda)
    if minimum is None:
        return None
    return DriverSupport(
        cuda.prefix(2), driver, minimum, k.minor_compat_floor(cuda.major), k.newest_cuda_for_driver(driver)
    )


def gpu_check(
    code: GpuCode,
    build: str,
    label: str,
    cc: Version,
    support: DriverSupport | None,
    k: Knowledge,
    release: tuple[str, str] = ("", ""),
) -> Check | None:
    """Can this build run kernels on this GPU with this driver? Native SASS: yes. PTX only: it is JIT-compiled,
    which works when the driver's JIT accepts the PTX's ISA and users have not found that PTX failing on this GPU;
    older than every build target: the GPU is ignored; newer than every target: gpu-too-new. `release` is the
    (framework, version) the code is of."""
    kernels = code.kernels_for(cc)
    if kernels == "native":
        return None
    if kernels == "none":
        if cc < code.oldest:
            why = f"is older than {build}'s oldest supported {code.oldest}: the GPU is ignored"
        elif cc > max([*code.sass, *code.ptx]):
            why = (
                f'is newer than every target of {build} ({code.describe()}): "no kernel image is available for '
                'execution on the device"; use a release built for this GPU generation'
            )
            return Check("gpu-too-new", Level.FAILS, f"{label} (compute capability {cc}) {why}")
        else:
            why = (
                f'has no kernels in {build} ({code.describe()}): "no kernel image is available for execution on '
                'the device"; use a release built for this GPU generation'
            )
        return Check("compute-capability-unsupported", Level.FAILS, f"{label} (compute capability {cc}) {why}")
    target = code.jit_ptx(cc)
    assert target is not None
    if not k.ptx_runs_on(*release, cc):
        return Check(
            "gpu-too-new",
            Level.FAILS,
            f"{label} (compute capability {cc}) has no native kernels in {build}, and users found its PTX does not "
            "JIT-compile for this GPU (CUDA_ERROR_INVALID_PTX): use a release built for this GPU generation",
        )
    isa = code.ptx.get(target)
    accepted = k.driver_ptx_isa(support.driver) if support else None
    if isa is not None and accepted is not None:
        if isa > accepted:
            return Check(
                "driver-too-old",
                Level.FAILS,
                f"{label} (compute capability {cc}) needs {build}'s compute_{target.major}{target.minor} "
                f"PTX JIT-compiled, but that PTX is ISA {isa} and driver {support.driver} (CUDA "
                f"{support.newest}) compiles PTX up to ISA {accepted}: update the driver",
            )
    elif support is not None and support.minor_compat:
        return Check(
            "driver-too-old",
            Level.FAILS,
            f"{label} needs PTX JIT, which minor-version compatibility does not allow for PTX of unknown ISA: "
            f"update the driver to >= {support.minimum}",
        )
    isa_note = f" (PTX ISA {isa}, which driver {support.driver} compiles)" if isa and support else ""
    return Check(
        "ptx-jit",
        Level.WARN,
        f"{label} (compute capability {cc}) has no native kernels in {build}: they are JIT-compiled "
        f"from PTX{isa_note} (slow first start)",
    )


def uses_tf32(cc: Version | None, tf32_enabled: bool | None, k: Knowledge) -> bool:
    """Whether a float32 matmul runs as TF32 on tensor cores (Ampere and newer): on unless the framework says it
    is off. The probe reads each framework's switch: on by default in TF (since 2.4) and in JAX's default matmul
    precision, off in PyTorch (torch.backends.cuda.matmul.allow_tf32, since 1.12)."""
    return cc is not None and cc >= k.tf32_from and tf32_enabled is not False
