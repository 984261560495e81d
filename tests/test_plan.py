"""`envcheck plan` on driver/GPU cases chosen from the published facts (reference sections A-D) and the GPU code
read from the wheels themselves (scripts/read_wheels.py): in TF's builds `compute_XY` means SASS for sm_XY
and PTX both, so the newest listed generation runs natively, and PTX is JIT-compiled only on newer GPUs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, ThisHost, run_cli
from envcheck.diagnosis.plan import PlannedHost, plan
from envcheck.inputs.matrix import parse_matrix
from envcheck.knowledge import Knowledge, Version

MATRIX = parse_matrix(
    "stacks:\n"
    "  - {name: tf-2.10, tensorflow: '2.10.1', variant: plain, base: nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04,"
    " python: '3.10'}\n"
    "  - {name: tf-2.14, tensorflow: '2.14.1', variant: and-cuda, python: '3.10'}\n"
    "  - {name: tf-2.15, tensorflow: '2.15.1', variant: and-cuda}\n"
    "  - {name: tf-2.17, tensorflow: '2.17.1', variant: and-cuda}\n"
    "  - {name: tf-2.19, tensorflow: '2.19.1', variant: and-cuda}\n"
    "  - {name: tf-2.19-py313, tensorflow: '2.19.1', variant: and-cuda, python: '3.13'}\n"
    "  - {name: tf-cpu, tensorflow: '2.15.1', variant: cpu}\n",
    Path("m.yaml"),
)
K = Knowledge.load()


def verdicts(driver: str, *gpus: tuple[str, str]) -> dict[str, dict]:
    host = PlannedHost(Version.parse(driver), tuple((name, Version.parse(cc)) for name, cc in gpus))
    return {v.stack: v.as_dict() for v in plan(list(MATRIX.stacks), host, K)}


def test_h100_on_a_current_driver():
    # 2.16+ wheels carry sm_90 SASS (compute_90 in their build info); 2.15's newest code is sm_80 + compute_80 PTX.
    v = verdicts("560.35.03", ("NVIDIA H100 80GB HBM3", "9.0"))
    for name in ("tf-2.17", "tf-2.19"):
        assert v[name]["verdict"] == "ok" and v[name]["codes"] == [], name
    assert v["tf-2.15"]["verdict"] == "warn" and v["tf-2.15"]["codes"] == ["ptx-jit"]
    assert "JIT-compiled from PTX (PTX ISA 8.1, which driver 560.35.03 compiles)" in v["tf-2.15"]["reason"]
    assert v["tf-2.19-py313"]["verdict"] == "fails" and v["tf-2.19-py313"]["codes"] == ["python-unsupported"]
    assert v["tf-cpu"]["codes"] == ["cpu-only-build"]


def test_ada_gpu_runs_sm_80_code_natively():
    # SASS for X.Y runs on X.Z (Z >= Y): every release's sm_80 code runs on an 8.9 GPU without a JIT.
    v = verdicts("560.35.03", ("NVIDIA L40S", "8.9"))
    assert v["tf-2.19"] == {"stack": "tf-2.19", "verdict": "ok", "codes": [], "reason": "built for this driver and GPU"}
    assert v["tf-2.17"]["verdict"] == "ok"
    assert v["tf-2.15"]["verdict"] == "ok"


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
    assert v["tf-2.15"]["verdict"] == "ok"  # CUDA 12.2 needs 535.54.03; compute_80 brings sm_80 SASS
    assert v["tf-2.17"]["verdict"] == "warn" and v["tf-2.17"]["codes"] == ["minor-version-compat"]
    assert "545.23.06" in v["tf-2.17"]["reason"]


def test_native_code_under_minor_version_compatibility_is_a_warning():
    # The audit's case: tf-2.17 on driver 535 and an H100. It needs no JIT at all (sm_90 SASS).
    v = verdicts("535.54.03", ("NVIDIA H100 80GB HBM3", "9.0"))
    assert v["tf-2.17"]["verdict"] == "warn" and v["tf-2.17"]["codes"] == ["minor-version-compat"]


def test_ptx_jit_is_weighed_by_the_ptx_isa():
    # A GPU newer than every SASS gets the compute_90 PTX JIT-compiled. Driver 535.54.03 is CUDA 12.2: its JIT
    # takes PTX up to ISA 8.2. 2.17's PTX is ISA 8.1 (a warning); 2.19's is ISA 8.3 (the JIT refuses it).
    v = verdicts("535.54.03", ("compute capability 10.0", "10.0"))
    assert v["tf-2.17"]["verdict"] == "warn" and v["tf-2.17"]["codes"] == ["minor-version-compat", "ptx-jit"]
    assert v["tf-2.19"]["verdict"] == "fails" and v["tf-2.19"]["codes"] == ["minor-version-compat", "driver-too-old"]
    assert "PTX is ISA 8.3 and driver 535.54.03 (CUDA 12.2) compiles PTX up to ISA 8.2" in v["tf-2.19"]["reason"]
    v = verdicts("560.35.03", ("compute capability 10.0", "10.0"))  # CUDA 12.6: ISA 8.5
    assert v["tf-2.19"]["verdict"] == "warn" and v["tf-2.19"]["codes"] == ["ptx-jit"]


def test_2_14_and_cuda_needs_python_3_10_or_older():
    stacks = parse_matrix(
        "stacks:\n"
        "  - {name: a, tensorflow: '2.14.1', variant: and-cuda, python: '3.11'}\n"
        "  - {name: b, tensorflow: '2.14.1', variant: plain, python: '3.11', base: nvidia/cuda:11.8.0-runtime}\n",
        Path("m.yaml"),
    ).stacks
    a, b = plan(list(stacks), PlannedHost(Version("560.35.03")), K)
    assert a.codes == ["python-unsupported"] and "tensorrt==8.5.3.1" in a.reason
    assert b.codes == []  # TF 2.14 itself supports 3.11


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
        tf_stacks = ["tf-2.15-cuda12", "tf-2.17-cuda12", "tf-2.19-cuda12", "tf-2.15-cpu"]
        assert [r["stack"] for r in result] == [*tf_stacks, "torch-2.9-pypi", "jax-0.10-cu12"]  # + issue 11's
        assert set(result[0]) == {"stack", "verdict", "codes", "reason"}
        assert result[0]["verdict"] == "ok" and result[1]["verdict"] == "warn" and result[3]["verdict"] == "fails"
    else:
        assert done.stdout.startswith("Plan for driver 535.54.03 with NVIDIA A100-SXM4-40GB (8.0)\n")
        assert "tf-2.15-cpu     fails  tensorflow-cpu is built without CUDA" in done.stdout


def test_cli_plan_errors():
    done = run_cli("plan", "-m", str(REPO / "matrix.yaml"), "--driver", "535.54.03", "--gpu", "Voodoo 5")
    assert done.returncode == 2 and "unknown GPU 'Voodoo 5'" in done.stderr
    done = run_cli("plan", "-m", str(REPO / "matrix.yaml"), "--compute-capability", "8.0")
    assert done.returncode == 2 and "need --driver too" in done.stderr


def test_cli_plan_without_flags_asks_this_hosts_driver(this_host: ThisHost):
    done = run_cli("plan", "-m", str(REPO / "matrix.yaml"))
    if this_host.driver is None:
        assert done.returncode == 2
        assert "no NVIDIA driver found on this host" in done.stderr
        assert "--driver VERSION" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"Plan for driver {this_host.driver}")


def test_plan_save_names_the_host_from_the_environment(tmp_path: Path):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text((REPO / "matrix.yaml").read_text())
    args = ["plan", "-m", str(matrix), "--driver", "550.54.15", "--gpu", "NVIDIA H100 80GB HBM3", "--save"]
    done = run_cli(*args, env={"ENVCHECK_HOST_LABEL": "h100-pool"})
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (tmp_path / "results" / "records.jsonl").read_text().splitlines()]
    assert {r["host"]["label"] for r in records} == {"h100-pool"} and all(r["predicted_only"] for r in records)
    assert {r["stack"]: r["status"] for r in records}["tf-2.15-cpu"] == "fails"
    done = run_cli(*args, "--host-label", "flag-wins", env={"ENVCHECK_HOST_LABEL": "h100-pool"})
    last = json.loads((tmp_path / "results" / "records.jsonl").read_text().splitlines()[-1])
    assert last["host"]["label"] == "flag-wins"
