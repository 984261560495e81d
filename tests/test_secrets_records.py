"""Issue 24: what an audit found leaking or trusting too much. Credentials in a Docker endpoint never reach a
terminal, a log, a record or the table; a record from the future cannot win the table; Markdown and HTML in
record values stay text; the hosts file's values are matched whole; doctor asks Docker through the SDK; no
record or hosts file is read without a size cap. None of these tests needs a Docker daemon (the last one does,
and is marked so)."""

from __future__ import annotations

import datetime
import json
import os
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import record, record_dict, run_cli
from envcheck import cli, commands
from envcheck.diagnosis import doctor
from envcheck.errors import EXIT_DOCKER, ConfigError
from envcheck.inputs.hosts import HostSpec, fleet_of, load_hosts_file
from envcheck.inputs.matrix import load_matrix
from envcheck.inputs.options import Options, ResultsExportOptions, TableOptions
from envcheck.results import store
from envcheck.results.model import Result
from envcheck.results.publish import write_outputs
from envcheck.runs.fleet import FleetRun

SECRET = "s3cret-TOKEN"  # the password (or token) every test below looks for in everything envcheck wrote
MATRIX = 'stacks:\n  - name: a\n    jax: "0.4.35"\n    variant: cpu\n'
WITH_PASSWORDS = [
    f"tcp://alice:{SECRET}@127.0.0.1:1",
    f"ssh://alice:{SECRET}@127.0.0.1:1",
    f"tcp://{SECRET}@127.0.0.1:1",  # a token as the user
]


def no_secret_anywhere(root: Path, *outputs: str) -> None:
    """Neither what was printed nor any file under root holds the secret."""
    for output in outputs:
        assert SECRET not in output, output
    for path in root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Where envcheck writes (inputs holding the secret stay outside it): a matrix with one stack."""
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "matrix.yaml").write_text(MATRIX)
    return tmp_path / "work"


def hosts_file(tmp_path: Path, urls: list[str]) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump({"hosts": [{"name": f"h{i}", "docker": url} for i, url in enumerate(urls)]}))
    return path


# -- 1. credentials in endpoints ------------------------------------------------------------------------------


def test_hosts_never_prints_a_password(tmp_path: Path, work: Path, capsys: pytest.CaptureFixture):
    hosts = hosts_file(tmp_path, WITH_PASSWORDS)
    assert cli.main(["hosts", "--hosts", str(hosts), "-m", str(work / "matrix.yaml")]) == 1
    text = capsys.readouterr()
    assert text.out.count("UNREACHABLE") == 3 and "127.0.0.1:1" in text.out
    assert cli.main(["hosts", "--hosts", str(hosts), "--json"]) == 1
    data = capsys.readouterr()
    report = json.loads(data.out)
    assert [h["endpoint"] for h in report["hosts"]] == ["tcp://127.0.0.1:1", "ssh://127.0.0.1:1", "tcp://127.0.0.1:1"]
    assert all("Cannot reach host" in h["error"] for h in report["hosts"])
    no_secret_anywhere(work, text.out, text.err, data.out, data.err)


@pytest.mark.parametrize(
    "docker_host",
    [*WITH_PASSWORDS, f"https://alice:{SECRET}@127.0.0.1:1", f"tcp://127.0.0.1:1/?token={SECRET}"],
)
def test_a_password_in_docker_host_is_not_printed(work: Path, docker_host: str, monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    for command in (["run", "a"], ["matrix"]):
        code = cli.main([*command, "-m", str(work / "matrix.yaml"), "--ca-bundle", "none"])
        printed = capsys.readouterr()
        assert code == EXIT_DOCKER and "Cannot reach the Docker daemon at" in printed.err, printed.err
        assert "127.0.0.1:1" in printed.err  # where it is stays said
        no_secret_anywhere(work, printed.out, printed.err)


def test_records_table_and_export_hold_the_endpoint_without_its_password(
    tmp_path: Path, work: Path, monkeypatch, capsys
):
    """A run --on a host whose URL has a password: its cell is recorded, saved for the host, published and
    exported with the host's address only. The build host's daemon is not asked (nothing is built when the only
    host is down), so it stands in here."""
    monkeypatch.setattr("envcheck.runs.pipeline.connect", lambda **_: object())
    matrix = load_matrix(work / "matrix.yaml")
    spec = HostSpec("vault", f"tcp://alice:{SECRET}@127.0.0.1:1")
    (cell,) = FleetRun(matrix, Options(), [spec], "127.0.0.1:5000/x").run(matrix.stacks)
    assert cell.status == "host-unreachable" and "tcp://127.0.0.1:1" in (cell.error or "")
    assert (work / "results" / "hosts" / "vault" / "a.json").is_file()
    assert commands.table(TableOptions(matrix=str(work / "matrix.yaml"))) == 0
    assert commands.results_export(ResultsExportOptions(matrix=str(work / "matrix.yaml"))) == 0
    printed = capsys.readouterr()
    assert "tcp://127.0.0.1:1" in printed.out
    no_secret_anywhere(work, printed.out, printed.err, cell.error or "")


def test_a_password_in_a_record_from_elsewhere_is_not_kept_or_published(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture
):
    """Records of older envcheck versions (or other tools) may carry a URL with its password or token."""
    old = record_dict("a", "vault", "2026-11-26T10:00:00+00:00", status="host-unreachable")
    old["error"] = f"Cannot reach host vault's Docker daemon at tcp://alice:{SECRET}@10.0.0.2:2376: refused"
    old["run"] = {"stderr_tail": f"pip: GET https://ci:{SECRET}@pypi.internal/simple/x/?token={SECRET} failed"}
    source = tmp_path / "old.jsonl"
    source.write_text(json.dumps(old) + "\n")
    matrix = str(work / "matrix.yaml")
    assert cli.main(["results", "import", str(source), "-m", matrix]) == 0
    assert cli.main(["table", "-m", matrix]) == 0
    assert cli.main(["results", "export", "-m", matrix]) == 0
    printed = capsys.readouterr()
    published = json.loads((work / "docs" / "compatibility.json").read_text())
    assert published["cells"][0]["error"] == "Cannot reach host vault's Docker daemon at tcp://10.0.0.2:2376: refused"
    assert "https://pypi.internal/simple/x/ failed" in printed.out
    no_secret_anywhere(work, printed.out, printed.err)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"tcp://alice:{SECRET}@10.0.0.2:2376", "tcp://10.0.0.2:2376"),
        (f"tcp://alice:p@ss/{SECRET}?x@10.0.0.2:2376/", "tcp://10.0.0.2:2376/"),  # unencoded '@', '/', '?'
        (f"https://10.0.0.2:2376/v1?token={SECRET}#top", "https://10.0.0.2:2376/v1#top"),
        (f"https://10.0.0.2/x#access_token={SECRET}", "https://10.0.0.2/x"),
        (f"unix:///run/docker.sock?token={SECRET}", "unix:///run/docker.sock"),
        ("https://docs.jax.dev/en/latest/installation.html#nvidia-gpu", None),  # a page anchor is no secret
    ],
)
def test_a_url_is_shown_without_what_opens_it(url: str, shown: str | None):
    from envcheck.inputs.hosts import redact, scrub

    assert redact(url) == (shown or url)
    assert scrub(f"see ({url}), or {url}.") == f"see ({shown or url}), or {shown or url}."


def test_a_bad_endpoint_is_named_without_its_password(tmp_path: Path):
    with pytest.raises(ConfigError) as error:
        load_hosts_file(hosts_file(tmp_path, [f"tcp://alice:{SECRET}@10.0.0.2:99999"]))
    assert "docker endpoint 'tcp://10.0.0.2:99999'" in str(error.value) and SECRET not in str(error.value)


# -- 2. timestamps ---------------------------------------------------------------------------------------------


def moment(**delta: float) -> str:
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(**delta)
    return when.isoformat(timespec="seconds")


def lines(path: Path, *records: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_record_from_the_future_is_skipped_and_an_honest_one_wins(tmp_path: Path, work: Path, capsys):
    forged = record_dict("a", "h", "9999-12-31T23:59:59+00:00", status="gpu")
    soon = record_dict("b", "h", moment(days=2), status="gpu")
    skewed = record_dict("c", "h", moment(hours=1))  # a clock an hour ahead is only skew
    honest = record_dict("a", "h", moment(minutes=-1))
    path = lines(tmp_path / "r.jsonl", forged, soon, skewed, honest)
    results, problems = store.read([path])
    assert [(r.stack, str(r.status)) for r in results] == [("c", "cpu-only"), ("a", "cpu-only")]
    assert [p.split(" skipped: ")[0] for p in problems] == [f"{path}:1:", f"{path}:2:"]
    assert all("future" in p for p in problems)
    # one that an older envcheck let in is no longer published over the honest one
    lines(work / "results" / "records.jsonl", forged, honest)
    assert cli.main(["table", "-m", str(work / "matrix.yaml")]) == 0
    assert f"{work / 'results' / 'records.jsonl'}:1: skipped: " in capsys.readouterr().err
    published = json.loads((work / "docs" / "compatibility.json").read_text())
    assert [(c["stack"], c["status"]) for c in published["cells"]] == [("a", "cpu-only")]


def test_a_record_from_the_future_is_not_imported(tmp_path: Path, work: Path, capsys):
    source = lines(tmp_path / "r.jsonl", record_dict("a", "h", "9999-01-01T00:00:00Z", status="gpu"))
    assert cli.main(["results", "import", str(source), "-m", str(work / "matrix.yaml")]) == 0
    assert f"{source}:1: skipped: " in capsys.readouterr().err
    assert (
        not (work / "results" / "records.jsonl").exists()
        or "9999" not in (work / "results" / "records.jsonl").read_text()
    )


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("2026-11-26T12:00:00+02:00", "2026-11-26T11:00:00+00:00"),  # 10:00 UTC is older than 11:00 UTC
        ("2026-11-26T12:30:00+02:00", "2026-11-26T11:00:00"),  # no zone: UTC, as envcheck writes
        ("t", "2026-11-26T11:00:00+00:00"),  # not a time: older than any time
        ("", "2000-01-01T00:00:00Z"),
    ],
)
def test_the_newest_record_is_the_latest_moment_whatever_its_spelling(older: str, newer: str):
    for order in ((older, newer), (newer, older)):
        records = [record("a", "h", when, status="gpu" if when == newer else "cpu-only") for when in order]
        assert [r.timestamp for r in store.merge(records)] == [newer]


# -- 3. Markdown and HTML in record values ----------------------------------------------------------------------

HOSTILE = {
    "stack": "[s](javascript:alert(1))",
    "host": "<img src=x onerror=alert(1)>[h](javascript:alert(2))",
    "gpu": "![g](https://evil.example/g.png)",
    "driver": "`d` *e* _f_",
    "cuda_driver": "~~c~~ $x$",
    "docker": "<https://evil.example> <b>b</b>",
    "python": "[p][r]\n\n[r]: javascript:alert(3)",
    "cuda": "**bold** | col",
    "cudnn": "&#106;avascript:x &amp;",
    "version": "[v](javascript:alert(4))",
    "variant": "\\[x\\](javascript:alert(5))\\",
    "device": "<script>alert(6)</script>",
    "code": "[c](javascript:alert(7))",
    "when": "[t](u)",
}
PLAIN = {key: f"plain{key}" for key in HOSTILE}


def records_of(value: dict[str, str]) -> list[Result]:
    """Two records whose every string a publisher shows comes from `value`."""
    data = record_dict(value["stack"], value["host"], "2026-11-26T10:00:00+00:00", status="gpu")
    data["host"].update(gpus=[value["gpu"]], driver=value["driver"], cuda_driver=value["cuda_driver"])
    data["host"]["docker_version"] = value["docker"]
    data["probe"].update(python=value["python"], build_cuda=value["cuda"], build_cudnn=value["cudnn"])
    data["probe"].update(framework_version=value["version"], tensorflow=value["version"])
    data["probe"]["gpus"] = [{"name": "GPU:0", "device_name": value["device"]}]
    data["definition"]["variant"] = value["variant"]
    data["diagnoses"][0]["code"] = value["code"]
    return [Result.from_dict(data), record("other", value["host"], value["when"])]


def markdown_markup(text: str) -> tuple[Counter, str]:
    """Every Markdown element the page has, by kind (links, images, HTML, emphasis, code, table cells ...), and
    its text as a reader sees it."""
    from markdown_it import MarkdownIt

    kinds: Counter = Counter()
    shown = []
    for token in MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(text):
        for part in [token, *(token.children or [])]:
            if part.type in ("text", "code_inline"):
                shown.append(part.content)
            elif part.type != "inline":
                kinds[(part.type, part.attrGet("href"), part.attrGet("src"))] += 1
        shown.append("\n")
    return kinds, "".join(shown)


def test_markdown_in_record_values_stays_text(tmp_path: Path):
    plain_md = write_outputs(tmp_path / "plain", records_of(PLAIN))[0].read_text()
    hostile_md = write_outputs(tmp_path / "hostile", records_of(HOSTILE))[0].read_text()
    plain, _ = markdown_markup(plain_md)
    hostile, shown = markdown_markup(hostile_md)
    assert hostile == plain  # the same links, images, HTML, emphasis and cells as plain values make
    for key, value in HOSTILE.items():
        if key != "when":  # a date shows its first ten characters
            assert " ".join(value.split()) in shown, key


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: Counter = Counter()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found[(tag, tuple(sorted(name for name, _ in attrs)))] += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_in_record_values_stays_text(tmp_path: Path):
    pages = []
    for name, values in (("plain", PLAIN), ("hostile", HOSTILE)):
        tags = Tags()
        tags.feed(write_outputs(tmp_path / name, records_of(values))[1].read_text())
        pages.append(tags)
    plain, hostile = pages
    assert hostile.found == plain.found  # no element or attribute from a value
    assert HOSTILE["host"] in "".join(hostile.text) and HOSTILE["device"] in "".join(hostile.text)


# -- 4. validators match whole values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "a\n", "docker": "default"},
        {"name": "a", "docker": "tcp://10.0.0.2:2376\n"},
        {"name": "a", "docker": "unix:///run/docker.sock\n"},
        {"name": "a", "docker": "ssh://ci@a100-lab\n"},
        {"name": "a", "docker": "tcp://10.0.0.2:0"},
        {"name": "a", "docker": "tcp://10.0.0.2:99999"},
        {"name": "a", "docker": "ssh://ci@a100-lab:65536"},
    ],
)
def test_a_host_value_with_a_trailing_newline_or_a_bad_port_is_refused(tmp_path: Path, entry: dict):
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump({"hosts": [entry]}))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:\d+:\d+: error: "):
        load_hosts_file(path)


@pytest.mark.parametrize("registry", ["reg.example:5000/x\n", "reg.example:0/x", "reg.example:99999/x"])
def test_a_registry_with_a_trailing_newline_or_a_bad_port_is_refused(tmp_path: Path, registry: str, capsys):
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump({"registry": registry, "hosts": [{"name": "a", "docker": "default"}]}))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:\d+:\d+: error: registry"):
        load_hosts_file(path)
    with pytest.raises(ConfigError, match=r"^--registry"):
        fleet_of(load_hosts_file(hosts_file(tmp_path, ["default"])), tmp_path / "m.yaml", None, registry)
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(MATRIX)
    assert cli.main(["build", "-m", str(matrix), "--push", "--registry", registry, "--ca-bundle", "none"]) == 2
    assert "--registry" in capsys.readouterr().err


def test_ports_at_the_ends_of_the_range_are_accepted(tmp_path: Path):
    path = tmp_path / "hosts.yaml"
    hosts = [{"name": "a", "docker": "tcp://10.0.0.2:1"}, {"name": "b", "docker": "ssh://ci@a100-lab:65535"}]
    path.write_text(yaml.safe_dump({"registry": "reg.example:65535/x", "hosts": hosts}))
    fleet = load_hosts_file(path)
    assert fleet.registry == "reg.example:65535/x" and [h.docker for h in fleet.hosts] == [h["docker"] for h in hosts]
    assert fleet_of(fleet, path, None, "reg.example:1/x")[0].registry == "reg.example:1/x"


# -- 5. doctor asks Docker through the SDK ---------------------------------------------------------------------


def test_doctor_reaches_docker_through_the_sdk(tmp_path: Path, monkeypatch):
    socket = f"unix://{tmp_path}/nobody.sock"
    monkeypatch.setenv("DOCKER_HOST", socket)
    facts = doctor.docker_facts()
    assert facts["reachable"] is False and facts["via"] == "sdk"
    assert socket in facts["error"]
    monkeypatch.setenv("DOCKER_HOST", f"tcp://alice:{SECRET}@127.0.0.1:1")
    facts = doctor.docker_facts()
    assert facts["via"] == "sdk" and "tcp://127.0.0.1:1" in facts["error"] and SECRET not in facts["error"]


# -- 6. size caps ------------------------------------------------------------------------------------------------


def test_records_are_read_with_a_line_cap(tmp_path: Path):
    good = json.dumps(record_dict("good", "h", "2026-11-26T10:00:00+00:00")) + "\n"
    path = tmp_path / "big.jsonl"
    with path.open("wb") as f:  # a good line, then a line of zeros longer than any record (sparse: no disk)
        f.write(good.encode())
        f.seek(store.MAX_RECORD_BYTES + 1, os.SEEK_CUR)
        f.write(b"\n" + good.encode())
    results, problems = store.read([path])
    assert [r.stack for r in results] == ["good"] and len(problems) == 1
    assert problems[0].startswith(f"{path}:2: skipped: ") and "longer than" in problems[0]
    results, problems = store.read([Path("/dev/zero")])  # never ends, has no newline: the cap ends it
    assert results == [] and len(problems) == 1 and problems[0].startswith("/dev/zero:1: skipped: ")


def test_a_saved_result_is_read_with_a_cap(tmp_path: Path):
    (tmp_path / "a.json").symlink_to("/dev/zero")
    assert store.load(tmp_path, "a") is None


def test_a_hosts_file_is_read_with_a_cap(tmp_path: Path):
    path = tmp_path / "hosts.yaml"
    with path.open("wb") as f:
        f.write(b"hosts:\n  - name: a\n    docker: default\n#")
        f.seek(8 * 1024 * 1024, os.SEEK_CUR)
        f.write(b"\n")
    for source in (path, Path("/dev/zero")):
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(source))}: error: .*larger than"):
            load_hosts_file(source)


# -- with Docker: the same through the CLI, the default daemon as the build host --------------------------------


@pytest.mark.docker
def test_a_fleet_run_on_a_host_with_a_password_shows_it_nowhere(tmp_path: Path, work: Path):
    hosts = tmp_path / "hosts.yaml"
    entries = [{"name": "local", "docker": "default"}, {"name": "vault", "docker": WITH_PASSWORDS[0]}]
    hosts.write_text(yaml.safe_dump({"hosts": entries}))
    matrix = str(work / "matrix.yaml")
    flags = ["--hosts", str(hosts), "--on", "vault", "--build-on", "local", "--registry", "127.0.0.1:1/x"]
    run = run_cli("matrix", "-m", matrix, *flags, "--json", "--ca-bundle", "none", timeout=300)
    assert run.returncode == 1, run.stderr
    assert [r["status"] for r in json.loads(run.stdout)] == ["host-unreachable"]
    table = run_cli("table", "-m", matrix)
    export = run_cli("results", "export", "-m", matrix)
    hosts_report = run_cli("hosts", "--hosts", str(hosts), "--json")
    assert "tcp://127.0.0.1:1" in export.stdout and "tcp://127.0.0.1:1" in hosts_report.stdout
    outputs = [p.stdout + p.stderr for p in (run, table, export, hosts_report)]
    no_secret_anywhere(work, *outputs)
