"""envcheck's in-container probe: what a framework, the CUDA libraries and the driver really look like here.

    python probe.py [--framework tensorflow|torch|jax|auto] [--quick] [--no-benchmark]
    python probe.py --require gpu [--framework NAME|auto] [--min-tflops X] [--json]

Runs inside any image with any Python >= 3.8 (boot.py answers older ones), using only the standard library plus
the framework and NVML's bindings (``pynvml`` from nvidia-ml-py) when they are present. What is the same for every
framework is here (environment, device nodes, NVML, CUDA libraries resolved as the loader does, the GPU code in the
framework's binaries, benchmark timing); each framework is an adapter beside this file (fw_tensorflow.py,
fw_torch.py, fw_jax.py) that reads its build, its GPUs, its placement and runs its matmul. ``--framework auto``
probes the first framework this Python has, found without importing any. Every piece is guarded: something missing
is reported in the JSON, never a crash. Prints one JSON document on stdout; the framework's own logging goes to
stderr and is also captured into ``log``.

``--require gpu`` is a gate for a container's start: it exits 0 only when the framework really computed on a GPU
(fast enough, with ``--min-tflops``), else 1 with one paragraph on stderr naming the reason by envcheck's diagnosis
code (2: bad arguments); the JSON only with ``--json``, with the verdict in ``gate``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import types
import warnings

# 2: every framework (framework, framework_version, log, gpu_code); TF keeps its keys of 1. Keys added since, none
# renamed: executable, frameworks_found, gate under --require, and import_failure (an installed framework whose
# import raised: its distributions' versions read without importing, the exception, its frames, its dependencies).
PROBE_SCHEMA = 2
FRAMEWORKS = ("tensorflow", "torch", "jax")
ENV_PREFIXES = ("CUDA_", "NVIDIA_", "TF_", "LD_LIBRARY_PATH", "XLA_", "JAX_", "PYTORCH_", "TORCH_")
MAX_LOG_LINES = 400


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


@contextlib.contextmanager
def captured_stderr(lines: list, echo: bool = True):
    """Capture file descriptor 2 (where TF's C++ logging writes) and echo it afterwards (not under a gate, whose
    stderr is its one paragraph)."""
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
            if echo:
                sys.stderr.write(text)
            lines.extend(line for line in text.splitlines() if line.strip())
            del lines[MAX_LOG_LINES:]


@contextlib.contextmanager
def captured(lines: list, echo: bool = True):
    """The framework's log: file descriptor 2 (C++ logging, Python logging) and Python warnings."""
    with captured_stderr(lines, echo), warnings.catch_warnings(record=True) as caught:
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


def _sibling(*names: str) -> tuple:
    """(path, bytes) of the first of these files beside the probe, read through the loader that read the probe: from
    a directory, and from inside the preflight's zip (envcheck-preflight) too, where no path can be opened."""
    here = os.path.dirname(__file__)
    for name in names:
        path = os.path.normpath(os.path.join(here, name))
        try:
            return path, __loader__.get_data(path)
        except OSError:
            continue
    raise ImportError(f"the probe's {names[0]} is not beside it")


def reader(name: str):
    """A reader shipped beside the probe as reader_NAME.py (envcheck/readers/NAME.py in envcheck's own tree), run as a
    module under a name of the probe's own, so it shadows nothing the framework imports. A missing one raises, and
    the section that needed it reports the error."""
    module_name = f"_envcheck_reader_{name}"
    if module_name not in sys.modules:
        path, source = _sibling(f"reader_{name}.py", os.path.join(os.pardir, "readers", f"{name}.py"))
        module = types.ModuleType(module_name)
        module.__file__ = path
        sys.modules[module_name] = module
        try:
            exec(compile(source, path, "exec"), module.__dict__)
        except BaseException:
            del sys.modules[module_name]
            raise
    return sys.modules[module_name]


def load_adapter(name: str):
    """fw_NAME.py beside this file, imported with the probe's directory (or the preflight's zip) first on sys.path."""
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path[:1] != [here]:
        sys.path.insert(0, here)
    return importlib.import_module(f"fw_{name}")


def distribution_version(names: tuple) -> str | None:
    """The version of the first of these installed distributions (a framework ships under several names)."""
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def find_frameworks() -> list:
    """The frameworks of FRAMEWORKS this Python has, in that order, found without importing any (an import takes
    seconds, may crash, may take a GPU): the module's spec, and its distribution's version. `importable` stays null
    for a framework the probe does not import."""
    found = []
    for name in FRAMEWORKS:
        try:
            if importlib.util.find_spec(name) is None:
                continue
        except (ImportError, ValueError):  # a broken parent or a module without a spec: not one to probe
            continue
        version = distribution_version(load_adapter(name).DISTRIBUTIONS)
        found.append({"name": name, "version": version, "importable": None})
    return found


def framework_facts(name: str | None) -> dict:
    """The framework's keys before anything is known of it: the same for every framework, and for none."""
    return {
        "framework": name,
        "framework_version": None,
        "framework_error": None,
        "is_cuda_build": None,
        "build_cuda": None,
        "build_cudnn": None,
        "compute_capabilities": [],
        "build_info": {},
        "gpus": [],
        "log": [],
        "tf32_enabled": None,
        "placement": None,
    }


def probe_framework(facts: dict, adapter, echo: bool = True):
    """Import the framework with its log captured; returns the module, or None with the reason recorded. Its
    distributions are read from their metadata first, so an import that raises still says what is installed."""
    facts.update(framework_facts(adapter.NAME))
    try:
        installed = installed_framework(adapter)
    except Exception as exc:
        installed = {"distributions": {}, "dependencies": {}, "error": _error(exc)[:300]}
    with captured(facts["log"], echo):
        try:
            return adapter.load(facts)
        except Exception as exc:
            facts["framework_error"] = f"import {adapter.NAME} failed: {_error(exc)}"  # NAME is the module
            if not _framework_absent(exc, adapter, installed):
                try:
                    facts["import_failure"] = import_failure(exc, adapter, installed)
                except Exception as inner:
                    facts["errors"].append(f"import_failure: {_error(inner)}")
            return None


# -- an installed framework whose import raises: what is installed (metadata, no import) and where it failed ---------

MAX_FRAMES = 12  # the innermost frames kept of a failed import
MAX_DEPENDENCIES = 200


def _normalized(name: str) -> str:
    """A distribution's name as PEP 503 compares names (Nvidia_CUDA.nvcc-cu12 → nvidia-cuda-nvcc-cu12)."""
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def _distributions() -> dict:
    """Every installed distribution by its normalized name (the first found on sys.path wins, as import does)."""
    from importlib import metadata

    found: dict = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if isinstance(name, str) and name:
            found.setdefault(_normalized(name), dist)
    return found


def _requirement(line: str):
    """(name, specifier, marker) of one Requires-Dist line ("protobuf (>=3.9.2)", "numpy>=1.22; extra == 'x'")."""
    import re

    text, _, marker = line.partition(";")
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*\(?([^()]*)\)?\s*$", text)
    if not match:
        return None
    return match.group(1), match.group(2).strip(), marker.strip()


def installed_framework(adapter) -> dict:
    """The framework's distributions (and companions: jaxlib, the CUDA plugins) with their versions, and the installed
    version of each distribution they require, all read from package metadata without importing anything."""
    every = _distributions()
    names = tuple(getattr(adapter, "DISTRIBUTIONS", ())) + tuple(getattr(adapter, "COMPANIONS", ()))
    mine = {name: every[_normalized(name)] for name in names if _normalized(name) in every}
    dependencies: dict = {}
    for owner, dist in mine.items():
        for line in dist.requires or []:
            parsed = _requirement(line)
            if parsed is None or _normalized(parsed[0]) in {_normalized(n) for n in mine}:
                continue
            name, spec, marker = parsed
            found = every.get(_normalized(name))
            if found is None or _normalized(name) in dependencies or len(dependencies) >= MAX_DEPENDENCIES:
                continue  # not installed: nothing of it can break the import
            dependencies[_normalized(name)] = {"installed": found.version, "required": spec, "by": owner}
            if marker:
                dependencies[_normalized(name)]["marker"] = marker
    return {"distributions": {name: dist.version for name, dist in mine.items()}, "dependencies": dependencies}


def _framework_absent(exc: BaseException, adapter, installed: dict) -> bool:
    """The framework is simply not there: its own module is not found and no distribution of it is installed."""
    missing = isinstance(exc, ModuleNotFoundError) and str(getattr(exc, "name", "") or "").split(".")[0] == adapter.NAME
    return missing and not installed.get("distributions")


def _frame(frame, where: list) -> dict:
    """One traceback frame, with the installed package it lies in (None: the standard library, the script)."""
    entry = {"file": str(frame.filename)[:500], "line": frame.lineno, "function": str(frame.name)[:200]}
    path = os.path.abspath(str(frame.filename))
    for root in where:
        if path.startswith(root + os.sep):
            top = path[len(root) + 1 :].split(os.sep)[0]
            entry["package"] = top[:-3] if top.endswith(".py") else top
            break
    return entry


def _package_roots() -> list:
    """The sys.path entries that hold installed packages (site-packages, dist-packages), longest first."""
    roots = {os.path.abspath(p) for p in sys.path if p and ("site-packages" in p or "dist-packages" in p)}
    return sorted(roots, key=len, reverse=True)


def import_failure(exc: BaseException, adapter, installed: dict) -> dict:
    """What an import that raised leaves to diagnose: the installed versions, the exception, the innermost frame,
    the innermost frame inside the framework's own packages and the innermost inside another installed package (the
    dependency the failure is in, with the distributions that ship it), and the installed dependencies."""
    here = os.path.dirname(os.path.abspath(__file__))
    frames = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in frames if os.path.dirname(os.path.abspath(f.filename)) != here]  # not the probe's own
    roots = _package_roots()
    typed = [_frame(frame, roots) for frame in frames]
    own = {adapter.NAME, getattr(adapter, "PACKAGE", adapter.NAME), *getattr(adapter, "OWN_PACKAGES", ())}
    own |= {n for n in (e.get("package") for e in typed) if n and n.startswith(f"{adapter.NAME}_")}
    theirs = [e for e in typed if e.get("package") and e["package"] not in own]
    dependency = dict(theirs[-1]) if theirs else None
    if dependency is not None:
        dependency["distributions"] = _shipping(dependency["package"])
    kind = type(exc)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return {
        "distributions": installed.get("distributions") or {},
        "dependencies": installed.get("dependencies") or {},
        "exception": name[:200],
        "message": str(exc)[:2000],
        "frame": typed[-1] if typed else None,
        "framework_frame": next((e for e in reversed(typed) if e.get("package") in own), None),
        "dependency_frame": dependency,
        "frames": typed[-MAX_FRAMES:],
    }


def _shipping(package: str) -> list:
    """The distributions that install a top-level package (google → protobuf, nvidia → the nvidia-* wheels)."""
    try:
        from importlib import metadata

        return sorted(metadata.packages_distributions().get(package, []))[:10]  # Python 3.10+
    except Exception:
        return []


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


GATE_CASES = (("gpu", "float32", 4096), ("gpu", "float16", 4096))  # --min-tflops: a second or two on a GPU


def benchmark_cases(options: argparse.Namespace, facts: dict) -> list | None:
    """The matmuls to time, None for no benchmark: CPU (with NumPy beside it) and the first GPU in float32, float16
    and bfloat16, GPU sizes from large to small so that an out-of-memory at one size still leaves the smaller ones.
    A gate times only what --min-tflops asks, and only where its matmul ran on the GPU."""
    if options.require is not None:
        if options.min_tflops is None:
            return None
        return list(GATE_CASES) if (facts.get("placement") or {}).get("on_gpu") else []
    if options.no_benchmark:
        return None
    cases = [("cpu", "float32", n) for n in ((1024,) if options.quick else (1024, 2048))]
    if facts["gpus"]:
        sizes = (4096,) if options.quick else (8192, 4096, 2048)
        cases += [("gpu", dtype, n) for dtype in ("float32", "float16", "bfloat16") for n in sizes]
    return cases


def probe_benchmark(fw, adapter, facts: dict, cases: list, repeats: int) -> None:
    """Matmul TFLOP/s for each (device, dtype, n), a failure recorded in its place; NumPy's after each CPU one."""
    results = facts["benchmark"] = []
    if fw is None:
        return
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


# -- the gate: --require gpu ------------------------------------------------------------------------------------

HIDING_VALUES = ("", "-1", "none", "void", "nodevfiles")  # envcheck/diagnosis/scan.py's: values that hide every GPU


def _failed(code: str, reason: str) -> dict:
    return {"passed": False, "code": code, "reason": reason}


def _also(facts: dict, label: str) -> str:
    """What would still stop the framework once a GPU is given: said with no-gpu-runtime, so a user learns both in
    one run rather than one after the other."""
    if facts.get("framework") is None:
        return f"; and this Python has none of {', '.join(FRAMEWORKS)} either"
    if facts.get("framework_version") is None and isinstance(facts.get("import_failure"), dict):
        return f"; and {facts['framework']} is installed here but its import fails (framework-import-failed)"
    if facts.get("framework_version") is None:
        return f"; and {facts['framework']} cannot be imported here either"
    if facts.get("is_cuda_build") is False:
        return f"; and even with a GPU, {label} is a CPU-only build: install its CUDA build"
    return ""


def judge(facts: dict, min_tflops: float | None = None) -> dict:
    """The gate's verdict, {passed, code, reason}, from the probe's facts alone: root causes first, in the order of
    envcheck's diagnosis rules and with their codes, where the probe can tell them without the host's side."""
    name, version = facts.get("framework"), facts.get("framework_version")
    label = f"{name} {version}" if version else str(name)
    nvml, placement, env = facts.get("nvml") or {}, facts.get("placement") or {}, facts.get("env") or {}
    gpus, nvml_error = facts.get("gpus") or [], nvml.get("error") or "no error given"
    if placement.get("on_gpu"):
        return _fast_enough(facts, label, min_tflops)
    if not facts.get("device_nodes") and not nvml.get("available") and not gpus:
        return _failed(
            "no-gpu-runtime",
            "no GPU device node (/dev/nvidia*) is here and NVML reaches no driver: the container was started "
            "without a GPU (run it with `--gpus all` on a host with the NVIDIA Container Toolkit, or request "
            "nvidia.com/gpu on Kubernetes), or this machine has no NVIDIA driver" + _also(facts, label),
        )
    if version is None:
        if name is None:
            return _failed(
                "framework-missing",
                f"this Python ({facts.get('executable')}) has none of {', '.join(FRAMEWORKS)}: install the "
                "framework here, or run the check with the Python that has it",
            )
        failure = facts.get("import_failure")
        if isinstance(failure, dict):
            return _failed("framework-import-failed", _import_reason(name, failure))
        return _failed(
            "tensorflow-missing" if name == "tensorflow" else "framework-missing",  # diagnose.py's codes
            f"{name} cannot be imported by this Python ({facts.get('executable')}): {facts.get('framework_error')}",
        )
    if facts.get("is_cuda_build") is False:
        return _failed(
            "cpu-only-build",
            f"{label} is a CPU-only build (build info: {facts.get('build_info')}): install its CUDA build",
        )
    if not gpus:
        if "mismatch" in nvml_error.lower():
            return _failed(
                "driver-library-mismatch",
                f"NVML: {nvml_error}: the driver's libraries and the loaded kernel module differ; reboot the "
                "host (or reload the nvidia modules) after a driver upgrade",
            )
        if not nvml.get("available") and not nvml.get("proc_version"):
            nodes = ", ".join(facts.get("device_nodes") or []) or "none"
            return _failed(
                "no-driver",
                f"NVML cannot reach an NVIDIA driver ({nvml_error}; device nodes: {nodes}): libnvidia-ml is not "
                "in this container (NVIDIA_DRIVER_CAPABILITIES without compute,utility?) or no driver is loaded",
            )
        hidden = [f"{k}={env[k]!r}" for k in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES") if _hides(env.get(k))]
        if hidden:
            return _failed("gpus-hidden", f"{' and '.join(hidden)} hides every GPU from CUDA: unset it")
        seen = ", ".join(str(g.get("name")) for g in nvml.get("gpus") or []) or "none"
        why = facts.get("framework_error") or next(iter((facts.get("log") or [])[-1:]), "no log line")
        return _failed(
            "gpu-not-detected",
            f"{label} (CUDA {facts.get('build_cuda')}) lists no GPU; NVML sees {seen} with driver "
            f"{facts.get('driver')}; last word: {why}",
        )
    where = f"{placement.get('placed_on')}" + (f" ({placement['error']})" if placement.get("error") else "")
    return _failed(
        "placement-forced-cpu",
        f"{label} lists {_gpu_name(facts)} but a matmul asked for on {placement.get('requested')} ran on {where}",
    )


def _import_reason(name: str, failure: dict) -> str:
    """framework-import-failed's paragraph: what is installed, what raised, and where."""
    installed = ", ".join(f"{d} {v}" for d, v in (failure.get("distributions") or {}).items()) or name
    frame = failure.get("frame") or {}
    where = f" in {frame.get('file')}:{frame.get('line')} ({frame.get('function')})" if frame else ""
    dependency = failure.get("dependency_frame") or {}
    inside = f", inside {dependency.get('package')}" if dependency.get("package") else ""
    return (
        f"{installed} is installed but `import {name}` raised {failure.get('exception')}: "
        f"{str(failure.get('message'))[:300]}{where}{inside}; `envcheck explain` or `envcheck doctor` names the fix"
    )


def _hides(value: str | None) -> bool:
    return value is not None and value.strip().lower() in HIDING_VALUES


def _gpu_name(facts: dict) -> str:
    gpu = (facts.get("gpus") or [{}])[0]
    return str(gpu.get("device_name") or gpu.get("name"))


def _fast_enough(facts: dict, label: str, min_tflops: float | None) -> dict:
    """Passed where no speed is asked; else the best of the GPU's float32 and float16 matmuls must reach it."""
    ran = f"{label} computed on {_gpu_name(facts)} ({(facts.get('placement') or {}).get('placed_on')})"
    if min_tflops is None:
        return {"passed": True, "code": None, "reason": ran}
    timed = [r for r in facts.get("benchmark") or [] if r.get("device") == "gpu"]
    best = max((r["tflops"] for r in timed if r.get("tflops")), default=None)
    measured = ", ".join(
        f"{r['dtype']} {r['tflops']}" if r.get("tflops") else f"{r['dtype']} failed ({r.get('error')})" for r in timed
    )
    if best is None or best < min_tflops:
        return _failed("too-slow", f"{ran}, too slowly: {measured or 'nothing timed'} TFLOP/s, under {min_tflops:g}")
    return {"passed": True, "code": None, "reason": f"{ran}: {measured} TFLOP/s (at least {min_tflops:g})"}


# -- the command line -------------------------------------------------------------------------------------------

GATE_FLAGS = ("--require", "--min-tflops", "--json")
DESCRIPTION = (
    "envcheck's probe: one JSON document of what the framework, the CUDA libraries and the driver look like here; "
    "with --require gpu a gate that exits 0 only when the framework computes on a GPU."
)


class _Arguments(argparse.ArgumentParser):
    """Raises instead of exiting: a gate exits 2 on a bad argument, the probe reports it and carries on."""

    def error(self, message: str):
        raise ValueError(message)


def arguments(args: list) -> tuple:
    """(options, problems). Under a gate a bad argument raises ValueError; the probe, which ignores flags it does not
    know, reports what it could not read in `errors` and runs with its defaults (TensorFlow: rendered images)."""
    parser = _Arguments(allow_abbrev=False, description=DESCRIPTION)
    parser.add_argument(
        "--framework",
        metavar="|".join((*FRAMEWORKS, "auto")),
        help="the framework to probe; auto: the first this Python has (default: tensorflow, a gate's auto)",
    )
    parser.add_argument("--quick", action="store_true", help="a shorter benchmark")
    parser.add_argument("--no-benchmark", action="store_true", help="no benchmark")
    parser.add_argument("--require", choices=("gpu",), help="a gate: exit 0 only if the framework computes on a GPU")
    parser.add_argument("--min-tflops", type=float, metavar="X", help="the gate's least float32/float16 TFLOP/s")
    parser.add_argument("--json", action="store_true", help="the gate prints the probe's JSON with `gate` on stdout")
    gate = any(arg.split("=")[0] in GATE_FLAGS for arg in args)
    problems = []
    try:
        options, unknown = parser.parse_known_args(args)
    except ValueError as exc:
        if gate:
            raise
        (options, unknown), problems = parser.parse_known_args([]), [f"arguments: {exc}"]
    if gate:
        if unknown:
            raise ValueError(f"unrecognized arguments: {' '.join(unknown)}")
        if options.require is None:
            raise ValueError("--min-tflops and --json go with --require gpu")
        if options.framework not in (None, "auto") and not set(options.framework.split(",")) <= set(FRAMEWORKS):
            raise ValueError(f"--framework: unknown {options.framework!r} (one of {', '.join(FRAMEWORKS)}, auto)")
        if options.min_tflops is not None and not options.min_tflops > 0:
            raise ValueError("--min-tflops: a number of TFLOP/s above 0")
        if options.min_tflops is not None and options.no_benchmark:
            raise ValueError("--min-tflops times a matmul: drop --no-benchmark")
    options.framework = options.framework or ("auto" if gate else "tensorflow")
    return options, problems


def collect(options: argparse.Namespace, errors: list) -> dict:
    """Every fact, each step guarded: what fails is recorded in `errors` and the rest still runs."""
    gate = options.require is not None
    facts: dict = {
        "schema": PROBE_SCHEMA,
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "env": {},
        "device_nodes": [],
        "driver": None,
        "cuda_driver": None,
        "frameworks_found": [],
        "errors": errors,
    }
    steps = [
        ("env", lambda: facts.update(env=probe_env())),
        ("device_nodes", lambda: facts.update(device_nodes=probe_device_nodes())),
        ("nvml", lambda: facts.update(nvml=reader("nvml").probe_nvml())),
        (
            "driver",
            lambda: facts.update(driver=facts["nvml"]["driver"], cuda_driver=facts["nvml"]["cuda_driver"]),
        ),
        ("frameworks_found", lambda: facts.update(frameworks_found=find_frameworks())),
    ]
    for step, func in steps:
        try:
            func()
        except Exception:
            facts["errors"].append(f"{step}: {traceback.format_exc(limit=3)}")
    name, *others = options.framework.split(",")
    isolated = name == "auto"
    if isolated:  # every framework found, the first here, the others each in a process of its own (probe_other)
        found = [f["name"] for f in facts["frameworks_found"]]
        name, others = (found[0], found[1:]) if found else (None, [])
    elif name not in FRAMEWORKS:
        facts["errors"].append(f"framework: unknown {name!r} (one of {', '.join(FRAMEWORKS)})")
        name = "tensorflow"
    adapter = fw = None
    try:
        adapter = load_adapter(name) if name else None
    except Exception:
        facts["errors"].append(f"adapter: {traceback.format_exc(limit=3)}")
    if adapter is None:
        facts.update(framework_facts(name), gpu_code=None)
        facts["framework_error"] = (
            f"no framework found: none of {', '.join(FRAMEWORKS)} is installed for this Python"
            if name is None
            else f"the probe's adapter fw_{name}.py did not load"
        )
    else:
        fw = probe_adapter(facts, adapter, echo=not gate)
        for found in facts["frameworks_found"]:
            if found["name"] == name:
                found["importable"] = fw is not None
    if others and not gate:  # a gate answers for its framework, within seconds: no other is imported
        facts["other_frameworks"] = [probe_other(facts, other, isolated) for other in others if other in FRAMEWORKS]
    cases = benchmark_cases(options, facts)
    if cases is not None:
        try:
            with captured(facts["log"], echo=not gate):
                probe_benchmark(fw, adapter, facts, cases, repeats=3 if options.quick or gate else 5)
        except Exception:
            facts["errors"].append(f"benchmark: {traceback.format_exc(limit=3)}")
    if name == "tensorflow":  # the keys of probe schema 1, which records and readers of TensorFlow results use
        facts.update(tensorflow=facts["framework_version"], tensorflow_error=facts["framework_error"])
        facts["tf_log"] = facts["log"]
        facts.setdefault("cuda_libs", {})["tensorflow_dir"] = (facts.get("cuda_libs") or {}).get("package_dir")
    return facts


SHARED_KEYS = ("env", "nvml", "driver", "cuda_driver", "device_nodes")  # one per container, not per framework
OTHER_TIMEOUT = 600  # seconds for another framework's own probe (an import that hangs must not hold the rest)


def _probe_apart(name: str) -> dict:
    """probe_other's facts of `name` from this probe run again for it alone, in a new process of this Python."""
    here = os.path.abspath(__file__)
    script = here if os.path.isfile(here) else os.path.dirname(here)  # in envcheck-preflight: the zipapp itself
    command = [sys.executable, script, "--framework", name, "--no-benchmark"]
    facts = framework_facts(name)
    facts.update(cuda_libs={}, gpu_code=None, errors=[])
    try:
        done = subprocess.run(command, capture_output=True, timeout=OTHER_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        facts["framework_error"] = f"{name}'s own probe did not run: {_error(exc)}"
        return facts
    own = parse_json_line(done.stdout.decode("utf-8", "replace"))
    if own is None:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["nothing on stderr"]
        facts["framework_error"] = f"{name}'s own probe gave no facts (exit {done.returncode}): {said[0][:300]}"
        return facts
    own_keys = (*framework_facts(name), "import_failure", "cuda_libs", "gpu_code", "errors")
    return {key: own.get(key) for key in own_keys if key in own}


def parse_json_line(stdout: str):
    """The last line of stdout that is a JSON object (None if none is)."""
    for line in reversed(stdout.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def probe_other(facts: dict, name: str, isolated: bool = False) -> dict:
    """Another framework of the same environment: its build, GPUs, placement, the CUDA libraries it loaded and its
    GPU code, the keys the first framework has at the top level; no benchmark (one shows the GPU computes). A stack
    that names several frameworks has them imported in this process, after the first, as a program that uses both
    would. Frameworks an image merely has (auto) are each probed by a probe of their own (isolated): an image may
    hold frameworks no program of it imports together, and one crashing import must not take the others' facts."""
    if isolated:
        other = _probe_apart(name)
        imported = other.get("framework_version") is not None
    else:
        other = {key: facts.get(key) for key in SHARED_KEYS}
        other["errors"] = []
        try:
            imported = probe_adapter(other, load_adapter(name), echo=True) is not None
        except Exception:
            other.update(framework_facts(name))
            other["errors"].append(f"adapter: {traceback.format_exc(limit=3)}")
            imported = False
    for found in facts["frameworks_found"]:
        if found["name"] == name:
            found["importable"] = imported
    return {key: value for key, value in other.items() if key not in SHARED_KEYS}


def probe_adapter(facts: dict, adapter, echo: bool):
    """The framework through its adapter: its build and GPUs, placement, CUDA libraries, GPU code. Returns the
    module, None where it did not import."""
    fw = None
    try:
        fw = probe_framework(facts, adapter, echo)
    except Exception:
        facts["errors"].append(f"{adapter.NAME}: {traceback.format_exc(limit=3)}")
    try:
        with captured(facts["log"], echo):
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
    return fw


def main(argv: list | None = None) -> int:
    """The probe's JSON on stdout (exit 0); with --require gpu the gate: 0 passed, 1 failed, 2 bad arguments."""
    args = sys.argv[1:] if argv is None else argv
    try:
        options, problems = arguments(args)
    except ValueError as exc:
        sys.stderr.write(f"envcheck probe: {exc} (see --help)\n")
        return 2
    facts = collect(options, problems)
    passed = True
    if options.require is not None:
        facts["gate"] = gate = judge(facts, options.min_tflops)
        passed = gate["passed"]
        verdict = "passed" if passed else f"failed ({gate['code']})"
        sys.stderr.write(f"envcheck: GPU check {verdict}: {gate['reason']}.\n")
    if options.require is None or options.json:
        sys.stdout.write(json.dumps(facts) + "\n")
        sys.stdout.flush()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
