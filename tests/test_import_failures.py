"""An installed framework whose import raises is `framework-import-failed`, with its versions, the frame, the
dependency and the fix; `framework-missing` stays for a framework that is not there (issue 27).

The probe runs for real, in a child Python, over a fake site-packages on PYTHONPATH: dist-info directories with
METADATA as the real wheels carry it, and packages whose import raises the exception the real release raises, by the
same code path. Expected values are written from the sources, never from envcheck's output:
- JAX 0.4.35 (PyPI, 2024-10-22): jax/_src/lib/__init__.py's _cuda_path does `from nvidia import cuda_nvcc` then
  `pathlib.Path(cuda_nvcc.__file__)`; jax[cuda12]==0.4.35 pins jaxlib==0.4.34 and jax-cuda12-plugin[with_cuda]
  <=0.4.35,>=0.4.34, whose with_cuda extra asks nvidia-cuda-nvcc-cu12>=12.1.105 (their METADATA). From 12.9.41
  (2025-05-01) the nvcc wheel has no nvidia/cuda_nvcc/__init__.py (12.8.93 has one): a namespace package, __file__
  None, and pathlib raises "TypeError: expected str, bytes or os.PathLike object, not NoneType". JAX 0.4.36 reads
  __path__ instead (https://github.com/jax-ml/jax/pull/24684).
- TensorFlow 2.8.0 asks protobuf>=3.9.2 (METADATA "Requires-Dist: protobuf (>=3.9.2)"); with protobuf 4.21.0 its
  *_pb2.py modules raise "TypeError: Descriptors cannot not be created directly." in google/protobuf/descriptor.py;
  2.8.2 pins protobuf<3.20 (https://github.com/tensorflow/tensorflow/issues/56266).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from envcheck.diagnosis.diagnose import diagnose
from envcheck.diagnosis.explain import explain
from envcheck.diagnosis.imports import typed_failure
from envcheck.diagnosis.probe_facts import Facts
from envcheck.inputs.options import ExplainOptions
from envcheck.probe import staged
from envcheck.probe.probe import judge

NAMESPACE_TYPEERROR = "expected str, bytes or os.PathLike object, not NoneType"
JAX_LIB = """\
import pathlib


def _cuda_path():
  def _try_cuda_nvcc_import():
    try:
      from nvidia import cuda_nvcc
    except ImportError:
      return None
    cuda_nvcc_path = pathlib.Path(cuda_nvcc.__file__).parent
    return str(cuda_nvcc_path)

  return _try_cuda_nvcc_import()


cuda_path = _cuda_path()
"""
PROTOBUF_DESCRIPTOR = """\
class FieldDescriptor:
    def __new__(cls, *args, **kwargs):
        raise TypeError(
            "Descriptors cannot not be created directly.\\n"
            "If this call came from a _pb2.py file, your generated code is out of date and must be regenerated "
            "with protoc >= 3.19.0."
        )
"""


def dist_info(site: Path, name: str, version: str, requires: tuple[str, ...] = (), top_level: str = "") -> None:
    """An installed distribution as pip leaves it: NAME-VERSION.dist-info/METADATA (and top_level.txt)."""
    folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    (folder / "METADATA").write_text("\n".join(lines) + "\n")
    if top_level:
        (folder / "top_level.txt").write_text(top_level + "\n")


def write(site: Path, path: str, text: str = "") -> None:
    (site / path).parent.mkdir(parents=True, exist_ok=True)
    (site / path).write_text(text)


def jax_0_4_35_with_nvcc_12_9(root: Path) -> Path:
    site = root / "site-packages"
    dist_info(
        site,
        "jax",
        "0.4.35",
        ("jaxlib<=0.4.35,>=0.4.34", 'jax-cuda12-plugin[with_cuda]<=0.4.35,>=0.4.34; extra == "cuda12"'),
    )
    dist_info(site, "jaxlib", "0.4.34")
    dist_info(site, "jax-cuda12-plugin", "0.4.35", ('nvidia-cuda-nvcc-cu12>=12.1.105; extra == "with_cuda"',))
    dist_info(site, "nvidia-cuda-nvcc-cu12", "12.9.86", top_level="nvidia")
    (site / "nvidia" / "cuda_nvcc" / "bin").mkdir(parents=True)  # no __init__.py: a namespace package
    write(site, "jax/__init__.py", "from jax._src import lib\n")
    write(site, "jax/_src/__init__.py")
    write(site, "jax/_src/lib/__init__.py", JAX_LIB)
    write(site, "jaxlib/__init__.py")
    return site


def tensorflow_2_8_0_with_protobuf_4_21(root: Path) -> Path:
    site = root / "site-packages"
    dist_info(site, "tensorflow", "2.8.0", ("protobuf (>=3.9.2)", "numpy (>=1.20)"))
    dist_info(site, "protobuf", "4.21.0", top_level="google")
    write(site, "google/protobuf/__init__.py")
    write(site, "google/protobuf/descriptor.py", PROTOBUF_DESCRIPTOR)
    write(site, "tensorflow/__init__.py", "from tensorflow.core.framework import tensor_shape_pb2\n")
    write(site, "tensorflow/core/__init__.py")
    write(site, "tensorflow/core/framework/__init__.py")
    write(
        site,
        "tensorflow/core/framework/tensor_shape_pb2.py",
        "from google.protobuf import descriptor as _descriptor\n_DIM = _descriptor.FieldDescriptor(name='size')\n",
    )
    return site


def run_probe(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The probe as the host runs it (staged, its files beside it), with `site` first on the child's sys.path."""
    env = {**os.environ, "PYTHONPATH": str(site), "CUDA_VISIBLE_DEVICES": ""}
    with staged() as probe:
        return subprocess.run(
            [sys.executable, str(probe), *args], capture_output=True, text=True, timeout=120, check=False, env=env
        )


def probed(site: Path, framework: str) -> dict:
    done = run_probe(site, "--framework", framework, "--no-benchmark")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_probe_records_an_installed_jax_whose_import_raises(tmp_path: Path):
    facts = probed(jax_0_4_35_with_nvcc_12_9(tmp_path), "jax")
    assert (facts["framework"], facts["framework_version"]) == ("jax", None)
    failure = facts["import_failure"]
    assert failure["distributions"] == {"jax": "0.4.35", "jaxlib": "0.4.34", "jax-cuda12-plugin": "0.4.35"}
    assert (failure["exception"], failure["message"]) == ("TypeError", NAMESPACE_TYPEERROR)
    own = failure["framework_frame"]
    assert own["file"].endswith(os.path.join("jax", "_src", "lib", "__init__.py"))
    assert (own["line"], own["function"], own["package"]) == (10, "_try_cuda_nvcc_import", "jax")
    assert failure["frame"]["file"].endswith("pathlib.py")  # the standard library raised it: no dependency's frame
    assert failure["dependency_frame"] is None
    assert failure["dependencies"]["nvidia-cuda-nvcc-cu12"] == {
        "installed": "12.9.86",
        "required": ">=12.1.105",
        "by": "jax-cuda12-plugin",
        "marker": 'extra == "with_cuda"',
    }
    assert not any("probe.py" in frame["file"] for frame in failure["frames"])  # the user's frames, not the probe's
    assert facts["frameworks_found"] == [{"name": "jax", "version": "0.4.35", "importable": False}]


def test_the_diagnosis_names_the_break_its_pin_and_the_release_that_fixes_it(tmp_path: Path):
    facts = probed(jax_0_4_35_with_nvcc_12_9(tmp_path), "jax")
    found = diagnose(Facts(probe=facts))
    codes = [d.code for d in found]
    assert codes[0] == "framework-import-failed" and "framework-missing" not in codes, codes
    failed = found[0]
    assert failed.summary == f"JAX 0.4.35 is installed but `import jax` fails: TypeError: {NAMESPACE_TYPEERROR}"
    assert "`pip install 'nvidia-cuda-nvcc-cu12<12.9'`" in failed.fix
    assert "upgrade to JAX 0.4.36" in failed.fix and "https://github.com/jax-ml/jax/pull/24684" in failed.fix
    assert "installed (package metadata): jax 0.4.35, jaxlib 0.4.34, jax-cuda12-plugin 0.4.35" in failed.evidence
    assert "nvidia-cuda-nvcc-cu12 12.9.86: required >=12.1.105 by jax-cuda12-plugin" in failed.evidence


def test_a_failure_inside_a_dependency_names_it_and_its_version(tmp_path: Path):
    facts = probed(tensorflow_2_8_0_with_protobuf_4_21(tmp_path), "tensorflow")
    failure = facts["import_failure"]
    assert failure["distributions"] == {"tensorflow": "2.8.0"}
    assert failure["exception"] == "TypeError" and failure["message"].startswith("Descriptors cannot not be created")
    dependency = failure["dependency_frame"]
    assert dependency["file"].endswith(os.path.join("google", "protobuf", "descriptor.py"))
    assert (dependency["function"], dependency["package"]) == ("__new__", "google")
    assert dependency["distributions"] == ["protobuf"]  # its top_level.txt
    assert failure["dependencies"]["protobuf"] == {"installed": "4.21.0", "required": ">=3.9.2", "by": "tensorflow"}
    found = diagnose(Facts(probe=facts))
    assert found[0].code == "framework-import-failed"
    assert "tensorflow-missing" not in [d.code for d in found]
    assert "`pip install 'protobuf<3.20'`" in found[0].fix and "upgrade to TensorFlow 2.8.2" in found[0].fix


def test_an_unknown_break_in_a_dependency_is_pinned_below_its_installed_version(tmp_path: Path):
    site = tmp_path / "site-packages"
    dist_info(site, "torch", "2.5.1", ("sympy==1.13.1; python_version >= '3.9'",))
    dist_info(site, "sympy", "1.14.0", top_level="sympy")
    write(site, "sympy/__init__.py", "raise AttributeError(\"module 'mpmath' has no attribute 'rational'\")\n")
    write(site, "torch/__init__.py", "import sympy\n")
    facts = probed(site, "torch")
    found = diagnose(Facts(probe=facts))
    failed = next(d for d in found if d.code == "framework-import-failed")
    assert failed.summary.startswith("PyTorch 2.5.1 is installed but `import torch` fails: AttributeError: ")
    assert "inside sympy 1.14.0, which torch requires as ==1.13.1" in failed.fix
    assert "`pip install 'sympy<1.14.0'`" in failed.fix
    assert "framework-missing" not in [d.code for d in found]


def test_a_framework_that_is_not_installed_stays_framework_missing(tmp_path: Path):
    site = tmp_path / "site-packages"
    site.mkdir()
    facts = probed(site, "jax")  # no jax on this Python (the tests' environment has none of the frameworks)
    if facts["frameworks_found"]:
        return  # a host that has JAX: nothing to show here
    assert "import_failure" not in facts
    assert diagnose(Facts(probe=facts))[0].code == "framework-missing"


def test_the_gate_names_framework_import_failed():
    failure = {"distributions": {"jax": "0.4.35"}, "exception": "TypeError", "message": NAMESPACE_TYPEERROR}
    failure["frame"] = {"file": "/x/jax/_src/lib/__init__.py", "line": 160, "function": "_cuda_path"}
    seen = {"device_nodes": ["/dev/nvidia0"], "nvml": {"available": True, "gpus": [{"name": "NVIDIA H100"}]}}
    verdict = judge({**seen, "framework": "jax", "framework_version": None, "import_failure": failure})
    assert verdict["code"] == "framework-import-failed" and not verdict["passed"]
    assert verdict["reason"].startswith(
        f"jax 0.4.35 is installed but `import jax` raised TypeError: {NAMESPACE_TYPEERROR}"
    )
    assert "/x/jax/_src/lib/__init__.py:160 (_cuda_path)" in verdict["reason"]
    # Without a GPU, no-gpu-runtime comes first and says the import fails too.
    alone = judge({"framework": "jax", "framework_version": None, "import_failure": failure})
    assert alone["code"] == "no-gpu-runtime" and "framework-import-failed" in alone["reason"]


HOSTILE = [
    None,
    "TypeError",
    [],
    {"exception": 7},
    {"exception": ""},
]


def test_hostile_records_are_dropped_or_typed_and_never_crash_a_rule():
    for value in HOSTILE:
        assert typed_failure(value) is None
        found = diagnose(Facts(probe={"framework": "jax", "import_failure": value}))
        assert "framework-import-failed" not in [d.code for d in found]
    odd = {
        "exception": "E" * 5000,
        "message": "m" * 10**6,
        "distributions": {"jax": "0.4.35", "../../etc": "1", "jaxlib": 3, "ok": "not a version", 5: "1.0"},
        "dependencies": {
            "protobuf": {"installed": "4.21.0", "required": [">=3"], "by": None},
            "bad": {"installed": "latest"},
            "worse": "4.0",
            "nvidia_cuda_nvcc.cu12": {"installed": "12.9.86"},
        },
        "frame": {"file": "/x.py", "line": True, "function": {"a": 1}},
        "framework_frame": "not a frame",
        "dependency_frame": {
            "file": "/y.py",
            "line": 3,
            "package": "google",
            "distributions": ["protobuf", 1, "$(rm)"],
        },
        "frames": [{"file": 1}, {"file": "/z.py", "line": -4}, "x"],
    }
    typed = typed_failure(odd)
    assert typed is not None
    assert len(typed["exception"]) == 200 and len(typed["message"]) == 2000
    assert typed["distributions"] == {"jax": "0.4.35"}
    assert typed["dependencies"] == {
        "protobuf": {"installed": "4.21.0"},
        "nvidia-cuda-nvcc-cu12": {"installed": "12.9.86"},
    }
    assert typed["frame"] == {"file": "/x.py", "line": None, "function": None}
    assert typed["framework_frame"] is None
    assert typed["dependency_frame"] == {
        "file": "/y.py",
        "line": 3,
        "function": None,
        "package": "google",
        "distributions": ["protobuf"],
    }
    assert typed["frames"] == [{"file": "/z.py", "line": None, "function": None}]
    found = diagnose(Facts(probe={"framework": "jax", "import_failure": odd}))
    assert found[0].code == "framework-import-failed"


# -- envcheck explain: the same from a log ------------------------------------------------------------------------

# The traceback of https://github.com/jax-ml/jax/pull/24684 (jax 0.4.35, nvidia-cuda-nvcc-cu12 as a namespace package).
JAX_LOG = """\
$ python -c 'import jax; print(f"{jax.__version__=}")'
Traceback (most recent call last):
  File "<string>", line 1, in <module>
  File "/home/user/venv/lib/python3.12/site-packages/jax/__init__.py", line 25, in <module>
    from jax._src.cloud_tpu_init import cloud_tpu_init as _cloud_tpu_init
  File "/home/user/venv/lib/python3.12/site-packages/jax/_src/cloud_tpu_init.py", line 17, in <module>
    from jax._src import config
  File "/home/user/venv/lib/python3.12/site-packages/jax/_src/config.py", line 27, in <module>
    from jax._src import lib
  File "/home/user/venv/lib/python3.12/site-packages/jax/_src/lib/__init__.py", line 156, in <module>
    cuda_path = _cuda_path()
  File "/home/user/venv/lib/python3.12/site-packages/jax/_src/lib/__init__.py", line 151, in _cuda_path
    elif (path := _try_cuda_nvcc_import()) is not None:
  File "/home/user/venv/lib/python3.12/site-packages/jax/_src/lib/__init__.py", line 139, in _try_cuda_nvcc_import
    cuda_nvcc_path = pathlib.Path(cuda_nvcc.__file__).parent
TypeError: expected str, bytes or os.PathLike object, not NoneType
"""
# https://github.com/pytorch/pytorch/issues/15800: a stale libc10.so of an older install shadows the new one.
TORCH_LOG = """\
>>> import torch
Traceback (most recent call last):
  File "<stdin>", line 1, in <module>
  File "~/.local/lib/python3.6/site-packages/torch/__init__.py", line 84, in <module>
    from torch._C import *
ImportError: ~/.local/lib/python3.6/site-packages/torch/lib/libcaffe2.so: undefined symbol: _ZTIN3c1010TensorImplE
"""
# A library that failed to load at import is its own cause (cuda-libs-missing), not an import failure.
CUDNN_LOG = """\
Traceback (most recent call last):
  File "/usr/local/lib/python3.10/site-packages/torch/__init__.py", line 237, in <module>
    from torch._C import *
ImportError: libcudnn.so.8: cannot open shared object file: No such file or directory
"""
# PyTorch < 2.3 with NumPy 2 (https://github.com/TorchIO-project/torchio/pull/1183): a warning with a traceback
# through `import torch`, and no exception: the import succeeds.
NUMPY2_LOG = """\
A module that was compiled using NumPy 1.x cannot be run in
NumPy 2.0.0 as it may crash. To support both 1.x and 2.x
versions of NumPy, modules must be compiled with NumPy 2.0.
Traceback (most recent call last):  File "<stdin>", line 1, in <module>
  File "/Users/fernando/miniforge3/envs/test/lib/python3.11/site-packages/torch/__init__.py", line 1477, in <module>
    from .functional import *  # noqa: F403
<stdin>:1: UserWarning: Failed to initialize NumPy: _ARRAY_API not found
"""


def codes(log: str, framework: str | None = None, version: str | None = None) -> list[str]:
    return [d.code for d in explain(log.splitlines(keepends=True), ExplainOptions(framework, version)).diagnoses]


def test_explain_reads_an_import_traceback_as_framework_import_failed():
    found = explain(JAX_LOG.splitlines(keepends=True), ExplainOptions("jax", "0.4.35")).diagnoses
    assert [d.code for d in found] == ["framework-import-failed"]
    assert "`pip install 'nvidia-cuda-nvcc-cu12<12.9'`" in found[0].fix and "JAX 0.4.36" in found[0].fix
    assert found[0].evidence == [
        'line 4: File "/home/user/venv/lib/python3.12/site-packages/jax/__init__.py", line 25, in <module>',
        f"line 16: TypeError: {NAMESPACE_TYPEERROR}",
        "known break: nvidia-cuda-nvcc-cu12<12.9 (https://github.com/jax-ml/jax/pull/24684)",
    ]
    assert codes(JAX_LOG)[0] == "framework-import-failed"  # the release unknown: the break is still named
    # An undefined mangled C++ symbol of torch's own libraries is a known message (torch-abi-mismatch: libraries of
    # two torch builds mixed), so that cause is named rather than the import failure in general.
    assert codes(TORCH_LOG) == ["torch-abi-mismatch"]


def test_explain_keeps_library_causes_and_missing_frameworks_apart():
    assert codes(CUDNN_LOG)[0] == "cuda-libs-missing" and "framework-import-failed" not in codes(CUDNN_LOG)
    assert "framework-import-failed" not in codes(NUMPY2_LOG)
    assert codes(
        'Traceback (most recent call last):\n  File "t.py", line 1, in <module>\n    import torch\n'
        "ModuleNotFoundError: No module named 'torch'\n"
    ) == ["framework-missing"]
    assert codes(">>> import tensorflow as tf\nModuleNotFoundError: No module named 'tensorflow'\n") == [
        "tensorflow-missing"
    ]
