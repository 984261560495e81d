"""The GPU rules on facts recorded on a real GPU host by `make gpu-check` (tests/data/gpu-check/).

GPU machines lent to the project now and then have an H100 or H200, driver 580, PyTorch and JAX but no TensorFlow
and no Docker (README, "Tests and benchmarks").
When no recording is there yet, these tests say so and skip; they never pass on invented numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envcheck.diagnose import ERROR, Facts, diagnose, uses_gpu
from envcheck.knowledge import Knowledge, Version

RECORDED = Path(__file__).resolve().parent / "data" / "gpu-check"
pytestmark = pytest.mark.skipif(
    not (RECORDED / "doctor.json").exists(),
    reason="no GPU host recorded yet: run `make gpu-check GPU_CHECK_DIR=tests/data/gpu-check` on one",
)


def frameworks() -> dict[str, dict]:
    report = json.loads((RECORDED / "doctor.json").read_text())
    return {c["framework"]: c for c in report["frameworks"] if c.get("version")}


def test_every_framework_there_sees_the_gpu_through_the_same_rules():
    found = frameworks()
    assert {"torch", "jax"} <= set(found)
    for name, check in found.items():
        probe = check["probe"]
        assert probe["nvml"]["available"] and probe["driver"], name
        assert Version(probe["driver"]) >= Version("580"), name
        assert probe["nvml"]["gpus"][0]["compute_capability"] == "9.0", name
        diagnoses = diagnose(Facts(probe=probe, in_container=False))
        assert [d.code for d in diagnoses if d.severity == ERROR] == [], name
        assert uses_gpu(probe, diagnoses) and check["uses_gpu"], name


def test_bfloat16_matmul_reaches_most_of_the_dense_peak():
    k = Knowledge.load()
    for name, check in frameworks().items():
        probe = check["probe"]
        peak = k.gpu_peak(probe["nvml"]["gpus"][0]["name"])
        assert peak is not None, probe["nvml"]["gpus"][0]["name"]
        bf16 = [b for b in probe["benchmark"] if b["device"] == "gpu" and b["dtype"] == "bfloat16" and b["n"] == 8192]
        assert bf16 and bf16[0]["tflops"], name
        assert 100 * bf16[0]["tflops"] / peak.tflops["bfloat16"] > 70, (name, bf16[0])


def test_tf32_state_is_the_frameworks_own():
    found = frameworks()
    assert found["torch"]["probe"]["tf32_enabled"] is False  # PyTorch's default for matmuls
    fp32 = [b for b in found["torch"]["probe"]["benchmark"] if b["device"] == "gpu" and b["dtype"] == "float32"]
    assert fp32 and all(b.get("precision") == "float32" for b in fp32)
