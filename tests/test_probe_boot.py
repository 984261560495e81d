"""boot.py (any Python starts the probe; an old one is told so), `--framework auto`, the `--require gpu` gate and the
single-file preflight. Expectations come from this machine (its device nodes, its NVIDIA traces, find_spec over the
frameworks' literal names) and from real old interpreters where pyenv has them."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import nvidia_traces
from envcheck.diagnosis.scan import HIDING_VALUES
from envcheck.probe import PREFLIGHT_MAIN, PROBE_FILES, boot, probe, staged, write_preflight

NAMES = ("tensorflow", "torch", "jax")  # literally: the expectation must not come from the probe's own list
PYENV = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"


def run(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}, cwd=cwd, check=False
    )


def run_boot(
    *args: str, python: str = sys.executable, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """boot.py staged with the probe's files beside it, as /opt/envcheck holds them in a container."""
    with staged() as probe_path:
        return run([python, str(probe_path.with_name("boot.py")), *args], env)


def found_here(first: Path | None = None) -> list[str]:
    """The frameworks importlib finds in this Python (with `first` first on its path), none of them imported."""
    path = [str(first)] if first else []
    sys.path[:0] = path
    try:
        return [name for name in NAMES if importlib.util.find_spec(name) is not None]
    finally:
        del sys.path[: len(path)]


def pyenv_python(version: str) -> Path | None:
    found = sorted(PYENV.glob(f"{version}.*/bin/python"))
    return found[-1] if found else None


# -- boot.py ----------------------------------------------------------------------------------------------------


def test_boot_runs_the_probe_on_this_python():
    done = run_boot("--no-benchmark")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["schema"] == probe.PROBE_SCHEMA == boot.PROBE_SCHEMA
    assert facts["python"] == ".".join(map(str, sys.version_info[:3])) and facts["executable"] == sys.executable
    assert facts["framework"] == "tensorflow" and "tensorflow_error" in facts  # the default of rendered images
    assert [f["name"] for f in facts["frameworks_found"]] == found_here()
    assert facts["errors"] == [] and "benchmark" not in facts


def test_boot_parses_as_python_2():
    """Nothing 3-only in boot.py or the preflight's __main__.py: the interpreter they meet may be 2.7."""
    for name, source in (("boot.py", PROBE_FILES["boot.py"].read_text()), ("__main__.py", PREFLIGHT_MAIN)):
        tree = ast.parse(source, feature_version=(3, 4))  # no f-strings, async or walrus
        three_only = (ast.JoinedStr, ast.AnnAssign, ast.Nonlocal, ast.YieldFrom, ast.MatMult, ast.AsyncFunctionDef)
        assert not [n for n in ast.walk(tree) if isinstance(n, three_only)], name
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        assert not [f for f in functions if f.returns or f.args.kwonlyargs or any(a.annotation for a in f.args.args)]
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        assert not [c for c in calls if c.func.id == "print"], f"{name}: print is a statement in Python 2"


@pytest.mark.parametrize("args", [["--framework", "auto"], ["--require", "gpu"], ["--require", "gpu", "--json"]])
def test_boot_answers_a_python_older_than_the_probe(args, monkeypatch, capsys):
    """This Python posing as 3.7.16: boot.py's own check, in process (the real ones follow where pyenv has them)."""
    monkeypatch.setattr(sys, "version_info", (3, 7, 16, "final", 0))
    assert boot.main(args) == 3
    out, err = capsys.readouterr()
    gate = "--require" in args
    if gate and "--json" not in args:
        assert out == ""
    else:
        document = json.loads(out)
        assert document["error"] == "python-too-old" and document["probe_schema"] == probe.PROBE_SCHEMA
        assert (document["python"], document["executable"]) == ("3.7.16", sys.executable)
        assert document["message"].startswith("Python 3.7 is too old for envcheck's probe (needs 3.8+)")
        assert ("gate" in document) is gate
    assert err.count("\n") == (1 if gate else 0) and ("(python-too-old)" in err) is gate


OLD = ["2.7", "3.6", "3.7"]


@pytest.mark.parametrize("version", [*OLD, "3.8"])
def test_boot_on_real_interpreters(version: str, tmp_path: Path):
    """pyenv's interpreters where this machine has them: the old ones answer exit 3 (from boot.py and from the
    preflight, whose zip Python 2.7 also runs), 3.8, the probe's minimum, runs the whole probe."""
    python = pyenv_python(version)
    if python is None:
        pytest.skip(f"no Python {version} under {PYENV}: only the in-process check above ran")
    preflight = write_preflight(tmp_path / "envcheck-preflight")
    answers = [
        run_boot("--framework", "auto", "--quick", python=str(python)),
        run([str(python), str(preflight), "--framework", "auto", "--quick"]),
    ]
    for done in answers:
        document = json.loads(done.stdout)
        if version in OLD:
            assert done.returncode == 3 and document["error"] == "python-too-old", done.stderr
            assert document["python"].startswith(f"{version}.") and document["executable"] == str(python)
            continue
        assert done.returncode == 0 and document["errors"] == [] and "nvml" in document, done.stderr
        assert document["python"].startswith("3.8.")
        there = run([str(python), "-c", f"import importlib.util as u; print([n for n in {NAMES} if u.find_spec(n)])"])
        assert [f["name"] for f in document["frameworks_found"]] == ast.literal_eval(there.stdout)


# -- --framework auto -------------------------------------------------------------------------------------------


def test_auto_reports_the_frameworks_find_spec_finds_here():
    done = run([sys.executable, str(PROBE_FILES["boot.py"]), "--framework", "auto", "--no-benchmark"])
    facts = json.loads(done.stdout)
    expected = found_here()
    assert [f["name"] for f in facts["frameworks_found"]] == expected
    assert facts["framework"] == (expected[0] if expected else None)
    if not expected:  # reported as a missing framework is, nothing imported
        assert facts["framework_version"] is None and facts["gpus"] == [] and facts["gpu_code"] is None
        assert facts["framework_error"].startswith("no framework found: none of tensorflow, torch, jax")
    assert facts["errors"] == []


def fake_package(site: Path, name: str, version: str, init: str) -> None:
    """A package and its distribution's metadata, as pip leaves them in site-packages."""
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text(init)
    (site / f"{name}-{version}.dist-info").mkdir()
    (site / f"{name}-{version}.dist-info" / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )


def test_auto_finds_frameworks_without_importing_them_then_probes_each_apart(tmp_path: Path):
    """A broken torch and a jax that leaves a mark when imported, on PYTHONPATH: both found with their versions
    before any import; the first in the probe's order probed here (torch, whose import fails, where this Python has
    no TensorFlow), every other one by a probe of its own (other_frameworks: the mark is made in another process);
    a gate imports none but its own."""
    site, mark = tmp_path / "site", tmp_path / "jax-was-imported"
    fake_package(site, "torch", "9.9.9", "raise ImportError('a broken install')\n")
    fake_package(site, "jax", "0.0.1", f"import os\nopen({str(mark)!r} + str(os.getpid()), 'w').close()\n")
    gate = run_boot("--require", "gpu", "--framework", "auto", "--json", env={"PYTHONPATH": str(site)})
    expected = found_here(site)
    assert json.loads(gate.stdout)["framework"] == expected[0] and not list(tmp_path.glob("jax-was-imported*"))
    done = run_boot("--framework", "auto", "--no-benchmark", env={"PYTHONPATH": str(site)})
    facts = json.loads(done.stdout)
    assert [f["name"] for f in facts["frameworks_found"]] == expected and expected[-2:] == ["torch", "jax"]
    assert facts["framework"] == expected[0]
    torch, jax = facts["frameworks_found"][-2:]
    assert jax == {"name": "jax", "version": "0.0.1", "importable": False}  # imported, but it is no real JAX
    others = {other["framework"]: other for other in facts["other_frameworks"]}
    assert others["jax"]["framework_error"].startswith("import jax failed: ")
    assert len(list(tmp_path.glob("jax-was-imported*"))) == 1  # imported once, by jax's own probe
    if expected[0] == "torch":
        assert torch == {"name": "torch", "version": "9.9.9", "importable": False}
        assert facts["framework_error"] == "import torch failed: ImportError: a broken install"
        assert set(others) == {"jax"}
    assert facts["errors"] == []


# -- the gate ----------------------------------------------------------------------------------------------------


def test_the_gate_on_this_machine(tmp_path: Path):
    """boot.py, the preflight and `python -m envcheck.probe` give one answer, with --json the document and its gate,
    for the first framework this Python has. Without any NVIDIA trace here (no /dev/nvidia*, no libnvidia-ml) the
    gate stops at the missing device, quickly: exit 1, one paragraph on stderr, nothing on stdout."""
    preflight = write_preflight(tmp_path / "envcheck-preflight.pyz")
    answers = [
        run_boot("--require", "gpu", "--json"),
        run([sys.executable, str(preflight), "--require", "gpu", "--json"]),
        run([sys.executable, "-m", "envcheck.probe", "--require", "gpu", "--json"]),
    ]
    documents = [json.loads(answer.stdout) for answer in answers]
    gate = documents[0]["gate"]
    assert [(a.returncode, json.loads(a.stdout)["gate"]) for a in answers] == [(0 if gate["passed"] else 1, gate)] * 3
    assert [d["framework"] for d in documents] == [next(iter(found_here()), None)] * 3
    assert [d["errors"] for d in documents] == [[]] * 3
    if nvidia_traces():
        return  # what passes depends on this host's framework; each code is checked on facts below
    assert gate["code"] == "no-gpu-runtime"
    started = time.monotonic()
    done = run_boot("--require", "gpu")
    assert time.monotonic() - started < 10
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"envcheck: GPU check failed (no-gpu-runtime): {gate['reason']}.\n"


@pytest.mark.parametrize(
    "args",
    [
        ["--require", "cpu"],
        ["--require", "gpu", "--min-tflops", "0"],
        ["--require", "gpu", "--min-tflops", "many"],
        ["--require", "gpu", "--min-tflops", "10", "--no-benchmark"],
        ["--require", "gpu", "--framework", "mxnet"],
        ["--require", "gpu", "--verbose"],
        ["--json"],
        ["--min-tflops", "10"],
    ],
)
def test_the_gate_refuses_bad_arguments(args: list[str], capsys):
    assert probe.main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("envcheck probe: ") and err.count("\n") == 1


H100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
TORCH_CUDA = {"framework": "torch", "framework_version": "2.5.1+cu124", "is_cuda_build": True, "build_cuda": "12.4"}
SEEN = {"device_nodes": ["/dev/nvidia0", "/dev/nvidiactl"], "nvml": {"available": True, "gpus": [H100]}}
ON_GPU = {
    **TORCH_CUDA,
    **SEEN,
    "gpus": [{"name": "cuda:0", "device_name": H100["name"]}],
    "placement": {"requested": "cuda:0", "placed_on": "cuda:0", "on_gpu": True},
}


def timed(float32: float | None, float16: float | None) -> list[dict]:
    return [
        {"device": "gpu", "dtype": dtype, "tflops": tflops, **({} if tflops else {"error": "CUDA error"})}
        for dtype, tflops in (("float32", float32), ("float16", float16))
    ]


@pytest.mark.parametrize(
    ("facts", "min_tflops", "code"),
    [
        ({"framework": None, "nvml": {"available": False}}, None, "no-gpu-runtime"),  # before the missing framework
        ({"framework": None, "nvml": {"available": True}}, None, "framework-missing"),  # NVML without nodes: WSL
        ({**SEEN, "framework": "torch", "framework_error": "import torch failed: ..."}, None, "framework-missing"),
        ({**SEEN, "framework": "tensorflow"}, None, "tensorflow-missing"),  # TensorFlow's code of probe schema 1
        ({**SEEN, **TORCH_CUDA, "is_cuda_build": False}, None, "cpu-only-build"),
        (
            {**TORCH_CUDA, "device_nodes": ["/dev/nvidia0"], "nvml": {"error": "Driver/library version mismatch"}},
            None,
            "driver-library-mismatch",
        ),
        (
            {**TORCH_CUDA, "device_nodes": ["/dev/nvidiactl"], "nvml": {"error": "libnvidia-ml.so.1 not loadable"}},
            None,
            "no-driver",
        ),
        ({**TORCH_CUDA, **SEEN, "env": {"CUDA_VISIBLE_DEVICES": "-1"}}, None, "gpus-hidden"),
        (
            {**TORCH_CUDA, "device_nodes": ["/dev/nvidia0"], "nvml": {"proc_version": "NVRM 580"}},
            None,
            "gpu-not-detected",
        ),  # the kernel driver is there, NVML's library is not: the framework's own word
        ({**TORCH_CUDA, **SEEN}, None, "gpu-not-detected"),
        (
            {**ON_GPU, "placement": {"requested": "cuda:0", "placed_on": "cpu", "on_gpu": False}},
            None,
            "placement-forced-cpu",
        ),
        (ON_GPU, None, None),
        ({**ON_GPU, "benchmark": timed(51.0, 700.0)}, 300, None),  # the better of float32 and float16 counts
        ({**ON_GPU, "benchmark": timed(51.0, 70.0)}, 300, "too-slow"),
        ({**ON_GPU, "benchmark": timed(None, None)}, 1, "too-slow"),  # nothing timed: not shown fast enough
    ],
)
def test_the_gate_names_the_root_cause(facts: dict, min_tflops: float | None, code: str | None):
    gate = probe.judge({"device_nodes": [], "nvml": {}, "gpus": [], "env": {}, **facts}, min_tflops)
    assert (gate["passed"], gate["code"]) == (code is None, code)
    assert gate["reason"] and "\n" not in gate["reason"]


# torch as far as the probe's adapter asks, a CUDA build on one GPU: the gate's passing path on a machine without one.
STAND_IN_TORCH = """
import types

__version__ = "9.9.9+cu129"
version = types.SimpleNamespace(cuda="12.9", git_version="stand-in")
float32 = float16 = bfloat16 = "a dtype"


class Device(str):
    type = property(lambda self: self.split(":")[0])


class Tensor:
    def __init__(self, device):
        self.device = Device(device)

    def __matmul__(self, other):
        return Tensor(self.device)

    def to(self, dtype):
        return self


def ones(shape, device="cpu"):
    return Tensor(device)


def rand(shape, device="cpu", dtype=None):
    return Tensor(device)


class _C:
    _cuda_getArchFlags = staticmethod(lambda: "sm_90")


backends = types.SimpleNamespace(
    cudnn=types.SimpleNamespace(version=lambda: 90100),
    cuda=types.SimpleNamespace(matmul=types.SimpleNamespace(allow_tf32=False)),
)
cuda = types.SimpleNamespace(
    is_available=lambda: True,
    device_count=lambda: 1,
    get_device_capability=lambda index: (9, 0),
    get_device_name=lambda index: "Stand-in H100",
    synchronize=lambda: None,
)
"""


@pytest.mark.parametrize(("min_tflops", "code"), [(None, None), ("1", None), ("1e12", "too-slow")])
def test_the_gate_passes_where_the_framework_computes_on_a_gpu(min_tflops: str | None, code: str | None, tmp_path):
    """The stand-in torch computes "on its GPU" in no time: the gate passes, times float32 and float16 only where
    --min-tflops asks, and fails a speed no GPU reaches."""
    fake_package(tmp_path, "torch", "9.9.9", STAND_IN_TORCH)
    speed = ["--min-tflops", min_tflops] if min_tflops else []
    done = run_boot("--require", "gpu", "--json", *speed, env={"PYTHONPATH": str(tmp_path)})
    facts = json.loads(done.stdout)
    assert facts["placement"] == {"requested": "cuda:0", "placed_on": "cuda:0", "on_gpu": True}, facts["errors"]
    assert (done.returncode, facts["gate"]["passed"], facts["gate"]["code"]) == (1 if code else 0, not code, code)
    verdict = f"failed ({code})" if code else "passed"
    assert done.stderr == f"envcheck: GPU check {verdict}: {facts['gate']['reason']}.\n"
    assert "torch 9.9.9+cu129 computed on Stand-in H100 (cuda:0)" in done.stderr
    timed = [(r["device"], r["dtype"], r["n"]) for r in facts.get("benchmark", [])]
    assert timed == ([("gpu", "float32", 4096), ("gpu", "float16", 4096)] if min_tflops else [])


def test_the_gate_hides_gpus_as_the_diagnosis_does():
    assert set(probe.HIDING_VALUES) == HIDING_VALUES


# -- the preflight -----------------------------------------------------------------------------------------------


def test_the_preflight_is_one_file_that_runs_alone(tmp_path: Path):
    """Written by `python -m envcheck.probe --write-preflight`, run from elsewhere by its shebang with no envcheck
    beside it: the probe, its adapters and its readers all load from inside the zip."""
    preflight = tmp_path / "bin" / "envcheck-preflight"
    preflight.parent.mkdir()
    assert run([sys.executable, "-m", "envcheck.probe", "--write-preflight", str(preflight)]).returncode == 0
    assert preflight.read_bytes().startswith(b"#!/usr/bin/env python3\n") and os.access(preflight, os.X_OK)
    python = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # python3: this one
    done = run(["./bin/envcheck-preflight", "--framework", "auto", "--no-benchmark"], env=python, cwd=tmp_path)
    facts = json.loads(done.stdout)
    assert done.returncode == 0 and facts["errors"] == [] and "nvml" in facts  # NVML's reader ran
    assert [f["name"] for f in facts["frameworks_found"]] == found_here()
    loaded = run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path[:0] = sys.argv[1:]; import probe; "
            "print(probe.reader('elf').__file__, probe.load_adapter('torch').__file__)",
            str(preflight),
        ],
        cwd=tmp_path,
    )
    assert loaded.stdout.split() == [f"{preflight}/reader_elf.py", f"{preflight}/fw_torch.py"], loaded.stderr
