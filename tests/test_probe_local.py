"""The probe on this machine's own Python (no TensorFlow, no NVML, no GPU): it reports, never crashes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).resolve().parent.parent / "envcheck" / "probe.py"


def run_probe(*args: str, python: str = sys.executable) -> dict:
    done = subprocess.run([python, "-I", str(PROBE), *args], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def test_probe_reports_what_is_missing_without_crashing():
    report = run_probe()
    assert report["schema"] == 1
    assert report["python"] == ".".join(map(str, sys.version_info[:3]))
    assert report["tensorflow"] is None
    assert report["tensorflow_error"].startswith("import tensorflow failed: ModuleNotFoundError")
    assert report["nvml"]["available"] is False and report["nvml"]["error"]
    assert report["gpus"] == [] and report["driver"] is None
    assert report["benchmark"] == []  # nothing to benchmark without TensorFlow
    assert report["errors"] == []


def test_probe_reports_gpu_environment_variables(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    monkeypatch.setenv("UNRELATED", "x")
    env = run_probe("--no-benchmark")["env"]
    assert env["CUDA_VISIBLE_DEVICES"] == "-1" and env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert "UNRELATED" not in env
