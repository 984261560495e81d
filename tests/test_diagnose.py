"""Diagnosis rules on recorded probe facts (tests/data/, from real containers), and variants of them."""

from __future__ import annotations

import copy

import yaml

from conftest import DATA, load_json
from envcheck.diagnosis.diagnose import ERROR, diagnose
from envcheck.diagnosis.probe_facts import Facts

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


# -- rules that need a GPU host, on the recorded facts with the GPU side filled in ----------------------------
# No GPU machine was available to record these (see the issue notes); each variant changes only the fields a
# GPU host would report differently, in the probe's own format.


def gpu_host(probe: dict, driver: str = "550.54.15", gpus=(("Tesla T4", "7.5"),), listed=True) -> dict:
    probe["nvml"].update(
        available=True,
        driver=driver,
        cuda_driver="12.4",
        error=None,
        gpus=[{"index": i, "name": n, "compute_capability": cc} for i, (n, cc) in enumerate(gpus)],
    )
    probe["driver"] = driver
    probe["device_nodes"] = ["/dev/nvidia0", "/dev/nvidiactl"]
    probe["gpus"] = (
        [
            {"name": f"/physical_device:GPU:{i}", "device_name": n, "compute_capability": cc}
            for i, (n, cc) in enumerate(gpus)
        ]
        if listed
        else []
    )
    probe["placement"] = (
        {"requested": "/GPU:0", "placed_on": "/job:localhost/replica:0/task:0/device:GPU:0", "on_gpu": True}
        if listed
        else None
    )
    return probe


def diagnosed(probe: dict) -> dict[str, object]:
    return {d.code: d for d in diagnose(Facts(probe=probe))}


def test_driver_too_old():
    probe = gpu_host(recorded_probe(), driver="470.82.01", listed=False)
    probe["tf_log"].append(
        "E cuda_driver.cc] failed call to cuInit: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH: "
        "CUDA driver version is insufficient for CUDA runtime version"
    )
    found = diagnosed(probe)
    assert list(found) == ["driver-too-old"]
    assert found["driver-too-old"].evidence[0] == (
        "driver 470.82.01 < 535.54.03, the minimum for CUDA 12.2 (minor-version compatibility floor 525.60.13)"
    )
    assert "CUDA driver version is insufficient" in found["driver-too-old"].evidence[1]


def test_old_gpu_is_unsupported():
    found = diagnosed(gpu_host(recorded_probe(), gpus=[("Tesla K80", "3.7")], listed=False))
    assert list(found) == ["compute-capability-unsupported"]
    assert "Tesla K80: compute capability 3.7" in found["compute-capability-unsupported"].evidence[0]


def test_new_gpu_runs_through_ptx_jit_with_a_warning_only():
    found = diagnose(Facts(probe=gpu_host(recorded_probe(), gpus=[("NVIDIA H100 80GB HBM3", "9.0")])))
    assert [(d.code, d.severity) for d in found] == [("ptx-jit", "warning")]


def test_out_of_memory_in_the_benchmark():
    probe = gpu_host(recorded_probe())
    probe["benchmark"] = [
        {
            "library": "tensorflow",
            "device": "gpu",
            "dtype": "float32",
            "n": 8192,
            "tflops": None,
            "oom": True,
            "error": "ResourceExhaustedError: OOM when allocating tensor",
        },
        {"library": "tensorflow", "device": "gpu", "dtype": "float32", "n": 4096, "tflops": 17.2},
    ]
    found = diagnosed(probe)
    assert list(found) == ["gpu-oom"] and "n=8192" in found["gpu-oom"].summary


def test_libraries_on_disk_but_not_on_the_loader_path():
    probe = recorded_probe()
    cudnn = probe["cuda_libs"]["libraries"]["cudnn"]
    cudnn["unreachable_on_disk"] = [cudnn["found"]["path"]]
    cudnn["found"] = None
    found = diagnosed(probe)
    assert list(found) == ["no-driver", "cuda-libs-not-on-path"]
    assert (
        "export LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cudnn/lib:"
        in found["cuda-libs-not-on-path"].fix
    )


def test_libraries_missing_everywhere():
    probe = recorded_probe()
    for lib in probe["cuda_libs"]["libraries"].values():
        lib.update(found=None, unreachable_on_disk=[])
    found = diagnosed(probe)
    assert found["cuda-libs-missing"].summary.endswith("cudart, cublas, cublasLt, cufft, cusolver, cusparse, cudnn.")
    assert "cuda-libs-not-on-path" not in found


def test_optional_library_missing_is_not_a_cause():
    probe = recorded_probe()
    assert probe["cuda_libs"]["libraries"]["curand"]["found"] is None  # TF 2.15's RUNPATH has no curand
    assert "cuda-libs-missing" not in diagnosed(probe)


def test_cudnn_and_cuda_runtime_mismatches():
    probe = recorded_probe()
    probe["cuda_libs"]["runtime_versions"]["cudnn"] = "9.3.0"
    assert (
        "cuDNN 9.3.0 found, TensorFlow 2.15.1 was built with cuDNN 8.9"
        in diagnosed(probe)["cudnn-mismatch"].evidence[0]
    )
    probe = recorded_probe()
    probe["cuda_libs"]["runtime_versions"]["cudnn"] = "8.6.0"  # same major, older minor: TF refuses it
    assert "cudnn-mismatch" in diagnosed(probe)
    probe = recorded_probe()
    probe["cuda_libs"]["libraries"]["cudart"]["found"]["path"] = "/usr/local/cuda-11.8/lib64/libcudart.so.11.0"
    assert "cuda-mismatch" in diagnosed(probe)
    assert {"cudnn-mismatch", "cuda-mismatch"}.isdisjoint(diagnosed(recorded_probe()))


def test_driver_library_mismatch():
    probe = recorded_probe()
    probe["nvml"]["error"] = "NVMLError_LibRmVersionMismatch: RM has detected an NVML/RM version mismatch."
    probe["tf_log"].append("Failed to initialize NVML: Driver/library version mismatch")
    found = diagnosed(probe)
    assert list(found) == ["driver-library-mismatch"]


def test_placement_forced_onto_cpu():
    probe = gpu_host(recorded_probe())
    probe["placement"] = {
        "requested": "/GPU:0",
        "placed_on": "/job:localhost/replica:0/task:0/device:CPU:0",
        "on_gpu": False,
    }
    assert diagnosed(probe)["placement-forced-cpu"].severity == ERROR


def test_a_cuda_build_without_gpus_is_never_silently_ok():
    probe = gpu_host(recorded_probe(), listed=False)
    found = diagnose(Facts(probe=probe))
    assert [d.code for d in found] == ["gpu-not-detected"] and found[0].severity == ERROR


def benchmarked(gpu: str, cc: str, *entries: dict, tf32_enabled: bool | None = True) -> list:
    probe = gpu_host(recorded_probe(), gpus=[(gpu, cc)])
    probe["tf32_enabled"] = tf32_enabled
    probe["benchmark"] = [{"library": "tensorflow", **e} for e in entries]
    return Facts(probe=probe).benchmark


def test_percent_of_peak_from_the_data_file():
    bench = benchmarked(
        "NVIDIA H100 80GB HBM3",
        "9.0",
        {"device": "gpu", "dtype": "float16", "n": 8192, "tflops": 494.5},
        {"device": "cpu", "dtype": "float32", "n": 2048, "tflops": 0.2},
    )
    assert bench[0].percent_of_peak == 50.0 and bench[1].percent_of_peak is None


def test_float32_runs_as_tf32_on_ampere_and_newer():
    # TF's default: float32 matmuls on tensor cores in TF32, so the CUDA-core peak (67) is the wrong yardstick.
    h100 = {"device": "gpu", "dtype": "float32", "n": 8192, "tflops": 240.0}
    bench = benchmarked("NVIDIA H100 80GB HBM3", "9.0", h100)
    assert (bench[0].precision, bench[0].peak_tflops, bench[0].percent_of_peak) == ("tf32", 494.5, 48.5)
    bench = benchmarked("NVIDIA H100 80GB HBM3", "9.0", {**h100, "tflops": 50.0}, tf32_enabled=False)
    assert (bench[0].precision, bench[0].peak_tflops, bench[0].percent_of_peak) == ("float32", 67, 74.6)
    bench = benchmarked("Tesla T4", "7.5", {**h100, "tflops": 4.05})  # Turing has no TF32
    assert (bench[0].precision, bench[0].percent_of_peak) == ("float32", 50.0)


def test_peaks_are_per_form_factor():
    # An H100 PCIe or NVL is not the SXM part: its own peak, and none for a name the data does not know.
    fp16 = {"device": "gpu", "dtype": "float16", "n": 8192, "tflops": 378.25}
    assert benchmarked("NVIDIA H100 PCIe", "9.0", fp16)[0].percent_of_peak == 50.0
    assert benchmarked("NVIDIA H100 NVL", "9.0", fp16)[0].peak_tflops == 835.5
    assert benchmarked("NVIDIA H100 Future Edition", "9.0", fp16)[0].peak_tflops is None


def test_driver_in_minor_version_compatibility_is_a_warning():
    found = diagnose(Facts(probe=gpu_host(recorded_probe(), driver="530.30.02")))
    assert [(d.code, d.severity) for d in found] == [("driver-too-old", "warning")]
    assert "minor-version compatibility" in found[0].summary


def test_the_wheels_own_code_decides_whether_a_gpu_needs_the_jit():
    # 2.16+ carry sm_90 SASS: an H100 runs them natively, without TF's PTX warning or envcheck's.
    probe = gpu_host(recorded_probe(), gpus=[("NVIDIA H100 80GB HBM3", "9.0")])
    probe.update(tensorflow="2.17.1", build_cuda="12.3")
    probe["compute_capabilities"] = ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"]
    probe["cuda_libs"]["runtime_versions"].update(cudart="12.3", cudnn="8.9.7")  # what its [and-cuda] pins bring
    assert diagnosed(probe) == {}


def test_ptx_of_unknown_isa_under_minor_version_compatibility_is_refused():
    # A release envcheck has not read: its build info says compute_90, the ISA of that PTX is unknown, and driver
    # 535 runs CUDA 12.5 only through minor-version compatibility, which does not JIT newer PTX.
    probe = gpu_host(recorded_probe(), driver="535.54.03", gpus=[("NVIDIA B200", "10.0")])
    probe.update(tensorflow="2.99.0", build_cuda="12.5.1", compute_capabilities=["sm_80", "compute_90"])
    found = diagnosed(probe)
    assert found["driver-too-old"].severity == ERROR
    assert (
        "NVIDIA B200 needs PTX JIT, which minor-version compatibility does not allow"
        in found["driver-too-old"].evidence[1]
    )


# -- a build that ran out of disk -----------------------------------------------------------------------------------


def test_a_build_that_ran_out_of_disk_is_named_disk_full():
    """Real lines from builds and pulls that ran out of disk (tests/data/disk_full_lines.yaml, with sources) make
    the diagnosis disk-full with the line as evidence; other build failures do not."""
    from envcheck.engine import disk
    from envcheck.inputs.matrix import Stack
    from envcheck.knowledge import Knowledge
    from envcheck.results.model import BuildInfo

    lines = yaml.safe_load((DATA / "disk_full_lines.yaml").read_text())
    for case in lines["full"]:
        built = BuildInfo(False, error="The command returned a non-zero code: 1", log_tail=["Step 9/19", case["line"]])
        assert disk.ran_out(built) == [case["line"].strip()], case["source"]
    for case in lines["not_full"]:
        assert disk.ran_out(BuildInfo(False, error="failed", log_tail=[case["line"]])) == [], case["source"]
    assert disk.ran_out(BuildInfo(True, log_tail=[lines["full"][0]["line"]])) == []
    stack = Stack("s", "2.15.1", "and-cuda", None, None, "debian:bookworm-slim", "3.11")
    found = disk.diagnosis([lines["full"][0]["line"]], disk.Disk("/var/lib/docker", 3 * 10**8, 8 * 10**10), stack,
                           Knowledge.load(), 12 * 10**9)  # fmt: skip
    assert found.code == "disk-full" and found.severity.value == "error"
    assert found.evidence[0] == lines["full"][0]["line"]
    assert "/var/lib/docker: 0.3 GB free of 80.0 GB" in found.evidence
    assert "`envcheck clean` would free 12.0 GB of this matrix's outdated images" in found.evidence
    assert "envcheck clean" in found.fix


def test_a_daemon_with_too_little_room_is_not_asked_to_build():
    from envcheck.engine import disk

    assert disk.too_full(disk.Disk("/d", 10**12, 2 * 10**12)) is None
    assert disk.too_full(None) is None  # a remote daemon: its disk cannot be read from here
    refused = disk.too_full(disk.Disk("/d", 5 * 10**8, 2 * 10**12))
    assert refused is not None and not refused.ok and disk.ran_out(refused) == [refused.error]
    assert "0.5 GB free" in str(refused.error)


def test_an_image_whose_python_has_no_framework_is_framework_missing_for_none_in_particular():
    """--framework auto found nothing (an image stack, `envcheck probe`): not TensorFlow's code, and the fix names
    the way to point envcheck at the Python that has one."""
    probe = {
        "framework": None,
        "frameworks_found": [],
        "framework_error": "no framework found: none of tensorflow, torch, jax is installed for this Python",
        "executable": "/usr/bin/python3",
    }
    (found,) = [d for d in diagnose(Facts(probe=probe)) if d.code.endswith("missing")]
    assert found.code == "framework-missing"
    assert "TensorFlow, PyTorch, JAX" in found.summary and "/usr/bin/python3" in found.summary
    assert "python: /path/to/python" in found.fix
