"""The driver and the GPUs as NVML sees them: through nvidia-ml-py (pynvml) when it is installed, else libnvidia-ml's
C API through ctypes. Standard library only, Python >= 3.8: the host reads its own GPUs with it (doctor, plan, a
run's host facts) and the probe carries this file into every image, so the same code reads both.
"""

from __future__ import annotations

import contextlib


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


class _Bindings:
    """NVML through nvidia-ml-py (imported as pynvml), when it is installed."""

    name = "pynvml"

    def __init__(self) -> None:
        import pynvml

        self.nvml = pynvml

    def init(self) -> None:
        self.nvml.nvmlInit()

    def shutdown(self) -> None:
        self.nvml.nvmlShutdown()

    def driver(self) -> str:
        return _text(self.nvml.nvmlSystemGetDriverVersion())

    def cuda_driver(self) -> int:
        return self.nvml.nvmlSystemGetCudaDriverVersion()

    def count(self) -> int:
        return self.nvml.nvmlDeviceGetCount()

    def device(self, index: int) -> tuple:
        """(name, (major, minor), (total bytes, free bytes)) of one GPU."""
        handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
        memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
        return (
            _text(self.nvml.nvmlDeviceGetName(handle)),
            self.nvml.nvmlDeviceGetCudaComputeCapability(handle),
            (memory.total, memory.free),
        )


class _CApi:
    """NVML through libnvidia-ml's C API (nvml.h) with ctypes, for images without the bindings."""

    name = "ctypes"

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        self.lib.nvmlErrorString.restype = ctypes.c_char_p

    def call(self, function: str, *args) -> None:
        status = getattr(self.lib, function)(*args)
        if status != 0:
            raise RuntimeError(f"{function}: {self.lib.nvmlErrorString(status).decode(errors='replace')} ({status})")

    def init(self) -> None:
        self.call("nvmlInit_v2")

    def shutdown(self) -> None:
        self.lib.nvmlShutdown()

    def driver(self) -> str:
        buffer = self.ctypes.create_string_buffer(96)
        self.call("nvmlSystemGetDriverVersion", buffer, 96)
        return buffer.value.decode()

    def cuda_driver(self) -> int:
        number = self.ctypes.c_int()
        self.call("nvmlSystemGetCudaDriverVersion", self.ctypes.byref(number))
        return number.value

    def count(self) -> int:
        number = self.ctypes.c_uint()
        self.call("nvmlDeviceGetCount_v2", self.ctypes.byref(number))
        return number.value

    def device(self, index: int) -> tuple:
        ctypes = self.ctypes

        class Memory(ctypes.Structure):  # nvmlMemory_t
            _fields_ = (("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong))

        handle, buffer, major, minor, memory = (
            ctypes.c_void_p(),
            ctypes.create_string_buffer(96),
            ctypes.c_int(),
            ctypes.c_int(),
            Memory(),
        )
        self.call("nvmlDeviceGetHandleByIndex_v2", index, ctypes.byref(handle))
        self.call("nvmlDeviceGetName", handle, buffer, 96)
        self.call("nvmlDeviceGetCudaComputeCapability", handle, ctypes.byref(major), ctypes.byref(minor))
        self.call("nvmlDeviceGetMemoryInfo", handle, ctypes.byref(memory))
        return buffer.value.decode(errors="replace"), (major.value, minor.value), (memory.total, memory.free)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def probe_nvml() -> dict:
    """Driver and GPUs as NVML sees them, independent of TensorFlow: through nvidia-ml-py when it is installed,
    else through libnvidia-ml's C API (the same facts; `bindings` says which)."""
    out: dict = {"available": False, "driver": None, "cuda_driver": None, "gpus": [], "error": None}
    try:
        with open("/proc/driver/nvidia/version") as f:
            out["proc_version"] = f.readline().strip()
    except OSError:
        out["proc_version"] = None
    note = ""
    try:
        api = _Bindings()
    except Exception as exc:
        note = f"pynvml not importable: {_error(exc)}; "
        try:
            api = _CApi()
        except OSError as exc2:
            out["error"] = f"{note}libnvidia-ml.so.1 not loadable: {exc2}"
            return out
    try:
        api.init()
    except Exception as exc:
        out["error"] = note + _error(exc)
        return out
    try:
        out.update(bindings=api.name, available=True, driver=api.driver())
        cuda = api.cuda_driver()
        out["cuda_driver"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        for index in range(api.count()):
            gpu: dict = {"index": index, "name": None, "compute_capability": None}
            try:
                gpu["name"], (major, minor), (total, free) = api.device(index)
                gpu.update(
                    compute_capability=f"{major}.{minor}",
                    memory_total_mib=total // 2**20,
                    memory_free_mib=free // 2**20,
                )
            except Exception as exc:
                gpu["error"] = _error(exc)
            out["gpus"].append(gpu)
    except Exception as exc:
        out["error"] = _error(exc)
    finally:
        with contextlib.suppress(Exception):
            api.shutdown()
    return out
