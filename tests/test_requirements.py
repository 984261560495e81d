"""What an image needs from a host (envcheck/diagnosis/requirements.py), from probes recorded on real images.

Expected drivers are NVIDIA's published minimums (CUDA Toolkit release notes, Table 3 "CUDA Toolkit and Minimum
Required Driver Version": 12.2 GA >= 535.54.03, 12.8 GA >= 570.26, 12.9 GA >= 575.51.03; minor-version
compatibility for CUDA 12.x from >= 525.60.13, the CUDA compatibility guide) and the PTX ISA history of the PTX
ISA manual (ISA 8.1 came with CUDA 12.1, 8.8 with 12.9); the GPU lists restate the SASS/PTX each recorded probe
read from the wheel's binaries.
"""

from __future__ import annotations

import pytest

from conftest import load_json
from envcheck.diagnosis.probe_facts import Facts
from envcheck.diagnosis.requirements import host_needs


def needs(name: str) -> dict:
    return host_needs(Facts(probe=load_json(name)["probe"])).to_dict()


def test_torch_from_pypi_needs_the_driver_of_the_cuda_runtime_it_loads():
    found = needs("probe-torch2.9.1-pypi-no-gpu-runtime.json")
    assert (found["cuda"], found["min_driver"], found["min_driver_minor_compat"]) == ("12.8", "570.26", "525.60.13")
    assert found["cuda_from"] == "libcudart the loader finds"
    assert found["ptx_isa"] is None and found["min_driver_for_ptx"] is None  # the wheel carries SASS only
    # SASS sm_70 sm_75 sm_80 sm_86 sm_89 sm_90 sm_100 sm_120, no PTX
    assert found["gpus"] == {
        "native": ["7.0–7.x", "8.0–8.x", "9.0–9.x", "10.0–10.x", "12.0–12.x"],
        "ptx_jit": [],
        "none": ["< 7.0", "11.x", ">= 13.0"],
    }


def test_jax_plugin_carries_ptx_for_gpus_newer_than_its_sass():
    found = needs("probe-jax0.10.2-cuda12-no-gpu-runtime.json")
    assert (found["cuda"], found["min_driver"]) == ("12.9", "575.51.03")
    assert (found["ptx_isa"], found["min_driver_for_ptx"]) == ("8.8", "575.51.03")
    # SASS sm_50 sm_60 sm_70 sm_80 sm_90 sm_100 sm_101 sm_120, PTX compute_120 (ISA 8.8)
    assert found["gpus"] == {
        "native": ["5.0–5.x", "6.0–6.x", "7.0–7.x", "8.0–8.x", "9.0–9.x", "10.0–10.x", "12.0–12.x"],
        "ptx_jit": [">= 13.0"],
        "none": ["< 5.0", "11.x"],
    }


def test_tensorflow_2_15_runs_hopper_by_ptx_jit_with_a_driver_that_compiles_isa_8_1():
    found = needs("probe-tf2.15.1-and-cuda-no-gpu-runtime.json")
    assert (found["cuda"], found["min_driver"], found["min_driver_minor_compat"]) == ("12.2", "535.54.03", "525.60.13")
    assert (found["ptx_isa"], found["min_driver_for_ptx"]) == ("8.1", "530.30.02")  # CUDA 12.1 GA's minimum
    assert found["gpus"]["native"] == ["5.0–5.x", "6.0–6.x", "7.0–7.x", "8.0–8.x"]
    assert found["gpus"]["ptx_jit"] == [">= 9.0"]
    assert "minor-version compatibility" in found["said"] and "PTX JIT on >= 9.0" in found["said"]


@pytest.mark.parametrize("probe", [{}, {"framework": "torch", "cuda_libs": "junk", "gpu_code": 3, "env": []}])
def test_an_image_without_cuda_needs_nothing_and_says_so(probe: dict):
    found = host_needs(Facts(probe=probe)).to_dict()
    assert found["cuda"] is None and found["min_driver"] is None and found["gpus"]["native"] == []
    assert "no CUDA runtime" in found["said"]


def test_a_cuda_base_image_says_its_cuda_and_requirement_when_no_framework_loaded_one():
    probe = {"env": {"CUDA_VERSION": "12.4.1", "NVIDIA_REQUIRE_CUDA": "cuda>=12.4 brand=tesla,driver>=470,driver<471"}}
    found = host_needs(Facts(probe=probe)).to_dict()
    assert (found["cuda"], found["cuda_from"], found["min_driver"]) == (
        "12.4",
        "the base image's CUDA_VERSION",
        "550.54.14",
    )
    assert found["require_cuda"] == "cuda>=12.4 brand=tesla,driver>=470,driver<471"
