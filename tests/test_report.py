"""Saved results and the Markdown table built from them."""

from __future__ import annotations

import json
from pathlib import Path

from envcheck.report import MISSING, TABLE_HEADERS, load_results, save_result, write_atomic, write_table


def result(name: str, **extra) -> dict:
    base = {
        "stack": name,
        "status": "cpu-only",
        "timestamp": "2026-11-26T11:00:00+00:00",
        "host": {"hostname": "ci-host"},
        "definition": {"variant": "and-cuda"},
        "probe": {
            "tensorflow": "2.15.1",
            "python": "3.11.2",
            "build_cuda": "12.2",
            "build_cudnn": "8",
            "gpus": [],
            "driver": None,
        },
        "diagnoses": [{"code": "no-gpu-runtime"}, {"code": "no-driver"}],
        "benchmark": [{"device": "cpu", "dtype": "float32", "n": 2048, "tflops": 0.2011}],
    }
    base.update(extra)
    return base


def test_table_has_one_row_per_stack_with_probe_values(tmp_path: Path):
    save_result(tmp_path / "results", result("b-stack"))
    save_result(tmp_path / "results", result("a-stack", status="build-failed", probe=None, diagnoses=[], benchmark=[]))
    (tmp_path / "results" / "broken.json").write_text("{not json")
    path = write_table(tmp_path / "results", tmp_path / "docs")
    lines = path.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| Stack"))
    assert [c.strip() for c in lines[header].strip("|").split("|")] == TABLE_HEADERS
    assert set(lines[header + 1]) <= {"|", "-", " ", ":"}
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[header + 2 : header + 4]]
    assert rows[0][0] == "a-stack" and rows[0][8] == "build-failed" and rows[0][1] == MISSING
    assert rows[1] == [
        "b-stack",
        "2.15.1",
        "3.11.2",
        "12.2",
        "8",
        "and-cuda",
        "0",
        MISSING,
        "cpu-only",
        "no-gpu-runtime, no-driver",
        "0.201",
        MISSING,
        "2026-11-26",
        "ci-host",
    ]


def test_results_are_written_atomically_and_reloaded(tmp_path: Path):
    path = save_result(tmp_path, result("s"))
    assert json.loads(path.read_text())["stack"] == "s"
    assert [r["stack"] for r in load_results(tmp_path)] == ["s"]
    write_atomic(path, "replaced")
    assert path.read_text() == "replaced"
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temporary files left
