"""Diagnosis rules on recorded probe facts (tests/data/, from real containers), and variants of them."""

from __future__ import annotations

import copy

from conftest import load_json
from envcheck.diagnose import ERROR, Facts, diagnose

RECORDED = load_json("probe-tf2.15.1-and-cuda-no-gpu-runtime.json")


def codes(probe: dict, **kwargs) -> list[str]:
    return [d.code for d in diagnose(Facts(probe=probe, **kwargs))]


def recorded_probe() -> dict:
    return copy.deepcopy(RECORDED["probe"])


def test_recorded_host_without_toolkit_is_no_gpu_runtime_first():
    found = diagnose(Facts(probe=recorded_probe(), gpu_refusal=RECORDED["gpu_refusal"]))
    assert [d.code for d in found] == ["no-gpu-runtime"]
    assert found[0].severity == ERROR
    assert "nvidia-ctk runtime configure" in found[0].fix
    assert "could not select device driver" in found[0].evidence[0]


def test_gpus_granted_but_no_driver_inside():
    assert codes(recorded_probe()) == ["no-driver"]


def test_cpu_only_package():
    probe = recorded_probe()
    probe.update(is_cuda_build=False, build_cuda=None, build_cudnn=None, compute_capabilities=[])
    assert codes(probe, gpu_refusal=RECORDED["gpu_refusal"]) == ["no-gpu-runtime", "cpu-only-build"]


def test_tensorflow_missing():
    probe = recorded_probe()
    probe.update(tensorflow=None, tensorflow_error="import tensorflow failed: ModuleNotFoundError", is_cuda_build=None)
    found = diagnose(Facts(probe=probe))
    assert [d.code for d in found] == ["tensorflow-missing", "no-driver"]
    assert "ModuleNotFoundError" in found[0].evidence[0]


def test_gpus_hidden_by_environment():
    for name, value in [
        ("CUDA_VISIBLE_DEVICES", "-1"),
        ("CUDA_VISIBLE_DEVICES", ""),
        ("NVIDIA_VISIBLE_DEVICES", "none"),
    ]:
        probe = recorded_probe()
        probe["env"] = {name: value}
        found = [d for d in diagnose(Facts(probe=probe)) if d.code == "gpus-hidden"]
        assert found and found[0].evidence == [f"{name}={value!r}"]
    probe = recorded_probe()
    probe["env"] = {"CUDA_VISIBLE_DEVICES": "0"}
    assert "gpus-hidden" not in codes(probe)


def test_working_gpu_gets_no_diagnosis():
    probe = recorded_probe()
    probe["gpus"] = [
        {"name": "/physical_device:GPU:0", "device_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    ]
    probe["nvml"].update(available=True, driver="550.54.15", error=None)
    probe["driver"] = "550.54.15"
    assert codes(probe) == []
