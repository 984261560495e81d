"""What the collectors of jobs that ran elsewhere (k8s collect, slurm collect) do alike with what those jobs left:
untrusted text made fit for one terminal line, and a probe document checked against the stack it claims to be of,
so that a wrong cell is never recorded."""

from __future__ import annotations

from typing import Any

from packaging.version import InvalidVersion, Version

from envcheck import frameworks
from envcheck.inputs.matrix import AUTO, Stack

MESSAGE_CHARS = 300  # of an API's or a task's own words kept in a message


def disagreement(stack: Stack, probe: dict[str, Any]) -> str | None:
    """Where a probe document contradicts the stack it is said to be of: its framework, that framework's version
    (local part such as +cu121 aside) and Python's major.minor, each where the document states it. A stack of an
    image envcheck did not render states only its framework, if it names one."""
    framework = probe.get("framework", frameworks.DEFAULT.name)  # documents of probe schema 1 are TensorFlow's
    if stack.kind != "rendered":
        named = stack.probe_framework
        return None if named in (AUTO, framework) else f"framework {clean(str(framework))}, not {named}"
    if framework != stack.framework:
        return f"framework {clean(str(framework))}, not {stack.framework}"
    for key, expected, parts in (("framework_version", stack.version, None), ("python", stack.python, 2)):
        stated = probe.get(key)
        if stated is not None and not same_version(stated, expected, parts):
            return f"{key} {clean(str(stated))}, not {expected}"
    return None


def same_version(stated: Any, expected: str, parts: int | None) -> bool:
    """PEP 440 equality of the public versions (2.15 is 2.15.0, 2.5.1+cu121 is 2.5.1), or of the first `parts`
    release numbers (Python 3.11.2 is a stack's 3.11)."""
    if not isinstance(stated, str):
        return False
    try:
        theirs, ours = Version(stated), Version(expected)
    except InvalidVersion:
        return False
    return theirs.release[:parts] == ours.release[:parts] if parts else Version(theirs.public) == ours


def clean(text: str, limit: int = MESSAGE_CHARS) -> str:
    """Untrusted text (API answers, pod output) fit for one line of a terminal: no control or invisible
    characters (an escape sequence could rewrite what the user sees), at most `limit` characters."""
    printable = "".join(c if c.isprintable() else " " for c in text)
    return printable if len(printable) <= limit else printable[: limit - 1] + "…"
