"""Hostile and careless input to the files and flags envcheck reads (issue 24): nothing read without a cap, nothing
that hangs, no traceback, no `None` in advice, and every user value checked whole.

Endless input (/dev/zero, a pipe that never closes, a FIFO with no writer) runs in a subprocess whose `timeout` is
only a hang guard; the rest is called in-process, where the command line is not the point.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import envcheck.diagnosis.explain as explain_module
import envcheck.inputs.matrix as matrix_module
from conftest import DATA, REPO
from envcheck import commands
from envcheck.cli import build_parser, explain_options, positive_seconds
from envcheck.diagnosis.explain import ExplainOptions, explain, format_text, lines_of
from envcheck.diagnosis.plan import host_from_args
from envcheck.errors import EXIT_CONFIG, ConfigError
from envcheck.inputs.matrix import load_matrix, parse_matrix
from envcheck.inputs.options import (
    BuildOptions,
    CleanOptions,
    RenderOptions,
    ResultsExportOptions,
    RunOptions,
)
from envcheck.knowledge import Knowledge

CORPUS = yaml.safe_load((DATA / "explain_corpus.yaml").read_text())
MATRIX = "stacks: [{name: a, tensorflow: '2.15.1', variant: cpu}]\n"
MEMORY = 512 * 2**20  # address space for a subprocess: envcheck needs < 100 MiB; buffering a cut log needs more
HANG_GUARD = 120  # seconds; a hang fails the test through TimeoutExpired


def limited_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def envcheck(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
    """The real command, with its memory capped so that reading something whole fails instead of swapping."""
    return subprocess.run(
        [sys.executable, "-m", "envcheck", *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        preexec_fn=limited_memory,
        check=False,
        **kwargs,
    )


# -- 1. the matrix file is read with a cap, and only when it is a regular file -------------------------------------


def test_lint_refuses_dev_zero_and_a_fifo_by_name(tmp_path: Path):
    """`envcheck lint -m PATH` for each, in one process (envcheck.cli.main, as `python -m envcheck` calls it)."""
    fifo = tmp_path / "matrix.fifo"
    os.mkfifo(fifo)  # no writer ever opens it: opening it to read would wait forever
    lint_each = (
        "import sys\n"
        "from envcheck.cli import main\n"
        "for path in sys.argv[1:]:\n"
        "    print('exit', main(['lint', '-m', path]), flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", lint_each, "/dev/zero", str(fifo)],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        preexec_fn=limited_memory,
        check=False,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors, exits = done.stdout.splitlines()[0::2], done.stdout.splitlines()[1::2]
    assert exits == [f"exit {EXIT_CONFIG}"] * 2, done.stdout
    for path, error in zip(("/dev/zero", str(fifo)), errors, strict=True):
        assert error.startswith(f"{path}: error: ") and "not a regular file" in error


def test_an_oversized_matrix_file_is_refused_before_it_is_parsed(tmp_path: Path):
    cap = matrix_module.MAX_MATRIX_BYTES
    assert 1_000_000 <= cap <= 16_000_000  # "a few MB": a matrix of 10,000 stacks written out fits
    path = tmp_path / "big.yaml"
    path.write_text(MATRIX + "#" * (cap - len(MATRIX)) + "\n")  # one byte over
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: error: .*larger than the {cap:,} bytes"):
        load_matrix(path)


def test_a_directory_as_matrix_file_is_named(tmp_path: Path):
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path))}: error: .*not a regular file"):
        load_matrix(tmp_path)


# -- 2. explain reads UTF-16 (PowerShell's `>`), UTF-8 with a BOM and UTF-16 without one ---------------------------


ENCODINGS = {
    "utf-16-le with BOM, CRLF (PowerShell 5 `>`)": lambda text: (
        b"\xff\xfe" + text.replace("\n", "\r\n").encode("utf-16-le")
    ),
    "utf-16-be with BOM": lambda text: b"\xfe\xff" + text.encode("utf-16-be"),
    "utf-8 with BOM": lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"),
    "utf-16-le without BOM": lambda text: text.encode("utf-16-le"),
    "utf-16-be without BOM": lambda text: text.encode("utf-16-be"),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_log_in_any_unicode_encoding_gets_the_utf8_verdict(encoding: str):
    """Every corpus log, re-encoded: the whole explanation (verdict, causes, evidence, what was read) is the same."""
    for case in CORPUS:
        options = ExplainOptions(*case["args"][:3], tuple(case["args"][3])) if "args" in case else ExplainOptions()
        original = explain(lines_of(io.BytesIO(case["log"].encode("utf-8"))), options).to_dict()
        encoded = explain(lines_of(io.BytesIO(ENCODINGS[encoding](case["log"]))), options).to_dict()
        assert encoded == original, case["source"]


# -- 3. explain ends on endless input, says where it cut, and never holds a whole line ---------------------------


def test_explain_of_dev_zero_ends_and_says_where_it_cut():
    """One line of NUL bytes without end: read up to the cap, in memory far below it."""
    done = envcheck("explain", "/dev/zero", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    cap = explain_module.MAX_LOG_BYTES
    assert cap > 100e6  # the slow test's 100 MB log is read whole
    doc = json.loads(done.stdout)
    assert doc["cut_at_bytes"] == cap and any(f"the log was cut at {cap} bytes" in note for note in doc["notes"])


def test_endless_standard_input_ends_at_the_cap():
    """`yes | envcheck explain -`, with a cap of 200 kB so that it is quick: the pipe never closes, explain does."""
    reader = (
        "import sys\n"
        "from envcheck.diagnosis.explain import ExplainOptions, explain, format_text, lines_of\n"
        "print(format_text(explain(lines_of(sys.stdin.buffer, limit=200_000), ExplainOptions(), '-')))\n"
    )
    with subprocess.Popen(["yes"], stdout=subprocess.PIPE) as endless:
        try:
            done = subprocess.run(
                [sys.executable, "-c", reader],
                stdin=endless.stdout,
                capture_output=True,
                text=True,
                timeout=HANG_GUARD,
                preexec_fn=limited_memory,
                check=False,
            )
        finally:
            endless.kill()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "note: the log was cut at 200000 bytes" in done.stdout
    assert "100000 lines read" in done.stdout  # `yes` writes "y\n": 2 bytes a line


def test_the_cap_counts_bytes_and_a_log_of_exactly_the_cap_is_not_cut():
    whole = lines_of(io.BytesIO(b"y\n" * 1000), limit=2000)
    assert len(list(whole)) == 1000 and whole.cut_at is None
    cut = lines_of(io.BytesIO(b"y\n" * 1000), limit=1999)
    assert len(list(cut)) == 1000 and cut.cut_at == 1999  # the last line lost its newline only
    found = explain(lines_of(io.BytesIO(b"y\n" * 1000), limit=1000), ExplainOptions())
    assert found.to_dict()["cut_at_bytes"] == 1000 and "the log was cut at 1000 bytes" in format_text(found)


def test_a_line_without_end_is_kept_to_its_first_part():
    """A line longer than any log line is cut to its start; the next line is read as usual."""
    line = "Could not load dynamic library 'libcudnn.so.8'; dlerror: libcudnn.so.8: cannot open shared object file"
    data = ("x" * (10 * explain_module.READ_BYTES) + "\n" + line + "\n").encode("utf-16")
    read = list(lines_of(io.BytesIO(data)))
    assert [len(text) for text in read[:-1]] == [explain_module.READ_BYTES] and read[-1].strip() == line


# -- 4. no advice pins `None` -------------------------------------------------------------------------------------


def test_no_fix_names_none_when_the_log_gives_no_version():
    dlopen = ["W tensorflow/core/common_runtime/gpu/gpu_device.cc:2251] Cannot dlopen some GPU libraries."]
    logs = [dlopen] + [case["log"].splitlines() for case in CORPUS]
    for framework in (None, "tensorflow", "torch", "jax"):
        for log in logs:
            for d in explain(log, ExplainOptions(framework)).diagnoses:
                quoted = d.summary.replace("torch.version.cuda is None", "")  # PyTorch's words, as evidence
                assert not re.search(r"\bNone\b", d.fix + quoted), (framework, d.code, d.summary, d.fix)
    (unpinned,) = explain(dlopen, ExplainOptions()).diagnoses
    assert "`pip install 'tensorflow[and-cuda]'`" in unpinned.fix
    (pinned,) = explain(dlopen, ExplainOptions("tensorflow", "2.15.1")).diagnoses
    assert "`pip install 'tensorflow[and-cuda]==2.15.1'`" in pinned.fix


# -- 5. and 9. explain's flags are checked whole, like plan's; GPU names hold no control characters -------------


def explain_flags(tmp_path: Path, **flags: object) -> int:
    """`envcheck explain LOG --json` with these flags (gpus: one --gpu each), through the command line's builder."""
    log = tmp_path / "empty.log"
    log.write_bytes(b"")
    argv = ["explain", str(log), "--json"]
    for name, value in flags.items():
        for one in value if isinstance(value, list) else [value]:
            argv += ["--gpu" if name == "gpus" else f"--{name}", str(one)]
    return commands.explain(explain_options(build_parser().parse_args(argv)))


@pytest.mark.parametrize(
    "flags",
    [
        {"driver": "535.54.03junk"},
        {"driver": "1e308"},
        {"driver": "535.54.03\n"},
        {"driver": "99999.1"},  # no NVIDIA driver has such a major
        {"driver": "12.2"},
        {"tensorflow": "2.15.1junk"},
        {"tensorflow": "1e308"},
        {"tensorflow": "2.15.1\n"},
        {"tensorflow": ""},
        {"torch": "2.5.1 "},
        {"jax": "0.4.35\n"},
        {"gpus": ["NVIDIA A100-SXM4-40GB\n"]},
    ],
)
def test_explain_refuses_flags_with_junk(tmp_path: Path, flags: dict):
    with pytest.raises(ConfigError) as refused:
        explain_flags(tmp_path, **flags)
    value = next(iter(flags.values()))
    shown = repr(value[0] if isinstance(value, list) else value)
    assert refused.value.exit_code == EXIT_CONFIG and shown in str(refused.value)


@pytest.mark.parametrize(
    "flags",
    [
        {"driver": "535.54.03"},
        {"driver": "384.111"},
        {"driver": "550"},
        {"tensorflow": "2.16.0rc0"},
        {"torch": "2.5.1+cu121"},  # what torch.__version__ prints
        {"jax": "0.4.35"},
        {"gpus": ["NVIDIA GeForce RTX 5090"]},
    ],
)
def test_explain_takes_real_versions(tmp_path: Path, flags: dict, capsys: pytest.CaptureFixture):
    assert explain_flags(tmp_path, **flags) == 0
    assert json.loads(capsys.readouterr().out)["diagnoses"] == []


def test_plan_refuses_a_gpu_name_with_a_newline():
    k = Knowledge.load()
    assert host_from_args("535.54.03", [], ["NVIDIA A100-SXM4-40GB"], k) is not None
    with pytest.raises(ConfigError, match=re.escape(repr("NVIDIA A100-SXM4-40GB\n"))):
        host_from_args("535.54.03", [], ["NVIDIA A100-SXM4-40GB\n"], k)


@pytest.mark.parametrize(
    "line",
    [
        "  - {name: \"a\\n\", tensorflow: '2.15.1', variant: cpu}",
        '  - {name: a, tensorflow: "2.15.1\\n", variant: cpu}',
        "  - {name: a, tensorflow: '2.15.1', variant: \"cpu\\n\"}",
        "  - {name: a, tensorflow: '2.15.1', variant: cpu, python: \"3.11\\n\"}",
        "  - {name: a, tensorflow: '2.15.1', variant: cpu, cuda: \"12.2\\n\"}",
        "  - {name: a, tensorflow: '2.15.1', variant: cpu, base: \"debian:bookworm-slim\\n\"}",
        "  - {name: a, torch: '2.5.1', index: \"cu121\\n\"}",
        "  - {name: a, tensorflow: '2.15.1', variant: cpu, installer: \"pip\\n\"}",
        "  - {name: a, tensorflow: '2.15.1', variant: cpu, pip: [\"numpy<2\\n\"]}",
        "  - {name: a, tensorflow: '2.15.1', variant: cpu, env: {\"A\\n\": x}}",
    ],
)
def test_matrix_values_with_a_trailing_newline_are_refused(line: str):
    with pytest.raises(ConfigError, match=r"m\.yaml:2:\d+: error: bad"):
        parse_matrix("stacks:\n" + line + "\n", Path("m.yaml"))


# -- 6. results export -o names the problem with its target -------------------------------------------------------


def test_results_export_to_a_directory_or_under_a_file_is_refused(tmp_path: Path):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(MATRIX)
    a_file = tmp_path / "file.txt"
    a_file.write_text("")
    for target, words in ((tmp_path, "is a directory"), (a_file / "out.jsonl", "cannot write")):
        with pytest.raises(ConfigError, match=words) as refused:
            commands.results_export(ResultsExportOptions(matrix=str(matrix), output=str(target)))
        assert str(target) in str(refused.value) and refused.value.exit_code == EXIT_CONFIG
    assert a_file.read_text() == ""


# -- 7. an unknown stack is a configuration error before Docker is asked -----------------------------------------


MATRIX_FILE = str(REPO / "matrix.yaml")
UNKNOWN_STACK = {
    "build": lambda: commands.build(BuildOptions(matrix=MATRIX_FILE, stacks=("no-such-stack",))),
    "build --push": lambda: commands.build(
        BuildOptions(matrix=MATRIX_FILE, stacks=("no-such-stack",), push=True, registry="localhost:5000/x")
    ),
    "run": lambda: commands.run_stacks(RunOptions(matrix=MATRIX_FILE, stacks=("no-such-stack",), single=True)),
    "matrix --only": lambda: commands.run_stacks(RunOptions(matrix=MATRIX_FILE, stacks=("no-such-stack",))),
    "render": lambda: commands.render(RenderOptions(matrix=MATRIX_FILE, stack="no-such-stack")),
}


@pytest.mark.parametrize("command", UNKNOWN_STACK)
def test_an_unknown_stack_is_exit_2_before_docker_is_tried(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(ConfigError, match="no stack matches 'no-such-stack'") as refused:
        UNKNOWN_STACK[command]()
    assert refused.value.exit_code == EXIT_CONFIG


def test_clean_reads_the_matrix_before_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    broken = tmp_path / "matrix.yaml"
    broken.write_text("stacks: []\n")
    with pytest.raises(ConfigError, match="'stacks' is not a non-empty list"):
        commands.clean(CleanOptions(matrix=str(broken), dry_run=True))


# -- 8. timeouts have an upper bound ------------------------------------------------------------------------------


WEEK = 7 * 24 * 3600  # the documented bound; the defaults are 3600 and 600


@pytest.mark.parametrize("text", ["1e308", "1e400", str(WEEK + 1), "10\n", " 10", "inf", "nan", "0", "-1", "", "ten"])
def test_timeouts_out_of_range_are_refused(text: str):
    with pytest.raises(argparse.ArgumentTypeError, match=r"is not a positive number of seconds"):
        positive_seconds(text)


def test_timeouts_up_to_a_week_are_taken():
    assert [positive_seconds(text) for text in (str(WEEK), "3600", "0.5", "1e3")] == [WEEK, 3600, 0.5, 1000]


def test_a_timeout_beyond_a_week_is_an_argument_error(capsys: pytest.CaptureFixture):
    for flag in ("--build-timeout", "--run-timeout"):
        with pytest.raises(SystemExit) as stopped:
            build_parser().parse_args(["run", "a", flag, "1e308"])
        assert stopped.value.code == EXIT_CONFIG
        assert f"argument {flag}: '1e308' is not a positive number of seconds" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0", "-1", "3\n", " 3", "1_0", "٣", "1e3", "99999999", "1025"])
def test_a_count_with_anything_but_digits_is_refused(text: str):
    from envcheck.cli import positive_int

    with pytest.raises(argparse.ArgumentTypeError, match="whole number from 1 to 1024"):
        positive_int(text)
    assert positive_int("2") == 2 and positive_int("1024") == 1024
