"""PyTorch for envcheck's probe: its build, the GPUs it sees, where it places work, its matmul.

An adapter of probe.py (standard library + PyTorch only): load() fills the framework-neutral facts, placement()
and matmul() answer in the probe's terms. CUDA initialisation problems reach Python as warnings
("CUDA initialization: ... error 803 ...") and as torch.cuda.init()'s exception; both go to the log.
"""

from __future__ import annotations

import time
import warnings

NAME = "torch"
DISTRIBUTIONS = ("torch",)  # its distribution, for the version the probe reads without importing it
PACKAGE = "torch"
OBJECTS = ("lib/libtorch_global_deps.so", "lib/libtorch_cuda.so", "lib/libc10_cuda.so")
CODE_OBJECTS = ("lib/libtorch_cuda.so",)
LIBRARIES = (
    "cudart",
    "cublas",
    "cublasLt",
    "cufft",
    "curand",
    "cusolver",
    "cusparse",
    "cudnn",
    "nccl",
    "nvrtc",
    "cuda",
)
PRELOADS_PIP_LIBRARIES = True  # torch/__init__.py loads the nvidia-* wheels' libraries from site-packages itself


def load(facts: dict):
    import torch

    facts["framework_version"] = torch.__version__
    cuda = torch.version.cuda
    facts["is_cuda_build"] = cuda is not None
    facts["build_cuda"] = cuda
    facts["build_info"] = {"cuda": cuda, "git_version": getattr(torch.version, "git_version", None)}
    if cuda is not None:
        try:  # the architectures compiled in, read without a GPU (get_arch_list() is empty without one)
            facts["compute_capabilities"] = torch._C._cuda_getArchFlags().split()
        except Exception as exc:
            facts["framework_error"] = f"reading the arch list failed: {type(exc).__name__}: {exc}"
        try:
            version = torch.backends.cudnn.version()
            if version:
                facts["build_cudnn"] = _cudnn(version)
        except Exception as exc:
            facts["log"].append(f"cudnn version: {type(exc).__name__}: {exc}")
    try:  # float32 matmuls run as TF32 only when this is on; PyTorch's default since 1.12 is off
        facts["tf32_enabled"] = bool(torch.backends.cuda.matmul.allow_tf32)
    except Exception:
        facts["tf32_enabled"] = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    facts["log"] += [str(w.message) for w in caught]
    if cuda is not None and not available:
        try:  # the driver's own words for why CUDA did not start (error 803, 804, no device, too old)
            torch.cuda.init()
        except Exception as exc:
            facts["log"].append(f"torch.cuda.init(): {type(exc).__name__}: {exc}")
    for index in range(torch.cuda.device_count() if available else 0):
        major, minor = torch.cuda.get_device_capability(index)
        facts["gpus"].append(
            {
                "name": f"cuda:{index}",
                "device_name": torch.cuda.get_device_name(index),
                "compute_capability": f"{major}.{minor}",
            }
        )
    return torch


def _cudnn(version: int) -> str:
    """torch.backends.cudnn.version(): 8907 (cuDNN 8: MAJOR*1000+MINOR*100+PATCH) or 90100 (cuDNN 9)."""
    base = 10000 if version >= 90000 else 1000
    return f"{version // base}.{version % base // 100}.{version % 100}"


def placement(torch) -> dict:
    c = torch.ones((64, 64), device="cuda:0") @ torch.ones((64, 64), device="cuda:0")
    return {"requested": "cuda:0", "placed_on": str(c.device), "on_gpu": c.device.type == "cuda"}


def matmul(torch, device: str, dtype_name: str, n: int):
    where = "cuda:0" if device == "gpu" else "cpu"
    dtype = getattr(torch, dtype_name)
    a = torch.rand((n, n), device=where, dtype=torch.float32).to(dtype)
    b = torch.rand((n, n), device=where, dtype=torch.float32).to(dtype)

    def run(count: int) -> float:
        if device == "gpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(count):
            c = a @ b
        if device == "gpu":
            torch.cuda.synchronize()  # the GPU has finished every queued matmul
        del c
        return time.perf_counter() - start

    return run, str((a @ b).device)
