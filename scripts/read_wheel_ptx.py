#!/usr/bin/env python3
"""Read which GPU code a TensorFlow wheel really carries: SASS architectures, and the PTX ISA of each PTX.

How the knowledge data's `wheel_code` facts were read (envcheck/knowledge/knowledge.yaml cites this script):
every shared object in the wheel is scanned for CUDA fat binaries (header magic 0xBA55ED50), and each member's
header is read: its kind (1 PTX, 2 ELF/SASS), its architecture (sm_XY) and, for PTX, the ISA version the PTX
was written in (the header's code version, the same number as the PTX text's `.version` line). A driver
JIT-compiles PTX only up to the ISA of the newest CUDA it supports.

NVIDIA's `cuobjdump -ptx -elf` (PyPI: nvidia-cuda-cuobjdump) prints the same facts for wheels without sm_35
code; `--cuobjdump PATH` runs it too and checks that both readings agree (CUDA 12+ cuobjdump refuses sm_35,
which TF <= 2.14 wheels carry, hence the reader of our own).

Usage: scripts/read_wheel_ptx.py [--cuobjdump PATH] WHEEL...   (one JSON object per wheel on stdout)
"""

from __future__ import annotations

import argparse
import collections
import json
import mmap
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MAGIC = struct.pack("<IHH", 0xBA55ED50, 1, 0x10)
KINDS = {1: "ptx", 2: "sass"}


def fatbin_section(data: mmap.mmap) -> tuple[int, int]:
    """Offset and end of the ELF section .nv_fatbin: the code the CUDA runtime loads (not __nv_relfatbin,
    the relocatable copies kept for device linking)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return 0, 0
    try:
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        entsize, count, names = struct.unpack_from("<HHH", data, 0x3A)
        table = struct.unpack_from("<Q", data, shoff + names * entsize + 0x18)[0]
        for i in range(count):
            name, _ = struct.unpack_from("<II", data, shoff + i * entsize)
            offset, size = struct.unpack_from("<QQ", data, shoff + i * entsize + 0x18)
            if data[table + name : table + name + 11] == b".nv_fatbin\0":
                return offset, offset + size
    except struct.error:  # a truncated or odd ELF file: no section table to trust
        pass
    return 0, 0


def read_fatbins(path: Path) -> collections.Counter:
    """(kind, arch, ISA) of every fat-binary member of a shared object's .nv_fatbin section, counted."""
    found: collections.Counter = collections.Counter()
    if path.stat().st_size == 0:
        return found
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        section_start, section_end = fatbin_section(data)
        start = data.find(MAGIC, section_start, section_end)
        while start != -1:
            (size,) = struct.unpack_from("<Q", data, start + 8)
            entry, end = start + 16, start + 16 + size
            while entry + 0x20 <= end:
                kind, _, header, payload = struct.unpack_from("<HHIQ", data, entry)
                minor, major, arch = struct.unpack_from("<HHI", data, entry + 0x18)
                if kind in KINDS and header:
                    isa = f"{major}.{minor}" if kind == 1 else None
                    found[(KINDS[kind], f"sm_{arch}", isa)] += 1
                if not header:
                    break
                entry += header + payload
            start = data.find(MAGIC, max(end, start + 1), section_end)
    return found


def read_cuobjdump(cuobjdump: str, path: Path) -> collections.Counter:
    """The same facts from NVIDIA's cuobjdump, for cross-checking: `-lelf` lists the SASS members
    (NAME.sm_XY.cubin), `-ptx` prints each PTX with its `.version` (streamed: it is hundreds of MB)."""
    found: collections.Counter = collections.Counter()
    listing = subprocess.run([cuobjdump, "-lelf", str(path)], capture_output=True, text=True, errors="replace")
    for arch in re.findall(r"\.(sm_\d+a?)\.cubin$", listing.stdout, re.M):
        found[("sass", arch, None)] += 1
    arch = None
    with subprocess.Popen(
        [cuobjdump, "-ptx", str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace"
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("arch = "):
                arch = line.split("=", 1)[1].strip()
            elif line.startswith(".version ") and arch:
                found[("ptx", arch, line.split()[1])] += 1
                arch = None
    return found


def summary(counts: collections.Counter) -> dict:
    return {
        "sass": dict(
            sorted(collections.Counter({arch: n for (k, arch, _), n in counts.items() if k == "sass"}).items())
        ),
        "ptx": {f"{arch} ISA {isa}": n for (k, arch, isa), n in sorted(counts.items(), key=str) if k == "ptx"},
    }


def read_wheel(wheel: Path, cuobjdump: str | None) -> dict:
    objects, disagreements = {}, []
    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as tmp:
        for member in archive.infolist():
            name = member.filename
            if not (name.endswith(".so") or ".so." in name):
                continue
            path = Path(archive.extract(member, tmp))
            counts = read_fatbins(path)
            if cuobjdump and counts:
                theirs = read_cuobjdump(cuobjdump, path)
                if theirs and set(theirs) != set(counts):  # the kinds of code, not member counts
                    disagreements.append(name)
            path.unlink()
            if counts:
                objects[name] = summary(counts)
    result = {"wheel": wheel.name, "objects": objects}
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
