"""envcheck's in-container probe: what TensorFlow, the CUDA libraries and the driver really look like here.

Runs inside any image with any Python >= 3.8, using only the standard library plus TensorFlow and NVML's
bindings (``pynvml`` from nvidia-ml-py) when they are present. Every piece is guarded: something missing is
reported in the JSON, never a crash. Prints one JSON document on stdout; TensorFlow's own logging goes to
stderr and is also captured into ``tf_log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback

SCHEMA_VERSION = 1
ENV_PREFIXES = ("CUDA_", "NVIDIA_", "TF_", "LD_LIBRARY_PATH", "XLA_")
MAX_LOG_LINES = 400


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


@contextlib.contextmanager
def captured_stderr(lines: list):
    """Capture file descriptor 2 (where TF's C++ logging writes) and echo it afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            sys.stderr.write(text)
            lines.extend(line for line in text.splitlines() if line.strip())
            del lines[MAX_LOG_LINES:]


def probe_env() -> dict:
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)}


def probe_device_nodes() -> list:
    try:
        return sorted(f"/dev/{name}" for name in os.listdir("/dev") if name.startswith("nvidia"))
    except OSError:
        return []


def probe_nvml() -> dict:
    """Driver and GPUs as NVML sees them; independent of TensorFlow."""
    out: dict = {"available": False, "driver": None, "cuda_driver": None, "gpus": [], "error": None}
    try:
        with open("/proc/driver/nvidia/version") as f:
            out["proc_version"] = f.readline().strip()
    except OSError:
        out["proc_version"] = None
    try:
        import pynvml
    except Exception as exc:
        out["error"] = f"pynvml not importable: {_error(exc)}"
        return out

    def text(value):
        return value.decode() if isinstance(value, bytes) else value

    try:
        pynvml.nvmlInit()
    except Exception as exc:
        out["error"] = _error(exc)
        return out
    try:
        out["available"] = True
        out["driver"] = text(pynvml.nvmlSystemGetDriverVersion())
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        out["cuda_driver"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpu: dict = {"index": index, "name": text(pynvml.nvmlDeviceGetName(handle))}
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
                gpu["compute_capability"] = f"{major}.{minor}"
            except Exception as exc:
                gpu["compute_capability"] = None
                gpu["error"] = _error(exc)
            try:
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                gpu["memory_total_mib"] = memory.total // 2**20
                gpu["memory_free_mib"] = memory.free // 2**20
            except Exception as exc:
                gpu["error"] = _error(exc)
            out["gpus"].append(gpu)
    except Exception as exc:
        out["error"] = _error(exc)
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return out


def probe_tensorflow(report: dict):
    """Import TF and list its GPUs with its log captured; returns the module or None."""
    report.update(
        tensorflow=None,
        tensorflow_error=None,
        is_cuda_build=None,
        build_cuda=None,
        build_cudnn=None,
        compute_capabilities=[],
        build_info={},
        gpus=[],
        tf_log=[],
    )
    log = report["tf_log"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    with captured_stderr(log):
        try:
            import tensorflow as tf
        except Exception as exc:
            report["tensorflow_error"] = f"import tensorflow failed: {_error(exc)}"
            return None
        try:
            report["tensorflow"] = tf.__version__
            report["is_cuda_build"] = bool(tf.test.is_built_with_cuda())
            build = dict(tf.sysconfig.get_build_info())
            report["build_info"] = {
                k: v if isinstance(v, (str, int, float, bool, list)) else str(v) for k, v in build.items()
            }
            report["build_cuda"] = build.get("cuda_version")
            report["build_cudnn"] = build.get("cudnn_version")
            report["compute_capabilities"] = list(build.get("cuda_compute_capabilities") or [])
        except Exception as exc:
            report["tensorflow_error"] = f"reading build info failed: {_error(exc)}"
        try:
            for device in tf.config.list_physical_devices("GPU"):
                gpu: dict = {"name": device.name}
                try:
                    details = tf.config.experimental.get_device_details(device)
                    gpu["device_name"] = details.get("device_name")
                    cc = details.get("compute_capability")
                    gpu["compute_capability"] = f"{cc[0]}.{cc[1]}" if cc else None
                except Exception as exc:
                    gpu["error"] = _error(exc)
                report["gpus"].append(gpu)
        except Exception as exc:
            report["tensorflow_error"] = f"listing GPUs failed: {_error(exc)}"
    return tf


def _timed_matmul(tf, device: str, dtype_name: str, n: int, repeats: int) -> dict:
    """Median TFLOP/s of an n x n matmul: warmed up, synchronised before every clock read."""
    dtype = getattr(tf, dtype_name)
    with tf.device(device):
        a = tf.random.uniform((n, n), dtype=tf.float32)
        b = tf.random.uniform((n, n), dtype=tf.float32)
        a, b = tf.cast(a, dtype), tf.cast(b, dtype)

        @tf.function
        def step(x, y):
            return tf.matmul(x, y)

        def run(count: int) -> float:
            start = time.perf_counter()
            for _ in range(count):
                c = step(a, b)
            c[:1, :1].numpy()  # a tiny copy back forces the device to finish
            return time.perf_counter() - start

        run(2)
        # Enough matmuls per sample that a sample takes ~0.1 s or more, so clock noise does not dominate.
        single = max(run(1), 1e-6)
        inner = max(1, min(1000, int(0.1 / single)))
        samples = [run(inner) / inner for _ in range(repeats)]
        placed = step(a, b).device
    seconds = statistics.median(samples)
    return {
        "device": "gpu" if "GPU" in device.upper() else "cpu",
        "placed_on": placed,
        "dtype": dtype_name,
        "n": n,
        "seconds": round(seconds, 6),
        "tflops": round(2 * n**3 / seconds / 1e12, 4),
    }


def probe_benchmark(tf, report: dict, quick: bool) -> None:
    results = report["benchmark"] = []
    if tf is None:
        return
    repeats = 3 if quick else 5
    cases = [("/CPU:0", "float32", 1024 if quick else 2048)]
    if report["gpus"]:
        for dtype in ("float32", "float16"):
            cases.append(("/GPU:0", dtype, 4096 if quick else 8192))
    with captured_stderr(report["tf_log"]):
        for device, dtype, n in cases:
            try:
                results.append(_timed_matmul(tf, device, dtype, n, repeats))
            except Exception as exc:
                results.append(
                    {
                        "device": "gpu" if "GPU" in device else "cpu",
                        "dtype": dtype,
                        "n": n,
                        "tflops": None,
                        "error": _error(exc)[:500],
                    }
                )


def main(argv: list | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    report: dict = {
        "schema": SCHEMA_VERSION,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "env": {},
        "device_nodes": [],
        "driver": None,
        "cuda_driver": None,
        "errors": [],
    }
    steps = [
        ("env", lambda: report.update(env=probe_env())),
        ("device_nodes", lambda: report.update(device_nodes=probe_device_nodes())),
        ("nvml", lambda: report.update(nvml=probe_nvml())),
        (
            "driver",
            lambda: report.update(driver=report["nvml"]["driver"], cuda_driver=report["nvml"]["cuda_driver"]),
        ),
    ]
    for name, func in steps:
        try:
            func()
        except Exception:
            report["errors"].append(f"{name}: {traceback.format_exc(limit=3)}")
    tf = None
    try:
        tf = probe_tensorflow(report)
    except Exception:
        report["errors"].append(f"tensorflow: {traceback.format_exc(limit=3)}")
    if "--no-benchmark" not in args:
        try:
            probe_benchmark(tf, report, quick="--quick" in args)
        except Exception:
            report["errors"].append(f"benchmark: {traceback.format_exc(limit=3)}")
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
