"""The fat-binary reader (the probe's, which scripts/read_wheels.py uses for the knowledge data's wheel facts) on
GPU code NVIDIA's nvcc compiles here: it must see each SASS architecture and the PTX with the ISA nvcc wrote, as
many of each as NVIDIA's own cuobjdump lists.

nvcc and cuobjdump come from NVIDIA's PyPI wheels (nvidia-cuda-nvcc, with its nvidia-cuda-runtime, -crt and
nvidia-nvvm, and nvidia-cuda-cuobjdump: one CUDA toolkit tree under nvidia/cu13/), which scripts/setup.sh installs
into .cuda-tools/ at the repository's root, beside the test Python rather than into it: CUDA runtime libraries in
the test Python's site-packages would be found by the probe of a framework installed there. A CUDA toolkit on the
PATH serves too. The host compiler is the machine's g++."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from envcheck.probe.probe import ld_cache
from envcheck.readers.elf import fatbin_members

sys.path.insert(0, str(REPO / "scripts"))
from read_wheels import read_wheel

KERNEL = "__global__ void k(float *x) { x[threadIdx.x] *= 2; }\nvoid launch(float *x) { k<<<1, 32>>>(x); }\n"
CUDA_TOOLS = REPO / ".cuda-tools" / "nvidia" / "cu13" / "bin"  # scripts/setup.sh installs NVIDIA's wheels here


def cuda_tool(name: str) -> str:
    """NVIDIA's tool from the wheels setup.sh installs, else from the PATH; a missing one fails the test (a fresh
    machine has both after scripts/setup.sh), it never skips."""
    path = CUDA_TOOLS / name
    found = str(path) if path.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"needs NVIDIA's {name}: scripts/setup.sh installs it (PyPI nvidia-cuda-nvcc, -cuobjdump)")
    return found


def cuobjdump_members(cuobjdump: str, library: Path) -> dict:
    """(kind, arch, PTX ISA) → count as NVIDIA's cuobjdump lists them: `--list-elf` names each SASS member
    (NAME.N.sm_XY.cubin), `--list-ptx` each PTX one (NAME.N.sm_XY.ptx), `-ptx` prints each PTX's header
    (`arch = sm_XY`) and text (`.version X.Y`)."""
    listing = subprocess.run(
        [cuobjdump, "--list-elf", "--list-ptx", str(library)], capture_output=True, text=True, check=True
    ).stdout
    dumped = subprocess.run([cuobjdump, "-ptx", str(library)], capture_output=True, text=True, check=True).stdout
    isas: dict[str, set[str]] = {}
    for member in dumped.split("Fatbin ptx code:")[1:]:
        arch, version = re.search(r"^arch = (sm_\d+)$", member, re.M), re.search(r"^\.version (\S+)$", member, re.M)
        assert arch and version, member[:500]
        isas.setdefault(arch[1], set()).add(version[1])
    found: dict = {}
    for kind, arch in re.findall(r"^(ELF|PTX) file +\d+: \S+\.(sm_\d+)\.(?:cubin|ptx)$", listing, re.M):
        if kind == "ELF":
            key = ("sass", arch, None)
        else:
            (isa,) = isas[arch]  # one ISA per architecture here: one nvcc wrote them all
            key = ("ptx", arch, isa)
        found[key] = found.get(key, 0) + 1
    return found


def test_sass_and_ptx_with_their_isa(tmp_path: Path):
    nvcc, cuobjdump = cuda_tool("nvcc"), cuda_tool("cuobjdump")
    (tmp_path / "k.cu").write_text(KERNEL)
    library = tmp_path / "libk.so"
    subprocess.run(
        [
            nvcc,
            "-shared",
            "-Xcompiler",
            "-fPIC",
            "-gencode",
            "arch=compute_80,code=sm_80",
            "-gencode",
            "arch=compute_90,code=[sm_90,compute_90]",
            "-o",
            str(library),
            str(tmp_path / "k.cu"),
        ],
        check=True,
        capture_output=True,
    )
    expected = cuobjdump_members(cuobjdump, library)
    # what the -gencode flags above ask for: SASS for sm_80 and sm_90, PTX for sm_90
    assert {(kind, arch) for kind, arch, _ in expected} == {("sass", "sm_80"), ("sass", "sm_90"), ("ptx", "sm_90")}
    assert fatbin_members(library) == expected
    (isa,) = {version for kind, _, version in expected if kind == "ptx"}
    wheel = tmp_path / "fake-1.0-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(library, "fake/libk.so")
        archive.writestr("fake/__init__.py", "")
    assert read_wheel(wheel, cuobjdump) == {
        "wheel": wheel.name,
        "version": None,
        "requires_python": None,
        "requires": [],
        "objects": {
            "fake/libk.so": {
                "sass": {"sm_80": expected[("sass", "sm_80", None)], "sm_90": expected[("sass", "sm_90", None)]},
                "ptx": {f"sm_90 ISA {isa}": expected[("ptx", "sm_90", isa)]},
            }
        },
        "cuobjdump_disagrees": [],
    }


def test_objects_without_gpu_code_have_none(tmp_path: Path):
    libc = Path(next(p for name, p in ld_cache().items() if name == "libc.so.6"))
    assert not fatbin_members(libc)
    truncated = tmp_path / "truncated.so"
    truncated.write_bytes(libc.read_bytes()[:4096])
    assert not fatbin_members(truncated)
