"""What stacks begin alike, built once before them: the beginnings of several rendered Dockerfiles that share their
layers (up to each SHARED_MARK the template places), so parallel builds neither repeat nor duplicate them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from envcheck.render.dockerfile import SHARED_MARK, BuildContext


@dataclass(frozen=True)
class SharedLayers:
    """The same beginning of several stacks' Dockerfiles (up to a SHARED_MARK): built once before them, so they
    share its layers instead of each building its own copy side by side (parallel builds would, and no stack
    could then share what comes after)."""

    key: str
    dockerfile: str
    stacks: tuple[str, ...]
    after: str | None  # the key of the shorter shared beginning this one extends

    def write(self, build_root: Path) -> Path:
        """build/.shared/KEY/: the beginning as a Dockerfile, its whole context. It never copies the CA bundle: the
        bundle's stage is labelled with its stack before the COPY, so no two stacks share that far."""
        directory = build_root / ".shared" / self.key[:12]
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "Dockerfile").write_text(self.dockerfile, encoding="utf-8")
        return directory


def shared_layers(contexts: list[BuildContext]) -> tuple[list[SharedLayers], dict[str, str]]:
    """The beginnings two or more of these contexts share, shortest first, and for each stack the key of the
    longest one it shares (what its build waits for). Beginnings are compared without their comments (the header
    names the stack), as Docker's layer cache compares them. Only rendered stacks take part: a user's own
    Dockerfile is built as written."""
    names: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for ctx in (c for c in contexts if c.stack.kind == "rendered"):
        text = ctx.dockerfile.read_text(encoding="utf-8")
        end = text.find(SHARED_MARK)
        while end != -1:
            beginning = text[: end + len(SHARED_MARK)]
            instructions = "".join(
                line for line in beginning.splitlines(keepends=True) if not line.lstrip().startswith("#")
            )
            names.setdefault(instructions, []).append(ctx.stack.name)
            texts.setdefault(instructions, beginning)
            end = text.find(SHARED_MARK, end + len(SHARED_MARK))
    shared = sorted((i for i, stacks in names.items() if len(stacks) > 1), key=len)
    keys = {i: hashlib.sha256(i.encode()).hexdigest() for i in shared}
    layers, waits = [], {}
    for i in shared:
        shorter = [s for s in shared if len(s) < len(i) and i.startswith(s)]
        layers.append(SharedLayers(keys[i], texts[i], tuple(names[i]), keys[shorter[-1]] if shorter else None))
        for name in names[i]:
            waits[name] = keys[i]  # shortest first: the longest shared beginning is written last
    return layers, waits
