"""The GPU rules on facts recorded on a real GPU host by `make gpu-check` (tests/data/gpu-check/), and that such a
recording can be committed there.

GPU machines lent to the project now and then have an H100 or H200, driver 580, PyTorch and JAX but no TensorFlow
and no Docker (README, "Tests and benchmarks").
When no recording is there yet, the tests of the GPU rules say so and skip; they never pass on invented numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from envcheck.diagnosis.diagnose import ERROR, diagnose, uses_gpu
from envcheck.diagnosis.probe_facts import Facts
from envcheck.knowledge import Knowledge, Version

sys.path.insert(0, str(REPO / "scripts"))
from gpu_check import record_instructions

RECORDED = Path(__file__).resolve().parent / "data" / "gpu-check"
recorded = pytest.mark.skipif(
    not (RECORDED / "doctor.json").exists(),
    reason="no GPU host recorded yet: run `make gpu-check GPU_CHECK_DIR=tests/data/gpu-check` on one",
)


def ignored(path: str) -> bool:
    """Whether the repository's .gitignore rules ignore this path (file or not, tracked or not)."""
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO, check=False)
    assert done.returncode in (0, 1), f"git check-ignore failed on {path}"
    return done.returncode == 0


def test_a_recorded_run_can_be_committed_and_the_default_output_is_not():
    assert not ignored(str(RECORDED.relative_to(REPO) / "doctor.json"))
    assert not ignored(str(RECORDED.relative_to(REPO) / "probe-torch.json"))
    assert ignored("gpu-check/doctor.json")  # where `make gpu-check` writes by default


def test_gpu_check_prints_the_commands_that_record_its_run_where_the_tests_read(tmp_path: Path):
    """The printed lines, run at the root of a repository, put the run where this module reads it and stage it."""
    relative = RECORDED.relative_to(REPO)
    assert record_instructions(RECORDED).splitlines()[1:] == [f"  git add {relative}"]
    text = record_instructions(REPO / "gpu-check")
    assert f"  make gpu-check GPU_CHECK_DIR={relative} && git add {relative}" in text.splitlines()
    # the copy of a run already made, tried in a repository of its own
    out = tmp_path / "run"
    out.mkdir()
    (out / "doctor.json").write_text("{}\n")
    (out / "summary.md").write_text("# gpu-check\n")
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    (copy,) = [line.strip() for line in record_instructions(out).splitlines() if line.strip().startswith("mkdir")]
    subprocess.run(["bash", "-c", copy], cwd=checkout, check=True)
    staged = subprocess.run(
        ["git", "diff", "--cached", "--name-only"], cwd=checkout, capture_output=True, text=True, check=True
    )
    assert staged.stdout.split() == [f"{relative}/doctor.json", f"{relative}/summary.md"]


def frameworks() -> dict[str, dict]:
    report = json.loads((RECORDED / "doctor.json").read_text())
    return {c["framework"]: c for c in report["frameworks"] if c.get("version")}


@recorded
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


@recorded
def test_bfloat16_matmul_reaches_most_of_the_dense_peak():
    k = Knowledge.load()
    for name, check in frameworks().items():
        probe = check["probe"]
        peak = k.gpu_peak(probe["nvml"]["gpus"][0]["name"])
        assert peak is not None, probe["nvml"]["gpus"][0]["name"]
        bf16 = [b for b in probe["benchmark"] if b["device"] == "gpu" and b["dtype"] == "bfloat16" and b["n"] == 8192]
        assert bf16 and bf16[0]["tflops"], name
        assert 100 * bf16[0]["tflops"] / peak.tflops["bfloat16"] > 70, (name, bf16[0])


@recorded
def test_tf32_state_is_the_frameworks_own():
    found = frameworks()
    assert found["torch"]["probe"]["tf32_enabled"] is False  # PyTorch's default for matmuls
    fp32 = [b for b in found["torch"]["probe"]["benchmark"] if b["device"] == "gpu" and b["dtype"] == "float32"]
    assert fp32 and all(b.get("precision") == "float32" for b in fp32)
