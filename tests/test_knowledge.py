"""The knowledge API against the published tables (shared reference, sections A-D)."""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from envcheck.knowledge import Knowledge, Version

K = Knowledge.load()

# Section A: tensorflow.org/install/source#gpu, tested build configurations.
TESTED = """
2.21 3.10-3.13 9.3 12.5
2.20 3.9-3.13 9.3 12.5
2.19 3.9-3.12 9.3 12.5
2.18 3.9-3.12 9.3 12.5
2.17 3.9-3.12 8.9 12.3
2.16 3.9-3.12 8.9 12.3
2.15 3.9-3.11 8.9 12.2
2.14 3.9-3.11 8.7 11.8
2.13 3.8-3.11 8.6 11.8
2.12 3.8-3.11 8.6 11.8
2.11 3.7-3.10 8.1 11.2
2.10 3.7-3.10 8.1 11.2
"""


@pytest.mark.parametrize("row", TESTED.strip().splitlines())
def test_tested_configurations(row: str):
    release, python, cudnn, cuda = row.split()
    tf = K.tf_build(release + ".0")
    assert tf is not None
    low, high = python.split("-")
    assert (str(tf.python[0]), str(tf.python[1])) == (low, high)
    assert tf.supports_python(low) and tf.supports_python(high)
    assert not tf.supports_python(f"3.{int(high.split('.')[1]) + 1}")
    assert (tf.cudnn, tf.cuda) == (Version.parse(cudnn), Version.parse(cuda))


@pytest.mark.parametrize(
    ("release", "native", "ptx", "build_cuda", "build_cudnn"),
    [
        ("2.10.0", ["3.5", "5.0", "6.0", "7.0", "7.5"], ["8.0"], "11.2", "8"),
        ("2.14.0", ["3.5", "5.0", "6.0", "7.0", "7.5"], ["8.0"], "11.8", "8"),
        ("2.15.1", ["5.0", "6.0", "7.0", "7.5"], ["8.0"], "12.2", "8"),
        ("2.16.1", ["5.0", "6.0", "7.0", "8.0"], ["9.0"], "12.3", "8"),
        ("2.17.0", ["6.0", "7.0", "8.0", "8.9"], ["9.0"], "12.3", "8"),
        ("2.19.0", ["6.0", "7.0", "8.0", "8.9"], ["9.0"], "12.5.1", "9"),
    ],
)
def test_wheel_build_info(release, native, ptx, build_cuda, build_cudnn):
    tf = K.tf_build(release)
    assert [str(v) for v in tf.native] == native and [str(v) for v in tf.ptx] == ptx
    assert (tf.build_cuda, tf.build_cudnn) == (build_cuda, build_cudnn)


def test_and_cuda_pins():
    assert K.tf_build("2.13.1").and_cuda is None  # the extra exists from 2.14
    pins = K.tf_build("2.15.1").and_cuda
    assert (pins.cuda_major, str(pins.cuda_runtime), str(pins.cudnn)) == (12, "12.2.140", "8.9.4.25")
    assert str(K.tf_build("2.18.0").and_cuda.cudnn) == "9.3.0.75"
    for release in ("2.15.1", "2.16.2", "2.17.1", "2.19.1"):  # the full sets agree with the headline pins
        pins = K.tf_build(release).and_cuda
        assert f"nvidia-cudnn-cu12=={pins.cudnn}" in pins.packages
        assert f"nvidia-cuda-runtime-cu12=={pins.cuda_runtime}" in pins.packages
        assert len(pins.packages) == 12


@pytest.mark.parametrize(
    ("cuda", "driver"),
    [
        ("11.2", "460.27.03"),
        ("11.8", "520.61.05"),
        ("12.2", "535.54.03"),
        ("12.2.2", "535.104.05"),
        ("11.4.3", "470.82.01"),
        ("12.5", "555.42.02"),
        ("13.0", "580.65.06"),
    ],
)
def test_minimum_drivers(cuda: str, driver: str):
    assert str(K.min_driver(cuda)) == driver


def test_minor_version_floors_and_cudnn_majors():
    assert str(K.minor_compat_floor(11)) == "450.80.02"
    assert str(K.minor_compat_floor(12)) == "525.60.13"
    assert K.cudnn_supports_cuda(9, 12) and not K.cudnn_supports_cuda(8, 13)
    assert K.newest_cuda_for_driver(Version.parse("535.54.03")) == Version.parse("12.2")


@pytest.mark.parametrize(
    ("product", "cc"),
    [
        ("NVIDIA A100-SXM4-40GB", "8.0"),
        ("NVIDIA A10G", "8.6"),
        ("NVIDIA A10", "8.6"),
        ("Tesla K80", "3.7"),
        ("NVIDIA H100 80GB HBM3", "9.0"),
        ("Tesla M60", "5.2"),
        ("NVIDIA GeForce GTX TITAN X", "5.2"),
        ("Tesla T4", "7.5"),
        ("NVIDIA L40S", "8.9"),
    ],
)
def test_gpu_names(product: str, cc: str):
    assert str(K.gpu_compute_capability(product)) == cc


def test_unknown_things_are_none():
    assert K.tf_build("1.15.0") is None and K.min_driver("7.0") is None
    assert K.gpu_compute_capability("Voodoo 3dfx") is None


def test_version_ordering():
    assert Version.parse("535.104.05") > Version.parse("535.54.03")
    assert Version.parse("12.10") > Version.parse("12.9")
    assert Version.parse("3.10") == Version.parse("3.10.0")
    assert str(Version.parse("2.15.0rc1")) == "2.15.0"
    with pytest.raises(ValueError):
        Version.parse("abc")


# What a source in knowledge.yaml can point at, as the data does: a web page (https://…), one of this
# repository's scripts or test data that made or holds the facts (they must exist), a source file in the upstream
# project's repository (tensorflow/python/platform/build_info.py, c10/cuda/CUDAFunctions.cpp), or, for NVIDIA's
# datasheets (gpu_peaks), their web addresses written without the scheme (nvidia.com/en-us/data-center/h100).
WEB_PAGE = re.compile(r"https://[a-z0-9-]+(?:\.[a-z0-9-]+)+(?:/\S*)?")
THIS_REPOSITORY = re.compile(r"(?<![\w/.:-])(?:scripts|tests)/[\w./-]*[\w]")
UPSTREAM_FILE = re.compile(r"(?<![\w/.:-])[a-z][\w-]*(?:/[\w.+-]+)+\.(?:py|cc|cpp|h)\b")
WEB_ADDRESS = re.compile(r"(?<![\w/.:-])[a-z0-9-]+(?:\.[a-z0-9-]+)+/[\w./#-]+")


def references(text: str) -> list[str]:
    return [m for pattern in (WEB_PAGE, THIS_REPOSITORY, UPSTREAM_FILE, WEB_ADDRESS) for m in pattern.findall(text)]


def test_every_source_is_a_reference():
    assert set(K.sources) >= {"tested_builds", "build_info", "and_cuda", "cuda_drivers", "gpus"}
    assert references("the wheels, read by hand") == [] and references("NVIDIA's datasheets") == []
    for name, text in K.sources.items():
        assert references(text), f"source {name} names no web page, script, repository file or web address: {text}"
        for path in THIS_REPOSITORY.findall(text):
            assert (REPO / path).exists(), f"source {name} names {path}, which this repository does not have"


def test_kernels_for_gpu_generations():
    tf215 = K.tf_build("2.15.1")
    assert tf215.kernels_for(Version.parse("7.5")) == "native"
    assert tf215.kernels_for(Version.parse("5.2")) == "native"  # sm_50 SASS runs on 5.2
    assert tf215.kernels_for(Version.parse("9.0")) == "ptx"
    assert tf215.kernels_for(Version.parse("3.7")) == "none"
    assert K.tf_build("2.10.0").kernels_for(Version.parse("3.7")) == "native"


# -- what the wheels carry (scripts/read_wheels.py over each wheel; the audit of 2026-11-27) -----------------


@pytest.mark.parametrize(
    ("release", "sass", "ptx"),
    [
        ("2.10.1", ["3.5", "5.0", "6.0", "7.0", "7.5", "8.0"], {"8.0": "7.2"}),
        ("2.14.1", ["3.5", "5.0", "6.0", "7.0", "7.5", "8.0"], {"8.0": "7.8"}),
        ("2.15.1", ["5.0", "6.0", "7.0", "7.5", "8.0"], {"8.0": "8.1"}),
        ("2.16.2", ["5.0", "6.0", "7.0", "8.0", "9.0"], {"9.0": "8.1"}),
        ("2.17.1", ["6.0", "7.0", "8.0", "8.9", "9.0"], {"9.0": "8.1"}),
        ("2.18.1", ["6.0", "7.0", "8.0", "8.9", "9.0"], {"9.0": "8.3"}),
        ("2.19.1", ["6.0", "7.0", "8.0", "8.9", "9.0"], {"9.0": "8.3"}),
    ],
)
def test_gpu_code_read_from_the_wheels(release: str, sass: list[str], ptx: dict[str, str]):
    code = K.tf_build(release).code
    assert [str(v) for v in code.sass] == sass
    assert {str(arch): str(isa) for arch, isa in code.ptx.items()} == ptx


def test_compute_xy_in_tfs_build_info_means_sass_and_ptx():
    # What every wheel shows, so a release envcheck has not read is understood the same way.
    from envcheck.knowledge import GpuCode

    for release in K.releases():
        tf = K.tf_build(release)
        derived = GpuCode.from_build_info(
            [f"sm_{v.major}{v.minor}" for v in tf.native] + [f"compute_{v.major}{v.minor}" for v in tf.ptx]
        )
        assert derived.sass == tf.code.sass and set(derived.ptx) == set(tf.code.ptx), release
    h100 = Version("9.0")
    assert K.tf_build("2.17.1").kernels_for(h100) == "native" and K.tf_build("2.15.1").kernels_for(h100) == "ptx"


def test_driver_ptx_isa():
    assert str(K.driver_ptx_isa(Version("535.54.03"))) == "8.2"  # CUDA 12.2
    assert str(K.driver_ptx_isa(Version("560.35.03"))) == "8.5"  # CUDA 12.6 kept ISA 8.5
    assert str(K.driver_ptx_isa(Version("580.65.06"))) == "9.0"
    assert K.driver_ptx_isa(Version("440.33")) is None


def test_and_cuda_corrections():
    tf214 = K.tf_build("2.14.1")
    assert tf214.and_cuda.python is not None and Version("3.10") in tf214.and_cuda.python
    assert Version("3.11") not in tf214.and_cuda.python and "tensorrt==8.5.3.1" in tf214.and_cuda.python_note
    tf218 = K.tf_build("2.18.1").and_cuda
    assert "nvidia-nccl-cu12==2.21.5" in tf218.packages and len(tf218.packages) == 12
    assert set(tf218.packages) - set(K.tf_build("2.19.1").and_cuda.packages) == {"nvidia-nccl-cu12==2.21.5"}
    tf220, tf221 = K.tf_build("2.20.0").and_cuda, K.tf_build("2.21.0").and_cuda
    assert tf220.packages == () and tf220.ranges["nvidia-nccl-cu12"] == ">=2.25.1,<3.0"
    assert (
        tf221.ranges["nvidia-nccl-cu12"] == ">=2.27.7,<3.0" and tf221.ranges["nvidia-cudnn-cu12"] == ">=9.3.0.75,<10.0"
    )
    assert K.tf_build("2.21.0").confirmed


def test_message_meanings_follow_xlas_sources():
    dlopen = K.classify("Cannot dlopen some GPU libraries. Please make sure the missing libraries mentioned above")
    assert "cublasLt" in dlopen.meaning and "dlopen_checker" in dlopen.meaning
    drivers = K.classify("Could not find cuda drivers on your machine, GPU will not be used.")
    assert "libcudart" in drivers.meaning and "not the driver" in drivers.meaning
