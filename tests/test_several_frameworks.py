"""Several frameworks in one environment (issue 26): the matrix keys and their located errors, one install call for
all of them, `library-conflict` predicted by lint and plan, confirmed from a resolver's refusal and from the
libraries each framework loaded, and on Docker a real PyTorch + JAX image and a real TensorFlow + PyTorch refusal.

Where the expected verdicts come from:
- which pairs install together is what the resolvers said, recorded in tests/data/resolver/ (uv 0.13.9
  `uv pip install --dry-run` and pip 23.2.1 `pip install --dry-run` against PyPI, 2026-12-07): TensorFlow 2.15.1
  [and-cuda] with PyTorch 2.9.1 is refused (nvidia-cuda-nvrtc-cu12 ==12.2.140 against ==12.8.93), with JAX 0.10.2
  [cuda12] too (numpy <2 against >=2); PyTorch 2.9.1 with JAX 0.10.2 [cuda12] resolves, to nvidia-cudnn-cu12
  9.10.2.21 and nvidia-cuda-runtime-cu12 12.8.90 (PyTorch's pins);
- the pins are the wheels' own metadata on PyPI: tensorflow 2.15.1's and-cuda extra pins nvidia-cudnn-cu12==8.9.4.25
  and nvidia-cuda-runtime-cu12==12.2.140; torch 2.9.1 pins nvidia-cudnn-cu12==9.10.2.21;
- the probes are real ones (tests/data/probe-*.json): TensorFlow 2.15.1 [and-cuda] loads libcudnn.so.8 (cuDNN 8.9.4),
  PyTorch 2.9.1 libcudnn.so.9 (cuDNN 9.10.2), each from its venv's nvidia/cudnn/lib.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import DATA, daemon_gives_gpus, images_removed_after, load_json, run_cli
from envcheck.diagnosis import conflicts
from envcheck.diagnosis.diagnose import all_use_gpu, diagnose_all
from envcheck.diagnosis.lint import predict
from envcheck.diagnosis.plan import PlannedHost, plan
from envcheck.diagnosis.probe_facts import Facts
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import Matrix, parse_matrix
from envcheck.knowledge import Version
from envcheck.render.dockerfile import context_files
from envcheck.results.model import BuildInfo, Severity

TORCH_JAX = "  - {name: tj, torch: '2.9.1', jax: '0.10.2', variant: {jax: cuda12}}\n"
TF_TORCH = "  - {name: tt, tensorflow: '2.15.1', torch: '2.9.1', variant: {tensorflow: and-cuda}}\n"
TF_JAX = "  - {name: tfj, tensorflow: '2.15.1', jax: '0.10.2', variant: {tensorflow: and-cuda, jax: cuda12}}\n"


def parse(text: str) -> Matrix:
    return parse_matrix(text, Path("m.yaml"))


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value).splitlines()


def resolver_said(name: str) -> BuildInfo:
    """A failed build whose log ends with what a resolver really said (tests/data/resolver/)."""
    lines = (DATA / "resolver" / name).read_text().splitlines()
    return BuildInfo(False, error="The command '/bin/sh -c ...' returned a non-zero code: 1", log_tail=lines)


# -- the matrix ------------------------------------------------------------------------------------------------------


def test_a_stack_names_several_frameworks_the_first_its_primary():
    tj, tt = parse("stacks:\n" + TORCH_JAX + TF_TORCH).stacks
    assert tj.frameworks == (("torch", "2.9.1", "pypi"), ("jax", "0.10.2", "cuda12"))
    assert (tj.framework, tj.version, tj.variant) == ("torch", "2.9.1", "pypi")
    assert tt.frameworks == (("tensorflow", "2.15.1", "and-cuda"), ("torch", "2.9.1", "pypi"))
    assert tj.as_dict()["frameworks"] == ["torch", "jax"] and tj.as_dict()["jax"] == "0.10.2"
    assert tj.as_dict()["variants"] == {"torch": "pypi", "jax": "cuda12"}
    assert [part.as_dict()["framework"] for part in tj.parts] == ["torch", "jax"]
    one = parse("stacks:\n  - {name: t, torch: '2.9.1'}\n").stacks[0]
    assert not one.several and "frameworks" not in one.as_dict() and one.parts == (one,)


def test_one_variant_for_all_or_a_mapping():
    (both,) = parse("stacks:\n  - {name: c, tensorflow: '2.15.1', jax: '0.10.2', variant: cpu}\n").stacks
    assert both.frameworks == (("tensorflow", "2.15.1", "cpu"), ("jax", "0.10.2", "cpu"))


@pytest.mark.parametrize(
    ("stack", "error"),
    [
        (
            "{name: a, tensorflow: '2.15.1', torch: '2.9.1'}",
            "m.yaml:2:5: error: stack names no variant for tensorflow (expected variant: {tensorflow: "
            "and-cuda|plain|cpu} beside the other frameworks' (those left out take their default))",
        ),
        (
            "{name: a, torch: '2.9.1', jax: '0.10.2', variant: {tensorflow: and-cuda}}",
            "m.yaml:2:68: error: variant for tensorflow, which this stack does not install (expected variants for "
            "the stack's frameworks only: torch, jax)",
        ),
        (
            "{name: a, torch: '2.9.1', jax: '0.10.2', variant: {jax: and-cuda}}",
            "m.yaml:2:61: error: bad variant for jax 'and-cuda'",
        ),
        (
            "{name: a, torch: '2.9.1', jax: '0.10.2', variant: {torchx: pypi}}",
            "m.yaml:2:56: error: bad variant key 'torchx' (expected a framework: tensorflow, torch, jax)",
        ),
    ],
)
def test_several_framework_mistakes_are_located(stack: str, error: str):
    (said,) = errors_of(f"stacks:\n  - {stack}\n")
    assert said.startswith(error)


def test_old_one_framework_files_read_as_before():
    (stack,) = parse("stacks:\n  - {name: t, tensorflow: '2.15.1', variant: and-cuda}\n").stacks
    assert stack.as_dict() == {
        "name": "t",
        "framework": "tensorflow",
        "tensorflow": "2.15.1",
        "variant": "and-cuda",
        "cuda": None,
        "cudnn": None,
        "base": "debian:bookworm-slim",
        "python": "3.11",
        "pip": [],
        "env": {},
        "sandbox": True,
        "installer": "uv",
    }


# -- the Dockerfile --------------------------------------------------------------------------------------------------


def test_every_framework_and_pin_goes_into_one_install_call():
    (tt,) = parse("stacks:\n" + TF_TORCH).stacks
    dockerfile = context_files(tt, ca_bundle=False)["Dockerfile"]
    installs = [line for line in dockerfile.splitlines() if "'tensorflow[and-cuda]==2.15.1'" in line]
    assert len(installs) == 1  # one call: the resolver sees every pin at once
    (line,) = installs
    assert "nvidia-cudnn-cu12==8.9.4.25" in line and "torch==2.9.1" in line and "nvidia-ml-py" in line
    assert dockerfile.count("uv pip install --python /opt/venv/bin/python") == 1
    assert 'CMD ["python", "/opt/envcheck/probe.py", "--framework", "tensorflow,torch"]' in dockerfile


# -- lint and plan ---------------------------------------------------------------------------------------------------


def test_lint_predicts_the_conflicts_the_resolvers_reported():
    tj, tt, tfj = parse("stacks:\n" + TORCH_JAX + TF_TORCH + TF_JAX).stacks
    assert [f.code for f in predict(tj)] == []  # resolves (tests/data/resolver/uv-…-torch2.9.1-jax0.10.2-cuda12.txt)
    (found,) = [f for f in predict(tt) if f.code == "library-conflict"]
    assert str(found.position) == "m.yaml:3:45"  # at torch: (the second framework), where the pair breaks
    assert "CUDA runtime 12.2.140 and cuDNN 8.9.4.25" in found.message and "cuDNN 9.10.2.21" in found.message
    (found,) = [f for f in predict(tfj) if f.code == "library-conflict"]
    assert "cuDNN 8.9.4.25" in found.message and "cuDNN 9.8+" in found.message


def test_plan_checks_each_framework_and_fails_a_conflict():
    tj, tt = parse("stacks:\n" + TORCH_JAX + TF_TORCH).stacks
    h100 = [("NVIDIA H100 80GB HBM3", Version("9.0"))]
    # 570.26: CUDA 12.8 GA's minimum. JAX beside PyTorch gets PyTorch's CUDA 12.8 runtime (the resolver's pick),
    # not the 12.9 JAX alone would install, so it needs no more than 570.26 either.
    ok, conflict = plan([tj, tt], PlannedHost(Version("570.26"), h100))
    assert (ok.status.value, ok.codes) == ("ok", [])
    assert conflict.status.value == "fails" and conflict.codes[0] == "library-conflict"
    (old,) = plan([tj], PlannedHost(Version("535.54.03"), h100))
    assert old.codes == ["minor-version-compat"]  # 525.60.13 <= 535 < 570.26, for both frameworks


# -- confirmed: the resolver's refusal, the libraries each framework loaded ------------------------------------------


@pytest.mark.parametrize(
    ("log", "evidence"),
    [
        ("uv-0.13.9-tensorflow2.15.1-and-cuda-torch2.9.1.txt", "nvidia-cuda-nvrtc-cu12==12.2.140"),
        ("pip-tensorflow2.15.1-and-cuda-torch2.9.1.txt", "torch 2.9.1 depends on nvidia-cuda-nvrtc-cu12==12.8.93"),
        ("uv-0.13.9-tensorflow2.15.1-and-cuda-jax0.10.2-cuda12.txt", "jax==0.10.2 depends on numpy>=2.0"),
    ],
)
def test_a_resolver_refusal_is_a_library_conflict(log: str, evidence: str):
    (stack,) = parse("stacks:\n" + (TF_JAX if "jax" in log else TF_TORCH)).stacks
    found = conflicts.from_build(stack, resolver_said(log))
    assert found is not None and found.code == "library-conflict" and found.severity == Severity.ERROR
    assert any(evidence in line for line in found.evidence), found.evidence
    (one,) = parse("stacks:\n  - {name: t, torch: '2.9.1'}\n").stacks
    assert conflicts.from_build(one, resolver_said(log)) is None  # one framework's refusal is not between two


def both_in_one(tf_cudnn: str | None = None, tf_finds_none: bool = False) -> dict[str, Any]:
    """One probe document of an environment with PyTorch 2.9.1 (primary) and TensorFlow 2.15.1, from the two real
    probes: each framework's keys from its own, the container's from PyTorch's. tf_cudnn: the cuDNN TensorFlow is
    made to load instead of its own (the other framework's copy); tf_finds_none: TensorFlow's cuDNN made gone (as
    when PyTorch's install replaced the wheel)."""
    torch = copy.deepcopy(load_json("probe-torch2.9.1-pypi-no-gpu-runtime.json")["probe"])
    tf = copy.deepcopy(load_json("probe-tf2.15.1-and-cuda-no-gpu-runtime.json")["probe"])
    tf.update(
        framework="tensorflow", framework_version=tf["tensorflow"]
    )  # probe schema 1's key, as a newer probe says it
    if tf_cudnn:
        tf["cuda_libs"]["runtime_versions"]["cudnn"] = tf_cudnn
        tf["cuda_libs"]["libraries"]["cudnn"] = copy.deepcopy(torch["cuda_libs"]["libraries"]["cudnn"])
    if tf_finds_none:
        del tf["cuda_libs"]["runtime_versions"]["cudnn"]
        tf["cuda_libs"]["libraries"]["cudnn"] = {"found": None, "unreachable_on_disk": []}
    own = ("framework", "framework_version", "framework_error", "is_cuda_build", "build_cuda", "build_cudnn")
    other = {k: tf.get(k) for k in (*own, "gpus", "log", "placement", "cuda_libs", "gpu_code", "build_info")}
    return {**torch, "other_frameworks": [other]}


def test_two_cudnns_each_its_own_are_a_warning_and_each_framework_is_diagnosed():
    facts = Facts(probe=both_in_one())
    assert [part.framework for part in facts.parts] == ["torch", "tensorflow"]
    found = diagnose_all(facts)
    (conflict,) = [d for d in found if d.code == "library-conflict"]
    assert conflict.severity == Severity.WARNING
    assert "PyTorch 2.9.1+cu128 loads cuDNN 9.10.2 from /opt/venv" in conflict.evidence[0]
    assert "TensorFlow 2.15.1 loads cuDNN 8.9.4 from /opt/venv" in conflict.evidence[1]
    # Each framework has its own diagnoses; the host's refusal of GPUs is said once, for both.
    assert [d.code for d in found].count("no-gpu-runtime") <= 1
    assert all(d.framework in (None, "torch", "tensorflow") for d in found)
    assert not all_use_gpu(facts, found)


def test_a_framework_loading_the_others_cudnn_is_an_error():
    found = conflicts.from_probe(Facts(probe=both_in_one(tf_cudnn="9.10.2")).parts)
    (conflict,) = found
    assert conflict.severity == Severity.ERROR
    assert "TensorFlow was built with cuDNN 8 and loads 9.10.2, PyTorch's" in conflict.summary
    (gone,) = conflicts.from_probe(Facts(probe=both_in_one(tf_finds_none=True)).parts)
    assert gone.severity == Severity.ERROR
    assert (
        "TensorFlow was built with cuDNN 8 and finds no cuDNN 8: the environment's is PyTorch's 9.10.2" in gone.summary
    )


def test_several_results_show_each_framework(tmp_path: Path):
    """run's text names the framework a diagnosis is about."""
    from envcheck.results.model import Diagnosis, Result
    from envcheck.results.publish import format_text

    record = load_json("probe-torch2.9.1-pypi-no-gpu-runtime.json")["record"]
    result = Result.from_dict(record)
    result.diagnoses = [Diagnosis("cudnn-mismatch", Severity.ERROR, "s", "f", [], framework="tensorflow")]
    assert "  [error] cudnn-mismatch (TensorFlow): s" in format_text(result)
    assert Result.from_dict(json.loads(json.dumps(result.to_dict()))).diagnoses[0].framework == "tensorflow"


# -- on Docker: real images ------------------------------------------------------------------------------------------


@pytest.mark.docker
def test_pytorch_and_jax_in_one_image_and_tensorflow_with_pytorch_refused(
    tmp_path: Path, docker_api: Any, image_janitor: None, no_leftover_containers: None
):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text("stacks:\n" + TORCH_JAX + TF_TORCH)  # as written: the first framework named is the primary
    with images_removed_after(docker_api):
        done = run_cli("matrix", "-m", str(matrix), "--json", "--ca-bundle", "auto", "--quick")
    assert done.returncode == 1, done.stderr[-3000:]  # a stack that did not run: exit 1
    results = {r["stack"]: r for r in json.loads(done.stdout)}
    tj, tt = results["tj"], results["tt"]
    gpus = daemon_gives_gpus(docker_api)
    # PyTorch + JAX: both installed and probed in one process; the resolver's single cuDNN for both.
    assert tj["status"] == ("gpu" if gpus else "cpu-only"), tj.get("error")
    probe = tj["probe"]
    assert (probe["framework"], probe["framework_version"]) == ("torch", "2.9.1+cu128")
    (jax,) = probe["other_frameworks"]
    assert (jax["framework"], jax["framework_version"], jax["framework_error"]) == ("jax", "0.10.2", None)
    assert probe["cuda_libs"]["runtime_versions"]["cudnn"].startswith("9.10.2")
    codes = [d["code"] for d in tj["diagnoses"]]
    assert "library-conflict" not in codes and "cudnn-mismatch" not in codes
    # What the image needs: CUDA 12.8's driver (NVIDIA's table: 12.8 GA >= 570.26, 12.x minor-version compatibility
    # >= 525.60.13), the runtime PyTorch pinned and the resolver kept for both.
    needs = tj["needs"]
    assert (needs["cuda"], needs["min_driver"], needs["min_driver_minor_compat"]) == ("12.8", "570.26", "525.60.13")
    if not gpus:
        assert codes.count("no-gpu-runtime") == 1  # the host's refusal, once, for both frameworks
    # TensorFlow + PyTorch: refused by the resolver in the one install call, and said so.
    assert tt["status"] == "build-failed"
    (conflict,) = tt["diagnoses"]
    assert conflict["code"] == "library-conflict" and conflict["severity"] == "error"
    assert any("nvidia-cuda-nvrtc-cu12" in line for line in conflict["evidence"]), conflict["evidence"]
    assert [p["code"] for p in tt["predicted"]] == ["library-conflict"]  # lint said so before the build


@pytest.mark.docker
def test_the_probe_confirms_a_framework_whose_cudnn_the_others_install_replaced(
    tmp_path: Path, docker_api: Any, image_janitor: None, no_leftover_containers: None
):
    """TensorFlow 2.15.1 [and-cuda], then PyTorch 2.9.1 installed by a second call (the stack's pip: layer), as a
    user who adds a framework to an image does: the second install replaces nvidia-cudnn-cu12 8.9.4.25 with
    9.10.2.21 (PyTorch's pin), so TensorFlow, built with cuDNN 8, is left with PyTorch's cuDNN 9. `envcheck probe` of
    that image with both frameworks says so from what each loaded."""
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "stacks:\n  - {name: tf-then-torch, tensorflow: '2.15.1', variant: and-cuda, pip: [torch==2.9.1]}\n"
    )
    with images_removed_after(docker_api):
        built = run_cli("build", "-m", str(matrix), "--ca-bundle", "auto")
        assert built.returncode == 0, built.stderr[-3000:]
        (tag,) = [i["RepoTags"][0] for i in docker_api.images(name="envcheck/tf-then-torch")]
        done = run_cli("probe", tag, "--framework", "tensorflow,torch", "--json", "--quick")
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(done.stdout) if done.stdout.lstrip().startswith("[") else [json.loads(done.stdout)]
    probe = result["probe"]
    assert (probe["framework"], probe["framework_version"]) == ("tensorflow", "2.15.1")
    (torch,) = probe["other_frameworks"]
    assert (torch["framework"], torch["framework_version"]) == ("torch", "2.9.1+cu128")
    assert probe["cuda_libs"]["nvidia_packages"]["nvidia-cudnn-cu12"] == "9.10.2.21"  # PyTorch's pin won
    assert torch["cuda_libs"]["runtime_versions"]["cudnn"].startswith("9.10.2")
    (conflict,) = [d for d in result["diagnoses"] if d["code"] == "library-conflict"]
    assert conflict["severity"] == "error"
    # TensorFlow's probe finds cuDNN 9.10.2 where its libcudnn.so.8 was: PyTorch's copy, not one made for it.
    assert "TensorFlow was built with cuDNN 8 and loads 9.10.2, PyTorch's" in conflict["summary"]
    assert result["status"] == "cpu-only"
