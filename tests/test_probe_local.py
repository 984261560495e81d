"""The probe on this machine's own Python, and its stdlib readers: the ELF parser, the ld.so cache reader and the
NVML ctypes fallback. Expectations follow what this host has (a driver, TensorFlow), so they hold anywhere."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, ThisHost, read_this_host
from envcheck.probe import staged
from envcheck.probe.probe import ld_cache, loader_search_path
from envcheck.readers.elf import elf_dynamic


def run_probe(*args: str, flags: tuple[str, ...] = ("-I",), env: dict[str, str] | None = None) -> dict:
    """The probe as the host runs it (staged with its files beside it, as in an image)."""
    with staged() as probe:
        done = subprocess.run(
            [sys.executable, *flags, str(probe), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env={**os.environ, **(env or {})},
        )
    return json.loads(done.stdout)


def test_probe_reports_what_is_missing_without_crashing(this_host: ThisHost):
    facts = run_probe()
    assert facts["schema"] == 2 and facts["framework"] == "tensorflow"
    assert facts["python"] == ".".join(map(str, sys.version_info[:3]))
    if this_host.tensorflow:
        assert re.match(r"\d+\.\d+", facts["tensorflow"])
    else:
        assert facts["tensorflow"] is None
        assert facts["tensorflow_error"].startswith("import tensorflow failed: ModuleNotFoundError")
        assert facts["gpus"] == [] and facts["benchmark"] == []  # nothing to benchmark without TensorFlow
    assert facts["errors"] == []
    # the driver and GPUs as nvidia-smi reads them (skipped from here where a driver has no nvidia-smi)
    assert facts["nvml"]["available"] is (this_host.driver is not None)
    assert facts["driver"] == this_host.driver
    if this_host.driver is None:
        assert facts["nvml"]["error"]
    assert [g["name"] for g in facts["nvml"]["gpus"]] == list(this_host.gpus)
    if this_host.compute_capabilities:
        capabilities = [g["compute_capability"] for g in facts["nvml"]["gpus"]]
        assert capabilities == list(this_host.compute_capabilities)


FAKE_SMI = """#!/bin/sh
[ -n "$FAIL" ] && { echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."; exit 9; }
case "$1" in
  *compute_cap*) [ -n "$OLD" ] && { echo 'Field "compute_cap" is not a valid field to query.'; exit 2; }
                 printf '580.65.06, NVIDIA H100 80GB HBM3, 9.0\\n580.65.06, NVIDIA H200, 9.0\\n' ;;
  *) printf '470.82.01, Tesla T4\\n' ;;
esac
"""


def test_this_host_is_read_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The tests' expectations on a GPU host (conftest.read_this_host), tried on nvidia-smi's own output format."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    host = read_this_host()
    assert (host.driver, host.gpus) == ("580.65.06", ("NVIDIA H100 80GB HBM3", "NVIDIA H200"))
    assert host.compute_capabilities == ("9.0", "9.0")
    monkeypatch.setenv("OLD", "1")  # before R510 nvidia-smi has no compute_cap
    host = read_this_host()
    assert (host.driver, host.gpus, host.compute_capabilities) == ("470.82.01", ("Tesla T4",), ())
    monkeypatch.setenv("FAIL", "1")  # a driver that is not loaded: nothing independent to compare with
    host = read_this_host()
    assert "couldn't communicate with the NVIDIA driver" in host.unknown
    with pytest.raises(pytest.skip.Exception, match="nvidia-smi failed"):
        _ = host.driver


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_every_adapter_reports_what_is_missing_without_crashing(framework: str):
    facts = run_probe("--framework", framework, "--quick")
    assert facts["framework"] == framework and "tensorflow" not in facts  # TF's legacy keys only for TF
    installed = importlib.util.find_spec(framework) is not None
    assert (facts["framework_version"] is not None) is installed
    if not installed:
        assert facts["framework_error"].startswith(f"import {framework} failed: ModuleNotFoundError")
        assert facts["benchmark"] == [] and facts["gpu_code"] is None
    assert facts["errors"] == []


def test_an_unknown_framework_is_reported_not_fatal():
    facts = run_probe("--framework", "mxnet", "--no-benchmark")
    assert facts["errors"] == ["framework: unknown 'mxnet' (one of tensorflow, torch, jax)"]
    assert facts["framework"] == "tensorflow"


def test_probe_reports_gpu_environment_variables(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    monkeypatch.setenv("UNRELATED", "x")
    env = run_probe("--no-benchmark")["env"]
    assert env["CUDA_VISIBLE_DEVICES"] == "-1" and env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert "UNRELATED" not in env


# -- compiled fixtures: real shared objects made with this machine's C compiler -------------------------------


def compile_library(directory: Path, name: str, source: str, *flags: str) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("these tests compile small shared objects and need a C compiler (cc)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.c").write_text(source)
    target = directory / name
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(target), str(directory / f"{name}.c"), *flags],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture(scope="module")
def nvml_stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("nvml")
    compile_library(directory, "libnvidia-ml.so.1", (DATA / "nvml_stub.c").read_text(), "-Wl,-soname,libnvidia-ml.so.1")
    return directory


def test_nvml_through_ctypes_without_the_bindings(nvml_stub: Path):
    # -S: no site-packages, so no pynvml; the probe asks libnvidia-ml's C API itself.
    nvml = run_probe("--no-benchmark", flags=("-I", "-S"), env={"LD_LIBRARY_PATH": str(nvml_stub)})["nvml"]
    assert nvml["bindings"] == "ctypes" and nvml["error"] is None
    assert (nvml["available"], nvml["driver"], nvml["cuda_driver"]) == (True, "550.54.15", "12.4")
    assert nvml["gpus"] == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "compute_capability": "9.0",
            "memory_total_mib": 81559,
            "memory_free_mib": 81047,
        }
    ]


def test_nvml_failure_through_ctypes_is_reported(nvml_stub: Path):
    env = {"LD_LIBRARY_PATH": str(nvml_stub), "ENVCHECK_STUB_NVML_INIT": "9"}
    nvml = run_probe("--no-benchmark", flags=("-I", "-S"), env=env)["nvml"]
    assert nvml["available"] is False and nvml["driver"] is None and nvml["gpus"] == []
    assert "nvmlInit_v2: Driver Not Loaded (9)" in nvml["error"]


def test_nvml_through_the_bindings_gives_the_same_facts(nvml_stub: Path):
    pytest.importorskip("pynvml", reason="nvidia-ml-py is a dependency of envcheck: install envcheck's extras")
    nvml = run_probe("--no-benchmark", env={"LD_LIBRARY_PATH": str(nvml_stub)})["nvml"]
    assert nvml["bindings"] == "pynvml" and nvml["available"] is True
    assert (nvml["driver"], nvml["cuda_driver"]) == ("550.54.15", "12.4")
    assert [(g["name"], g["compute_capability"], g["memory_total_mib"]) for g in nvml["gpus"]] == [
        ("NVIDIA H100 80GB HBM3", "9.0", 81559)
    ]


def readelf_dynamic(path: Path) -> dict[str, list[str]]:
    """The same facts from binutils' readelf, the reference the stdlib parser is checked against."""
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    found: dict[str, list[str]] = {"NEEDED": [], "SONAME": [], "RPATH": [], "RUNPATH": []}
    for tag, value in re.findall(r"\((NEEDED|SONAME|RPATH|RUNPATH)\)\s+\S+ \S+: \[(.*)\]", out):
        found[tag].append(value)
    return found


def test_elf_parser_reads_runpath_soname_and_needed(tmp_path: Path):
    source = "#include <math.h>\ndouble f(double x) { return sin(x); }\n"
    runpath = compile_library(
        tmp_path / "a",
        "libtensorflow_framework.so.2",
        source,
        "-Wl,-soname,libtensorflow_framework.so.2",
        "-Wl,-rpath,$ORIGIN/../nvidia/cudnn/lib:$ORIGIN/../nvidia/cublas/lib",
        "-Wl,--enable-new-dtags",
        "-lm",
    )
    dyn = elf_dynamic(str(runpath))
    assert dyn == {
        "needed": readelf_dynamic(runpath)["NEEDED"],
        "soname": "libtensorflow_framework.so.2",
        "rpath": [],
        "runpath": ["$ORIGIN/../nvidia/cudnn/lib", "$ORIGIN/../nvidia/cublas/lib"],
    }
    assert "libm.so.6" in dyn["needed"]
    old_style = compile_library(
        tmp_path / "b", "libold.so", source, "-Wl,-rpath,/opt/cuda/lib64", "-Wl,--disable-new-dtags"
    )
    assert elf_dynamic(str(old_style))["rpath"] == ["/opt/cuda/lib64"] and elf_dynamic(str(old_style))["runpath"] == []
    not_elf = tmp_path / "libnot.so"
    not_elf.write_text("INPUT(-lfoo)\n")  # a linker script, as some distributions ship for libfoo.so
    with pytest.raises(ValueError, match="not an ELF file"):
        elf_dynamic(str(not_elf))


def test_elf_parser_agrees_with_readelf_on_system_libraries():
    libraries = [Path(p) for p in ld_cache().values() if re.search(r"/lib(c|m|z|ssl|python3[.0-9]*)\.so", p)]
    assert libraries, "no system library found through the ld.so cache"
    for path in libraries[:6]:
        reference = readelf_dynamic(path)
        dyn = elf_dynamic(str(path))
        assert dyn["needed"] == reference["NEEDED"], path
        assert [dyn["soname"]] == reference["SONAME"], path


def test_ld_cache_points_where_the_loader_loads_from():
    cache = ld_cache()
    assert "libc.so.6" in cache
    libc = ctypes.CDLL("libc.so.6")  # noqa: F841  (mapped into this process by the real loader)
    mapped = {
        os.path.realpath(line.split()[-1])
        for line in Path("/proc/self/maps").read_text().splitlines()
        if line.rstrip().endswith(".so.6") and "/libc" in line
    }
    assert os.path.realpath(cache["libc.so.6"]) in mapped


def test_loader_search_path_expands_origin_in_tensorflows_runpath(tmp_path: Path, monkeypatch):
    tf_dir = tmp_path / "site-packages" / "tensorflow"
    compile_library(
        tf_dir,
        "libtensorflow_framework.so.2",
        "int f(void) { return 0; }\n",
        "-Wl,-rpath,$ORIGIN/../nvidia/cudnn/lib",
        "-Wl,--enable-new-dtags",
    )
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/local/cuda/lib64")
    assert loader_search_path(str(tf_dir), ("libtensorflow_framework.so.2",)) == [
        ("/usr/local/cuda/lib64", "LD_LIBRARY_PATH"),
        (str(tmp_path / "site-packages" / "nvidia" / "cudnn" / "lib"), "RUNPATH of libtensorflow_framework.so.2"),
    ]


def test_a_remote_hosts_driver_and_gpus_come_from_what_its_probe_saw(nvml_stub: Path):
    """--on a remote daemon: this machine's NVML says nothing of that host, so its records take the driver and GPUs
    NVML reported inside its container; the fingerprint stays the daemon's (reuse does not hang on one probe)."""
    from envcheck.results.model import Host
    from envcheck.runs.pipeline import seen_by_probe

    remote = Host(label="d2", kernel="6.1", fingerprint="0123456789abcdef")
    probe = run_probe("--no-benchmark", flags=("-I", "-S"), env={"LD_LIBRARY_PATH": str(nvml_stub)})
    seen = seen_by_probe(remote, probe)
    assert (seen.driver, seen.cuda_driver, seen.gpus) == ("550.54.15", "12.4", ["NVIDIA H100 80GB HBM3"])
    assert seen.fingerprint == remote.fingerprint and seen.label == "d2" and remote.driver is None
    failed = run_probe(
        "--no-benchmark", flags=("-I", "-S"), env={"LD_LIBRARY_PATH": str(nvml_stub), "ENVCHECK_STUB_NVML_INIT": "9"}
    )
    assert seen_by_probe(remote, failed) == remote  # NVML failed in there: nothing learned, nothing invented
