"""The registry (envcheck.frameworks) is the one list of frameworks every stage iterates: each framework in it is
parsed, rendered, diagnosed in its own words, offered by the CLI, labelled in the table and probed by its adapter,
and no module elsewhere keeps a table keyed by framework names."""

from __future__ import annotations

import ast
import copy
import importlib.util
from pathlib import Path

import pytest

from conftest import REPO, load_json
from envcheck import frameworks
from envcheck.cli import build_parser
from envcheck.diagnosis.diagnose import diagnose
from envcheck.diagnosis.plan import PlannedHost, plan, predicted_results
from envcheck.diagnosis.probe_facts import Facts
from envcheck.diagnosis.scan import scan_source
from envcheck.errors import ConfigError
from envcheck.frameworks import FRAMEWORKS, Framework
from envcheck.inputs.matrix import Stack, parse_matrix
from envcheck.knowledge import Knowledge
from envcheck.knowledge.facts import Version
from envcheck.probe import PROBE_FILES, probe
from envcheck.render.dockerfile import context_files
from envcheck.results.model import Diagnosis
from envcheck.results.publish import cell, format_text

K = Knowledge.load()
PACKAGE = REPO / "envcheck"
RECORDED = load_json("probe-tf2.15.1-and-cuda-no-gpu-runtime.json")["probe"]
IDS = [fw.name for fw in FRAMEWORKS]


def newest(fw: Framework) -> str:
    """A release the knowledge data holds, as a matrix names it (x.y.z)."""
    release = fw.known(K)[1]
    return release if release.count(".") >= 2 else f"{release}.0"


def variant_stacks(fw: Framework) -> list[Stack]:
    """One stack per variant of the framework, as a matrix file writes it."""
    lines = ["stacks:"]
    for n, variant in enumerate(fw.variants):
        index = ", index: cu121" if variant == fw.index_variant else ""
        lines.append(f"  - {{name: s{n}, {fw.name}: '{newest(fw)}', variant: {variant}{index}}}")
    return list(parse_matrix("\n".join(lines) + "\n", Path("m.yaml")).stacks)


def probe_of(fw: Framework, **changes: object) -> dict:
    """The recorded probe document, as this framework's adapter would write it."""
    found = copy.deepcopy(RECORDED)
    for key in ("tensorflow", "tensorflow_error", "tf_log"):
        found.pop(key, None)
    found.update({"framework": fw.name, "framework_version": newest(fw), **changes})
    return found


@pytest.mark.parametrize("fw", FRAMEWORKS, ids=IDS)
def test_the_matrix_takes_every_variant_and_render_installs_it(fw: Framework):
    stacks = variant_stacks(fw)
    assert [(s.framework, s.variant) for s in stacks] == [(fw.name, v) for v in fw.variants]
    for stack in stacks:
        assert stack.fw is fw and stack.as_dict()[fw.name] == stack.version
        dockerfile = context_files(stack, ca_bundle=False)["Dockerfile"]
        assert f'"--framework", "{fw.name}"]' in dockerfile
        assert " ".join([*fw.requirements(stack), "nvidia-ml-py"]) in dockerfile


def test_a_stack_without_a_variant_gets_its_frameworks_default():
    for fw in FRAMEWORKS:
        text = f"stacks:\n  - {{name: s, {fw.name}: '{newest(fw)}'}}\n"
        if fw.default_variant is None:
            with pytest.raises(ConfigError, match="missing variant"):
                parse_matrix(text, Path("m.yaml"))
        else:
            assert parse_matrix(text, Path("m.yaml")).stacks[0].variant == fw.default_variant


def diagnosis(fw: Framework, code: str, findings: tuple[dict, ...] = (), **changes: object) -> Diagnosis:
    """The diagnosis of this code for this framework's probe document, changed as given."""
    found = {d.code: d for d in diagnose(Facts(probe=probe_of(fw, **changes), script_findings=findings))}
    return found[code]


@pytest.mark.parametrize("fw", FRAMEWORKS, ids=IDS)
def test_every_diagnosis_that_names_the_framework_speaks_its_words(fw: Framework):
    missing = diagnosis(fw, fw.missing_code, framework_version=None, framework_error="import failed")
    assert missing.summary == f"{fw.display_name} cannot be imported."
    assert f"{fw.install_command()} {fw.install_note}" in missing.fix
    cpu_only = diagnosis(fw, "cpu-only-build", is_cuda_build=False)
    assert fw.cpu_only_what in cpu_only.summary and fw.cpu_only_fix in cpu_only.fix
    assert cpu_only.evidence[0].startswith(fw.cpu_only_evidence)
    libraries = {"cudnn": {"found": None, "unreachable_on_disk": []}}
    libs = diagnosis(fw, "cuda-libs-missing", is_cuda_build=True, cuda_libs={"libraries": libraries})
    assert f"({fw.install_command(newest(fw))}{fw.with_libraries_note})" in libs.fix
    cudnn = diagnosis(
        fw, "cudnn-mismatch", is_cuda_build=True, build_cudnn="9.1", cuda_libs={"runtime_versions": {"cudnn": "7.0"}}
    )
    assert cudnn.evidence[0].endswith(f"({fw.cudnn_rule})")
    oom = [{"library": fw.name, "device": "gpu", "dtype": "float32", "n": 8192, "tflops": None, "oom": True}]
    assert diagnosis(fw, "gpu-oom", benchmark=oom).fix.endswith(fw.oom_advice)
    script = ({"file": "a.py", "line": 1, "text": "x", "framework": "any"},)
    assert diagnosis(fw, "placement-forced-cpu", script).fix.startswith(fw.forced_cpu_fix)


@pytest.mark.parametrize("fw", FRAMEWORKS, ids=IDS)
def test_lint_and_plan_know_every_framework(fw: Framework):
    stacks = variant_stacks(fw)
    verdicts = plan(stacks, PlannedHost(Version("580.65.06")), K)
    for stack, verdict in zip(stacks, verdicts, strict=True):
        if stack.variant in fw.cpu_variants or stack.index == "cpu":
            assert verdict.reasons == [f"{fw.cpu_package} is built without CUDA and never uses a GPU"]
        assert f"unknown-{fw.name}" not in verdict.codes  # its release is in the data: the lookup found it


@pytest.mark.parametrize("fw", FRAMEWORKS, ids=IDS)
def test_doctor_offers_every_framework(fw: Framework):
    assert build_parser().parse_args(["doctor", "--framework", fw.name]).framework == fw.name


def test_doctor_refuses_a_framework_outside_the_registry():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["doctor", "--framework", "paddle"])


@pytest.mark.parametrize("fw", FRAMEWORKS, ids=IDS)
def test_the_table_labels_every_framework_by_its_display_name(fw: Framework):
    stack = variant_stacks(fw)[0]
    host = PlannedHost(Version("580.65.06"))
    (result,) = predicted_results([stack], plan([stack], host, K), host, "h")
    assert result.framework == fw.name and result.framework_name == fw.display_name
    assert cell(result)["label"] == f"{fw.display_name} {stack.version}"
    result.probe = probe_of(fw)  # the text summary spells out what the probe found
    assert f"  {fw.display_name} {newest(fw)} on Python" in format_text(result)


def test_display_names_are_spelled_one_way():
    assert [fw.display_name for fw in FRAMEWORKS] == ["TensorFlow", "PyTorch", "JAX"]
    assert [fw.name for fw in FRAMEWORKS] == list(frameworks.NAMES) == ["tensorflow", "torch", "jax"]
    assert frameworks.DEFAULT.name == "tensorflow" and frameworks.find("paddle") is None


def test_the_probe_has_an_adapter_for_every_framework():
    """The probe keeps its own list (it runs alone in the container): it must be the registry's."""
    assert probe.FRAMEWORKS == frameworks.NAMES
    for fw in FRAMEWORKS:
        path = PACKAGE / "probe" / fw.adapter
        assert path.is_file() and PROBE_FILES[fw.adapter] == path
        spec = importlib.util.spec_from_file_location(f"adapter_{fw.name}", path)
        assert spec and spec.loader
        adapter = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(adapter)
        assert fw.name == adapter.NAME
    stack = variant_stacks(FRAMEWORKS[0])[0]
    copy_line = next(line for line in context_files(stack, False)["Dockerfile"].splitlines() if "fw_" in line)
    readers = " ".join(name for name in PROBE_FILES if name.startswith("reader_"))
    assert copy_line == f"COPY boot.py {' '.join(fw.adapter for fw in FRAMEWORKS)} {readers} /opt/envcheck/"


def test_script_findings_name_the_registrys_frameworks():
    """doctor --script hands each framework the findings labelled with its name (or "any")."""
    code = (
        "import os, tensorflow as tf, torch, jax\n"
        "os.environ['CUDA_VISIBLE_DEVICES'] = ''\n"
        "tf.config.set_visible_devices([], 'GPU')\n"
        "DEVICE = torch.device('cpu')\n"
        "jax.config.update('jax_platforms', 'cpu')\n"
    )
    assert [f["framework"] for f in scan_source(code, "a.py")] == ["any", *frameworks.NAMES]


def test_the_probe_does_not_import_envcheck():
    """In an image the probe, its adapters and its readers run alone, with the standard library and the framework."""
    for path in PROBE_FILES.values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in imported if m.split(".")[0] == "envcheck"], path.name


def keyed_by_frameworks(tree: ast.AST) -> list[int]:
    """Lines of dict literals (and dict(...) calls) with two or more framework names as keys."""
    names = set(frameworks.NAMES)
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            keys = {k.arg for k in node.keywords if k.arg}
        else:
            continue
        if len(keys & names) >= 2:
            lines.append(node.lineno)
    return lines


def test_no_table_keyed_by_framework_outside_the_registry():
    """What differs between frameworks lives in envcheck/frameworks/ (the probe, which runs alone in images, and
    knowledge.yaml's data aside): a dict keyed by framework names elsewhere is a table a new framework would miss."""
    assert keyed_by_frameworks(ast.parse('{"tensorflow": 1, "jax": 2}')) == [1]  # the check finds one
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ("frameworks", "probe"):
            continue
        found += [f"{relative}:{line}" for line in keyed_by_frameworks(ast.parse(path.read_text(encoding="utf-8")))]
    assert found == []
