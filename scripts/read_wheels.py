#!/usr/bin/env python3
"""Read what a framework's wheels say about themselves: the GPU code they carry and what they require.

How the knowledge data's wheel facts were read (envcheck/knowledge/knowledge.yaml cites this script):
- GPU code: every shared object in the wheel is scanned for CUDA fat binaries in its `.nv_fatbin` section, with
  the reader the probe carries (envcheck.readers.elf.fatbin_members): each member's kind (SASS or PTX), architecture
  (sm_XY) and, for PTX, the ISA version its header records. A driver JIT-compiles PTX only up to the ISA of the
  newest CUDA it supports; a GPU newer than every SASS and without PTX gets "no kernel image".
- Requirements: the wheel's METADATA (Requires-Python, and the NVIDIA/CUDA wheels it pins).

NVIDIA's `cuobjdump -ptx -elf` (PyPI: nvidia-cuda-cuobjdump) prints the same facts for wheels without sm_35 code;
`--cuobjdump PATH` runs it too and reports where the two disagree (CUDA 12+ cuobjdump refuses sm_35).

Usage: scripts/read_wheels.py [--cuobjdump PATH] WHEEL...   (one JSON object per wheel on stdout)
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from envcheck.readers.elf import fatbin_members

REQUIREMENT = re.compile(r"^(nvidia-|cuda-|tensorrt|jax-cuda|jaxlib)", re.IGNORECASE)


def read_cuobjdump(cuobjdump: str, path: Path) -> set:
    """The kinds of code NVIDIA's cuobjdump lists: `-lelf` names SASS members (NAME.sm_XY.cubin), `-ptx`
    prints each PTX with its `.version` (streamed: it is hundreds of MB)."""
    found = set()
    listing = subprocess.run([cuobjdump, "-lelf", str(path)], capture_output=True, text=True, errors="replace")
    found |= {("sass", arch, None) for arch in re.findall(r"\.(sm_\d+a?)\.cubin$", listing.stdout, re.M)}
    arch = None
    with subprocess.Popen(
        [cuobjdump, "-ptx", str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace"
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("arch = "):
                arch = line.split("=", 1)[1].strip()
            elif line.startswith(".version ") and arch:
                found.add(("ptx", arch, line.split()[1]))
                arch = None
    return found


def summary(counts: dict) -> dict:
    sass = collections.Counter({arch: n for (kind, arch, _), n in counts.items() if kind == "sass"})
    return {
        "sass": dict(sorted(sass.items())),
        "ptx": {f"{arch} ISA {isa}": n for (kind, arch, isa), n in sorted(counts.items(), key=str) if kind == "ptx"},
    }


def metadata(archive: zipfile.ZipFile) -> dict:
    name = next((n for n in archive.namelist() if n.endswith(".dist-info/METADATA")), None)
    text = archive.read(name).decode("utf-8", "replace") if name else ""
    fields = [line.split(": ", 1) for line in text.splitlines() if ": " in line]
    return {
        "version": next((v for k, v in fields if k == "Version"), None),
        "requires_python": next((v for k, v in fields if k == "Requires-Python"), None),
        "requires": [v for k, v in fields if k == "Requires-Dist" and REQUIREMENT.match(v)],
    }


def read_wheel(wheel: Path, cuobjdump: str | None) -> dict:
    objects, disagreements = {}, []
    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as tmp:
        facts = metadata(archive)
        for member in archive.infolist():
            name = member.filename
            if not (name.endswith(".so") or ".so." in name):
                continue
            path = Path(archive.extract(member, tmp))
            counts = fatbin_members(str(path))
            if cuobjdump and counts:
                theirs = read_cuobjdump(cuobjdump, path)
                if theirs and theirs != set(counts):  # the kinds of code, not member counts
                    disagreements.append(name)
            path.unlink()
            if counts:
                objects[name] = summary(counts)
    result = {"wheel": wheel.name, **facts, "objects": objects}
    if cuobjdump:
        result["cuobjdump_disagrees"] = disagreements
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuobjdump", help="also read with NVIDIA's cuobjdump and report disagreements")
    parser.add_argument("wheels", nargs="+", type=Path)
    args = parser.parse_args()
    for wheel in args.wheels:
        print(json.dumps(read_wheel(wheel, args.cuobjdump), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
