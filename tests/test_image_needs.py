"""What an image needs from a host, where users read it (issue 26): `plan` for image and dockerfile stacks from the
probe saved by an earlier run, and `run`'s text, `--json`, JUnit and the table from a result's stored probe.

The saved probe is a real one (tests/data/probe-torch2.9.1-pypi-no-gpu-runtime.json: PyTorch 2.9.1 from PyPI, its
libcudart 12.8, SASS sm_70…sm_120 and no PTX read from libtorch_cuda.so), filed under an image stack's definition as
`envcheck run` files it. Expected figures are NVIDIA's: CUDA 12.8 GA needs driver >= 570.26, CUDA 12.x minor-version
compatibility >= 525.60.13 (CUDA Toolkit release notes, Table 3; the CUDA compatibility guide); driver 515 supports
CUDA up to 11.7; a GeForce GTX 1080 has compute capability 6.1 (NVIDIA's CUDA GPUs list).
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from conftest import load_json, run_cli
from envcheck.inputs.matrix import load_matrix
from envcheck.results import store
from envcheck.results.junit import render_junit
from envcheck.results.model import Result
from envcheck.results.publish import format_text, result_json

DIGEST = "sha256:" + "ab" * 32
IMAGE = "registry.example/team/torch:2.9"
NEEDS = "driver >= 570.26 for CUDA 12.8"


def saved_probe(root: Path, image: str = IMAGE) -> Result:
    """A project whose matrix names IMAGE as stack `mine`, and results/ holding the recorded probe filed as a run of
    that stack (the image `image`) saves it."""
    (root / "matrix.yaml").write_text(f"stacks:\n  - {{name: mine, image: '{image}'}}\n")
    stack = load_matrix(root / "matrix.yaml").stacks[0]
    record = load_json("probe-torch2.9.1-pypi-no-gpu-runtime.json")["record"]
    record.update(definition=stack.as_dict(), stack="mine", image=image, digest=DIGEST)
    result = Result.from_dict(record)
    (root / "results").mkdir()
    store.append(store.records_file(root / "results"), [result])
    return result


def planned(root: Path, *flags: str) -> dict:
    done = run_cli("plan", "--json", *flags, cwd=root)
    assert done.returncode == 0, done.stderr
    (verdict,) = json.loads(done.stdout)
    return verdict


@pytest.mark.parametrize(
    ("flags", "verdict", "codes"),
    [
        (("--driver", "580.65.06", "--gpu", "NVIDIA H100 80GB HBM3"), "ok", []),
        (("--driver", "535.54.03"), "warn", ["minor-version-compat"]),  # >= 525.60.13, < 570.26
        (("--driver", "515.43.04"), "fails", ["driver-too-old"]),  # below both
        (("--driver", "580.65.06", "--gpu", "NVIDIA GeForce GTX 1080"), "fails", ["compute-capability-unsupported"]),
        (("--driver", "580.65.06", "--compute-capability", "11.0"), "fails", ["compute-capability-unsupported"]),
    ],
)
def test_plan_answers_an_image_stack_from_its_saved_probe(tmp_path: Path, flags: tuple, verdict: str, codes: list):
    saved_probe(tmp_path)
    found = planned(tmp_path, *flags)
    assert (found["verdict"], found["codes"]) == (verdict, codes)
    assert found["reason"].endswith(f"(read from its probe of {DIGEST} on vm, 2026-11-27)")
    assert found["probed"]["digest"] == DIGEST
    assert (found["needs"]["min_driver"], found["needs"]["min_driver_minor_compat"]) == ("570.26", "525.60.13")


def test_a_probe_of_another_image_does_not_answer(tmp_path: Path):
    saved_probe(tmp_path, image="registry.example/team/other:1")
    (tmp_path / "matrix.yaml").write_text(f"stacks:\n  - {{name: mine, image: '{IMAGE}'}}\n")
    found = planned(tmp_path, "--driver", "580.65.06")
    assert found["codes"] == ["probe-needed"] and "needs" not in found


def test_run_outputs_say_what_the_image_needs():
    result = Result.from_dict(load_json("probe-torch2.9.1-pypi-no-gpu-runtime.json")["record"])
    said = format_text(result)
    assert f"  needs: {NEEDS}" in said and "not at all on < 7.0, 11.x, >= 13.0" in said
    data = result_json(result)
    assert data["needs"]["min_driver"] == "570.26" and data["needs"]["gpus"]["ptx_jit"] == []
    assert {k: v for k, v in data.items() if k != "needs"} == result.to_dict()  # the record's keys as they were
    case = ElementTree.fromstring(render_junit([result])).find(".//testcase")
    assert case is not None
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["needs.min_driver"] == "570.26"
    assert properties["needs.min_driver_minor_compat"] == "525.60.13"
    assert properties["needs"].startswith(NEEDS)
    assert "needs.min_driver_for_ptx" not in properties  # no PTX in this wheel: nothing to state


def test_the_table_shows_what_each_image_needs(tmp_path: Path):
    saved_probe(tmp_path)
    done = run_cli("table", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "docs" / "compatibility.md").read_text()
    assert "Needs driver" in page and "&gt;= 570.26" in page  # Markdown-escaped ">"
