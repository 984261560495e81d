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
import importlib.util
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


# -- CUDA libraries, resolved the way the dynamic loader resolves them for the framework -----------------------

DEFAULT_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")
EXTRA_DIRS_GLOBS = ("/usr/local/cuda*/lib64", "/usr/local/cuda*/targets/*/lib", "/usr/local/nvidia/lib64")


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
            dyn = reader("elf").elf_dynamic(obj)
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


def probe_gpu_code(adapter) -> dict | None:
    """The SASS architectures and the PTX (with its ISA) compiled into the framework's binaries, as the CUDA
    runtime will find them: what runs natively on which GPU, and what a driver must JIT-compile."""
    home = package_dir(adapter.PACKAGE)
    members: dict = {}
    read = []
    for name in adapter.CODE_OBJECTS if home else ():
        path = os.path.join(home, name)
        if os.path.exists(path):
            for key, count in reader("elf").fatbin_members(path).items():
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


def reader(name: str):
    """A reader shipped beside the probe as reader_NAME.py (envcheck/readers/NAME.py in envcheck's own tree), loaded
    by its path under a name of the probe's own, so it shadows nothing the framework imports. A missing one raises,
    and the section that needed it reports the error."""
    module_name = f"_envcheck_reader_{name}"
    if module_name not in sys.modules:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, f"reader_{name}.py")
        if not os.path.exists(path):  # imported from envcheck's own tree on the host: the readers' folder
            path = os.path.join(os.path.dirname(here), "readers", f"{name}.py")
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"the probe's reader_{name}.py is not beside it")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    return sys.modules[module_name]


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
        ("nvml", lambda: facts.update(nvml=reader("nvml").probe_nvml())),
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
