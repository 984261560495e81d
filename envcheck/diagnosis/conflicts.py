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
    """Frameworks of one environment at odds over a library, from what each loaded: an error where one loads a major
    other than its build's that another framework was built for (the loader resolved the other framework's copy),
    or finds none of its build's major while another loads a different one (the other's install replaced it); a
    warning where each loads a copy of its own (two on disk) and both fit."""
    found = []
    for lib, shown in LIBRARIES.items():
        loaded, missing = [], []
        for part in parts:
            entry = (part.libraries.get(lib) or {}).get("found") or {}
            version = part.runtime_versions.get(lib) or entry.get("file_version")
            built = part.probe.get("build_cudnn") if lib == "cudnn" else None
            if version or entry.get("path"):
                loaded.append((part, version, entry.get("path"), built))
            elif _major(built) is not None and part.version:
                missing.append((part, built))
        wrong = [
            f"{part.name} was built with {shown} {built} and loads {version}, {other.name}'s"
            for part, version, _, built in loaded
            for other, _, _, other_built in loaded
            if other is not part
            and None not in (_major(version), _major(built))
            and _major(version) != _major(built)
            and _major(other_built) == _major(version)
        ]
        wrong += [
            f"{part.name} was built with {shown} {built} and finds no {shown} {_major(built)}: the environment's is "
            f"{other.name}'s {version}"
            for part, built in missing
            for other, version, _, _ in loaded
            if _major(version) is not None and _major(version) != _major(built)
        ]
        apart = len({_major(v) for _, v, _, _ in loaded} - {None}) > 1 or len({p for _, _, p, _ in loaded} - {None}) > 1
        if not wrong and not (len(loaded) > 1 and apart):
            continue
        evidence = [
            f"{part.name} {part.version} loads {shown} {version} from {path}" for part, version, path, _ in loaded
        ]
        evidence += [f"{part.name} {part.version} loads no {shown} (built with {built})" for part, built in missing]
        names = " and ".join(part.name for part in parts)
        found.append(
            Diagnosis(
                "library-conflict",
                Severity.ERROR if wrong else Severity.WARNING,
                f"{names} in one environment are at odds over {shown}: {'; '.join(wrong)}."
                if wrong
                else f"{names} in one environment load different {shown} libraries, each one it fits.",
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
