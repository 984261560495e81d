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

from envcheck.knowledge.facts import GpuCode, Knowledge, TFBuild, Version
from envcheck.matrix import Stack

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


def python_support(tensorflow: str, python: str, variant: str | None, tf: TFBuild) -> list[Check]:
    """Whether pip has a wheel of this TensorFlow (and of its [and-cuda] pins) for this Python."""
    if not tf.supports_python(python):
        return [
            Check(
                "python-unsupported",
                Level.FAILS,
                f"TensorFlow {tensorflow} supports Python {tf.python_range()}, not {python}: pip will find no wheel",
                "python",
            )
        ]
    pins = tf.and_cuda
    if variant == "and-cuda" and pins and pins.python and Version(python).prefix(2) not in pins.python:
        return [
            Check(
                "python-unsupported",
                Level.FAILS,
                f"TensorFlow {tensorflow}[and-cuda] cannot install on Python {python}: {pins.python_note}",
                "python",
            )
        ]
    return []


def _disagrees(claimed: str, built: Version) -> bool:
    """Compare at the precision the user wrote: "12" matches 12.2, "12.3" does not."""
    claim = Version(claimed)
    return claim != built.prefix(len(claim.release))


def claims(stack: Stack, tf: TFBuild) -> list[Check]:
    """The matrix's cuda/cudnn claims against the build: wrong labels, harmless at run time."""
    found = []
    if stack.cuda and _disagrees(stack.cuda, tf.cuda):
        found.append(
            Check(
                "cuda-mismatch",
                Level.OK,
                f"cuda: {stack.cuda} but TensorFlow {stack.tensorflow} is built with CUDA {tf.cuda}",
                "cuda",
            )
        )
    if stack.cudnn and _disagrees(stack.cudnn, tf.cudnn):
        found.append(
            Check(
                "cudnn-mismatch",
                Level.OK,
                f"cudnn: {stack.cudnn} but TensorFlow {stack.tensorflow} is built with cuDNN {tf.cudnn}",
                "cudnn",
            )
        )
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
                f"pip pins {pin['name']} (CUDA {major}) but TensorFlow {stack.tensorflow} is built with CUDA {tf.cuda}"
            )
            found.append(Check("cuda-mismatch", Level.FAILS, message, key))
        elif pin["lib"] == "cudnn" and not cudnn_usable(version, tf.cudnn):
            message = (
                f"pip pins cuDNN {version} but TensorFlow {stack.tensorflow} needs cuDNN {tf.cudnn.major}.x at least "
                f"{tf.cudnn} (same major, equal or higher minor)"
            )
            found.append(Check("cudnn-mismatch", Level.FAILS, message, key))
        elif pin["lib"] == "cuda-runtime" and version.prefix(2) < tf.cuda:
            message = (
                f"pip pins CUDA runtime {version}, older than the CUDA {tf.cuda} TensorFlow {stack.tensorflow} "
                "is built with"
            )
            found.append(Check("cuda-mismatch", Level.FAILS, message, key))
    return found


def cudnn_usable(loaded: Version, built: Version) -> bool:
    """TF's own rule: the loaded cuDNN has the build's major and an equal or higher minor."""
    return loaded.major == built.major and loaded.prefix(2) >= built.prefix(2)


def cuda_libraries(stack: Stack, tf: TFBuild) -> list[Check]:
    if stack.variant == "plain" and not base_has_cuda_libs(stack.base):
        return [
            Check(
                "cuda-libs-missing",
                Level.FAILS,
                f"variant plain installs TensorFlow without CUDA libraries and base {stack.base} has none: "
                "use variant and-cuda or a CUDA base image",
                "variant",
            )
        ]
    if stack.variant == "and-cuda" and tf.and_cuda is None:
        return [
            Check(
                "cuda-libs-missing",
                Level.FAILS,
                f"TensorFlow {stack.tensorflow} has no [and-cuda] extra (it exists from 2.14): pip installs "
                "TensorFlow without CUDA libraries",
                "variant",
            )
        ]
    return []


def known_issues(stack: Stack, tf: TFBuild) -> list[Check]:
    note = tf.notes.get(stack.tensorflow)
    return [Check("known-issue", Level.WARN, f"TensorFlow {stack.tensorflow}: {note}", "tensorflow")] if note else []


def stack_checks(stack: Stack, k: Knowledge) -> list[Check]:
    """Everything the knowledge predicts about one stack, before building it."""
    tf = k.tf_build(stack.tensorflow)
    if tf is None:
        releases = k.releases()
        return [
            Check(
                "unknown-tensorflow",
                Level.WARN,
                f"TensorFlow {stack.tensorflow} is not in envcheck's data (it knows {releases[0]}–{releases[-1]}); "
                "it will be verified by running",
                "tensorflow",
            )
        ]
    return [
        *python_support(stack.tensorflow, stack.python, stack.variant, tf),
        *claims(stack, tf),
        *pinned_libraries(stack, tf, k),
        *cuda_libraries(stack, tf),
        *known_issues(stack, tf),
    ]


# -- a driver and GPUs (plan and diagnose) ------------------------------------------------------------------------


def runtime_cuda(tf: TFBuild, variant: str, k: Knowledge) -> Version:
    """The CUDA runtime a stack runs (major.minor). [and-cuda] brings its pin, or for ranges (2.20 on) the newest
    CUDA of that major the data knows, since pip takes the newest the range allows; otherwise TF's own build."""
    pins = tf.and_cuda
    if variant != "and-cuda" or pins is None:
        return tf.cuda
    if pins.ranges:
        return k.newest_cuda(pins.cuda_major) or pins.cuda_runtime.prefix(2)
    return pins.cuda_runtime.prefix(2)


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
    code: GpuCode, release: str, label: str, cc: Version, support: DriverSupport | None, k: Knowledge
) -> Check | None:
    """Can this build run kernels on this GPU with this driver? Native SASS: yes. PTX only: it is JIT-compiled,
    which works when the driver's JIT accepts the PTX's ISA; older than every build target: the GPU is ignored."""
    kernels = code.kernels_for(cc)
    if kernels == "native":
        return None
    if kernels == "none":
        return Check(
            "compute-capability-unsupported",
            Level.FAILS,
            f"{label} (compute capability {cc}) is older than TensorFlow {release}'s oldest supported "
            f"{code.oldest}: the GPU is ignored",
        )
    target = code.jit_ptx(cc)
    assert target is not None
    isa = code.ptx.get(target)
    accepted = k.driver_ptx_isa(support.driver) if support else None
    if isa is not None and accepted is not None:
        if isa > accepted:
            return Check(
                "driver-too-old",
                Level.FAILS,
                f"{label} (compute capability {cc}) needs TensorFlow {release}'s compute_{target.major}{target.minor} "
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
        f"{label} (compute capability {cc}) has no native kernels in TensorFlow {release}: they are JIT-compiled "
        f"from PTX{isa_note} (slow first start)",
    )


def uses_tf32(cc: Version | None, tf32_enabled: bool | None, k: Knowledge) -> bool:
    """Whether a float32 matmul runs as TF32 on tensor cores: TF's default (since 2.4) on Ampere and newer."""
    return cc is not None and cc >= k.tf32_from and tf32_enabled is not False
