"""TensorFlow for envcheck's probe: its build, the GPUs it lists, where it places work, its matmul.

An adapter of probe.py (standard library + TensorFlow only, like the probe): load() fills the framework-neutral
facts, placement() and matmul() answer in the probe's terms. Errors propagate; the probe records them.
"""

from __future__ import annotations

import os
import time

NAME = "tensorflow"
# The distributions it is published under, for the version the probe reads without importing it.
DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly")
PACKAGE = "tensorflow"
# Shared objects whose RUNPATH the dynamic loader follows when TensorFlow dlopen()s the CUDA libraries, and those
# that carry its GPU code (relative to the package directory).
OBJECTS = ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2", "python/_pywrap_tensorflow_internal.so")
CODE_OBJECTS = ("libtensorflow_cc.so.2", "python/_pywrap_tensorflow_internal.so")
LIBRARIES = ("cudart", "cublas", "cublasLt", "cufft", "curand", "cusolver", "cusparse", "cudnn", "nccl", "cuda")


def load(facts: dict):
    """Import TensorFlow and read its build and GPUs; returns the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    import tensorflow as tf

    facts["framework_version"] = tf.__version__
    facts["is_cuda_build"] = bool(tf.test.is_built_with_cuda())
    try:
        build = dict(tf.sysconfig.get_build_info())
        facts["build_info"] = {
            k: v if isinstance(v, (str, int, float, bool, list)) else str(v) for k, v in build.items()
        }
        facts["build_cuda"] = build.get("cuda_version")
        facts["build_cudnn"] = build.get("cudnn_version")
        facts["compute_capabilities"] = list(build.get("cuda_compute_capabilities") or [])
    except Exception as exc:
        facts["framework_error"] = f"reading build info failed: {type(exc).__name__}: {exc}"
    try:  # float32 matmuls run as TF32 on tensor cores (Ampere and newer) while this is on: TF's default
        facts["tf32_enabled"] = bool(tf.config.experimental.tensor_float_32_execution_enabled())
    except Exception:
        facts["tf32_enabled"] = None
    try:
        for device in tf.config.list_physical_devices("GPU"):
            gpu: dict = {"name": device.name}
            try:
                details = tf.config.experimental.get_device_details(device)
                gpu["device_name"] = details.get("device_name")
                cc = details.get("compute_capability")
                gpu["compute_capability"] = f"{cc[0]}.{cc[1]}" if cc else None
            except Exception as exc:
                gpu["error"] = f"{type(exc).__name__}: {exc}"
            facts["gpus"].append(gpu)
    except Exception as exc:
        facts["framework_error"] = f"listing GPUs failed: {type(exc).__name__}: {exc}"
    return tf


def placement(tf) -> dict:
    """Ask for a matmul on /GPU:0 and say where its result really lives."""
    with tf.device("/GPU:0"):
        c = tf.matmul(tf.ones((64, 64)), tf.ones((64, 64)))
    return {"requested": "/GPU:0", "placed_on": c.device, "on_gpu": "GPU" in c.device.upper()}


def matmul(tf, device: str, dtype_name: str, n: int):
    """(run(count) → seconds for count matmuls, finished on the device; where the result was placed)."""
    dtype = getattr(tf, dtype_name)
    where = "/GPU:0" if device == "gpu" else "/CPU:0"
    with tf.device(where):
        a = tf.cast(tf.random.uniform((n, n), dtype=tf.float32), dtype)
        b = tf.cast(tf.random.uniform((n, n), dtype=tf.float32), dtype)

    @tf.function
    def step(x, y):
        return tf.matmul(x, y)

    def run(count: int) -> float:
        with tf.device(where):
            start = time.perf_counter()
            for _ in range(count):
                c = step(a, b)
            c[:1, :1].numpy()  # a tiny copy back: the device has finished every queued matmul
            return time.perf_counter() - start

    with tf.device(where):
        placed = step(a, b).device
    return run, placed
