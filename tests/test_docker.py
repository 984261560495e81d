"""End to end on a real Docker engine: real TensorFlow wheels in real images, probed in real containers.

One session-scoped matrix run builds the and-cuda and cpu stacks of TF 2.15.1 (the default matrix's own
definitions, so `make matrix` reuses the images); the tests assert on what the probe really saw. Whether the
daemon can give containers GPUs (an NVIDIA runtime or CDI devices) decides what that is: the tests ask it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import STACKS, daemon_gives_gpus, default_stacks, envcheck_containers, run_cli, write_matrix

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def gpus(docker_api: Any) -> bool:
    """Whether containers get GPUs here; on a machine without the NVIDIA Container Toolkit they do not."""
    return daemon_gives_gpus(docker_api)


def test_and_cuda_stack_reports_its_real_build(matrix_run: dict[str, Any], gpus: bool):
    result = matrix_run["results"]["tf-2.15-cuda12"]
    probe = result["probe"]
    assert result["image"].startswith("envcheck/tf-2.15-cuda12:")
    assert probe["tensorflow"] == "2.15.1"
    assert probe["python"].startswith("3.11.")
    assert probe["is_cuda_build"] is True
    assert probe["build_cuda"] == "12.2"
    assert probe["build_cudnn"] == "8"
    assert "compute_80" in probe["compute_capabilities"]
    codes = [d["code"] for d in result["diagnoses"]]
    if gpus:
        assert result["run"]["gpu_refusal"] is None and probe["driver"] and probe["gpus"]
        assert "no-gpu-runtime" not in codes
    else:
        # No NVIDIA Container Toolkit: the daemon refuses --gpus all, and envcheck says so.
        assert probe["gpus"] == [] and probe["driver"] is None
        assert result["run"]["gpu_refusal"] and "could not select device driver" in result["run"]["gpu_refusal"]
        assert codes[0] == "no-gpu-runtime"
        assert result["status"] == "cpu-only"
    cpu = [b for b in result["benchmark"] if b["device"] == "cpu" and b["library"] == "tensorflow"]
    assert cpu and cpu[0]["dtype"] == "float32" and cpu[0]["n"] == 1024 and cpu[0]["tflops"] > 0.01
    assert any(b["library"] == "numpy" and b["tflops"] > 0.01 for b in result["benchmark"])


def test_and_cuda_libraries_are_found_through_tensorflows_runpath(matrix_run: dict[str, Any], gpus: bool):
    libs = matrix_run["results"]["tf-2.15-cuda12"]["probe"]["cuda_libs"]
    for name, soname in [("cudart", "libcudart.so.12"), ("cublas", "libcublas.so.12"), ("cudnn", "libcudnn.so.8")]:
        found = libs["libraries"][name]["found"]
        assert found["soname"] == soname
        assert found["source"] == "RUNPATH of libtensorflow_framework.so.2"
        assert "/site-packages/nvidia/" in found["path"]
    # libcuda is the driver's: the NVIDIA runtime mounts it into containers given GPUs, else there is none.
    assert (libs["libraries"]["cuda"]["found"] is not None) is gpus
    assert libs["runtime_versions"] == {"cudart": "12.2", "cudnn": "8.9.4", "nccl": "2.16.5"}
    assert libs["nvidia_packages"]["nvidia-cudnn-cu12"] == "8.9.4.25"


def test_plain_tensorflow_without_cuda_libraries(matrix_run: dict[str, Any], gpus: bool):
    result = matrix_run["results"]["t-plain"]
    assert result["probe"]["is_cuda_build"] is True and result["probe"]["build_cuda"] == "12.2"
    codes = [d["code"] for d in result["diagnoses"]]
    assert codes[:2] == (["cuda-libs-missing"] if gpus else ["no-gpu-runtime", "cuda-libs-missing"])
    assert result["status"] == "cpu-only"
    missing = next(d for d in result["diagnoses"] if d["code"] == "cuda-libs-missing")
    assert "cudart" in missing["summary"] and "cudnn" in missing["summary"]
    assert [p["code"] for p in result["predicted"]] == ["cuda-libs-missing"]  # predicted, and then measured


def test_gpus_hidden_by_the_stacks_environment(matrix_run: dict[str, Any]):
    result = matrix_run["results"]["t-hidden"]
    assert result["probe"]["env"]["CUDA_VISIBLE_DEVICES"] == "-1"
    hidden = next(d for d in result["diagnoses"] if d["code"] == "gpus-hidden")
    assert hidden["evidence"] == ["CUDA_VISIBLE_DEVICES='-1'"] and hidden["severity"] == "error"


def test_cudnn_major_other_than_the_build(matrix_run: dict[str, Any]):
    result = matrix_run["results"]["t-cudnn9"]
    libs = result["probe"]["cuda_libs"]
    assert libs["nvidia_packages"]["nvidia-cudnn-cu12"] == "9.3.0.75"
    assert libs["runtime_versions"]["cudnn"] == "9.3.0"
    mismatch = next(d for d in result["diagnoses"] if d["code"] == "cudnn-mismatch")
    assert "cuDNN 9.3.0 found, TensorFlow 2.15.1 was built with cuDNN 8.9" in mismatch["evidence"][0]
    assert "cudnn-mismatch" in [p["code"] for p in result["predicted"]]


def test_cpu_stack_is_diagnosed_cpu_only_build(matrix_run: dict[str, Any]):
    result = matrix_run["results"]["tf-2.15-cpu"]
    assert result["probe"]["tensorflow"] == "2.15.1"
    assert result["probe"]["is_cuda_build"] is False
    assert result["probe"]["build_cuda"] is None
    assert "cpu-only-build" in [d["code"] for d in result["diagnoses"]]
    assert result["status"] == "cpu-only"


def test_results_and_table_are_written_next_to_the_matrix(matrix_run: dict[str, Any], gpus: bool):
    root: Path = matrix_run["root"]
    for name in STACKS:
        saved = json.loads((root / "results" / f"{name}.json").read_text())
        assert saved["probe"]["tensorflow"] == "2.15.1"
        assert (root / "build" / name / "build.log").is_file()
    table = (root / "docs" / "compatibility.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| tf-2.15")]
    assert len(rows) == 2 and len([line for line in table.splitlines() if line.startswith("| t-")]) == 3
    cuda_row = next(r for r in rows if r.startswith("| tf-2.15-cuda12 "))
    cells = [c.strip() for c in cuda_row.strip("|").split("|")]
    assert cells[1:6] == ["2.15.1", cells[2], "12.2", "8", "and-cuda"] and cells[2].startswith("3.11.")
    assert cells[8] == matrix_run["results"]["tf-2.15-cuda12"]["status"]
    assert ("no-gpu-runtime" in cells[9]) is not gpus
    assert float(cells[10]) > 0.01


def test_ca_bundle_is_not_in_the_final_image(matrix_run: dict[str, Any], docker_api: Any):
    image = matrix_run["results"]["tf-2.15-cpu"]["image"]
    config = docker_api.inspect_image(image)["Config"]
    assert not any(e.startswith("PIP_CERT=") for e in config["Env"])
    history = json.dumps(docker_api.history(image))
    assert "envcheck-ca" not in history and "PIP_CERT" not in history
    done = subprocess.run(["docker", "run", "--rm", image, "ls", "/tmp"], capture_output=True, text=True, check=True)
    assert "envcheck-ca.pem" not in done.stdout


def test_rerun_reuses_the_result_and_force_probes_again(
    matrix_run: dict[str, Any], no_leftover_containers: None, gpus: bool
):
    args = ["run", "tf-2.15-cuda12", "-m", str(matrix_run["matrix"]), "--json", "--ca-bundle", "auto"]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    reused = json.loads(done.stdout)
    assert reused["reused"] is True and reused["timestamp"] == matrix_run["results"]["tf-2.15-cuda12"]["timestamp"]
    done = run_cli(*args, "--force")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert "reused" not in result and result["image"] == matrix_run["results"]["tf-2.15-cuda12"]["image"]
    assert result["build"]["cached"] is False
    # --force builds again, through Docker's layer cache: every step that installs something comes from it
    steps = Path(result["build"]["log"]).read_text().split("\nStep ")[1:]
    runs = [step for step in steps if step.split(" : ", 1)[1].startswith("RUN")]
    assert runs and all("Using cache" in step for step in runs)
    assert result["probe"]["build_cuda"] == "12.2"
    assert (result["diagnoses"][0]["code"] == "no-gpu-runtime") is not gpus
    # Without --quick the benchmark measures n=2048 too, TensorFlow and NumPy side by side.
    sizes = {(b["library"], b["n"]) for b in result["benchmark"] if b["tflops"]}
    assert {("tensorflow", 2048), ("numpy", 2048)} <= sizes


def test_failures_are_recorded_and_the_matrix_goes_on(
    tmp_path: Path, matrix_run: dict[str, Any], docker_api: Any, no_leftover_containers: None
):
    matrix = write_matrix(
        tmp_path,
        [
            {"name": "no-such-tf", "tensorflow": "2.99.0", "variant": "cpu"},
            {"name": "no-such-tf-pip", "tensorflow": "2.99.0", "variant": "cpu", "installer": "pip"},
            {"name": "no-base", "tensorflow": "2.15.1", "variant": "cpu", "base": "envcheck-test/absent:none"},
            *default_stacks("tf-2.15-cpu"),
        ],
    )
    done = run_cli("matrix", "-m", str(matrix), "--json", "--ca-bundle", "auto")
    assert done.returncode == 1, done.stderr[-3000:]
    results = {r["stack"]: r for r in json.loads(done.stdout)}
    assert results["no-such-tf"]["status"] == "build-failed"
    assert "tensorflow-cpu==2.99.0" in Path(results["no-such-tf"]["build"]["log"]).read_text()
    # uv's words (the default installer), and pip's for a stack that asks for pip
    assert any("no version of tensorflow-cpu==2.99.0" in line for line in results["no-such-tf"]["build"]["log_tail"])
    assert results["no-such-tf-pip"]["status"] == "build-failed"
    assert any("No matching distribution" in line for line in results["no-such-tf-pip"]["build"]["log_tail"])
    assert results["no-base"]["status"] == "build-failed"
    assert "make base" in results["no-base"]["error"] and "envcheck-test/absent:none" in results["no-base"]["error"]
    assert results["tf-2.15-cpu"]["status"] == "cpu-only"
    table = (tmp_path / "docs" / "compatibility.md").read_text()
    assert "| no-such-tf " in table and "build-failed" in table
    assert not envcheck_containers(docker_api)
