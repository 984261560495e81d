"""An installed framework whose import raises: `framework-import-failed`, not `framework-missing`.

The probe records such an import as `import_failure` (probe.py: the framework's distributions and their installed
dependencies read from package metadata without importing, the exception, the innermost frame, the innermost frame in
the framework's own packages and in another installed package); `envcheck explain` reads the same from a traceback
through the framework's `__init__.py` (logread). A record is untrusted input (any image, any probe version), so it is
typed here value by value. The fix comes from the knowledge data's `import_breaks` (a dependency release known to break
these framework releases: its pin, or the release that fixes it), else from where the import failed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from envcheck.knowledge import Knowledge, Version
from envcheck.knowledge.facts import ImportBreak

CODE = "framework-import-failed"
MAX_TEXT = 2000  # characters of an exception's message kept
MAX_NAME = 200  # a distribution, a package, a function, an exception type
MAX_PATH = 500
MAX_FRAMES = 12
MAX_DEPENDENCIES = 200
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _frame(value: Any) -> dict[str, Any] | None:
    """A traceback frame of the record: file, line, function (and the package it lies in, the distributions that
    ship that package), or None when it is not one."""
    if not isinstance(value, dict):
        return None
    line = value.get("line")
    frame: dict[str, Any] = {
        "file": _text(value.get("file"), MAX_PATH),
        "line": line if isinstance(line, int) and not isinstance(line, bool) and line >= 0 else None,
        "function": _text(value.get("function"), MAX_NAME),
    }
    if frame["file"] is None:
        return None
    package = _text(value.get("package"), MAX_NAME)
    if package:
        frame["package"] = package
    shipping = value.get("distributions")
    if isinstance(shipping, list):
        frame["distributions"] = [d for d in shipping[:10] if isinstance(d, str) and NAME.match(d[:MAX_NAME])]
    return frame


def typed_failure(value: Any) -> dict[str, Any] | None:
    """The probe's import_failure with every value in its expected type and size, or None when it is not one."""
    if not isinstance(value, dict):
        return None
    exception = _text(value.get("exception"), MAX_NAME)
    if exception is None:
        return None
    raw = value.get("distributions")
    distributions = {
        name: version
        for name, version in (raw.items() if isinstance(raw, dict) else ())
        if isinstance(name, str) and NAME.match(name[:MAX_NAME]) and Version.lenient(version)
    }
    raw = value.get("dependencies")
    dependencies: dict[str, dict[str, str]] = {}
    for name, entry in raw.items() if isinstance(raw, dict) else ():
        if len(dependencies) >= MAX_DEPENDENCIES:
            break
        if not (isinstance(name, str) and NAME.match(name[:MAX_NAME]) and isinstance(entry, dict)):
            continue
        installed = entry.get("installed")
        if not (isinstance(installed, str) and Version.lenient(installed)):
            continue
        typed = {"installed": installed[:MAX_NAME]}
        for key in ("required", "by", "marker"):
            if text := _text(entry.get(key), MAX_NAME):
                typed[key] = text
        dependencies[_normalized(name)] = typed
    frames = [f for f in (map(_frame, value["frames"][-MAX_FRAMES:]) if isinstance(value.get("frames"), list) else ())]
    return {
        "distributions": distributions,
        "dependencies": dependencies,
        "exception": exception,
        "message": _text(value.get("message"), MAX_TEXT) or "",
        "frame": _frame(value.get("frame")),
        "framework_frame": _frame(value.get("framework_frame")),
        "dependency_frame": _frame(value.get("dependency_frame")),
        "frames": [f for f in frames if f is not None],
    }


@dataclass(frozen=True)
class Found:
    """What a failed import shows, from a probe record or a log."""

    framework: str
    version: str | None  # the framework's installed release (None: not known)
    exception: str
    message: str
    dependencies: dict[str, dict[str, str]]  # installed ones, by normalized name
    dependency_frame: dict[str, Any] | None = None


def known_break(found: Found, k: Knowledge) -> ImportBreak | None:
    """The knowledge data's break this failure is: the framework release, the exception's words, and the dependency
    at the breaking version or newer (where the record says which is installed)."""
    for row in k.import_breaks:
        if row.framework != found.framework or not row.message.search(f"{found.exception}: {found.message}"):
            continue
        if found.version is not None and not row.affects(found.version):
            continue
        installed = Version.lenient((found.dependencies.get(_normalized(row.dependency)) or {}).get("installed"))
        if installed is not None and installed < row.first_bad:
            continue
        return row
    return None


def _frame_text(frame: dict[str, Any]) -> str:
    return f"{frame.get('file')}:{frame.get('line')} ({frame.get('function')})"


def evidence(failure: dict[str, Any], framework: str) -> list[str]:
    """A probe record's lines: what is installed, what raised, where, and the dependency it raised in."""
    installed = ", ".join(f"{name} {version}" for name, version in failure["distributions"].items())
    lines = [f"installed (package metadata): {installed or 'no distribution of ' + framework}"]
    lines.append(f"import {framework} raised {failure['exception']}: {failure['message'][:300]}")
    if failure["frame"]:
        lines.append(f"innermost frame: {_frame_text(failure['frame'])}")
    if failure["framework_frame"] and failure["framework_frame"] != failure["frame"]:
        lines.append(f"innermost frame in {framework}: {_frame_text(failure['framework_frame'])}")
    dependency = failure["dependency_frame"]
    if dependency:
        ships = ", ".join(dependency.get("distributions") or []) or "distribution not known"
        package = dependency.get("package")
        lines.append(f"innermost frame in another package, {package} ({ships}): {_frame_text(dependency)}")
    return lines


def fix(found: Found, k: Knowledge, display: str) -> tuple[str, list[str]]:
    """(fix, more evidence): a known break's pin and fixing release; else the dependency the import failed in,
    pinned below its installed version; else reinstalling the release with its dependencies in one resolve."""
    row = known_break(found, k)
    label = f"{display} {found.version}" if found.version else display
    if row is not None:
        dep = found.dependencies.get(_normalized(row.dependency)) or {}
        installed = dep.get("installed")
        said = f"{row.dependency} {installed}" if installed else row.dependency
        fixed = row.fixed_after(found.version)
        upgrade = f", or upgrade to {display} {fixed}, which fixes it" if fixed else ""
        text = (
            f"A known break: {said} (from {row.first_bad} on) breaks `import {found.framework}` in {label}. Pin it: "
            f"`pip install {shlex.quote(row.pin)}`{upgrade}. Why: {row.why} (source: {row.source})"
        )
        more = [f"{said}: required {dep.get('required') or '(unpinned)'} by {dep.get('by')}"] if installed else []
        return text, [*more, f"known break: {row.pin} ({row.source})"]
    frame = found.dependency_frame or {}
    ships = [d for d in frame.get("distributions") or [] if _normalized(d) in found.dependencies] or [
        name for name in found.dependencies if name == _normalized(str(frame.get("package") or ""))
    ]
    if ships:
        name = _normalized(ships[0])
        dep = found.dependencies[name]
        pin = f"{name}<{dep['installed']}"
        return (
            f"The import fails inside {name} {dep['installed']}, which {dep.get('by') or display} requires as "
            f"{dep.get('required') or 'any version'}: a {name} newer than this {label} was made with is the usual "
            f"cause. Pin it to what the release was used with (`pip install {shlex.quote(pin)}`, lower until "
            f"`python -c 'import {found.framework}'` works), or upgrade {display} to a release made for it.",
            [f"{name} {dep['installed']}: required {dep.get('required') or '(unpinned)'} by {dep.get('by')}"],
        )
    pinned = f"{found.framework}=={found.version}" if found.version else found.framework
    return (
        f"{label} is installed but its import raises (not a missing framework: do not just reinstall it over "
        f"the same dependencies). Read the frame in the evidence; reinstall it with the dependencies it resolves in "
        f"one call (`pip install --force-reinstall {shlex.quote(pinned)}` in a clean environment), or pin the "
        "dependency the frame lies in to the version this release was used with.",
        [],
    )
