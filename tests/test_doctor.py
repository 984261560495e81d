"""`envcheck doctor` on this very host (no GPU, no TensorFlow in this Python), and the --script scanner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from envcheck.doctor import scan_source

FORCES_CPU = """\
import os
import tensorflow as tf

os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
os.environ["CUDA_VISIBLE_DEVICES"] = "0"
tf.config.set_visible_devices([], "GPU")
tf.config.set_visible_devices(gpus[:1], "GPU")
with tf.device("/CPU:0"):
    x = tf.ones(3)
with tf.device("/GPU:0"):
    y = tf.ones(3)
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
"""


def test_scanner_finds_the_three_forced_cpu_patterns():
    found = scan_source(FORCES_CPU, "train.py")
    assert [(f["line"], f["text"]) for f in found] == [
        (4, 'os.environ["CUDA_VISIBLE_DEVICES"] = "-1"'),
        (6, 'tf.config.set_visible_devices([], "GPU")'),
        (8, 'with tf.device("/CPU:0"):'),
        (12, 'os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")'),
    ]


def test_scanner_reads_notebook_magics_and_survives_bad_syntax():
    found = scan_source("%env CUDA_VISIBLE_DEVICES=-1\nimport tensorflow as tf\nthis is not python(\n", "cell.py")
    assert [(f["line"], f["text"]) for f in found] == [(1, "%env CUDA_VISIBLE_DEVICES=-1")]


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(FORCES_CPU)
    return path


def test_doctor_reports_this_host(script: Path):
    done = run_cli("doctor", "--json", "--script", str(script), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "TensorFlow will not use a GPU here: TensorFlow cannot be imported."
    assert report["uses_gpu"] is False
    codes = [d["code"] for d in report["diagnoses"]]
    assert codes == ["tensorflow-missing", "no-driver", "placement-forced-cpu"]
    forced = report["diagnoses"][2]
    assert forced["evidence"][0] == f'{script}:4: os.environ["CUDA_VISIBLE_DEVICES"] = "-1"'
    assert len(forced["evidence"]) == 4
    assert report["docker"]["reachable"] is False
    assert report["probe"]["nvml"]["available"] is False


def test_doctor_text_report_puts_the_verdict_first(script: Path):
    done = run_cli("doctor", "--script", str(script), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    lines = done.stdout.splitlines()
    assert lines[0] == "TensorFlow will not use a GPU here: TensorFlow cannot be imported."
    assert "[error] tensorflow-missing: TensorFlow cannot be imported." in lines
    assert any(line.startswith("    fix: ") for line in lines)
    assert any(line.startswith("NVIDIA driver: none") for line in lines)


def test_doctor_works_without_the_docker_sdk(tmp_path: Path):
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "__init__.py").write_text("raise ImportError('docker SDK hidden for this test')\n")
    done = run_cli("doctor", "--json", env={"PYTHONPATH": str(tmp_path), "DOCKER_HOST": "unix:///nonexistent.sock"})
    report = json.loads(done.stdout)
    assert report["docker"]["reachable"] is False
    assert "tensorflow-missing" in [d["code"] for d in report["diagnoses"]]


def test_missing_script_is_a_config_error(tmp_path: Path):
    done = run_cli("doctor", "--script", str(tmp_path / "none.py"))
    assert done.returncode == 2 and "no such file or directory" in done.stderr


@pytest.mark.docker
def test_doctor_sees_a_docker_daemon_without_gpu_runtime(docker_api):
    done = run_cli("doctor", "--json")
    report = json.loads(done.stdout)
    assert report["docker"]["reachable"] is True and report["docker"]["nvidia_runtime"] is False
    runtime = next(d for d in report["diagnoses"] if d["code"] == "no-gpu-runtime")
    assert runtime["severity"] == "warning"
