"""Records, merging across hosts, and the three outputs built from them (Markdown, HTML, JSON), plus JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import gpu_record, record, run_cli
from envcheck.results.junit import render_junit
from envcheck.results.publish import DETAIL_HEADERS, MISSING, write_outputs
from envcheck.results.store import append, load, merge, read, save, write_atomic


def append_record(path: Path, result) -> None:
    append(path, [result])


def test_merge_keeps_the_newest_record_per_stack_and_host():
    records = [
        record("a", "h1", "2026-11-01T00:00:00+00:00", status="build-failed"),
        record("a", "h1", "2026-11-02T00:00:00+00:00"),
        record("a", "h2", "2026-10-01T00:00:00+00:00"),
    ]
    merged = merge(records)
    assert [(r.stack, r.host.label, str(r.status)) for r in merged] == [
        ("a", "h1", "cpu-only"),
        ("a", "h2", "cpu-only"),
    ]


def test_two_hosts_make_two_column_groups(tmp_path: Path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    append_record(a, record("tf-2.15-cuda12", "ci-cpu", "2026-11-26T10:00:00+00:00"))
    append_record(a, record("tf-2.15-cpu", "ci-cpu", "2026-11-26T10:00:00+00:00", status="cpu-only"))
    append_record(b, gpu_record("tf-2.15-cuda12", "h100-node", "2026-11-26T11:00:00+00:00"))
    b.write_text(b.read_text() + "not json\n")
    records, problems = read([a, b])
    assert len(records) == 3 and problems == [f"{b}:2: skipped: Expecting value: line 1 column 1 (char 0)"]
    md, html, data = write_outputs(tmp_path / "docs", records)
    text = md.read_text()
    grid = text.split("## Stacks × hosts")[1].split("Legend:")[0].strip().splitlines()
    assert grid[0].split("|")[2:4] == [
        " ci-cpu: no GPU, driver none ".ljust(len(grid[0].split("|")[2])),
        " h100-node: NVIDIA H100 80GB HBM3, driver 550.54.15 ".ljust(len(grid[0].split("|")[3])),
    ]
    cuda_row = next(line for line in grid if line.startswith("| **tf-2.15-cuda12**"))
    cells = [c.strip() for c in cuda_row.strip("|").split("|")]
    assert cells[1].startswith("❌ cpu-only<br>TensorFlow 2.15.1 · CUDA 12.2/cuDNN 8 · Py 3.11.2")
    assert cells[1].endswith("`no-gpu-runtime`")
    assert cells[2].startswith("✅ gpu<br>") and "GPU 412 TFLOP/s" in cells[2]
    cpu_row = next(line for line in grid if line.startswith("| **tf-2.15-cpu**"))
    assert [c.strip() for c in cpu_row.strip("|").split("|")][2] == MISSING  # never run on the H100 host
    details = text.split("## Details")[1].strip().splitlines()
    assert [c.strip() for c in details[0].strip("|").split("|")] == DETAIL_HEADERS
    assert set(details[1]) <= {"|", "-", " "} and len(details) == 5
    merged = json.loads(data.read_text())
    assert {h["label"] for h in merged["hosts"]} == {"ci-cpu", "h100-node"}
    assert len(merged["cells"]) == 3
    assert "<noscript>" not in html.read_text() and 'id="grid"' in html.read_text()


def test_every_output_is_deterministic_apart_from_the_date(tmp_path: Path):
    records = [record("x", "h", "2026-11-26T10:00:00+00:00"), gpu_record("y", "g", "2026-11-26T10:00:00+00:00")]
    first = [p.read_text() for p in write_outputs(tmp_path / "1", records)]
    second = [p.read_text() for p in write_outputs(tmp_path / "2", list(reversed(records)))]

    def strip(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if "enerated" not in line)

    assert [strip(t) for t in first] == [strip(t) for t in second]


def test_junit_has_a_case_per_stack_and_host():
    xml = render_junit([record("a", "h1", "t"), record("b", "h1", "t", status="build-failed", error="pip failed")])
    suite = ET.fromstring(xml)
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [("envcheck.h1", "a"), ("envcheck.h1", "b")]
    assert cases[1].find("failure").get("message") == "build-failed: pip failed"


def test_results_are_written_atomically_and_recorded(tmp_path: Path):
    path = save(tmp_path, record("s", "h", "t"))
    assert json.loads(path.read_text())["stack"] == "s"
    assert load(tmp_path, "s").stack == "s" and load(tmp_path, "t") is None
    write_atomic(path, "replaced")
    assert path.read_text() == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl", "s.json"]  # no temporary files
    assert json.loads((tmp_path / "records.jsonl").read_text())["record_schema"] == 1


def test_cli_table_merges_files_and_results_travel(tmp_path: Path):
    (tmp_path / "matrix.yaml").write_text("stacks: [{name: a, tensorflow: '2.15.1', variant: cpu}]\n")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    append_record(a, record("a", "host-a", "2026-11-26T10:00:00+00:00"))
    append_record(b, gpu_record("a", "host-b", "2026-11-26T10:00:00+00:00"))
    done = run_cli("table", "-m", str(tmp_path / "matrix.yaml"), "--results", str(a), str(b))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "docs" / f"compatibility.{x}") for x in ("md", "html", "json")]
    assert "host-a: no GPU" in (tmp_path / "docs" / "compatibility.md").read_text()
    assert "host-b: NVIDIA H100" in (tmp_path / "docs" / "compatibility.md").read_text()
    # export from one directory, import into another
    done = run_cli("results", "import", str(a), str(b), "-m", str(tmp_path / "matrix.yaml"))
    assert done.returncode == 0 and "imported 2 new records" in done.stderr
    exported = run_cli("results", "export", "-m", str(tmp_path / "matrix.yaml")).stdout.splitlines()
    assert sorted(json.loads(line)["host"]["label"] for line in exported) == ["host-a", "host-b"]
    done = run_cli("table", "-m", str(tmp_path / "matrix.yaml"), "--results", str(tmp_path / "missing.jsonl"))
    assert done.returncode == 2 and "no such results file" in done.stderr


def test_markdown_renders_as_tables(tmp_path: Path):
    from markdown_it import MarkdownIt

    records = [
        record("tf-2.15-cuda12", "ci-cpu", "2026-11-26T10:00:00+00:00"),
        gpu_record("tf-2.15-cuda12", "h100-node", "2026-11-26T11:00:00+00:00"),
        record("tf-2.15-cpu", "ci-cpu", "2026-11-26T10:00:00+00:00"),
    ]
    md = write_outputs(tmp_path, records)[0].read_text()
    html = MarkdownIt("commonmark").enable("table").render(md)
    tables = html.split("<table>")[1:]
    assert len(tables) == 3  # hosts, stacks × hosts, details
    grid = tables[1]
    assert grid.count("<th>") == 3 and grid.count("<tr>") == 3  # header + two stacks
    assert "<strong>tf-2.15-cuda12</strong>" in grid and "<code>no-gpu-runtime</code>" in grid
    assert tables[2].count("<tr>") == 4  # header + three (stack, host) records
