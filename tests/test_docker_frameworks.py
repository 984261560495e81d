"""PyTorch and JAX end to end on a real Docker engine: real wheels from PyPI in real images, probed in real
containers, diagnosed with the same codes as TensorFlow (issue 11).

One session-scoped matrix run builds the default matrix's torch and jax stacks (so `make matrix` reuses them) and
two made for one diagnosis each: jax[cpu], and the torch stack with CUDA_VISIBLE_DEVICES="" (it shares every
layer but the last with the default torch stack). What the daemon can give containers decides what is expected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import daemon_gives_gpus, default_stacks, images_removed_after, run_matrix

pytestmark = pytest.mark.docker

STACKS = ["torch-2.9-pypi", "jax-0.10-cu12"]
MADE = [
    {"name": "j-cpu", "jax": "0.10.2", "variant": "cpu"},
    {"name": "t-hidden", "torch": "2.9.1", "variant": "pypi", "env": {"CUDA_VISIBLE_DEVICES": ""}},
]


@pytest.fixture(scope="module")
def gpus(docker_api: Any) -> bool:
    return daemon_gives_gpus(docker_api)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, docker_api: Any, image_janitor: None) -> Iterator[dict[str, Any]]:
    """`envcheck matrix --json` over the torch and jax stacks, as a user runs it. Their 6-7 GB images go when this
    module ends, not with the session's, so the disk holds them and TensorFlow's no longer than needed."""
    with images_removed_after(docker_api):
        yield run_matrix(tmp_path_factory.mktemp("frameworks"), default_stacks(*STACKS) + MADE)["results"]


def refused(result: dict[str, Any], gpus: bool) -> None:
    """Without the NVIDIA Container Toolkit the daemon refuses --gpus all and envcheck says so first."""
    codes = [d["code"] for d in result["diagnoses"]]
    if gpus:
        assert result["run"]["gpu_refusal"] is None and "no-gpu-runtime" not in codes
    else:
        assert "could not select device driver" in result["run"]["gpu_refusal"]
        assert codes[0] == "no-gpu-runtime" and result["status"] == "cpu-only"
        assert result["probe"]["gpus"] == [] and result["probe"]["driver"] is None


def test_torch_from_pypi_reports_its_real_build(run: dict[str, Any], gpus: bool):
    result = run["torch-2.9-pypi"]
    probe = result["probe"]
    assert probe["framework"] == "torch" and probe["framework_version"] == "2.9.1+cu128"
    assert probe["is_cuda_build"] is True and probe["build_cuda"] == "12.8"
    assert probe["compute_capabilities"] == ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    assert probe["gpu_code"]["sass"] == ["7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"]
    assert probe["gpu_code"]["ptx"] == {}  # PyTorch ships no PTX
    assert probe["tf32_enabled"] is False  # PyTorch's default for matmuls
    libs = probe["cuda_libs"]
    assert libs["nvidia_packages"]["nvidia-cudnn-cu12"] == "9.10.2.21"
    assert libs["runtime_versions"]["cudnn"] == "9.10.2"
    assert libs["libraries"]["cudart"]["found"]["soname"] == "libcudart.so.12"
    refused(result, gpus)
    cpu = [b for b in result["benchmark"] if b["device"] == "cpu" and b["library"] == "torch"]
    assert cpu and cpu[0]["tflops"] > 0.01
    assert result["definition"]["framework"] == "torch" and result["predicted"] == []


def test_jax_cuda12_reports_its_real_build(run: dict[str, Any], gpus: bool):
    result = run["jax-0.10-cu12"]
    probe = result["probe"]
    assert probe["framework"] == "jax" and probe["framework_version"] == "0.10.2"
    assert probe["is_cuda_build"] is True and probe["build_cuda"].startswith("12.")
    assert probe["build_info"]["plugins"]["jax-cuda12-plugin"] == "0.10.2"
    assert probe["gpu_code"]["sass"][0] == "5.0" and "12.0" in probe["gpu_code"]["ptx"]
    assert probe["cuda_libs"]["libraries"]["cudnn"]["found"]["soname"] == "libcudnn.so.9"
    refused(result, gpus)
    assert any(b["library"] == "jax" and b["device"] == "cpu" and b["tflops"] for b in result["benchmark"])


def test_jax_cpu_is_cpu_only_build(run: dict[str, Any]):
    result = run["j-cpu"]
    assert result["probe"]["is_cuda_build"] is False and result["probe"]["build_info"]["plugins"] == {}
    found = next(d for d in result["diagnoses"] if d["code"] == "cpu-only-build")
    assert found["severity"] == "error" and "jax[cuda12]" in found["fix"]
    assert result["status"] == "cpu-only"
    assert [p["code"] for p in result["predicted"]] == []  # lint has nothing against asking for the CPU


def test_torch_with_gpus_hidden(run: dict[str, Any]):
    result = run["t-hidden"]
    assert result["probe"]["env"]["CUDA_VISIBLE_DEVICES"] == ""
    hidden = next(d for d in result["diagnoses"] if d["code"] == "gpus-hidden")
    assert hidden["evidence"] == ["CUDA_VISIBLE_DEVICES=''"] and hidden["severity"] == "error"
    assert result["status"] == "cpu-only"
