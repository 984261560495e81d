"""envcheck's in-container probe: what a framework, the CUDA libraries and the driver really look like here.

    python probe.py [--framework tensorflow|torch|jax] [--quick] [--no-benchmark]

Runs inside any image with any Python >= 3.8, using only the standard library plus the framework and NVML's
bindings (``pynvml`` from nvidia-ml-py) when they are present. What is the same for every framework is here
(environment, device nodes, NVML, CUDA libraries resolved as the loader does, the GPU code in the framework's
binaries, benchmark timing); each framework is an adapter beside this file (fw_tensorflow.py, fw_torch.py,
fw_jax.py) that reads its build, its GPUs, its placement and runs its matmul. Every piece is guarded: something
missing is reported in the JSON, never a crash. Prints one JSON document on stdout; the framework's own logging
goes to stderr and is also captured into ``log``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings

PROBE_SCHEMA = 2  # 2: every framework (framework, framework_version, log, gpu_code); TF keeps its keys of 1
FRAMEWORKS = ("tensorflow", "torch", "jax")
ENV_PREFIXES = ("CUDA_", "NVIDIA_", "TF_", "LD_LIBRARY_PATH", "XLA_", "JAX_", "PYTORCH_", "TORCH_")
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


@contextlib.contextmanager
def captured(lines: list):
    """The framework's log: file descriptor 2 (C++ logging, Python logging) and Python warnings."""
    with captured_stderr(lines), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            lines.extend(f"{w.category.__name__}: {w.message}" for w in caught)


def probe_env() -> dict:
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)}


def probe_device_nodes() -> list:
    try:
        return sorted(f"/dev/{name}" for name in os.listdir("/dev") if name.startswith("nvidia"))
    except OSError:
        return []


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


# -- CUDA libraries, resolved the way the dynamic loader resolves them for the framework -----------------------

DEFAULT_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")
EXTRA_DIRS_GLOBS = ("/usr/local/cuda*/lib64", "/usr/local/cuda*/targets/*/lib", "/usr/local/nvidia/lib64")
DT_NEEDED, DT_STRTAB, DT_SONAME, DT_RPATH, DT_RUNPATH = 1, 5, 14, 15, 29


def elf_dynamic(path: str) -> dict:
    """NEEDED, SONAME, RPATH and RUNPATH of an ELF shared object, read with the standard library alone."""
    import struct

    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            raise ValueError("not an ELF file")
        wide, end = ident[4] == 2, "<" if ident[5] == 1 else ">"
        header = f.read(48 if wide else 36)
        if wide:
            phoff, phentsize, phnum = (
                struct.unpack_from(end + "Q", header, 16)[0],
                *struct.unpack_from(end + "HH", header, 38),
            )
        else:
            phoff, phentsize, phnum = (
                struct.unpack_from(end + "I", header, 12)[0],
                *struct.unpack_from(end + "HH", header, 26),
            )
        loads, dynamic = [], None
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            raw = f.read(phentsize)
            if wide:
                p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(end + "IIQQQQ", raw)
            else:
                p_type, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(end + "IIIII", raw)
            if p_type == 1:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == 2:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return {"needed": [], "soname": None, "rpath": [], "runpath": []}
        f.seek(dynamic[0])
        data = f.read(dynamic[1])
        size = 16 if wide else 8
        entries = [struct.unpack_from(end + ("qQ" if wide else "iI"), data, i) for i in range(0, len(data), size)]
        strtab = next(v for t, v in entries if t == DT_STRTAB)
        strtab_offset = next(off + strtab - va for va, off, sz in loads if va <= strtab < va + sz)

        def string(offset: int) -> str:
            f.seek(strtab_offset + offset)
            raw = f.read(4096)
            return raw[: raw.index(b"\0")].decode("utf-8", "replace")

        out: dict = {"needed": [], "soname": None, "rpath": [], "runpath": []}
        for tag, value in entries:
            if tag == 0:
                break
            if tag == DT_NEEDED:
                out["needed"].append(string(value))
            elif tag == DT_SONAME:
                out["soname"] = string(value)
            elif tag in (DT_RPATH, DT_RUNPATH):
                out["rpath" if tag == DT_RPATH else "runpath"].extend(p for p in string(value).split(":") if p)
        return out


def package_dir(name: str):
    """A package's directory without importing it (so it is found even when the import fails)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return locations[0] if locations else None


def ld_cache() -> dict:
    """soname → path from the ld.so cache (`ldconfig -p`), for this machine's architecture."""
    import subprocess

    for ldconfig in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        cache: dict = {}
        for line in out.splitlines()[1:]:
            name, _, rest = line.strip().partition(" (")
            flags, _, target = rest.partition(") => ")
            if target and ("x86-64" in flags or "64" in flags or "," not in flags):
                cache.setdefault(name, target)
        return cache
    return {}


def loader_search_path(package: str | None, objects: tuple = ()) -> list:
    """Directories the loader tries for a library the framework's objects load, in the loader's order: an
    object's RPATH (when it has no RUNPATH) before LD_LIBRARY_PATH, its RUNPATH after; $ORIGIN expanded."""
    rpath: list = []
    runpath: list = []
    for name in objects if package else ():
        obj = os.path.join(package, name)
        if not os.path.exists(obj):
            continue
        try:
            dyn = elf_dynamic(obj)
        except Exception:
            continue
        origin = os.path.dirname(obj)
        target, kind = (runpath, "RUNPATH") if dyn["runpath"] else (rpath, "RPATH")
        for entry in dyn["runpath"] or dyn["rpath"]:
            directory = os.path.normpath(entry.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))
            target.append((directory, f"{kind} of {name.replace('../', '')}"))
    path: list = []
    environment = [(d, "LD_LIBRARY_PATH") for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    for directory, source in rpath + environment + runpath:
        if all(directory != d for d, _ in path):
            path.append((directory, source))
    return path


def _matches(directory: str, lib: str) -> list:
    import re

    pattern = re.compile(rf"lib{re.escape(lib)}\.so(\.\d+)+$")
    try:
        return sorted(os.path.join(directory, n) for n in os.listdir(directory) if pattern.match(n))
    except OSError:
        return []


def _file_version(path: str):
    """The version in the real file's name (libcudart.so.12.2.140 → 12.2.140), if longer than the soname's."""
    real = os.path.basename(os.path.realpath(path))
    tail = real.split(".so.", 1)[1] if ".so." in real else ""
    return tail or None


def probe_cuda_libraries(facts: dict, adapter) -> None:
    """For each CUDA library the framework needs: where the loader finds it (and which file), or that it is
    missing, and separately where it lies on disk without being reachable."""
    import glob

    home = package_dir(adapter.PACKAGE)
    search = loader_search_path(home, adapter.OBJECTS)
    site_dirs = []
    if home:
        site_dirs = sorted(glob.glob(os.path.join(os.path.dirname(home), "nvidia", "*", "lib")))
        site_dirs += sorted(glob.glob(os.path.join(os.path.dirname(home), "nvidia", "cu*", "lib")))
    if getattr(adapter, "PRELOADS_PIP_LIBRARIES", False):  # the framework loads these itself, before CUDA starts
        search += [(d, f"{adapter.NAME}'s preload of pip NVIDIA libraries") for d in site_dirs]
    cache = ld_cache()
    extra_dirs = site_dirs + sorted(d for g in EXTRA_DIRS_GLOBS for d in glob.glob(g))
    libraries = {}
    for lib in adapter.LIBRARIES:
        found = None
        for directory, source in search:
            files = _matches(directory, lib)
            if files:
                found = {"path": files[0], "candidates": files, "source": source}
                break
        if found is None:
            cached = sorted((name, path) for name, path in cache.items() if _matches_name(name, lib))
            if cached:
                found = {"path": cached[0][1], "candidates": [p for _, p in cached], "source": "ld.so.cache"}
        if found is None:
            for directory in DEFAULT_DIRS:
                files = _matches(directory, lib)
                if files:
                    found = {"path": files[0], "candidates": files, "source": "default directories"}
                    break
        if found:
            found["soname"] = os.path.basename(found["path"])
            found["file_version"] = _file_version(found["path"])
        reachable = set(found["candidates"]) if found else set()
        on_disk = [f for d in extra_dirs for f in _matches(d, lib) if f not in reachable]
        libraries[lib] = {"found": found, "unreachable_on_disk": on_disk}
    facts["cuda_libs"] = {
        "package_dir": home,
        "search_path": [{"dir": d, "source": s} for d, s in search if os.path.isdir(d)],
        "libraries": libraries,
        "runtime_versions": runtime_versions(libraries),
        "nvidia_packages": nvidia_packages(),
    }


def _matches_name(name: str, lib: str) -> bool:
    import re

    return re.match(rf"lib{re.escape(lib)}\.so(\.\d+)+$", name) is not None


VERSION_QUERIES = """
import ctypes, json, sys

def decode(v, wide):  # MAJOR*10000+MINOR*100+PATCH (cuDNN 9, NCCL 2.9+) or MAJOR*1000+MINOR*100+PATCH
    base = 10000 if wide else 1000
    return f"{v // base}.{v % base // 100}.{v % 100}"

out = {}
for name, path in json.loads(sys.argv[1]).items():
    try:
        lib = ctypes.CDLL(path)
        value = ctypes.c_int()
        if name == "cudart":
            lib.cudaRuntimeGetVersion(ctypes.byref(value))
            out[name] = f"{value.value // 1000}.{value.value % 1000 // 10}"
        elif name == "cudnn":
            v = lib.cudnnGetVersion()
            out[name] = decode(v, v >= 90000)
        elif name == "nccl":
            lib.ncclGetVersion(ctypes.byref(value))
            out[name] = decode(value.value, value.value >= 20900)
    except Exception as exc:
        out[name] = "error: " + str(exc)[:200]
print(json.dumps(out))
"""


def runtime_versions(libraries: dict) -> dict:
    """Versions the CUDA runtime, cuDNN and NCCL report about themselves, asked in a child process so that
    loading them cannot change what TensorFlow loaded in this one."""
    import subprocess

    paths = {k: v["found"]["path"] for k, v in libraries.items() if k in ("cudart", "cudnn", "nccl") and v["found"]}
    if not paths:
        return {}
    try:
        done = subprocess.run(
            [sys.executable, "-c", VERSION_QUERIES, json.dumps(paths)], capture_output=True, text=True, timeout=60
        )
        return json.loads(done.stdout.strip().splitlines()[-1])
    except Exception as exc:
        return {"error": _error(exc)}


def nvidia_packages() -> dict:
    """pip-installed NVIDIA library wheels and their versions (nvidia-cudnn-cu12 → 8.9.4.25)."""
    try:
        from importlib import metadata

        return {
            d.metadata["Name"]: d.version
            for d in metadata.distributions()
            if (d.metadata["Name"] or "").lower().startswith("nvidia-")
        }
    except Exception:
        return {}


# -- the GPU code in the framework's own binaries ----------------------------------------------------------------

FATBIN_MAGIC = b"\x50\xed\x55\xba\x01\x00\x10\x00"  # 0xBA55ED50, version 1, header size 0x10


def fatbin_section(data) -> tuple:
    """Offset and end of the ELF section .nv_fatbin: the GPU code the CUDA runtime loads."""
    import struct

    if data[:4] != b"\x7fELF" or data[4] != 2:
        return 0, 0
    try:
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        entsize, count, names = struct.unpack_from("<HHH", data, 0x3A)
        table = struct.unpack_from("<Q", data, shoff + names * entsize + 0x18)[0]
        for i in range(count):
            name = struct.unpack_from("<I", data, shoff + i * entsize)[0]
            offset, size = struct.unpack_from("<QQ", data, shoff + i * entsize + 0x18)
            if data[table + name : table + name + 11] == b".nv_fatbin\0":
                return offset, offset + size
    except struct.error:  # a truncated or odd file: no section table to trust
        pass
    return 0, 0


def fatbin_members(path: str) -> dict:
    """(kind, arch, PTX ISA) → count for every member of a shared object's fat binaries: 'sass' with sm_XY, or
    'ptx' with sm_XY and the ISA version its header records (what `.version` says in the PTX text)."""
    import mmap
    import struct

    found: dict = {}
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return found
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            section_start, section_end = fatbin_section(data)
            start = data.find(FATBIN_MAGIC, section_start, section_end)
            while start != -1:
                (size,) = struct.unpack_from("<Q", data, start + 8)
                entry, end = start + 16, start + 16 + size
                while entry + 0x20 <= end:
                    kind, _, header, payload = struct.unpack_from("<HHIQ", data, entry)
                    minor, major, arch = struct.unpack_from("<HHI", data, entry + 0x18)
                    if not header:
                        break
                    if kind in (1, 2):
                        key = ("ptx", f"sm_{arch}", f"{major}.{minor}") if kind == 1 else ("sass", f"sm_{arch}", None)
                        found[key] = found.get(key, 0) + 1
                    entry += header + payload
                start = data.find(FATBIN_MAGIC, max(end, start + 1), section_end)
    return found


def probe_gpu_code(adapter) -> dict | None:
    """The SASS architectures and the PTX (with its ISA) compiled into the framework's binaries, as the CUDA
    runtime will find them: what runs natively on which GPU, and what a driver must JIT-compile."""
    home = package_dir(adapter.PACKAGE)
    members: dict = {}
    read = []
    for name in adapter.CODE_OBJECTS if home else ():
        path = os.path.join(home, name)
        if os.path.exists(path):
            for key, count in fatbin_members(path).items():
                members[key] = members.get(key, 0) + count
            read.append(name)
    if not read:
        return None

    def cc(arch: str) -> str:
        digits = arch[3:].rstrip("af")
        return f"{digits[:-1]}.{digits[-1]}"

    sass = sorted(
        {cc(arch) for kind, arch, _ in members if kind == "sass"}, key=lambda v: [int(p) for p in v.split(".")]
    )
    ptx: dict = {}
    for kind, arch, isa in members:
        if kind == "ptx":
            ptx[cc(arch)] = max(ptx.get(cc(arch), isa), isa, key=lambda v: [int(p) for p in v.split(".")])
    return {"sass": sass, "ptx": ptx, "read_from": read}


# -- the framework, through its adapter ---------------------------------------------------------------------------


def load_adapter(name: str):
    """fw_NAME.py beside this file (the probe's directory is on sys.path when it runs as a script)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    return importlib.import_module(f"fw_{name}")


def probe_framework(facts: dict, adapter):
    """Import the framework with its log captured; returns the module, or None with the reason recorded."""
    facts.update(
        framework=adapter.NAME,
        framework_version=None,
        framework_error=None,
        is_cuda_build=None,
        build_cuda=None,
        build_cudnn=None,
        compute_capabilities=[],
        build_info={},
        gpus=[],
        log=[],
        tf32_enabled=None,
        placement=None,
    )
    with captured(facts["log"]):
        try:
            return adapter.load(facts)
        except Exception as exc:
            facts["framework_error"] = f"import {adapter.NAME} failed: {_error(exc)}"  # NAME is the module
            return None


def _median_seconds(run, repeats: int) -> float:
    """Median seconds per call of run(count): warmed up, with enough calls per sample (~0.1 s) that clock
    noise does not dominate. run must synchronise before it returns."""
    run(2)
    single = max(run(1), 1e-6)
    inner = max(1, min(1000, int(0.1 / single)))
    return statistics.median(run(inner) / inner for _ in range(repeats))


def _result(library: str, device: str, dtype: str, n: int, seconds: float, **extra) -> dict:
    return {
        "library": library,
        "device": device,
        "dtype": dtype,
        "n": n,
        "seconds": round(seconds, 6),
        "tflops": round(2 * n**3 / seconds / 1e12, 4),
        **extra,
    }


def _numpy_matmul(n: int, repeats: int) -> dict:
    """The same measurement with NumPy's BLAS: the reference a CPU figure is judged against."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)

    def run(count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            np.matmul(a, b)
        return time.perf_counter() - start

    return _result("numpy", "cpu", "float32", n, _median_seconds(run, repeats))


def _is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "resourceexhausted" in text or "out of memory" in text or " oom" in text


def probe_placement(fw, adapter, facts: dict) -> None:
    """Ask for a matmul on the first GPU and record where its result really lives."""
    if not facts["gpus"]:
        return
    try:
        facts["placement"] = adapter.placement(fw)
    except Exception as exc:
        facts["placement"] = {"requested": "GPU 0", "placed_on": None, "on_gpu": False, "error": _error(exc)}


def probe_benchmark(fw, adapter, facts: dict, quick: bool) -> None:
    """Matmul TFLOP/s on CPU (with NumPy beside it) and on the first GPU in float32, float16 and bfloat16.
    GPU sizes go from large to small, so an out-of-memory at one size still leaves the smaller ones."""
    results = facts["benchmark"] = []
    if fw is None:
        return
    repeats = 3 if quick else 5
    cases = [("cpu", "float32", n) for n in ((1024,) if quick else (1024, 2048))]
    if facts["gpus"]:
        sizes = (4096,) if quick else (8192, 4096, 2048)
        cases += [("gpu", dtype, n) for dtype in ("float32", "float16", "bfloat16") for n in sizes]
    for device, dtype, n in cases:
        try:
            run, placed = adapter.matmul(fw, device, dtype, n)
            results.append(_result(adapter.NAME, device, dtype, n, _median_seconds(run, repeats), placed_on=placed))
        except Exception as exc:
            failed = {"library": adapter.NAME, "device": device, "dtype": dtype, "n": n, "tflops": None}
            results.append({**failed, "oom": _is_oom(exc), "error": _error(exc)[:500]})
        if device == "cpu" and importlib.util.find_spec("numpy") is not None:  # torch's images have no NumPy
            try:
                results.append(_numpy_matmul(n, repeats))
            except Exception as exc:
                failed = {"library": "numpy", "device": "cpu", "dtype": "float32", "n": n, "tflops": None}
                results.append({**failed, "error": _error(exc)[:300]})


def main(argv: list | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    name = args[args.index("--framework") + 1] if "--framework" in args[:-1] else "tensorflow"
    facts: dict = {
        "schema": PROBE_SCHEMA,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "env": {},
        "device_nodes": [],
        "driver": None,
        "cuda_driver": None,
        "errors": [],
    }
    steps = [
        ("env", lambda: facts.update(env=probe_env())),
        ("device_nodes", lambda: facts.update(device_nodes=probe_device_nodes())),
        ("nvml", lambda: facts.update(nvml=probe_nvml())),
        (
            "driver",
            lambda: facts.update(driver=facts["nvml"]["driver"], cuda_driver=facts["nvml"]["cuda_driver"]),
        ),
    ]
    for step, func in steps:
        try:
            func()
        except Exception:
            facts["errors"].append(f"{step}: {traceback.format_exc(limit=3)}")
    if name not in FRAMEWORKS:
        facts["errors"].append(f"framework: unknown {name!r} (one of {', '.join(FRAMEWORKS)})")
        name = "tensorflow"
    adapter = load_adapter(name)
    fw = None
    try:
        fw = probe_framework(facts, adapter)
    except Exception:
        facts["errors"].append(f"{name}: {traceback.format_exc(limit=3)}")
    try:
        with captured(facts["log"]):
            probe_placement(fw, adapter, facts)
    except Exception:
        facts["errors"].append(f"placement: {traceback.format_exc(limit=3)}")
    try:
        probe_cuda_libraries(facts, adapter)
    except Exception:
        facts["errors"].append(f"cuda_libs: {traceback.format_exc(limit=3)}")
    try:
        facts["gpu_code"] = probe_gpu_code(adapter)
        code = facts["gpu_code"]
        if code and not facts.get("compute_capabilities"):  # JAX has no API for its build's architectures
            facts["compute_capabilities"] = [f"sm_{v.replace('.', '')}" for v in code["sass"]] + [
                f"compute_{v.replace('.', '')}" for v in code["ptx"]
            ]
    except Exception:
        facts["errors"].append(f"gpu_code: {traceback.format_exc(limit=3)}")
    if "--no-benchmark" not in args:
        try:
            with captured(facts["log"]):
                probe_benchmark(fw, adapter, facts, quick="--quick" in args)
        except Exception:
            facts["errors"].append(f"benchmark: {traceback.format_exc(limit=3)}")
    if name == "tensorflow":  # the keys of probe schema 1, which records and readers of TensorFlow results use
        facts.update(tensorflow=facts["framework_version"], tensorflow_error=facts["framework_error"])
        facts["tf_log"] = facts["log"]
        facts.setdefault("cuda_libs", {})["tensorflow_dir"] = (facts.get("cuda_libs") or {}).get("package_dir")
    sys.stdout.write(json.dumps(facts) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
