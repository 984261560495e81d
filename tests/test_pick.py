"""`envcheck pick` on hosts users reported: old GPUs, new GPUs, old drivers.

Each expectation is written from its source (the thread, NVIDIA's CUDA release notes, PyTorch's and JAX's release
pages), not read back from envcheck's data: where the data and the source part, the test fails.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from envcheck import frameworks
from envcheck.diagnosis.pick import pick, with_install_hint
from envcheck.diagnosis.plan import host_from_args
from envcheck.knowledge import Knowledge, Version
from envcheck.results.model import Diagnosis, Severity

K = Knowledge.load()


def chosen(framework: str, driver: str, gpu: str | None = None, cc: str | None = None, python: str = "3.11"):
    host = host_from_args(driver, [cc] if cc else [], [gpu] if gpu else [], K)
    found = pick(frameworks.framework(framework), host, python, K)
    assert found.chosen is not None, [w.to_dict() for w in found.newer]
    return found


def test_a_p100_gets_a_wheel_with_sm_60_not_the_cu128_default():
    # github.com/Kaggle/docker-python/issues/1546 and Kaggle/kaggle-cli#1151 (maintainer): the default torch (cu128,
    # 2.8 on) has no sm_60 kernels; torch's own warning there: "Please install PyTorch with a following CUDA
    # configurations: 12.6". Driver: any that runs CUDA 12.6 (>= 560.28.03, CUDA release notes Table 3).
    found = chosen("torch", "570.86.10", gpu="Tesla P100-PCIE-16GB", python="3.12")
    pick_ = found.chosen
    assert pick_.option.index == "cu126"
    assert Version(pick_.option.version) >= Version("2.8")  # a release whose PyPI wheel dropped sm_60
    assert "+cu126 --extra-index-url https://download.pytorch.org/whl/cu126" in pick_.option.command
    pypi_newer = [w for w in found.newer if w.option.variant == "pypi"]
    assert pypi_newer and all("compute-capability-unsupported" in w.codes for w in pypi_newer)


def test_a_cuda_11_4_driver_gets_the_newest_cu118_wheel():
    # github.com/lllyasviel/Fooocus/issues/1313: RTX 3050 Laptop, driver 470.86 (CUDA 11.4): "The NVIDIA driver on
    # your system is too old (found version 11040)" from a CUDA 12 torch. CUDA 11.x runs on >= 450.80.02 (minor
    # version compatibility); pytorch.org/get-started/previous-versions: 2.7.1 is the last release with cu118 wheels.
    found = chosen("torch", "470.86", gpu="NVIDIA GeForce RTX 3050 Laptop GPU")
    assert found.chosen.option.index == "cu118"
    assert found.chosen.option.version.startswith("2.7.")
    assert found.chosen.cuda and found.chosen.cuda.major == 11
    assert all(not w.works for w in found.newer)
    assert any("driver-too-old" in w.codes for w in found.newer)


def test_an_rtx_5090_gets_a_cuda_12_8_build_or_newer():
    # github.com/pytorch/pytorch/issues/150733 and github.com/Hellod035/LeggedLab/issues/26 (reporter's fix: the cu128
    # wheels): sm_120 needs PyTorch built with CUDA 12.8, from 2.7 (PyTorch 2.7 release notes: Blackwell support).
    # Driver 575.51.03 runs CUDA 12.9 at most (Table 3), so no CUDA 13 wheel.
    found = chosen("torch", "575.51.03", gpu="NVIDIA GeForce RTX 5090")
    assert Version(found.chosen.option.version) >= Version("2.7")
    assert found.chosen.cuda is not None and Version("12.8") <= found.chosen.cuda < Version("13")


def test_an_a100_on_driver_450_gets_cuda_11():
    # github.com/pytorch/pytorch/issues/57922: A100 on driver 450.80.02 with torch 1.8.1+cu102 (no sm_80); the
    # maintainer: "You'll need the binaries that is built with CUDA > 11.0". 450.80.02 is CUDA 11's minor-version
    # compatibility floor (docs.nvidia.com/deploy/cuda-compatibility).
    found = chosen("torch", "450.80.02", gpu="A100-SXM4-40GB")
    assert found.chosen.cuda is not None and found.chosen.cuda.major == 11


def test_a_cuda_10_1_driver_gets_a_cuda_10_1_or_older_build():
    # github.com/daniilidis-group/neural_renderer/issues/121: torch 1.7.1 (CUDA 10.2) on a driver that reports CUDA
    # 10.1 ("found version 10010"). CUDA 10.2 needs driver >= 440.33, 10.1 >= 418.39 (Table 3); no minor-version
    # compatibility before CUDA 11.
    host = host_from_args("418.67", [], [], K)
    found = pick(frameworks.framework("torch"), host, "3.8", K)
    if found.chosen is None:
        pytest.skip("the data holds no PyTorch release built with CUDA <= 10.1")
    assert found.chosen.cuda is not None and found.chosen.cuda <= Version("10.1")


def test_jax_on_a_p100_takes_cuda12_since_cuda_13_dropped_pascal():
    # CUDA 13.0 release notes: support for Maxwell, Pascal and Volta (compute capability < 7.5) removed; JAX's CUDA 13
    # plugin is built with it. A P100 (6.0) on driver 580.65.06 (CUDA 13.0) still runs jax[cuda12].
    found = chosen("jax", "580.65.06", gpu="Tesla P100-PCIE-16GB", python="3.12")
    assert found.chosen.option.variant == "cuda12"
    same_or_newer = [w for w in found.newer if w.option.variant == "cuda13"]
    assert all("compute-capability-unsupported" in w.codes for w in same_or_newer)


def test_tensorflow_on_a_cuda_11_4_driver_stays_on_cuda_11():
    # tensorflow.org/install/source#gpu: 2.14 is the last release built with CUDA 11 (11.8); 2.15 on use CUDA 12,
    # which driver 470.86 (CUDA 11.4, Fooocus#1313 above) cannot run. Python 3.10: 2.14's [and-cuda] pins
    # tensorrt==8.5.3.1, which has wheels for 3.6-3.10 only (pypi.org/simple/tensorrt).
    found = chosen("tensorflow", "470.86", gpu="NVIDIA GeForce RTX 3050 Laptop GPU", python="3.10")
    assert found.chosen.cuda is not None and found.chosen.cuda.major == 11
    assert found.chosen.option.version.startswith("2.14.")


def test_nothing_works_when_the_driver_predates_every_cuda():
    host = host_from_args("340.108", [], [], K)  # Kepler's legacy branch: CUDA 6.5 (Table 3)
    found = pick(frameworks.framework("jax"), host, "3.12", K)
    assert found.chosen is None
    assert found.newer and all(not w.works for w in found.newer)


def test_a_version_problem_gets_the_pick_in_its_fix():
    diagnosis = Diagnosis("driver-too-old", Severity.ERROR, "driver too old", "Update the driver.")
    other = Diagnosis("gpu-oom", Severity.ERROR, "out of memory", "Use a smaller batch.")
    gpus = [("NVIDIA GeForce RTX 3050 Laptop GPU", Version("8.6"))]
    fixed = with_install_hint([diagnosis, other], frameworks.framework("torch"), "470.86", gpus, "3.11", K)
    assert "+cu118" in fixed[0].fix and fixed[0].fix.startswith("Update the driver.")
    assert fixed[1] == other
    assert with_install_hint([diagnosis], frameworks.framework("torch"), None, gpus, "3.11", K) == [diagnosis]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envcheck", "pick", *argv], capture_output=True, text=True)


def test_the_command_prints_the_install_and_json():
    done = run("torch", "--driver", "470.86", "--compute-capability", "8.6", "--python", "3.11")
    assert done.returncode == 0, done.stderr
    assert "--extra-index-url https://download.pytorch.org/whl/cu118" in done.stdout
    assert "newer, and why not:" in done.stdout
    done = run("torch", "--driver", "470.86", "--compute-capability", "8.6", "--python", "3.11", "--json")
    data = json.loads(done.stdout)
    assert data["pick"]["index"] == "cu118" and data["driver"] == "470.86"
    assert {"version", "variant", "index", "install", "command", "cuda", "verdict", "codes", "reasons"} <= set(
        data["pick"]
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["torch", "--driver", "latest"], "not a version"),
        (["torch", "--driver", "535.54.03", "--gpu", "Voodoo 5"], "unknown GPU"),
        (["torch", "--driver", "535.54.03", "--python", "three"], "--python"),
    ],
)
def test_bad_values_are_named_with_exit_2(argv: list[str], said: str):
    done = run(*argv)
    assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr


def test_gpu_and_compute_capability_exclude_each_other():
    done = run("torch", "--driver", "535.54.03", "--gpu", "T4", "--compute-capability", "7.5")
    assert done.returncode == 2 and "not allowed with" in done.stderr


def test_without_a_driver_on_this_host_it_asks_for_one():
    from envcheck.readers.nvml import probe_nvml

    if probe_nvml()["driver"]:
        pytest.skip("this host has an NVIDIA driver: pick uses it")
    done = run("torch")
    assert done.returncode == 2 and "--driver" in done.stderr and "Traceback" not in done.stderr


FOOOCUS_1313 = """\
RuntimeError: The NVIDIA driver on your system is too old (found version 11040). Please update your GPU driver by \
downloading and installing a new version from the URL: http://www.nvidia.com/Download/index.aspx Alternatively, go \
to: https://pytorch.org to install a PyTorch version that has been compiled with your version of the CUDA driver.

Ubuntu 21.04
Nvidia GeForce RTX 3050 laptop GPU

-nvidia-smi

+-----------------------------------------------------------------------------+
| NVIDIA-SMI 470.86       Driver Version: 470.86       CUDA Version: 11.4
|-------------------------------+----------------------+----------------------+
"""  # github.com/lllyasviel/Fooocus/issues/1313, as the reporter posted it


def test_explain_puts_the_install_that_works_into_a_version_problem_fix():
    from envcheck.diagnosis.explain import ExplainOptions, explain

    found = explain(FOOOCUS_1313.splitlines(keepends=True), ExplainOptions())
    first = found.diagnoses[0]
    assert first.code == "driver-too-old"
    # The host the log shows (driver 470.86, an RTX 3050: compute capability 8.6) and the cu118 answer above.
    assert "pip install torch==2.7.1+cu118" in first.fix
    assert "envcheck pick torch --driver 470.86 --compute-capability 8.6" in first.fix


def test_an_old_driver_with_a_gpu_gets_an_old_jax_said_as_unchecked():
    # JAX CHANGELOG, jaxlib 0.4.26: "Support for CUDA 11.8 has been dropped"; driver 470.86 (CUDA 11.4) runs CUDA 11.x
    # only. Old jaxlib's GPU code is not in the data, so the answer says it could not check the GPU.
    found = chosen("jax", "470.86", cc="8.6", python="3.10")
    assert Version(found.chosen.option.version) < Version("0.4.26")
    assert found.chosen.cuda is not None and found.chosen.cuda.major == 11
    assert not found.chosen.checked and "unverified" in found.chosen.codes
    assert found.to_dict()["pick"]["checked"] is False
