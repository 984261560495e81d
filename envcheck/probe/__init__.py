"""The probe: probe.py and its framework adapters (fw_*.py) run inside each stack's container (and on the host for
`envcheck doctor`), standard library only, and print one JSON document of facts; this package's host side finds
them and reads their output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from envcheck.frameworks import FRAMEWORKS

PROBE_SOURCE = Path(__file__).with_name("probe.py")
# The probe and every framework's adapter: what goes into every image, beside each other in /opt/envcheck. The
# probe itself imports nothing of envcheck: in an image it runs alone.
PROBE_FILES = (PROBE_SOURCE, *(PROBE_SOURCE.with_name(fw.adapter) for fw in FRAMEWORKS))
PROBE_COMMAND = ["python", "/opt/envcheck/probe.py"]  # where the Dockerfile template puts it


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
