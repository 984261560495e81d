"""PyTorch and JAX stacks through the same matrix, knowledge, plan, lint, render and diagnosis as TensorFlow's
(issue 11). Facts come from the wheels on PyPI (scripts/read_wheels.py) and the data file's sources; log lines are
users' own, from public issue threads (tests/data/framework_log_lines.yaml)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from conftest import REPO, load_json, run_cli
from envcheck.diagnosis.diagnose import ERROR, diagnose
from envcheck.diagnosis.lint import lint
from envcheck.diagnosis.plan import PlannedHost, plan
from envcheck.diagnosis.probe_facts import Facts
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import parse_matrix
from envcheck.knowledge import Knowledge, Version
from envcheck.knowledge.rules import stack_checks
from envcheck.render.dockerfile import context_files
from envcheck.results.publish import write_outputs

K = Knowledge.load()
DATA = Path(__file__).resolve().parent / "data"


def stacks(text: str) -> dict:
    return {s.name: s for s in parse_matrix(text, Path("m.yaml")).stacks}


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_matrix(text, Path("m.yaml"))
    return str(info.value).splitlines()


# -- matrix -----------------------------------------------------------------------------------------------------


def test_a_stack_names_one_framework_and_a_variant_that_fits():
    found = stacks(
        "stacks:\n"
        "  - {name: t, torch: '2.5.1'}\n"
        "  - {name: ti, torch: '2.5.1', index: cu121}\n"
        "  - {name: j, jax: '0.4.35'}\n"
        "  - {name: jc, jax: '0.4.35', variant: cpu}\n"
        "  - {name: tf, tensorflow: '2.15.1', variant: cpu}\n"
    )
    assert [(s.framework, s.version, s.variant, s.index) for s in found.values()] == [
        ("torch", "2.5.1", "pypi", None),
        ("torch", "2.5.1", "index", "cu121"),
        ("jax", "0.4.35", "cuda12", None),
        ("jax", "0.4.35", "cpu", None),
        ("tensorflow", "2.15.1", "cpu", None),
    ]
    assert found["t"].requirement == "torch==2.5.1" and found["jc"].requirement == "jax[cpu]==0.4.35"
    assert found["ti"].index_url == "https://download.pytorch.org/whl/cu121"
    assert found["t"].as_dict()["framework"] == "torch" and found["t"].as_dict()["torch"] == "2.5.1"


def test_framework_mistakes_are_located():
    assert errors_of("stacks:\n  - {name: a, torch: '2.5.1', variant: and-cuda}\n") == [
        "m.yaml:2:40: error: bad variant 'and-cuda' (expected one of pypi, index)"
    ]
    assert errors_of("stacks:\n  - {name: a, jax: '0.4.35', index: cu121}\n") == [
        "m.yaml:2:37: error: index 'cu121' here (expected index: only on torch stacks, with variant index "
        "(or no variant))"
    ]
    # Two frameworks are one environment now (tests/test_several_frameworks.py); a variant must fit each.
    both = errors_of("stacks:\n  - {name: a, torch: '2.5.1', jax: '0.4.35', variant: pypi}\n")
    assert both == [
        "m.yaml:2:55: error: variant 'pypi' is not one of jax's (expected one of cuda12, cuda12-local, cuda13, cpu or "
        "a mapping that names each framework's, such as {tensorflow: and-cuda, torch: pypi})"
    ]
    assert errors_of("stacks:\n  - {name: a, torch: '2.5.1', variant: index}\n")[0].startswith(
        "m.yaml:2:5: error: torch stack of variant index names no index"
    )
    assert errors_of("stacks:\n  - {name: a, jax: '0.4'}\n") == [
        "m.yaml:2:20: error: bad jax '0.4' (expected an exact JAX version such as \"0.4.35\")"
    ]


def test_axes_work_across_frameworks():
    found = stacks(
        "axes:\n"
        "  - {name: 'torch-{torch}-{index}', torch: ['2.5.1', '2.6.0'], index: [cu118, cu124]}\n"
        "  - {name: 'jax-{jax}-{variant}', jax: ['0.4.35'], variant: [cuda12, cpu]}\n"
        "  - {name: 'tf-{tensorflow}', tensorflow: ['2.15.1'], variant: [cpu]}\n"
    )
    assert list(found) == [
        "torch-2.5.1-cu118",
        "torch-2.5.1-cu124",
        "torch-2.6.0-cu118",
        "torch-2.6.0-cu124",
        "jax-0.4.35-cuda12",
        "jax-0.4.35-cpu",
        "tf-2.15.1",
    ]
    assert found["torch-2.6.0-cu124"].variant == "index"


# -- knowledge ----------------------------------------------------------------------------------------------------


def test_torch_facts_read_from_the_wheels():
    assert str(K.build("torch", "2.5.1", "pypi").cuda) == "12.4"
    assert str(K.build("torch", "2.8.0", "pypi").cuda) == "12.8"
    assert str(K.build("torch", "2.11.0", "pypi").cuda) == "13.0"
    assert str(K.build("torch", "2.5.1", "pypi").nccl) == "2.21.5"
    # The 2.8 wheels dropped Maxwell and Pascal, 2.11 Volta: no PTX, so those GPUs get no kernel image.
    assert K.build("torch", "2.7.1", "pypi").kernels_for(Version("6.0")) == "native"
    assert K.build("torch", "2.8.0", "pypi").kernels_for(Version("6.0")) == "none"
    assert K.build("torch", "2.10.0", "pypi").kernels_for(Version("7.0")) == "native"
    assert K.build("torch", "2.11.0", "pypi").kernels_for(Version("7.0")) == "none"
    # Blackwell consumer cards (sm_120) came with 2.8; no release has PTX for them to fall back on before.
    assert K.build("torch", "2.7.1", "pypi").kernels_for(Version("12.0")) == "none"
    assert K.build("torch", "2.8.0", "pypi").kernels_for(Version("12.0")) == "native"
    assert K.build("torch", "2.1.2", "index", "cu118").cuda == Version("11.8")
    assert K.build("torch", "2.1.2", "index", "cpu").cuda is None


def test_jax_facts_read_from_the_wheels():
    assert K.build("jax", "0.4.20", "cuda12").unavailable.startswith("JAX 0.4.20 has no jax[cuda12] on PyPI")
    assert not K.build("jax", "0.4.23", "cuda12").unavailable
    assert K.build("jax", "0.4.22", "cuda12").unavailable  # its jax-cuda12-pjrt 0.4.22 never reached PyPI
    assert K.build("jax", "0.7.0", "cuda13").unavailable.endswith("(it exists from 0.7.2)")
    # 0.4.37 has no jaxlib of its own: its jax[cuda12] installs jaxlib 0.4.36 and jax-cuda12-plugin 0.4.36-0.4.37
    # (jax 0.4.37's METADATA on PyPI), whose [with_cuda] extra asks nvidia-cuda-runtime-cu12>=12.1.105 and
    # nvidia-cudnn-cu12>=9.1,<10.0 (jax-cuda12-plugin 0.4.36's METADATA). Python 3.10-3.13 (jaxlib's wheel tags) and
    # the plugin's SASS and PTX: the audit of 2026-11-27 (knowledge.yaml, source jax_wheels, row 0.4.34).
    jax0437 = K.build("jax", "0.4.37", "cuda12")
    assert (jax0437.release, jax0437.python, jax0437.cuda, jax0437.cudnn) == (
        "0.4.37",
        (Version("3.10"), Version("3.13")),
        Version("12.1"),
        Version("9.1"),
    )
    assert jax0437.unavailable == "" and jax0437.cuda_range is True
    assert jax0437.code.sass == tuple(Version(v) for v in ("5.0", "6.0", "7.0", "8.0", "9.0"))
    assert jax0437.code.ptx == {Version("9.0"): Version("8.3")}
    cuda13 = K.build("jax", "0.10.2", "cuda13")
    assert cuda13.kernels_for(Version("7.0")) == "none" and cuda13.kernels_for(Version("9.0")) == "native"
    assert K.build("jax", "0.10.2", "cuda12").kernels_for(Version("7.0")) == "native"
    assert K.build("jax", "0.13.0", "cuda12") is None  # newer than the data


def test_every_release_from_the_first_to_the_newest_has_sourced_facts():
    assert {"torch_wheels", "torch_indexes", "jax_wheels", "jax_install"} <= set(K.sources)
    assert K.known("torch") == ("1.7", "2.15") and K.known("jax") == ("0.2.0", "0.12.0.1")
    for minor in range(1, 16):
        build = K.build("torch", f"2.{minor}.0", "pypi")
        assert build.cuda and build.cudnn and build.nccl and build.code.sass and not build.code.ptx, minor
        assert build.python[0] < build.python[1], minor
    for version in ("0.4.20", "0.4.30", "0.5.2", "0.6.1", "0.9.0.1", "0.11.1", "0.12.0.1"):
        assert K.build("jax", version, "cpu").python[0] >= Version("3.9"), version


# -- lint and plan ------------------------------------------------------------------------------------------------

PLANNED = parse_matrix(
    "stacks:\n"
    "  - {name: torch-2.7, torch: '2.7.1'}\n"
    "  - {name: torch-2.9, torch: '2.9.1'}\n"
    "  - {name: torch-2.11, torch: '2.11.0'}\n"
    "  - {name: torch-2.5-cu118, torch: '2.5.1', index: cu118}\n"
    "  - {name: torch-cpu, torch: '2.5.1', index: cpu}\n"
    "  - {name: jax-cuda12, jax: '0.10.2', variant: cuda12}\n"
    "  - {name: jax-cuda13, jax: '0.10.2', variant: cuda13}\n"
    "  - {name: jax-cpu, jax: '0.10.2', variant: cpu}\n",
    Path("m.yaml"),
)


def verdicts(driver: str, *gpus: tuple[str, str]) -> dict[str, dict]:
    host = PlannedHost(Version(driver), tuple((name, Version(cc)) for name, cc in gpus))
    return {v.stack: v.as_dict() for v in plan(list(PLANNED.stacks), host, K)}


def test_plan_on_an_h100_with_driver_535():
    v = verdicts("535.104.05", ("NVIDIA H100 80GB HBM3", "9.0"))
    assert v["torch-2.7"]["codes"] == ["minor-version-compat"]  # CUDA 12.6 wants 560.28.03
    assert v["torch-2.5-cu118"] == {
        "stack": "torch-2.5-cu118",
        "verdict": "ok",
        "codes": [],
        "reason": "built for this driver and GPU",
    }
    assert v["torch-2.11"]["verdict"] == "fails" and v["torch-2.11"]["codes"] == ["driver-too-old"]
    assert "newest stack that would work on this driver: torch-2.9" in v["torch-2.11"]["reason"]
    assert v["jax-cuda12"]["codes"] == ["minor-version-compat"]  # pip takes the newest CUDA 12 libraries
    assert v["jax-cuda13"]["codes"] == ["driver-too-old"]
    assert v["torch-cpu"]["codes"] == ["cpu-only-build"] and v["jax-cpu"]["codes"] == ["cpu-only-build"]


def test_plan_on_gpus_the_wheels_have_no_code_for():
    v = verdicts("580.65.06", ("NVIDIA GeForce RTX 5090", "12.0"), ("Tesla V100-SXM2-16GB", "7.0"))
    assert v["torch-2.7"]["codes"] == ["gpu-too-new"]  # no sm_120, no PTX: the RTX 5090 is newer than its targets
    assert "no kernel image is available" in v["torch-2.7"]["reason"]
    assert v["torch-2.9"]["verdict"] == "ok"
    assert v["torch-2.11"]["codes"] == ["compute-capability-unsupported"]  # Volta dropped
    assert "is older than PyTorch 2.11's oldest supported 7.5" in v["torch-2.11"]["reason"]
    assert v["jax-cuda13"]["codes"] == ["compute-capability-unsupported"] and v["jax-cuda12"]["verdict"] == "ok"


def test_lint_points_at_the_key_at_fault(tmp_path: Path):
    text = (
        "stacks:\n"
        "  - name: old-index\n"
        "    torch: '2.1.2'\n"
        "    index: cu124\n"
        "  - name: old-jax\n"
        "    jax: '0.4.20'\n"
        "  - name: new-python\n"
        "    jax: '0.11.0'\n"
        "    python: '3.11'\n"
        "  - name: future\n"
        "    torch: '3.0.0'\n"
    )
    found = [str(f) for f in lint(parse_matrix(text, Path("m.yaml")))]
    assert found == [
        "m.yaml:4:12: warning: PyTorch 2.1 has no cu124 wheels (its indexes: cpu, cu118, cu121) [variant-unavailable]",
        "m.yaml:5:5: warning: JAX 0.4.20 has no jax[cuda12] on PyPI (it exists from 0.4.23) [variant-unavailable]",
        "m.yaml:9:13: warning: JAX 0.11.0 supports Python 3.12–3.14, not 3.11: pip will find no wheel "
        "[python-unsupported]",
        "m.yaml:11:12: warning: PyTorch 3.0.0 is not in envcheck's data (it knows 1.7–2.15); it will be verified by "
        "running [unknown-torch]",
    ]


def test_the_default_matrix_has_every_framework():
    frameworks = {s.framework for s in parse_matrix((REPO / "matrix.yaml").read_text(), REPO / "matrix.yaml").stacks}
    assert frameworks == {"tensorflow", "torch", "jax"}
    for stack in parse_matrix((REPO / "matrix.yaml").read_text(), REPO / "matrix.yaml").stacks:
        assert [c for c in stack_checks(stack, K) if c.level] == [], stack.name


# -- render -------------------------------------------------------------------------------------------------------


def test_dockerfiles_install_the_framework_and_run_its_adapter():
    found = stacks(
        "stacks:\n"
        "  - {name: t, torch: '2.9.1'}\n"
        "  - {name: ti, torch: '2.5.1', index: cu121}\n"
        "  - {name: j, jax: '0.10.2', variant: cuda13}\n"
    )
    torch = context_files(found["t"], ca_bundle=False)
    assert "torch==2.9.1 nvidia-ml-py" in torch["Dockerfile"]
    assert torch["Dockerfile"].rstrip().endswith('CMD ["python", "/opt/envcheck/probe.py", "--framework", "torch"]')
    assert {"fw_torch.py", "fw_jax.py", "fw_tensorflow.py", "probe.py"} <= set(torch)
    index = context_files(found["ti"], ca_bundle=False)["Dockerfile"]
    assert "--extra-index-url https://download.pytorch.org/whl/cu121 torch==2.5.1+cu121 nvidia-ml-py" in index
    assert "'jax[cuda13]==0.10.2' nvidia-ml-py" in context_files(found["j"], ca_bundle=False)["Dockerfile"]


# -- diagnosis ----------------------------------------------------------------------------------------------------

TORCH = load_json("probe-torch2.9.1-pypi-no-gpu-runtime.json")
JAX = load_json("probe-jax0.10.2-cuda12-no-gpu-runtime.json")


def test_recorded_torch_and_jax_containers_without_a_gpu_runtime():
    for recorded, version in ((TORCH, "2.9.1+cu128"), (JAX, "0.10.2")):
        found = diagnose(Facts(probe=recorded["probe"], gpu_refusal=recorded["gpu_refusal"]))
        assert [d.code for d in found] == ["no-gpu-runtime"], version
        assert recorded["probe"]["framework_version"] == version and recorded["probe"]["is_cuda_build"] is True


def test_framework_missing_and_cpu_only_name_the_framework():
    probe = copy.deepcopy(TORCH["probe"])
    probe.update(framework_version=None, framework_error="import torch failed: ModuleNotFoundError", is_cuda_build=None)
    found = diagnose(Facts(probe=probe))
    assert found[0].code == "framework-missing" and found[0].summary == "PyTorch cannot be imported."
    probe = copy.deepcopy(JAX["probe"])
    probe.update(is_cuda_build=False, build_cuda=None, build_info={"jaxlib": "0.10.2", "plugins": {}})
    probe["log"].append(  # JAX's own words, as a user posted them (sanchit-gandhi/whisper-jax#211)
        "WARNING:2025-06-15 17:04:55,449:jax._src.xla_bridge:791: An NVIDIA GPU may be present on this machine, but "
        "a CUDA-enabled jaxlib is not installed. Falling back to cpu."
    )
    found = {d.code: d for d in diagnose(Facts(probe=probe))}
    assert found["cpu-only-build"].severity == ERROR
    assert "no CUDA plugin" in found["cpu-only-build"].summary and "jax[cuda12]" in found["cpu-only-build"].fix
    assert "a CUDA-enabled jaxlib is not installed" in found["cpu-only-build"].evidence[1]


def test_torch_on_a_gpu_it_has_no_kernels_for():
    probe = copy.deepcopy(TORCH["probe"])
    probe["nvml"].update(
        available=True,
        driver="580.65.06",
        error=None,
        gpus=[{"index": 0, "name": "Tesla P100-PCIE-16GB", "compute_capability": "6.0"}],
    )
    probe["driver"] = "580.65.06"
    found = {d.code: d for d in diagnose(Facts(probe=probe))}
    assert "compute-capability-unsupported" in found
    assert "Tesla P100-PCIE-16GB: compute capability 6.0" in found["compute-capability-unsupported"].evidence[0]


# -- the published table ------------------------------------------------------------------------------------------


def test_the_table_shows_the_framework(tmp_path: Path):
    from envcheck.results.model import Result

    records = [Result.from_dict(r) for r in (TORCH["record"], JAX["record"])]
    md, html, data = write_outputs(tmp_path, records)
    text = md.read_text()
    assert "PyTorch 2.9.1+cu128 · CUDA 12.8/cuDNN 9.10.2" in text and "JAX 0.10.2 · CUDA 12.9" in text
    assert '<select id="f-framework">' in html.read_text()
    cells = {c["stack"]: c for c in __import__("json").loads(data.read_text())["cells"]}
    assert cells["torch-2.9-cuda12"]["framework"] == "torch" and cells["jax-0.10-cuda12"]["framework"] == "jax"


def test_doctor_names_every_framework_it_probed():
    done = run_cli("doctor", "--json", "--framework", "jax", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    report = __import__("json").loads(done.stdout)
    assert report["frameworks"][0]["framework"] == "jax"
    assert report["verdict"].startswith("JAX ")
