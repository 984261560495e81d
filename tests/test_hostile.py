"""Hostile and careless input never crashes envcheck, never loses a record, never blanks the published table.

Each case here is one an audit of envcheck 0.1.0 made crash or misbehave (issue 10); the property-based tests
at the end throw random values into every record field and random structures into matrix files.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import subprocess
import sys
import threading
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, gpu_record, load_json, record, record_dict, run_cli
from envcheck.diagnosis.diagnose import diagnose
from envcheck.diagnosis.probe_facts import Facts
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import MAX_DEPTH, MAX_STACKS, parse_matrix
from envcheck.results import store
from envcheck.results.junit import render_junit
from envcheck.results.model import RecordError, Result
from envcheck.results.publish import cell, write_outputs

MATRIX = "stacks: [{name: a, tensorflow: '2.15.1', variant: cpu}]\n"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A matrix directory whose published table exists, as a user's checkout has it."""
    (tmp_path / "matrix.yaml").write_text(MATRIX)
    store.append(store.records_file(tmp_path / "results"), [record("a", "h1", "2026-11-26T10:00:00+00:00")])
    done = run_cli("table", "-m", str(tmp_path / "matrix.yaml"))
    assert done.returncode == 0, done.stderr
    return tmp_path


# -- records ------------------------------------------------------------------------------------------------------


def test_one_bad_record_costs_only_itself(checkout: Path, tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    good = record_dict("b", "h2", "2026-11-26T11:00:00+00:00")
    broken = {**record_dict("c", "h2", "t"), "diagnoses": [{"severity": "error"}]}
    bad.write_text(json.dumps(good) + "\n" + json.dumps(broken) + "\n")
    done = run_cli("results", "import", str(bad), "-m", str(checkout / "matrix.yaml"))
    assert done.returncode == 0 and f"{bad}:2: skipped: diagnoses: a diagnosis has no code" in done.stderr
    assert "imported 1 new records" in done.stderr
    done = run_cli("table", "-m", str(checkout / "matrix.yaml"))
    assert done.returncode == 0, done.stderr
    assert {c["stack"] for c in json.loads((checkout / "docs" / "compatibility.json").read_text())["cells"]} == {
        "a",
        "b",
    }


def test_a_lone_surrogate_is_refused_by_name(tmp_path: Path):
    path = tmp_path / "r.jsonl"
    data = record_dict("a", "h", "t")
    data["host"]["label"] = "\ud800"
    path.write_text(json.dumps(data) + "\n")  # json escapes it as \\ud800: valid JSON, invalid Unicode
    results, problems = store.read([path])
    assert results == [] and problems == [f"{path}:1: skipped: a string in it is not valid Unicode (a lone surrogate)"]


def test_a_table_with_no_valid_input_is_refused_and_the_published_one_kept(checkout: Path, tmp_path: Path):
    published = (checkout / "docs" / "compatibility.md").read_text()
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    for source in (junk, empty):
        done = run_cli("table", "-m", str(checkout / "matrix.yaml"), "--results", str(source))
        assert done.returncode == 2 and "no valid result records" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert (checkout / "docs" / "compatibility.md").read_text() == published


def test_importing_a_missing_file_is_an_error(checkout: Path, tmp_path: Path):
    done = run_cli("results", "import", str(tmp_path / "none.jsonl"), "-m", str(checkout / "matrix.yaml"))
    assert done.returncode == 2 and "no such results file" in done.stderr


def test_export_into_a_new_folder(checkout: Path, tmp_path: Path):
    target = tmp_path / "new" / "folder" / "out.jsonl"
    done = run_cli("results", "export", "-o", str(target), "-m", str(checkout / "matrix.yaml"))
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["stack"] for line in target.read_text().splitlines()] == ["a"]


def test_concurrent_imports_of_one_file_add_each_record_once(checkout: Path, tmp_path: Path):
    source = tmp_path / "other.jsonl"
    store.append(source, [gpu_record(f"s{i}", "h9", "2026-11-26T12:00:00+00:00") for i in range(5)])
    command = [sys.executable, "-m", "envcheck", "results", "import", str(source), "-m", str(checkout / "matrix.yaml")]
    processes = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(12)]
    assert [p.wait(timeout=120) for p in processes] == [0] * 12
    for p in processes:
        p.stderr.close()
    results, problems = store.own_records(checkout / "results")
    assert problems == [] and sorted(r.stack for r in results) == ["a", "s0", "s1", "s2", "s3", "s4"]


# -- what records put into the outputs ------------------------------------------------------------------------


def test_markdown_shows_markup_from_records_as_text(tmp_path: Path):
    from markdown_it import MarkdownIt

    hostile = record("tf|x", "<img src=x onerror=alert(1)>", "2026-11-26T10:00:00+00:00")
    hostile.error = "line one\nline | two <script>alert(1)</script>"
    hostile.diagnoses[0].code = "<script>alert(2)</script>"
    md = write_outputs(tmp_path, [hostile, record("ok", "h", "2026-11-26T10:00:00+00:00")])[0].read_text()
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # shown as text
    grid = html.split("<table>")[2]
    header = grid.split("</thead>")[0]
    assert header.count("<th>") == 3  # Stack + the two hosts: no column broken out of a value
    assert all(row.count("<td>") == 3 for row in grid.split("<tr>")[2:])


def test_junit_stays_well_formed_whatever_the_logs_contain():
    failed = record("a", "h\x07", "t", status="build-failed")
    failed.error = "\x1b[31mERROR\x1b[0m: pip failed \x00 with \x1b[1mcolour\x1b[0m & <tags>"
    suite = ET.fromstring(render_junit([failed, record("b", "h", "t")]))
    message = suite.find("testcase").find("failure").get("message")
    assert message == "build-failed: ERROR: pip failed \ufffd with colour & <tags>"


# -- matrix files -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "axes:\n  - name: 'tf-{'\n    tensorflow: ['2.15.1']\n    variant: [cpu]\n",
            "m.yaml:2:11: error: bad name template 'tf-{': Single '{' encountered in format string",
        ),
        (
            "axes:\n  - name: '{tensorflow!z}'\n    tensorflow: ['2.15.1']\n    variant: [cpu]\n",
            "m.yaml:2:11: error: bad name template '{tensorflow!z}': {tensorflow!z} is not a plain {key} placeholder",
        ),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "m.yaml: error: YAML nested too deeply"),
        ("stacks: [{name: " + "a" * 101 + ", tensorflow: '2.15.1', variant: cpu}]\n", "m.yaml:1:17: error: bad name"),
        ("stacks: [{name: tf-, tensorflow: '2.15.1', variant: cpu}]\n", "m.yaml:1:17: error: bad name 'tf-'"),
        ("stacks: [{name: a..b, tensorflow: '2.15.1', variant: cpu}]\n", "m.yaml:1:17: error: bad name 'a..b'"),
        (
            "stacks: [{name: a, tensorflow: '2.15.1', variant: cpu, python: '3.١١'}]\n",
            "m.yaml:1:64: error: bad python '3.١١'",
        ),
        (
            "axes:\n  - name: 'tf-{tensorflow}'\n    tensorflow: ['2.15.1']\n    variant: [cpu]\n    exclude: [{}]\n",
            "m.yaml:5:15: error: an exclude rule with no keys would remove every stack",
        ),
        (
            "axes:\n  - name: 'tf-{tensorflow}'\n    tensorflow: ['2.15.1']\n    variant: [cpu]\n"
            "    exclude: [{variant: cpu}]\n",
            "m.yaml:2:5: error: exclude removes every stack of this axes group",
        ),
        (
            "axes:\n  - name: 'tf-{tensorflow}'\n    tensorflow: ['2.15.1']\n    variant: [cpu]\n"
            "    exclude: [{python: '3.11'}]\n",
            "m.yaml:5:15: error: exclude rule names python, which the group does not set",
        ),
        ("stacks: [{name: a, tensorflow: '2.15.1', variant: cpu, sandbox: maybe}]\n", "bad sandbox 'maybe'"),
    ],
)
def test_bad_matrix_files_get_located_errors(text: str, message: str):
    with pytest.raises(ConfigError) as info:
        parse_matrix(text, Path("m.yaml"))
    assert message in str(info.value)


def test_a_matrix_file_nested_deeper_than_max_depth_is_refused_where_it_goes_too_deep():
    """The first collection past MAX_DEPTH (the root is level 1) is named by line and column; a file as deep as
    MAX_DEPTH goes on to the schema's errors; an alias that nests a node into itself is no deeper than written."""

    def nested(n: int) -> str:
        """n collections inside the root mapping."""
        return "a: " + "[" * n + "]" * n + "\n"

    with pytest.raises(ConfigError) as info:
        parse_matrix(nested(MAX_DEPTH), Path("m.yaml"))
    column = len("a: ") + MAX_DEPTH  # the bracket that opens level MAX_DEPTH + 1
    assert str(info.value) == (
        f"m.yaml:1:{column}: error: YAML nested more than {MAX_DEPTH} levels deep "
        "(expected a matrix file, a few levels deep)"
    )
    for text in (nested(MAX_DEPTH - 1), "a: &x [*x]\n"):
        with pytest.raises(ConfigError, match="unknown top-level key 'a'"):
            parse_matrix(text, Path("m.yaml"))


def test_an_axes_product_is_capped_before_it_is_expanded():
    # 1.2 KB of YAML that would expand to 29 million stacks (the audit's example, in shape).
    values = ", ".join(f"'2.15.{i}'" for i in range(40))
    axes = "".join(f"    {k}: [{values}]\n" for k in ("tensorflow", "cuda", "cudnn"))
    pythons = ", ".join(f"'3.{i}'" for i in range(30))
    text = f"axes:\n  - name: 'tf-{{tensorflow}}-{{cuda}}-{{cudnn}}-{{python}}'\n{axes}    python: [{pythons}]\n"
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as info:
            parse_matrix(text + "    variant: [cpu, plain, and-cuda]\n", Path("m.yaml"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6  # refused before one stack was made: 5.76 million would take gigabytes
    assert f"axes would make 5,760,000 stacks (this group alone 5,760,000) (expected at most {MAX_STACKS:,}" in str(
        info.value
    )


def test_sandbox_opt_out_is_a_stack_key():
    matrix = parse_matrix(
        "defaults: {sandbox: false}\nstacks:\n  - {name: a, tensorflow: '2.15.1', variant: cpu}\n"
        "  - {name: b, tensorflow: '2.15.1', variant: cpu, sandbox: true}\n",
        Path("m.yaml"),
    )
    assert [s.sandbox for s in matrix.stacks] == [False, True]
    assert matrix.stacks[0].as_dict()["sandbox"] is False


# -- the command line ---------------------------------------------------------------------------------------------


def test_plan_refuses_versions_with_junk():
    for flags in (["--driver", "535junk"], ["--driver", "535.54.03", "--compute-capability", "8.x"]):
        done = run_cli("plan", "-m", str(REPO / "matrix.yaml"), *flags)
        assert done.returncode == 2 and "not a version" in done.stderr, flags


def test_a_daemon_that_never_answers_is_exit_3(tmp_path: Path):
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # the server closes under it when the test ends
            for _ in range(8):
                accepted.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    # the timeout only keeps a hang from stalling the suite: a daemon that never answers must not hang envcheck
    env = {"DOCKER_HOST": f"unix://{path}"}
    done = run_cli("run", "tf-2.15-cpu", "-m", str(REPO / "matrix.yaml"), env=env, timeout=300)
    server.close()
    for connection in accepted:
        connection.close()
    assert done.returncode == 3 and "Cannot reach the Docker daemon" in done.stderr


# -- property-based: random values in every record field, random matrix structures --------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = [*record_dict("a", "h", "t"), "record_schema", "build", "run", "reused", "predicted_only", "reason"]
NESTED = ["host", "probe", "benchmark", "diagnoses", None]


BASE = record_dict("a", "h", "2026-11-26T10:00:00+00:00")
mutations = st.tuples(st.sampled_from(FIELDS), json_values, st.sampled_from(NESTED))


def mutated(key: str, value: object, nested: str | None) -> dict:
    data = json.loads(json.dumps(BASE))
    target = {
        "host": data["host"],
        "probe": data["probe"],
        "benchmark": data["benchmark"][0],
        "diagnoses": data["diagnoses"][0],
        None: data,
    }[nested]
    target[key] = value
    return data


@pytest.mark.slow  # 10,000 generated records, ~20 s with the next test: in `make test` (CI), not test-fast
@settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutations, min_size=10, max_size=10))
def test_random_values_in_any_record_field_are_read_or_refused(batch: list):
    # 1,000 examples of 10 record lines each: 10,000 lines with a random value in a random field.
    for key, value, nested in batch:
        try:
            result = store.parse_line(json.dumps(mutated(key, value, nested)).encode())
        except RecordError:
            continue
        # Accepted means it travels and publishes: a record line that reads back the same, a table cell; the
        # whole outputs are rendered from every accepted result at once, below.
        line = store.record_line(result)
        assert Result.from_dict(json.loads(line)).to_dict() == result.to_dict()
        cell(result)


# What a random JSON value can be, as json_values draws them: odd numbers, text from every corner of Unicode
# (controls, combining marks, right-to-left, astral), nested lists and objects.
ODD_NUMBERS = [0, -1, 2**63, -(2**64), 10**30, 0.0, -0.0, 1e-300, 1e300, float("inf"), float("-inf"), float("nan")]
ODD_TEXT = ["", " ", "\x00", "\n", "\u0301", "\u202e", "|", "<b>", "&amp;", "\U0001f600", "a" * 20, "None", "[]"]


def random_json(rng: random.Random, depth: int = 0) -> object:
    pick = rng.randrange(9 if depth < 2 else 7)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick in (2, 3):
        return rng.choice([*ODD_NUMBERS, rng.randint(-(2**70), 2**70), rng.uniform(-1e6, 1e6)])
    if pick in (4, 5, 6):
        if rng.random() < 0.5:
            return rng.choice(ODD_TEXT)
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xA0, 0xD800)])) for _ in range(20))
    if pick == 7:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(random_json(rng, 2))[:8]: random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


@pytest.mark.slow
def test_every_accepted_random_record_publishes(tmp_path: Path):
    """10,000 record lines with a random value in a random field (seeded: the same lines every run), and the whole
    outputs rendered from every one of them that is accepted, 500 at a time."""
    rng = random.Random(20261126)
    accepted: list[Result] = []
    for _ in range(10_000):
        line = json.dumps(mutated(rng.choice(FIELDS), random_json(rng), rng.choice(NESTED)))
        try:
            accepted.append(store.parse_line(line.encode()))
        except RecordError:
            continue
    assert len(accepted) > 1_000, f"only {len(accepted)} of 10,000 random records accepted"
    for start in range(0, len(accepted), 500):
        batch = accepted[start : start + 500]
        for number, result in enumerate(batch, start):
            result.stack = f"{result.stack}-{number}"  # keep each apart, or the merge folds them into one
        write_outputs(tmp_path, batch)
        ET.fromstring(render_junit(batch))


# Probe documents from other envcheck versions or odd images: every rule reads them and never crashes.
PROBES = [
    load_json(name)["probe"]
    for name in (
        "probe-tf2.15.1-and-cuda-no-gpu-runtime.json",
        "probe-torch2.9.1-pypi-no-gpu-runtime.json",
        "probe-jax0.10.2-cuda12-no-gpu-runtime.json",
    )
]
probe_mutations = st.tuples(
    st.sampled_from(range(len(PROBES))),
    st.lists(st.tuples(st.sampled_from(sorted({k for p in PROBES for k in p})), json_values), min_size=1, max_size=4),
    st.sampled_from(["nvml", "cuda_libs", "gpu_code", "placement", None]),
    json_values,
)


@settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(probe_mutations)
def test_random_probe_documents_are_diagnosed_without_a_crash(mutation):
    which, changes, nested, nested_value = mutation
    probe = json.loads(json.dumps(PROBES[which]))
    probe.update(changes)
    if nested and isinstance(probe.get(nested), dict):
        probe[nested][next(iter(probe[nested]), "x")] = nested_value
    found = diagnose(Facts(probe=probe))
    assert all(d.code and d.summary and d.fix for d in found)
    if Facts(probe=probe).cuda_build and not Facts(probe=probe).probe["gpus"]:
        assert any(d.severity == "error" for d in found)  # never a silent "ok"


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=10), st.sampled_from(["2.15.1", "cpu", "3.11", "{x}"])
)
keys = st.sampled_from(
    ["name", "tensorflow", "variant", "python", "pip", "env", "axes", "stacks", "exclude", "sandbox"]
)
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=20
)


@settings(max_examples=2_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_matrix_structures_are_parsed_or_located(document):
    text = yaml.safe_dump({"axes": [document]} if isinstance(document, dict) else document)
    try:
        parse_matrix(text, Path("fuzz.yaml"))
    except ConfigError as exc:
        assert all(line.startswith("fuzz.yaml") for line in str(exc).splitlines()), str(exc)
