"""The knowledge data's release history (issue 27): patch releases per row, PyTorch 1.7-2.0, the GPU code of each
PyTorch index. Every expectation is written from its source, quoted in the comment above it, not read back from
knowledge.yaml."""

from __future__ import annotations

import copy

import pytest
import yaml

from envcheck.knowledge.facts import DATA_FILE, Knowledge, KnowledgeError, Version, index_cuda

K = Knowledge.load()


def sass(*versions: str) -> tuple[Version, ...]:
    return tuple(Version(v) for v in versions)


def test_patch_releases_per_series_as_pypi_lists_them():
    # https://pypi.org/pypi/torch/json "releases" (2026-12-07): 1.10.0 1.10.1 1.10.2, 2.6.0 alone, 2.9.0 2.9.1
    assert K.release_versions("torch", "1.10") == ["1.10.0", "1.10.1", "1.10.2"]
    assert K.release_versions("torch", "2.6") == ["2.6.0"]
    assert K.release_versions("torch", "2.9") == ["2.9.0", "2.9.1"]
    # https://pypi.org/pypi/tensorflow/json: 2.15.0, 2.15.0.post1, 2.15.1; the 2.16 series starts at 2.16.1
    assert K.release_versions("tensorflow", "2.15") == ["2.15.0", "2.15.0.post1", "2.15.1"]
    assert K.release_versions("tensorflow", "2.16") == ["2.16.1", "2.16.2"]
    assert K.release_versions("torch", "3.0") == [] and K.release_versions("tensorflow", "1.15") == []


def test_every_torch_and_tf_row_lists_its_releases():
    for series in K.torch_releases():
        assert K.release_versions("torch", series), series
        assert all(Version(r).prefix(2) == Version(series) for r in K.release_versions("torch", series))
    for series in K.releases():
        assert K.release_versions("tensorflow", series), series


def test_series_of_a_release():
    assert K.series_of("torch", "2.9.1") == "2.9"
    assert K.series_of("torch", "1.7.1") == "1.7"
    assert K.series_of("torch", "1.6.0") is None
    assert K.series_of("tensorflow", "2.15.0.post1") == "2.15"
    # the JAX rows: one holds until the next key (0.4.26 holds 0.4.26-0.4.28)
    assert K.series_of("jax", "0.4.27") == "0.4.26"
    assert K.series_of("jax", "bogus") is None


def test_torch_1x_rows_read_from_the_pypi_wheels():
    # torch/version.py in torch-1.7.1-cp38-cp38-manylinux1_x86_64.whl (files.pythonhosted.org): cuda = '10.2';
    # in torch-1.12.1 also '10.2'; torch-1.13.1 and torch-2.0.1: cuda = '11.7'
    for version, cuda in (("1.7.1", "10.2"), ("1.12.1", "10.2"), ("1.13.1", "11.7"), ("2.0.1", "11.7")):
        build = K.build("torch", version, "pypi")
        assert build is not None and build.cuda == Version(cuda), version
    # METADATA of torch-2.0.1: nvidia-cudnn-cu11 (==8.5.0.96), nvidia-nccl-cu11 (==2.14.3)
    build = K.build("torch", "2.0.1", "pypi")
    assert build.cudnn == Version("8.5.0.96") and build.nccl == Version("2.14.3")
    # PyPI lists torch 1.13.1 wheels for cp37-cp311 (https://pypi.org/simple/torch/), 1.7.x for cp36-cp39
    assert K.build("torch", "1.13.1", "pypi").python == (Version("3.7"), Version("3.11"))
    assert K.build("torch", "1.7.1", "pypi").python == (Version("3.6"), Version("3.9"))
    # 1.x wheels bundled NCCL: no pin to read
    assert K.build("torch", "1.9.0", "pypi").nccl is None


def test_torch_1x_gpu_code_from_the_builder_scripts():
    # pytorch/builder lts/release/1.8 manywheel/build.sh: TORCH_CUDA_ARCH_LIST="3.7;5.0;6.0;7.0", 10.*) unchanged,
    # 11.[12]) += ";7.5;8.0;8.6" — so an RTX 30xx (8.6) has no kernels in the default (CUDA 10.2) 1.8 wheel
    default = K.build("torch", "1.8.1", "pypi")
    assert default.code.sass == sass("3.7", "5.0", "6.0", "7.0")
    assert default.kernels_for(Version("8.6")) == "none"
    assert K.torch_index_code("1.8", "cu111").code.sass == sass("3.7", "5.0", "6.0", "7.0", "7.5", "8.0", "8.6")
    # builder at 3c1d1915 (2020-12-09, 1.7.1): 10.*) += ";7.5"; 11.0) += ";7.5;8.0" (no 8.6 before CUDA 11.1)
    assert K.build("torch", "1.7.1", "pypi").code.sass == sass("3.7", "5.0", "6.0", "7.0", "7.5")
    assert K.torch_index_code("1.7", "cu110").code.kernels_for(Version("8.6")) == "native"  # sm_80 SASS runs on 8.6
    # builder release/2.0 manywheel/build_cuda.sh: 11.8) += ";7.5;8.0;8.6;9.0"; 11.[67]) += ";7.5;8.0;8.6"
    assert Version("9.0") in K.torch_index_code("2.0", "cu118").code.sass
    assert Version("9.0") not in K.build("torch", "2.0.1", "pypi").code.sass


def test_torch_index_code_of_the_2x_rows():
    # builder release/2.1 .. release/2.5: 11.8) TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST};3.7;9.0" — a K80 (3.7)
    # has kernels only in the cu118 wheels
    for series in ("2.1", "2.3", "2.5"):
        assert K.torch_index_code(series, "cu118").code.kernels_for(Version("3.7")) == "native", series
        assert K.build("torch", f"{series}.0", "pypi").kernels_for(Version("3.7")) == "none", series
    # pytorch/pytorch .ci/manywheel/build_cuda.sh (2.8 era): 12.6) "5.0;6.0;7.0;7.5;8.0;8.6;9.0";
    # 12.8) "7.0;7.5;8.0;8.6;9.0;10.0;12.0"; 12.9) "...;12.0+PTX" — a P100 (6.0) needs cu126
    assert K.torch_index_code("2.8", "cu126").code.kernels_for(Version("6.0")) == "native"
    assert K.torch_index_code("2.8", "cu128").code.kernels_for(Version("6.0")) == "none"
    cu129 = K.torch_index_code("2.8", "cu129")
    assert Version("12.0") in cu129.code.ptx and cu129.cuda == Version("12.9")
    # CUDA 13 builds start at Turing (7.5); not read from the 2.9 script itself
    cu130 = K.torch_index_code("2.9.1", "cu130")
    assert cu130.code.oldest == Version("7.5") and not cu130.confirmed
    assert K.torch_index_code("2.15", "cu126") is None and K.torch_index_code("3.0", "cu126") is None


def test_index_names_of_cuda_9_and_10():
    # PyTorch 1.7's indexes include cu92 (CUDA 9.2) and cu101
    assert index_cuda("cu92") == Version("9.2") and index_cuda("cu101") == Version("10.1")
    assert index_cuda("cpu") is None


def test_old_releases_came_from_a_find_links_page():
    # https://pytorch.org/get-started/previous-versions: 1.10 and before `-f .../torch_stable.html`,
    # 1.11 on --extra-index-url
    assert K.build("torch", "1.10.2", "pypi").find_links.endswith("torch_stable.html")
    assert K.build("torch", "1.11.0", "pypi").find_links == ""


def _data() -> dict:
    return copy.deepcopy(yaml.safe_load(DATA_FILE.read_text(encoding="utf-8")))


@pytest.mark.parametrize(
    ("framework", "series", "field", "value", "message"),
    [
        ("torch", "2.9", "releases", ["2.8.0"], "torch 2.9: release 2.8.0 is not in this row"),
        ("torch", "2.9", "releases", "2.9.0", "torch 2.9: releases must be a list"),
        ("torch", "2.9", "releases", ["2.9.1", "2.9.0"], "torch 2.9: releases must be listed oldest first"),
        ("tensorflow", "2.15", "releases", ["2.16.1"], "tensorflow 2.15: release 2.16.1 is not in this row"),
        ("torch", "2.8", "index_code", {"cuda": {"sass": ["7.0"]}}, "torch 2.8: index_code 'cuda' must be cuXYZ"),
        ("torch", "2.8", "index_code", {"cu126": ["7.0"]}, "torch 2.8: index_code 'cu126' must be cuXYZ"),
        ("jax", "0.4.26", "releases", ["0.4.25"], "jax 0.4.26: release 0.4.25 is not in this row"),
        ("jax", "0.4.26", "extras", {"cuda12_pip": {"cuda": "12.0"}}, "jax 0.4.26: extras 'cuda12_pip' must be"),
    ],
)
def test_a_malformed_row_is_named(framework: str, series: str, field: str, value: object, message: str):
    data = _data()
    data[framework][series][field] = value
    with pytest.raises(KnowledgeError, match=message.replace("(", r"\(").replace("[", r"\[")):
        Knowledge(data)
