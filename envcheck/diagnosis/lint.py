"""Know before building: predicted failures of a stack from envcheck's knowledge alone.

The rules are knowledge.rules' (the same plan and diagnose apply); lint locates each finding at the field that
causes it (``FILE:LINE:COL: warning: <what> [<code>]``). Predictions never block a build: envcheck's job is to
verify, and the knowledge can be stale; they are shown first and recorded next to the measured result. An image or
dockerfile stack says nothing the knowledge can judge (which framework, which wheels, which CUDA are only known once
its image is probed): lint says so in an info line and predicts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envcheck import log
from envcheck.inputs.matrix import Matrix, Position, Stack
from envcheck.knowledge import Knowledge
from envcheck.knowledge.rules import stack_checks


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    position: Position | None
    severity: str = "warning"

    def __str__(self) -> str:
        return f"{self.position or '?'}: {self.severity}: {self.message} [{self.code}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "position": str(self.position) if self.position else None,
            "severity": self.severity,
        }


def predict(stack: Stack, knowledge: Knowledge | None = None) -> list[Finding]:
    """Every predicted failure of one stack, each at the field it is about (none for an image or dockerfile
    stack: see unpredictable)."""
    if stack.kind != "rendered":
        return []
    found = []
    for check in stack_checks(stack, knowledge or Knowledge.load()):
        key = check.key or ""
        position = stack.positions.get(key) or stack.where(key.partition("[")[0])
        found.append(Finding(check.code, check.message, position))
    return found


def lint(matrix: Matrix, strict: bool = False) -> list[Finding]:
    """Predicted failures of every stack; errors instead of warnings when strict. Stacks it cannot predict are said
    on stderr, for people (stdout holds the findings, and they are none)."""
    for stack in matrix.stacks:
        if stack.kind != "rendered":
            log.info(unpredictable(stack))
    severity = "error" if strict else "warning"
    return [Finding(f.code, f.message, f.position, severity) for stack in matrix.stacks for f in predict(stack)]


def unpredictable(stack: Stack) -> str:
    """The info line for a stack knowledge cannot judge: it names an image or its own Dockerfile."""
    what = f"the image {stack.image}" if stack.image else f"its own Dockerfile {stack.dockerfile}"
    key = "image" if stack.image else "dockerfile"
    return (
        f"{stack.where(key) or '?'}: info: stack {stack.name} names {what}: nothing to predict from envcheck's "
        f"knowledge (what it holds is known once it is probed: `envcheck run {stack.name}`)"
    )
