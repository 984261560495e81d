"""matrix.yaml parsing: the public keys, defaults, and errors that point at file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from envcheck.errors import ConfigError
from envcheck.inputs.matrix import load_matrix, parse_matrix

REPO = Path(__file__).resolve().parent.parent


def parse(text: str):
    return parse_matrix(text, Path("m.yaml"))


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value).splitlines()


def test_default_matrix_has_the_required_stacks():
    matrix = load_matrix(REPO / "matrix.yaml")
    stacks = {s.name: s for s in matrix.stacks}
    assert {"tf-2.15-cuda12", "tf-2.17-cuda12", "tf-2.19-cuda12", "tf-2.15-cpu"} <= set(stacks)
    assert stacks["tf-2.15-cuda12"].requirement == "tensorflow[and-cuda]==2.15.1"
    assert stacks["tf-2.15-cpu"].requirement == "tensorflow-cpu==2.15.1"
    assert stacks["tf-2.17-cuda12"].version.startswith("2.17.")
    assert stacks["tf-2.19-cuda12"].version.startswith("2.19.")
    assert all(s.base == "debian:bookworm-slim" and s.python == "3.11" for s in matrix.stacks)


def test_defaults_merge_and_stack_values_win():
    matrix = parse(
        "defaults:\n  python: '3.10'\n  env: {A: '1'}\n"
        "stacks:\n"
        "  - {name: a, tensorflow: '2.15.1', variant: cpu}\n"
        "  - {name: b, tensorflow: '2.15.1', variant: plain, python: '3.11', env: {B: x}, pip: ['numpy<2']}\n"
    )
    a, b = matrix.stacks
    assert (a.python, a.base, a.env) == ("3.10", "debian:bookworm-slim", (("A", "1"),))
    assert (b.python, b.env, b.pip) == ("3.11", (("B", "x"),), ("numpy<2",))
    assert a.position is not None and (a.position.line, a.position.column) == (5, 5)


def test_every_error_is_reported_with_line_and_column():
    errors = errors_of(
        "stacks:\n"
        "  - name: Bad_Name\n"  # line 2
        "    tensorflow: 2.15\n"  # line 3: unquoted and not exact
        "    variant: gpu\n"  # line 4
        "    colour: blue\n"  # line 5
        "  - name: ok\n"
        "    tensorflow: '2.15.1'\n"
        "    variant: cpu\n"
        "    pip: ['numpy; rm -rf /']\n"  # line 9
        "    env: {X: '$(reboot)'}\n"  # line 10
    )
    assert errors[0].startswith("m.yaml:2:11: error: bad name 'Bad_Name' (expected a name of lowercase")
    assert errors[1].startswith("m.yaml:3:17: error: bad tensorflow '2.15' (expected an exact TensorFlow version")
    assert "written in quotes" in errors[1]
    assert errors[2].startswith("m.yaml:4:14: error: bad variant 'gpu' (expected one of and-cuda, plain, cpu)")
    assert errors[3].startswith("m.yaml:5:5: error: unknown key 'colour' in a stack")
    assert errors[4].startswith("m.yaml:9:11: error: bad pip requirement 'numpy; rm -rf /'")
    assert errors[5].startswith("m.yaml:10:14: error: bad value for X '$(reboot)'")
    assert len(errors) == 6


def test_duplicate_names_and_missing_keys():
    errors = errors_of(
        "stacks:\n"
        "  - {name: a, tensorflow: '2.15.1', variant: cpu}\n"
        "  - {name: a, tensorflow: '2.15.1', variant: cpu}\n"
        "  - {name: c}\n"
    )
    assert errors[0] == (
        "m.yaml:3:5: error: duplicate stack name 'a' (first at m.yaml:2:5) (expected unique stack names)"
    )
    assert errors[1].startswith("m.yaml:4:5: error: stack is missing tensorflow, variant")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stacks: [\n", "m.yaml:2:1: error: YAML syntax"),
        ("", "m.yaml:1:1: error: the matrix file is empty"),
        ("- a\n", "m.yaml:1:1: error: the matrix file is not a mapping"),
        ("stack: []\n", "m.yaml:1:1: error: unknown top-level key 'stack'"),
        ("stacks: []\n", "m.yaml:1:9: error: 'stacks' is not a non-empty list"),
    ],
)
def test_structural_errors(text: str, expected: str):
    assert errors_of(text)[0].startswith(expected)


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="matrix file not found"):
        load_matrix(tmp_path / "nope.yaml")


def test_select_by_name_and_glob():
    matrix = load_matrix(REPO / "matrix.yaml")
    assert [s.name for s in matrix.select(["tf-2.1[57]-cuda12"])] == ["tf-2.15-cuda12", "tf-2.17-cuda12"]
    assert [s.name for s in matrix.select(["tf-2.15-cpu"])] == ["tf-2.15-cpu"]
    with pytest.raises(ConfigError, match="no stack matches 'tf-9'"):
        matrix.select(["tf-9"])


def test_installer_is_uv_unless_a_stack_or_the_defaults_say_pip():
    matrix = parse(
        "defaults: {installer: pip}\n"
        "stacks:\n"
        "  - {name: a, tensorflow: '2.15.1', variant: cpu}\n"
        "  - {name: b, tensorflow: '2.15.1', variant: cpu, installer: uv}\n"
    )
    assert [s.installer for s in matrix.stacks] == ["pip", "uv"]
    assert parse("stacks:\n  - {name: a, tensorflow: '2.15.1', variant: cpu}\n").stacks[0].installer == "uv"
    assert matrix.stacks[0].as_dict()["installer"] == "pip"  # records say how the image was installed
    (error,) = errors_of("stacks:\n  - {name: a, tensorflow: '2.15.1', variant: cpu, installer: conda}\n")
    assert error.startswith("m.yaml:2:62: error:") and "expected uv or pip" in error
