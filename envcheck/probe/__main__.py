"""`python -m envcheck.probe [the probe's flags]`: the probe, or its gate (`--require gpu`), on this Python, as boot.py
runs it in an image; `python -m envcheck.probe --write-preflight PATH` writes the single-file preflight there."""

from __future__ import annotations

import sys
from pathlib import Path

from envcheck.probe import probe, write_preflight


def main(args: list[str]) -> int:
    if args[:1] == ["--write-preflight"]:
        if len(args) != 2:
            sys.stderr.write("usage: python -m envcheck.probe --write-preflight PATH\n")
            return 2
        try:
            sys.stdout.write(f"{write_preflight(Path(args[1]))}\n")
        except OSError as exc:
            sys.stderr.write(f"envcheck probe: cannot write the preflight: {exc}\n")
            return 1
        return 0
    return probe.main(args)


sys.exit(main(sys.argv[1:]))
