"""`envcheck doctor` on this very host, and the --script scanner. What doctor must find follows from what this
host has (this_host): a bare CI machine has no TensorFlow and no driver; a GPU host may have both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ThisHost, daemon_gives_gpus, run_cli
from envcheck.diagnosis.scan import scan_source

NO_TF_VERDICT = "TensorFlow will not use a GPU here: TensorFlow cannot be imported."

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


def test_doctor_reports_this_host(script: Path, this_host: ThisHost):
    done = run_cli("doctor", "--json", "--script", str(script), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    report = json.loads(done.stdout)
    # TensorFlow uses the GPU where TensorFlow itself lists one (the script's placements are warnings only)
    uses_gpu = this_host.tensorflow_gpus > 0
    assert report["uses_gpu"] is uses_gpu and done.returncode == (0 if uses_gpu else 1), done.stderr
    codes = [d["code"] for d in report["diagnoses"]]
    if not this_host.tensorflow:
        assert report["verdict"] == NO_TF_VERDICT and report["uses_gpu"] is False
        assert codes[0] == "tensorflow-missing"
    assert ("tensorflow-missing" in codes) is not this_host.tensorflow
    forced = next(d for d in report["diagnoses"] if d["code"] == "placement-forced-cpu")
    assert forced["evidence"][0] == f'{script}:4: os.environ["CUDA_VISIBLE_DEVICES"] = "-1"'
    assert len(forced["evidence"]) == 4
    assert report["docker"]["reachable"] is False
    # the driver and GPUs as nvidia-smi reads them (skipped from here where a driver has no nvidia-smi)
    assert ("no-driver" in codes) is (this_host.driver is None)
    if not this_host.tensorflow and this_host.driver is None:  # the bare machine: nothing else to say
        assert codes == ["tensorflow-missing", "no-driver", "placement-forced-cpu"]
    assert report["probe"]["nvml"]["available"] is (this_host.driver is not None)
    assert report["probe"]["driver"] == this_host.driver
    nvml_gpus = report["probe"]["nvml"]["gpus"]
    assert [g["name"] for g in nvml_gpus] == list(this_host.gpus)
    if this_host.compute_capabilities:
        assert [g["compute_capability"] for g in nvml_gpus] == list(this_host.compute_capabilities)


def test_doctor_text_report_puts_the_verdict_first(script: Path, this_host: ThisHost):
    done = run_cli("doctor", "--script", str(script), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    lines = done.stdout.splitlines()
    assert lines[0].startswith("TensorFlow ")
    if not this_host.tensorflow:
        assert lines[0] == NO_TF_VERDICT
        assert "[error] tensorflow-missing: TensorFlow cannot be imported." in lines
    assert any(line.startswith("    fix: ") for line in lines)
    assert any(line.startswith(f"NVIDIA driver: {this_host.driver or 'none'}") for line in lines)


def test_doctor_works_without_the_docker_sdk(tmp_path: Path, this_host: ThisHost):
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "__init__.py").write_text("raise ImportError('docker SDK hidden for this test')\n")
    done = run_cli("doctor", "--json", env={"PYTHONPATH": str(tmp_path), "DOCKER_HOST": "unix:///nonexistent.sock"})
    report = json.loads(done.stdout)
    assert report["docker"]["reachable"] is False
    assert ("tensorflow-missing" in [d["code"] for d in report["diagnoses"]]) is not this_host.tensorflow


def test_missing_script_is_a_config_error(tmp_path: Path):
    done = run_cli("doctor", "--script", str(tmp_path / "none.py"))
    assert done.returncode == 2 and "no such file or directory" in done.stderr


@pytest.mark.docker
def test_doctor_asks_the_docker_daemon_for_a_gpu_runtime(docker_api):
    done = run_cli("doctor", "--json")
    report = json.loads(done.stdout)
    assert report["docker"]["reachable"] is True
    runtime = [d for d in report["diagnoses"] if d["code"] == "no-gpu-runtime"]
    if daemon_gives_gpus(docker_api):
        assert runtime == []
    else:
        assert report["docker"]["nvidia_runtime"] is False
        assert [d["severity"] for d in runtime] == ["warning"]
