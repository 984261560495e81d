"""ELF shared objects read with the standard library alone (Python >= 3.8): their dynamic section (NEEDED, SONAME,
RPATH, RUNPATH: what the loader will look for, and where) and the CUDA fat binaries in their .nv_fatbin section
(which SASS and PTX a framework carries). The host reads wheels with it (scripts/read_wheels.py, the tests) and the
probe carries this file into every image, so the same code reads both.
"""

from __future__ import annotations

import os

DT_NEEDED, DT_STRTAB, DT_SONAME, DT_RPATH, DT_RUNPATH = 1, 5, 14, 15, 29


def elf_dynamic(path: str) -> dict:
    """NEEDED, SONAME, RPATH and RUNPATH of an ELF shared object, read with the standard library alone."""
    import struct

    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            raise ValueError("not an ELF file")
        wide, end = ident[4] == 2, "<" if ident[5] == 1 else ">"
        header = f.read(48 if wide else 36)
        if wide:
            phoff, phentsize, phnum = (
                struct.unpack_from(end + "Q", header, 16)[0],
                *struct.unpack_from(end + "HH", header, 38),
            )
        else:
            phoff, phentsize, phnum = (
                struct.unpack_from(end + "I", header, 12)[0],
                *struct.unpack_from(end + "HH", header, 26),
            )
        loads, dynamic = [], None
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            raw = f.read(phentsize)
            if wide:
                p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(end + "IIQQQQ", raw)
            else:
                p_type, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(end + "IIIII", raw)
            if p_type == 1:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == 2:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return {"needed": [], "soname": None, "rpath": [], "runpath": []}
        f.seek(dynamic[0])
        data = f.read(dynamic[1])
        size = 16 if wide else 8
        entries = [struct.unpack_from(end + ("qQ" if wide else "iI"), data, i) for i in range(0, len(data), size)]
        strtab = next(v for t, v in entries if t == DT_STRTAB)
        strtab_offset = next(off + strtab - va for va, off, sz in loads if va <= strtab < va + sz)

        def string(offset: int) -> str:
            f.seek(strtab_offset + offset)
            raw = f.read(4096)
            return raw[: raw.index(b"\0")].decode("utf-8", "replace")

        out: dict = {"needed": [], "soname": None, "rpath": [], "runpath": []}
        for tag, value in entries:
            if tag == 0:
                break
            if tag == DT_NEEDED:
                out["needed"].append(string(value))
            elif tag == DT_SONAME:
                out["soname"] = string(value)
            elif tag in (DT_RPATH, DT_RUNPATH):
                out["rpath" if tag == DT_RPATH else "runpath"].extend(p for p in string(value).split(":") if p)
        return out


FATBIN_MAGIC = b"\x50\xed\x55\xba\x01\x00\x10\x00"  # 0xBA55ED50, version 1, header size 0x10


def fatbin_section(data) -> tuple:
    """Offset and end of the ELF section .nv_fatbin: the GPU code the CUDA runtime loads."""
    import struct

    if data[:4] != b"\x7fELF" or data[4] != 2:
        return 0, 0
    try:
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        entsize, count, names = struct.unpack_from("<HHH", data, 0x3A)
        table = struct.unpack_from("<Q", data, shoff + names * entsize + 0x18)[0]
        for i in range(count):
            name = struct.unpack_from("<I", data, shoff + i * entsize)[0]
            offset, size = struct.unpack_from("<QQ", data, shoff + i * entsize + 0x18)
            if data[table + name : table + name + 11] == b".nv_fatbin\0":
                return offset, offset + size
    except struct.error:  # a truncated or odd file: no section table to trust
        pass
    return 0, 0


def fatbin_members(path: str) -> dict:
    """(kind, arch, PTX ISA) → count for every member of a shared object's fat binaries: 'sass' with sm_XY, or
    'ptx' with sm_XY and the ISA version its header records (what `.version` says in the PTX text)."""
    import mmap
    import struct

    found: dict = {}
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return found
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            section_start, section_end = fatbin_section(data)
            start = data.find(FATBIN_MAGIC, section_start, section_end)
            while start != -1:
                (size,) = struct.unpack_from("<Q", data, start + 8)
                entry, end = start + 16, start + 16 + size
                while entry + 0x20 <= end:
                    kind, _, header, payload = struct.unpack_from("<HHIQ", data, entry)
                    minor, major, arch = struct.unpack_from("<HHI", data, entry + 0x18)
                    if not header:
                        break
                    if kind in (1, 2):
                        key = ("ptx", f"sm_{arch}", f"{major}.{minor}") if kind == 1 else ("sass", f"sm_{arch}", None)
                        found[key] = found.get(key, 0) + 1
                    entry += header + payload
                start = data.find(FATBIN_MAGIC, max(end, start + 1), section_end)
    return found
