"""The fat-binary reader (the probe's, which scripts/read_wheels.py uses for the knowledge data's wheel facts) on
GPU code this machine's nvcc compiles: it must see each SASS architecture and the PTX with the ISA nvcc writes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from envcheck.knowledge import Knowledge, Version
from envcheck.probe.probe import fatbin_members, ld_cache

sys.path.insert(0, str(REPO / "scripts"))
from read_wheels import read_wheel

KERNEL = "__global__ void k(float *x) { x[threadIdx.x] *= 2; }\nvoid launch(float *x) { k<<<1, 32>>>(x); }\n"


@pytest.fixture(scope="module")
def nvcc() -> tuple[str, Version]:
    path = shutil.which("nvcc")
    if path is None:
        pytest.skip("needs NVIDIA's nvcc (CUDA toolkit) to compile GPU code; the wheels were read where it exists")
    release = re.search(
        r"release (\d+\.\d+)", subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    )
    assert release, "nvcc --version names no release"
    return path, Version(release[1])


def test_sass_and_ptx_with_their_isa(tmp_path: Path, nvcc: tuple[str, Version]):
    path, cuda = nvcc
    (tmp_path / "k.cu").write_text(KERNEL)
    library = tmp_path / "libk.so"
    subprocess.run(
        [
            path,
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
    found = fatbin_members(library)
    isa = str(Knowledge.load().ptx_isa(cuda))  # nvcc writes the newest PTX ISA of its CUDA release
    assert {(kind, arch, version) for kind, arch, version in found} == {
        ("sass", "sm_80", None),
        ("sass", "sm_90", None),
        ("ptx", "sm_90", isa),
    }
    wheel = tmp_path / "fake-1.0-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(library, "fake/libk.so")
        archive.writestr("fake/__init__.py", "")
    assert read_wheel(wheel, None) == {
        "wheel": wheel.name,
        "version": None,
        "requires_python": None,
        "requires": [],
        "objects": {
            "fake/libk.so": {
                "sass": {"sm_80": found[("sass", "sm_80", None)], "sm_90": found[("sass", "sm_90", None)]},
                "ptx": {f"sm_90 ISA {isa}": 1},
            }
        },
    }


def test_objects_without_gpu_code_have_none(tmp_path: Path):
    libc = Path(next(p for name, p in ld_cache().items() if name == "libc.so.6"))
    assert not fatbin_members(libc)
    truncated = tmp_path / "truncated.so"
    truncated.write_bytes(libc.read_bytes()[:4096])
    assert not fatbin_members(truncated)
