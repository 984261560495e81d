"""Libraries the frameworks of one environment disagree on (library-conflict): as the probe saw each framework load
them, or as a build's resolver refused their pins. lint and plan predict the same from the knowledge data
(knowledge.rules.library_conflicts); these confirm it from what really happened.
"""

from __future__ import annotations

import re

from envcheck.diagnosis.probe_facts import Facts
from envcheck.inputs.matrix import Stack
from envcheck.knowledge import Version
from envcheck.results.model import BuildInfo, Diagnosis, Severity

LIBRARIES = {"cudnn": "cuDNN", "nccl": "NCCL"}  # those the frameworks' CUDA wheels pin, by the probe's names
# How pip and uv say no set of versions fits every requirement (pip's ResolutionImpossible, uv's "No solution").
RESOLVER_REFUSED = re.compile(
    r"ResolutionImpossible|conflicting dependencies|No solution found when resolving|we can conclude that", re.I
)
PINNED_WHEEL = re.compile(r"nvidia-[a-z-]+-cu[0-9]+", re.I)
FIX = (
    "Install the frameworks into separate environments (or images), or pick releases that pin the same {lib} major "
    "(`envcheck lint` names each framework's pin); one pip or uv call for all of them refuses a set that cannot fit "
    "instead of replacing one framework's library with the other's."
)


def _major(text: str | None) -> int | None:
    try:
        return Version(text).major if text else None
    except ValueError:
        return None


def from_probe(parts: list[Facts]) -> list[Diagnosis]:
    """Two frameworks of one environment that load a library from different files or in different majors: an error
    where one of them loads a major other than the one it was built with (the loader resolved the other
    framework's copy), a warning where each loads its own and both fit."""
    found = []
    for lib, shown in LIBRARIES.items():
        loaded = []
        for part in parts:
            entry = (part.libraries.get(lib) or {}).get("found") or {}
            version = part.runtime_versions.get(lib) or entry.get("file_version")
            path = entry.get("path")
            if version or path:
                loaded.append((part, version, path))
        majors = {_major(version) for _, version, _ in loaded} - {None}
        paths = {path for _, _, path in loaded} - {None}
        built = {part.framework: _major(part.probe.get("build_cudnn")) if lib == "cudnn" else None for part in parts}
        wrong = [
            f"{part.name} was built with {shown} {part.probe.get('build_cudnn')} and loads {version}"
            for part, version, _ in loaded
            if None not in (_major(version), built[part.framework])
            and _major(version) != built[part.framework]
            and any(built[other.framework] == _major(version) for other, _, _ in loaded if other is not part)
        ]
        if len(loaded) < 2 or (len(majors) < 2 and len(paths) < 2 and not wrong):
            continue
        evidence = [f"{part.name} {part.version} loads {shown} {version} from {path}" for part, version, path in loaded]
        evidence += wrong
        names = " and ".join(part.name for part, _, _ in loaded)
        found.append(
            Diagnosis(
                "library-conflict",
                Severity.ERROR if wrong else Severity.WARNING,
                f"{names} in one environment load different {shown} libraries"
                + (f": {'; '.join(wrong)} (the other framework's copy)." if wrong else ", each one it fits."),
                FIX.format(lib=shown),
                evidence,
            )
        )
    return found


def from_build(stack: Stack, built: BuildInfo) -> Diagnosis | None:
    """A stack of several frameworks whose install the resolver refused: their pins cannot all be met."""
    if not stack.several:
        return None
    lines = [line.strip() for line in [built.error or "", *built.log_tail] if line.strip()]
    if not any(RESOLVER_REFUSED.search(line) for line in lines):
        return None
    evidence = [line[:300] for line in lines if RESOLVER_REFUSED.search(line) or PINNED_WHEEL.search(line)][:8]
    names = " and ".join(f"{part.fw.display_name} {part.version}" for part in stack.parts)
    return Diagnosis(
        "library-conflict",
        Severity.ERROR,
        f"{names} cannot be installed into one environment: the resolver found no set of versions that meets every "
        "framework's pins.",
        FIX.format(lib="library"),
        evidence,
    )
