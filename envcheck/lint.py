"""Know before building: predicted failures of a stack from envcheck's knowledge alone.

Each check is one small function reading a stack and the knowledge data; findings point at the field that
causes them (``FILE:LINE:COL: warning: <what> [<code>]``). Predictions never block a build: envcheck's job is
to verify, and the knowledge can be stale; they are shown first and recorded next to the measured result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from envcheck.knowledge import Knowledge, TFBuild, Version
from envcheck.matrix import Matrix, Position, Stack

PIN_RE = re.compile(r"(?P<name>nvidia-(?P<lib>cudnn|cuda-runtime)-cu(?P<major>\d+))\s*==\s*(?P<version>\d+(\.\d+)*)")


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    position: Position | None
    severity: str = "warning"

    def __str__(self) -> str:
        return f"{self.position or '?'}: {self.severity}: {self.message} [{self.code}]"

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["position"] = str(self.position) if self.position else None
        return data


def base_has_cuda_libs(base: str) -> bool:
    """Whether a base image is one that ships CUDA libraries (nvidia/cuda, NGC, *cuda* tags): a name heuristic."""
    return "cuda" in base.lower() or base.startswith(("nvcr.io/", "nvidia/"))


Check = Callable[[Stack, TFBuild, Knowledge], list[Finding]]
CHECKS: list[Check] = []


def check(func: Check) -> Check:
    CHECKS.append(func)
    return func


@check
def python_supported(stack: Stack, tf: TFBuild, _: Knowledge) -> list[Finding]:
    if tf.supports_python(stack.python):
        return []
    return [
        Finding(
            "python-unsupported",
            f"TensorFlow {stack.tensorflow} supports Python {tf.python_range()}, not {stack.python}: "
            "pip will find no wheel",
            stack.where("python"),
        )
    ]


def _disagrees(claimed: str, built: Version) -> bool:
    """Compare at the precision the user wrote: "12" matches 12.2, "12.3" does not."""
    claim = Version.parse(claimed)
    return claim != built.prefix(len(claim.parts))


@check
def claims_match_build(stack: Stack, tf: TFBuild, _: Knowledge) -> list[Finding]:
    findings = []
    if stack.cuda and _disagrees(stack.cuda, tf.cuda):
        findings.append(
            Finding(
                "cuda-mismatch",
                f"cuda: {stack.cuda} but TensorFlow {stack.tensorflow} is built with CUDA {tf.cuda}",
                stack.where("cuda"),
            )
        )
    if stack.cudnn and _disagrees(stack.cudnn, tf.cudnn):
        findings.append(
            Finding(
                "cudnn-mismatch",
                f"cudnn: {stack.cudnn} but TensorFlow {stack.tensorflow} is built with cuDNN {tf.cudnn}",
                stack.where("cudnn"),
            )
        )
    return findings


@check
def pinned_libraries(stack: Stack, tf: TFBuild, k: Knowledge) -> list[Finding]:
    """pip entries that pin a cuDNN or CUDA runtime wheel this TF build cannot use."""
    findings = []
    for index, requirement in enumerate(stack.pip):
        pin = PIN_RE.fullmatch(requirement.strip())
        if not pin:
            continue
        version, major = Version.parse(pin["version"]), int(pin["major"])
        where = stack.positions.get(f"pip[{index}]") or stack.where("pip")
        if pin["lib"] == "cudnn" and not k.cudnn_supports_cuda(version.major, major):
            findings.append(
                Finding(
                    "cudnn-mismatch",
                    f"pip pins {pin['name']}=={version}, but cuDNN {version.major} is not made for CUDA {major}",
                    where,
                )
            )
        elif major != tf.cuda.major:
            findings.append(
                Finding(
                    "cuda-mismatch",
                    f"pip pins {pin['name']} (CUDA {major}) but TensorFlow "
                    f"{stack.tensorflow} is built with CUDA {tf.cuda}",
                    where,
                )
            )
        elif pin["lib"] == "cudnn" and (version.major != tf.cudnn.major or version.prefix(2) < tf.cudnn):
            findings.append(
                Finding(
                    "cudnn-mismatch",
                    f"pip pins cuDNN {version} but TensorFlow {stack.tensorflow} "
                    f"needs cuDNN {tf.cudnn.major}.x at least {tf.cudnn} (same major, equal or "
                    "higher minor)",
                    where,
                )
            )
        elif pin["lib"] == "cuda-runtime" and version.prefix(2) < tf.cuda:
            findings.append(
                Finding(
                    "cuda-mismatch",
                    f"pip pins CUDA runtime {version}, older than the CUDA "
                    f"{tf.cuda} TensorFlow {stack.tensorflow} is built with",
                    where,
                )
            )
    return findings


@check
def cuda_libraries_present(stack: Stack, tf: TFBuild, _: Knowledge) -> list[Finding]:
    if stack.variant == "plain" and not base_has_cuda_libs(stack.base):
        return [
            Finding(
                "cuda-libs-missing",
                f"variant plain installs TensorFlow without CUDA libraries and base "
                f"{stack.base} has none: use variant and-cuda or a CUDA base image",
                stack.where("variant"),
            )
        ]
    if stack.variant == "and-cuda" and tf.and_cuda is None:
        return [
            Finding(
                "cuda-libs-missing",
                f"TensorFlow {stack.tensorflow} has no [and-cuda] extra (it exists "
                "from 2.14): pip installs TensorFlow without CUDA libraries",
                stack.where("variant"),
            )
        ]
    return []


@check
def known_issues(stack: Stack, tf: TFBuild, _: Knowledge) -> list[Finding]:
    note = tf.notes.get(stack.tensorflow)
    return [Finding("known-issue", f"TensorFlow {stack.tensorflow}: {note}", stack.where("tensorflow"))] if note else []


def predict(stack: Stack, knowledge: Knowledge | None = None) -> list[Finding]:
    """Every predicted failure of one stack."""
    knowledge = knowledge or Knowledge.load()
    tf = knowledge.tf_build(stack.tensorflow)
    if tf is None:
        return [
            Finding(
                "unknown-tensorflow",
                f"TensorFlow {stack.tensorflow} is not in envcheck's data "
                f"(it knows {knowledge.releases()[0]}–{knowledge.releases()[-1]}); "
                "it will be verified by running",
                stack.where("tensorflow"),
            )
        ]
    return [finding for func in CHECKS for finding in func(stack, tf, knowledge)]


def lint(matrix: Matrix, strict: bool = False) -> list[Finding]:
    """Predicted failures of every stack; errors instead of warnings when strict."""
    findings = [f for stack in matrix.stacks for f in predict(stack)]
    if strict:
        findings = [Finding(f.code, f.message, f.position, "error") for f in findings]
    return findings
