"""The probe: probe.py and its framework adapters (fw_*.py) run inside each stack's container (and on the host for
`envcheck doctor`), standard library only, and print one JSON document of facts. With them go the readers they
share with the host (envcheck/readers/), as reader_NAME.py: the files lie flat in one directory wherever the probe
runs (/opt/envcheck in an image, a staged copy on the host). This package's host side names those files, stages
them, and reads the probe's output."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from envcheck.frameworks import FRAMEWORKS

PROBE_SOURCE = Path(__file__).with_name("probe.py")
READERS = Path(__file__).resolve().parent.parent / "readers"
# Every file of the probe by its name where it runs (beside each other, in /opt/envcheck in an image): the probe,
# every framework's adapter and the readers. The probe imports nothing of envcheck: in an image it runs alone.
PROBE_FILES: dict[str, Path] = {
    "probe.py": PROBE_SOURCE,
    **{fw.adapter: PROBE_SOURCE.with_name(fw.adapter) for fw in FRAMEWORKS},
    **{f"reader_{name}.py": READERS / f"{name}.py" for name in ("nvml", "elf")},
}
PROBE_COMMAND = ["python", "/opt/envcheck/probe.py"]  # where the Dockerfile template puts it


@contextlib.contextmanager
def staged() -> Iterator[Path]:
    """probe.py in a directory of its own with its files beside it, as in an image: how the host runs the probe."""
    with tempfile.TemporaryDirectory(prefix="envcheck-probe-") as directory:
        for name, source in PROBE_FILES.items():
            shutil.copyfile(source, Path(directory) / name)
        yield Path(directory) / "probe.py"


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
