"""The probe: probe.py and its framework adapters (fw_*.py) run inside each stack's container (and on the host for
`envcheck doctor`), standard library only, and print one JSON document of facts. With them go the readers they
share with the host (envcheck/readers/), as reader_NAME.py, and boot.py, which any Python parses (2.7 too) and which
answers an interpreter too old for the probe: the files lie flat in one directory wherever the probe runs
(/opt/envcheck in an image, a staged copy on the host), or in one zip, the preflight a user copies into an image.
This package's host side names those files, stages them, writes the preflight and reads the probe's output."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from envcheck.frameworks import FRAMEWORKS

PROBE_SOURCE = Path(__file__).with_name("probe.py")
READERS = Path(__file__).resolve().parent.parent / "readers"
# Every file of the probe by its name where it runs (beside each other, in /opt/envcheck in an image): the probe,
# boot.py (the entry point for an image's own Python, whatever its version), every framework's adapter and the
# readers. The probe imports nothing of envcheck: in an image it runs alone.
PROBE_FILES: dict[str, Path] = {
    "probe.py": PROBE_SOURCE,
    "boot.py": PROBE_SOURCE.with_name("boot.py"),
    **{fw.adapter: PROBE_SOURCE.with_name(fw.adapter) for fw in FRAMEWORKS},
    **{f"reader_{name}.py": READERS / f"{name}.py" for name in ("nvml", "elf")},
}
PROBE_COMMAND = ["python", "/opt/envcheck/probe.py"]  # where the Dockerfile template puts it
# The preflight's entry point: boot.py's, from inside the zip (which Python 2.7 parses and runs as well).
PREFLIGHT_MAIN = """\
# envcheck-preflight: `python envcheck-preflight --require gpu` (envcheck.probe.write_preflight wrote this zip)
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import boot

sys.exit(boot.main())
"""


@contextlib.contextmanager
def staged() -> Iterator[Path]:
    """probe.py in a directory of its own with its files beside it, as in an image: how the host runs the probe."""
    with tempfile.TemporaryDirectory(prefix="envcheck-probe-") as directory:
        for name, source in PROBE_FILES.items():
            shutil.copyfile(source, Path(directory) / name)
        yield Path(directory) / "probe.py"


def write_preflight(path: Path) -> Path:
    """envcheck-preflight, one file to copy into any image: a zipapp of the probe's files that runs boot.py, so
    `python envcheck-preflight --require gpu` (or `./envcheck-preflight ...`, by its shebang) gates a container's
    start on the framework computing on a GPU, and without --require prints the probe's JSON."""
    files = {name: source.read_bytes() for name, source in PROBE_FILES.items()}
    files["__main__.py"] = PREFLIGHT_MAIN.encode("utf-8")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in sorted(files):  # fixed order and times: the same envcheck writes the same bytes (image layers)
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            zipped.writestr(info, files[name])
    path.write_bytes(b"#!/usr/bin/env python3\n" + archive.getvalue())  # as zipapp writes it: shebang, then zip
    path.chmod(0o755)
    return path


def parse_output(stdout: str) -> dict[str, Any] | None:
    """The probe's JSON document: the last stdout line that parses as a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return None
