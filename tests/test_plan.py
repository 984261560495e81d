"""`envcheck plan` on driver/GPU cases chosen from the published facts (reference sections A-D)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from envcheck.knowledge import Knowledge, Version
from envcheck.matrix import parse_matrix
from envcheck.plan import Host, plan

MATRIX = parse_matrix(
    "stacks:\n"
    "  - {name: tf-2.10, tensorflow: '2.10.1', variant: plain, base: nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04,"
    " python: '3.10'}\n"
    "  - {name: tf-2.14, tensorflow: '2.14.1', variant: and-cuda}\n"
    "  - {name: tf-2.15, tensorflow: '2.15.1', variant: and-cuda}\n"
    "  - {name: tf-2.17, tensorflow: '2.17.1', variant: and-cuda}\n"
    "  - {name: tf-2.19, tensorflow: '2.19.1', variant: and-cuda}\n"
    "  - {name: tf-2.19-py313, tensorflow: '2.19.1', variant: and-cuda, python: '3.13'}\n"
    "  - {name: tf-cpu, tensorflow: '2.15.1', variant: cpu}\n",
    Path("m.yaml"),
)
K = Knowledge.load()


def verdicts(driver: str, *gpus: tuple[str, str]) -> dict[str, dict]:
    host = Host(Version.parse(driver), tuple((name, Version.parse(cc)) for name, cc in gpus))
    return {v["stack"]: v for v in plan(list(MATRIX.stacks), host, K)}


def test_h100_on_a_current_driver():
    # No TF wheel has sm_90 SASS: 2.16+ carry compute_90 PTX, 2.15 compute_80; all JIT on an H100.
    v = verdicts("560.35.03", ("NVIDIA H100 80GB HBM3", "9.0"))
    for name in ("tf-2.15", "tf-2.17", "tf-2.19"):
        assert v[name]["verdict"] == "warn" and v[name]["codes"] == ["ptx-jit"], name
    assert "JIT-compiled from PTX" in v["tf-2.19"]["reason"]
    assert v["tf-2.19-py313"]["verdict"] == "fails" and v["tf-2.19-py313"]["codes"] == ["python-unsupported", "ptx-jit"]
    assert v["tf-cpu"]["codes"] == ["cpu-only-build"]


def test_ada_gpu_has_native_kernels_from_2_17():
    v = verdicts("560.35.03", ("NVIDIA L40S", "8.9"))
    assert v["tf-2.19"] == {"stack": "tf-2.19", "verdict": "ok", "codes": [], "reason": "built for this driver and GPU"}
    assert v["tf-2.17"]["verdict"] == "ok"
    assert v["tf-2.15"]["codes"] == ["ptx-jit"]


def test_old_11x_era_driver():
    v = verdicts("460.32.03", ("Tesla V100-SXM2-16GB", "7.0"))
    assert v["tf-2.10"]["verdict"] == "ok"  # CUDA 11.2 needs 460.27.03
    assert v["tf-2.14"]["verdict"] == "warn" and v["tf-2.14"]["codes"] == ["minor-version-compat"]
    for name in ("tf-2.15", "tf-2.17", "tf-2.19"):
        assert v[name]["verdict"] == "fails" and v[name]["codes"] == ["driver-too-old"]
    assert "CUDA 12.2 needs driver >= 535.54.03" in v["tf-2.15"]["reason"]
    assert "newest stack that would work on this driver: tf-2.14" in v["tf-2.15"]["reason"]


def test_minor_version_compatibility_in_use():
    v = verdicts("535.54.03", ("NVIDIA A100-SXM4-40GB", "8.0"))
    assert v["tf-2.15"]["verdict"] == "warn" and v["tf-2.15"]["codes"] == ["ptx-jit"]  # sm_75 + compute_80 only
    assert v["tf-2.17"]["verdict"] == "warn" and v["tf-2.17"]["codes"] == ["minor-version-compat"]
    assert "545.23.06" in v["tf-2.17"]["reason"]


def test_ptx_jit_under_minor_version_compatibility_fails():
    v = verdicts("535.54.03", ("NVIDIA H100 80GB HBM3", "9.0"))
    assert v["tf-2.17"]["verdict"] == "fails"
    assert v["tf-2.17"]["codes"] == ["minor-version-compat", "driver-too-old"]


def test_maxwell_gpu():
    v = verdicts("560.35.03", ("Tesla M60", "5.2"))
    assert v["tf-2.15"]["verdict"] == "ok"  # sm_50 runs on 5.2
    assert v["tf-2.17"]["verdict"] == "fails" and v["tf-2.17"]["codes"] == ["compute-capability-unsupported"]
    assert "oldest supported 6.0" in v["tf-2.17"]["reason"]


def test_kepler_gpu():
    v = verdicts("470.82.01", ("Tesla K80", "3.7"))
    assert v["tf-2.10"]["verdict"] == "ok"  # sm_35 SASS runs on 3.7; CUDA 11.2 needs 460.27.03
    assert v["tf-2.14"]["verdict"] == "warn" and v["tf-2.14"]["codes"] == ["minor-version-compat"]
    assert v["tf-2.15"]["verdict"] == "fails"
    assert v["tf-2.15"]["codes"] == ["driver-too-old", "compute-capability-unsupported"]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_cli_plan_with_gpu_name(fmt: str):
    args = ["plan", "-m", str(REPO / "matrix.yaml"), "--driver", "535.54.03", "--gpu", "NVIDIA A100-SXM4-40GB"]
    done = run_cli(*args, *(["--json"] if fmt == "json" else []))
    assert done.returncode == 0, done.stderr
    if fmt == "json":
        result = json.loads(done.stdout)
        assert [r["stack"] for r in result] == ["tf-2.15-cuda12", "tf-2.17-cuda12", "tf-2.19-cuda12", "tf-2.15-cpu"]
        assert set(result[0]) == {"stack", "verdict", "codes", "reason"}
        assert result[0]["verdict"] == "warn" and result[3]["verdict"] == "fails"
    else:
        assert done.stdout.startswith("Plan for driver 535.54.03 with NVIDIA A100-SXM4-40GB (8.0)\n")
        assert "tf-2.15-cpu     fails  tensorflow-cpu is built without CUDA" in done.stdout


def test_cli_plan_errors():
    done = run_cli("plan", "-m", str(REPO / "matrix.yaml"), "--driver", "535.54.03", "--gpu", "Voodoo 5")
    assert done.returncode == 2 and "unknown GPU 'Voodoo 5'" in done.stderr
    done = run_cli("plan", "-m", str(REPO / "matrix.yaml"), "--compute-capability", "8.0")
    assert done.returncode == 2 and "need --driver too" in done.stderr


def test_cli_plan_without_flags_says_there_is_no_driver():
    done = run_cli("plan", "-m", str(REPO / "matrix.yaml"))
    assert done.returncode == 2
    assert "no driver can be read" in done.stderr or "no NVIDIA driver found on this host" in done.stderr
    assert "--driver VERSION" in done.stderr
