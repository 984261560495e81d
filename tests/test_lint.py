"""`envcheck lint`: golden outputs, --strict, axes expansion and selection, and no traceback for any input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, run_cli
from envcheck.diagnosis.lint import lint
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import parse_matrix

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.mark.parametrize(("name", "code"), [("schema-errors", 2), ("syntax-error", 2), ("predictions", 0)])
def test_golden_lint_output(name: str, code: int):
    done = run_cli("lint", "-m", f"{name}.yaml", cwd=GOLDEN)
    assert done.returncode == code
    assert done.stdout == (GOLDEN / f"{name}.txt").read_text()
    assert "Traceback" not in done.stderr


def test_default_matrix_lints_clean_even_strict():
    for extra in ([], ["--strict"]):
        done = run_cli("lint", "-m", str(REPO / "matrix.yaml"), *extra)
        assert done.returncode == 0 and done.stdout == "", done.stdout


def test_strict_turns_predictions_into_errors():
    done = run_cli("lint", "-m", "predictions.yaml", "--strict", cwd=GOLDEN)
    assert done.returncode == 2
    assert done.stdout == (GOLDEN / "predictions.txt").read_text().replace(": warning: ", ": error: ")


def test_axes_expand_as_a_product_with_excludes():
    matrix = parse_matrix(
        "defaults: {python: '3.11'}\n"
        "stacks:\n"
        "  - {name: single, tensorflow: '2.15.1', variant: cpu}\n"
        "axes:\n"
        "  - name: 'tf-{tensorflow}-{variant}'\n"
        "    tensorflow: ['2.15.1', '2.17.1', '2.19.1']\n"
        "    variant: [and-cuda, cpu]\n"
        "    env: {TF_CPP_MIN_LOG_LEVEL: '0'}\n"
        "    exclude:\n"
        "      - {tensorflow: '2.17.1', variant: cpu}\n"
        "      - {tensorflow: '2.19.1', variant: cpu}\n",
        Path("m.yaml"),
    )
    assert [s.name for s in matrix.stacks] == [
        "single",
        "tf-2.15.1-and-cuda",
        "tf-2.15.1-cpu",
        "tf-2.17.1-and-cuda",
        "tf-2.19.1-and-cuda",
    ]
    generated = matrix.stacks[1]
    assert generated.requirement == "tensorflow[and-cuda]==2.15.1" and generated.python == "3.11"
    assert generated.env == (("TF_CPP_MIN_LOG_LEVEL", "0"),)
    assert str(generated.where("tensorflow")) == "m.yaml:6:18"  # points at the axis value
    assert [s.name for s in matrix.select(["tf-2.1[57]*"])] == [
        "tf-2.15.1-and-cuda",
        "tf-2.15.1-cpu",
        "tf-2.17.1-and-cuda",
    ]


def test_axes_errors_point_at_the_group():
    with pytest.raises(ConfigError) as info:
        parse_matrix(
            "axes:\n  - name: 'TF-{tensorflow}'\n    tensorflow: ['2.15.1', bad]\n    variant: [cpu]\n", Path("m.yaml")
        )
    assert str(info.value).splitlines() == [
        "m.yaml:2:11: error: name template makes the bad name 'TF-2.15.1' (expected a name of lowercase letters, "
        "digits, '.', '_' or '-', starting with a letter or digit and ending with one, no '..', at most 100 "
        "characters)",
        "m.yaml:3:28: error: bad tensorflow 'bad' (expected an exact TensorFlow version such as \"2.15.1\")",
    ]


def test_only_selects_with_globs_on_the_cli():
    done = run_cli("list", "-m", str(REPO / "matrix.yaml"), "tf-2.1[59]*")
    assert done.stdout.split() == ["tf-2.15-cuda12", "tf-2.19-cuda12", "tf-2.15-cpu"]


# -- no traceback, whatever the input -------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["2.15.1", "and-cuda", "cpu", "3.11", "12.2", "x;rm -rf /", "$(id)", "{tensorflow}"]),
)
keys = st.sampled_from(
    [
        "name",
        "tensorflow",
        "variant",
        "cuda",
        "cudnn",
        "base",
        "python",
        "pip",
        "env",
        "axes",
        "stacks",
        "defaults",
        "exclude",
        "other",
    ]
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


def check_never_crashes(text: str) -> None:
    try:
        matrix = parse_matrix(text, Path("fuzz.yaml"))
    except ConfigError as exc:
        assert all(line.startswith("fuzz.yaml") for line in str(exc).splitlines()), str(exc)
        return
    for finding in lint(matrix, strict=True):
        assert str(finding).startswith("fuzz.yaml:")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_generated_structures_never_crash(document):
    check_never_crashes(yaml.safe_dump({"stacks": [document]} if isinstance(document, dict) else document))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("stacks:-name{}[]'\"\n #&*!|>2.15tfvariant")), max_size=80))
def test_generated_text_never_crashes(text: str):
    check_never_crashes(text)
