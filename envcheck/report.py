"""Results on disk, and the compatibility outputs built from them.

Each stack's latest result on this host is results/NAME.json (what reruns reuse). Every run also appends one
record per (stack, host) to results/records.jsonl: those records travel (CI artifacts of other hosts,
`envcheck results export/import`), and `envcheck table` merges any number of them, newest per (stack, host),
into docs/compatibility.md, .html and .json. Files are written atomically, so nothing is ever half-written.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import jinja2
from tabulate import tabulate

RECORD_SCHEMA = 1
RECORDS_FILE = "records.jsonl"
MISSING = "–"  # an en dash reads as "no value" in the rendered table
MARKS = {
    "gpu": "✅",
    "cpu-only": "❌",
    "build-failed": "💥",
    "run-failed": "💥",
    "timeout": "⏱",
    "ok": "🔮✅",
    "warn": "🔮⚠️",
    "fails": "🔮❌",
}
# Statuses in which the stack built and its probe ran: the stack met its expectation.
RAN = {"gpu", "cpu-only"}
DETAIL_HEADERS = [
    "Stack",
    "TF",
    "Python",
    "CUDA (build)",
    "cuDNN (build)",
    "Variant",
    "GPUs seen",
    "Driver",
    "Status",
    "Diagnoses",
    "CPU TFLOP/s",
    "GPU TFLOP/s",
    "Date",
    "Host",
]


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; published files are readable like any other
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_result(results_dir: Path, result: dict[str, Any]) -> Path:
    """The stack's latest result (for reuse) and one more line in the records that travel."""
    path = results_dir / f"{result['stack']}.json"
    write_atomic(path, json.dumps(result, indent=2, sort_keys=True) + "\n")
    append_record(results_dir / RECORDS_FILE, result)
    return path


def append_record(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, written with a single O_APPEND write so concurrent writers never interleave a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({**record, "record_schema": RECORD_SCHEMA}, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def load_result(results_dir: Path, stack: str) -> dict[str, Any] | None:
    """A stack's saved result, or None when there is none or it cannot be read."""
    try:
        data = json.loads((results_dir / f"{stack}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_records(sources: Iterable[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Records from .jsonl files (or every .jsonl in a directory); unreadable lines are named, not fatal."""
    records, problems = [], []
    for source in sources:
        files = sorted(source.rglob("*.jsonl")) if source.is_dir() else [source]
        for file in files:
            try:
                lines = file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                problems.append(f"{file}: {exc}")
                continue
            for number, line in enumerate(lines, 1):
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict) or "stack" not in record:
                        raise ValueError("not a result record")
                    records.append(record)
                except ValueError as exc:
                    if line.strip():
                        problems.append(f"{file}:{number}: skipped: {exc}")
    return records, problems


def host_label(record: dict[str, Any]) -> str:
    host = record.get("host") or {}
    return str(host.get("label") or host.get("hostname") or "unknown host")


def merge(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest record per (stack, host), in a stable order."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = (record["stack"], host_label(record))
        if key not in newest or (record.get("timestamp") or "") >= (newest[key].get("timestamp") or ""):
            newest[key] = record
    return [newest[k] for k in sorted(newest)]


# -- one view of the merged data, shared by every output -------------------------------------------------------


def _best(benchmark: list[dict[str, Any]], device: str) -> float | None:
    figures = [
        b["tflops"]
        for b in benchmark
        if b.get("device") == device and b.get("tflops") and b.get("library", "tensorflow") == "tensorflow"
    ]
    return max(figures) if figures else None


def _fmt(value: float | None) -> str:
    return f"{value:.3g}" if value else MISSING


def cell(record: dict[str, Any]) -> dict[str, Any]:
    """What one (stack, host) cell shows, the same in Markdown, HTML and JSON."""
    probe = record.get("probe") or {}
    gpus = probe.get("gpus") or []
    return {
        "stack": record["stack"],
        "host": host_label(record),
        "status": record.get("status", "unknown"),
        "predicted": bool(record.get("predicted_only")),
        "mark": MARKS.get(record.get("status", ""), "?"),
        "tensorflow": probe.get("tensorflow") or (record.get("definition") or {}).get("tensorflow"),
        "python": probe.get("python"),
        "build_cuda": probe.get("build_cuda"),
        "build_cudnn": probe.get("build_cudnn"),
        "variant": (record.get("definition") or {}).get("variant"),
        "gpus": [g.get("device_name") or g.get("name") for g in gpus],
        "driver": probe.get("driver") or (record.get("host") or {}).get("driver"),
        "gpu_tflops": _best(record.get("benchmark") or [], "gpu"),
        "cpu_tflops": _best(record.get("benchmark") or [], "cpu"),
        "codes": [d["code"] for d in record.get("diagnoses") or []],
        "diagnoses": record.get("diagnoses") or [],
        "benchmark": record.get("benchmark") or [],
        "error": record.get("error"),
        "reason": record.get("reason"),
        "date": (record.get("timestamp") or "")[:10],
    }


def hosts_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per host (its newest record's facts), labelled 'label: GPU model, driver'."""
    hosts: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: r.get("timestamp") or ""):
        host = record.get("host") or {}
        label = host_label(record)
        gpus = sorted(set(host.get("gpus") or []))
        hosts[label] = {
            "label": label,
            "gpus": gpus,
            "driver": host.get("driver"),
            "cuda_driver": host.get("cuda_driver"),
            "docker_version": host.get("docker_version"),
            "nvidia_runtime": host.get("nvidia_runtime"),
            "last": (record.get("timestamp") or "")[:19],
            "title": f"{label}: {', '.join(gpus) or 'no GPU'}, driver {host.get('driver') or 'none'}",
        }
    return [hosts[k] for k in sorted(hosts)]


def view(records: list[dict[str, Any]]) -> dict[str, Any]:
    merged = merge(records)
    hosts = hosts_of(merged)
    stacks = sorted({r["stack"] for r in merged})
    cells = {(c["stack"], c["host"]): c for c in map(cell, merged)}
    return {
        "hosts": hosts,
        "stacks": stacks,
        "cells": cells,
        "records": merged,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# -- Markdown -----------------------------------------------------------------------------------------------------


def _md_cell(c: dict[str, Any] | None) -> str:
    if c is None:
        return MISSING
    parts = [f"{c['mark']} {'predicted ' if c['predicted'] else ''}{c['status']}"]
    if c["tensorflow"]:
        parts.append(
            f"TF {c['tensorflow']}"
            + (f" · CUDA {c['build_cuda']}/cuDNN {c['build_cudnn']}" if c["build_cuda"] else "")
            + (f" · Py {c['python']}" if c["python"] else "")
        )
    if c["gpu_tflops"]:
        parts.append(f"GPU {_fmt(c['gpu_tflops'])} TFLOP/s")
    if c["codes"]:
        parts.append(" ".join(f"`{code}`" for code in c["codes"]))
    return "<br>".join(parts)


def render_markdown(v: dict[str, Any]) -> str:
    hosts_table = tabulate(
        [
            [
                h["label"],
                ", ".join(h["gpus"]) or "no GPU",
                h["driver"] or MISSING,
                h["cuda_driver"] or MISSING,
                h["docker_version"] or MISSING,
                "yes" if h["nvidia_runtime"] else "no",
                h["last"],
            ]
            for h in v["hosts"]
        ],
        headers=["Host", "GPUs", "Driver", "CUDA driver", "Docker", "NVIDIA runtime", "Newest record"],
        tablefmt="github",
        disable_numparse=True,
    )
    grid = tabulate(
        [[f"**{s}**", *[_md_cell(v["cells"].get((s, h["label"]))) for h in v["hosts"]]] for s in v["stacks"]],
        headers=["Stack", *[h["title"] for h in v["hosts"]]],
        tablefmt="github",
        disable_numparse=True,
    )
    details = tabulate(
        [_detail_row(c) for c in v["cells"].values()],
        headers=DETAIL_HEADERS,
        tablefmt="github",
        disable_numparse=True,
    )
    return (
        "# TensorFlow GPU compatibility\n\n"
        "Generated by `envcheck table` from result records; do not edit by hand. Every measured value was read "
        "inside the stack's running container (the probe), not copied from matrix.yaml. "
        "A self-contained page with filters and details: [compatibility.html](compatibility.html); the data: "
        "[compatibility.json](compatibility.json).\n\n"
        f"## Hosts\n\n{hosts_table}\n\n## Stacks × hosts\n\n{grid}\n\n"
        "Legend: ✅ `gpu` TensorFlow used a GPU · ❌ `cpu-only` it ran but used no GPU (see the codes) · "
        "💥 `build-failed` / `run-failed` · ⏱ `timeout` · 🔮 predicted by `envcheck plan` (not measured): "
        "`ok`, `warn`, `fails`.\n\n"
        f"## Details\n\n{details}\n"
    )


def _detail_row(c: dict[str, Any]) -> list[str]:
    names = ", ".join(sorted({n for n in c["gpus"] if n}))
    return [
        c["stack"],
        c["tensorflow"] or MISSING,
        c["python"] or MISSING,
        c["build_cuda"] or MISSING,
        c["build_cudnn"] or MISSING,
        c["variant"] or MISSING,
        f"{len(c['gpus'])}" + (f" ({names})" if names else ""),
        c["driver"] or MISSING,
        ("predicted " if c["predicted"] else "") + c["status"],
        ", ".join(c["codes"]) or MISSING,
        _fmt(c["cpu_tflops"]),
        _fmt(c["gpu_tflops"]),
        c["date"] or MISSING,
        c["host"],
    ]


# -- HTML and JSON --------------------------------------------------------------------------------------------


def render_html(v: dict[str, Any]) -> str:
    env = jinja2.Environment(  # lenient on missing keys: records come from other hosts and older versions
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    bars = [
        (c["stack"], c["host"], c["gpu_tflops"] or c["cpu_tflops"], "GPU" if c["gpu_tflops"] else "CPU")
        for c in v["cells"].values()
        if (c["gpu_tflops"] or c["cpu_tflops"])
    ]
    versions = sorted({c["tensorflow"] for c in v["cells"].values() if c["tensorflow"]})
    statuses = sorted({c["status"] for c in v["cells"].values()})
    return env.get_template("compatibility.html.j2").render(
        v=v, bars=bars, versions=versions, statuses=statuses, fmt=_fmt, maximum=max((b[2] for b in bars), default=1)
    )


def render_json(v: dict[str, Any]) -> str:
    data = {
        "schema": RECORD_SCHEMA,
        "generated": v["generated"],
        "hosts": v["hosts"],
        "cells": list(v["cells"].values()),
        "records": v["records"],
    }
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def write_outputs(docs_dir: Path, records: list[dict[str, Any]]) -> list[Path]:
    """docs/compatibility.md, .html and .json from the same merged records."""
    v = view(records)
    outputs = {
        "compatibility.md": render_markdown(v),
        "compatibility.html": render_html(v),
        "compatibility.json": render_json(v),
    }
    for name, text in outputs.items():
        write_atomic(docs_dir / name, text)
    return [docs_dir / name for name in outputs]


def write_table(results_dir: Path, docs_dir: Path) -> Path:
    """Refresh the outputs from this directory's records."""
    records, _ = read_records([results_dir / RECORDS_FILE]) if (results_dir / RECORDS_FILE).exists() else ([], [])
    return write_outputs(docs_dir, records)[0]


# -- JUnit -------------------------------------------------------------------------------------------------------


def render_junit(results: list[dict[str, Any]]) -> str:
    """One test case per stack × host; a stack that did not build and run is a failure."""
    cases = []
    for r in results:
        c = cell(r)
        name = quoteattr(c["stack"])
        classname = quoteattr(f"envcheck.{c['host']}")
        seconds = ((r.get("build") or {}).get("seconds") or 0) + ((r.get("run") or {}).get("seconds") or 0)
        body = escape(json.dumps({"status": c["status"], "codes": c["codes"], "gpu_tflops": c["gpu_tflops"]}))
        if c["status"] in RAN:
            cases.append(
                f'  <testcase classname={classname} name={name} time="{seconds:.1f}">'
                f"<system-out>{body}</system-out></testcase>"
            )
        else:
            message = quoteattr(f"{c['status']}: {c['error'] or ', '.join(c['codes'])}"[:500])
            cases.append(
                f'  <testcase classname={classname} name={name} time="{seconds:.1f}">'
                f'<failure message={message} type="{c["status"]}">{body}</failure></testcase>'
            )
    failures = sum(cell(r)["status"] not in RAN for r in results)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="envcheck" tests="{len(results)}" '
        f'failures="{failures}" errors="0">\n' + "\n".join(cases) + "\n</testsuite>\n"
    )
