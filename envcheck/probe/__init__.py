"""The probe: probe.py runs inside each stack's container (and on the host for `envcheck doctor`), standard
library only, and prints one JSON document of facts; this package's host side finds it and reads its output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROBE_SOURCE = Path(__file__).with_name("probe.py")
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
