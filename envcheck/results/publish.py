"""The compatibility outputs: docs/compatibility.md, .html and .json, all from one merged view of results.

The view holds one cell per (stack, host) — the newest result — and one entry per host; every output renders
that same view, so the three never disagree. Values come from other hosts and are escaped for each format.
"""

from __future__ import annotations

import datetime
import functools
import html
import json
import re
from pathlib import Path
from typing import Any

import jinja2
from tabulate import tabulate

from envcheck import frameworks
from envcheck.diagnosis.requirements import needs_of
from envcheck.results import store
from envcheck.results.model import SCHEMA, Result
from envcheck.results.store import merge, write_atomic

MISSING = "–"  # an en dash reads as "no value" in the rendered table
# What starts inline Markdown (links, images, emphasis, code, strikethrough, GitHub's math) or ends a table cell;
# each is backslash-escaped in record values, which then show as typed. '<' and '&' become entities instead.
MARKDOWN = re.compile(r"([\\`*_\[\]()|~$])")
OUTPUTS = ("compatibility.md", "compatibility.html", "compatibility.json")
DETAIL_HEADERS = [
    "Stack",
    "Version",
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
    "Framework",
    "Image",
    "Needs driver",
]


def _fmt(value: float | None) -> str:
    return f"{value:.3g}" if value else MISSING


def found_label(result: Result) -> str | None:
    """An image's frameworks as the probe found them, with where the image came from: "PyTorch 2.5.1 + JAX 0.4.35
    (image)"; None before a probe ran (nothing is known of the image yet)."""
    if result.probe is None:
        return None
    names = [f"{_display(name)} {version or '(version unknown)'}" for name, version in result.frameworks_found]
    return f"{' + '.join(names) or 'no framework found'} ({result.kind})"


def _display(name: str) -> str:
    """A framework's display name; a name this envcheck does not know (a newer probe's) as the probe wrote it."""
    fw = frameworks.find(name)
    return fw.display_name if fw else name


def shown_image(c: dict[str, Any]) -> str | None:
    """The image of a cell in one short line: the reference people run (or envcheck's tag), and the digest's first
    hex digits where one is known (the whole digest is in the JSON)."""
    digest = c["digest"] or ""
    short = digest.rsplit("@", 1)[-1][:19] + "…" if digest else ""
    if not c["image"]:
        return short or None
    return f"{c['image']} ({'' if '@' in digest else 'local image '}{short})" if short else c["image"]


def needs(result: Result) -> dict[str, Any] | None:
    """What the result's image needs from a host (requirements.HostNeeds.to_dict()), from its stored probe document;
    None where no probe ran (a failed build, a prediction)."""
    found = needs_of(result.probe)
    return found.to_dict() if found else None


def result_json(result: Result) -> dict[str, Any]:
    """A result as `--json` prints it: the record's keys and `needs`, which is derived, not recorded."""
    return {**result.to_dict(), "needs": needs(result)}


def cell(result: Result) -> dict[str, Any]:
    """What one (stack, host) cell shows, the same in Markdown, HTML and JSON. A stack of an image people already
    run (or of their Dockerfile) is labelled by the frameworks its probe found, and names its image."""
    kind = result.kind
    label = f"{result.framework_name} {result.framework_version}" if result.framework_version else None
    several = result.definition.get("frameworks")
    if kind == "rendered" and isinstance(several, list) and len(several) > 1:  # one environment, several frameworks
        found = dict(result.frameworks_found)
        label = " + ".join(f"{_display(str(n))} {found.get(str(n)) or result.definition.get(str(n))}" for n in several)
    return {
        "stack": result.stack,
        "host": result.host.label,
        "status": result.status.value,
        "predicted": result.predicted_only,
        "mark": result.status.mark,
        "tensorflow": result.tensorflow,
        "framework": result.framework,
        "version": result.framework_version,
        "label": found_label(result) if kind != "rendered" else label,
        "kind": kind,
        "image": result.image,
        "digest": result.digest,
        "frameworks_found": [{"name": name, "version": version} for name, version in result.frameworks_found],
        "python": result.python,
        "build_cuda": result.build_cuda,
        "build_cudnn": result.build_cudnn,
        "variant": result.variant,
        "gpus": result.gpu_names,
        "driver": result.driver,
        "gpu_tflops": result.best_tflops("gpu"),
        "cpu_tflops": result.best_tflops("cpu"),
        "codes": result.codes,
        "diagnoses": [d.to_dict() for d in result.diagnoses],
        "benchmark": [b.to_dict() for b in result.benchmark],
        "error": result.error,
        "reason": result.reason,
        "date": result.date,
        "needs": needs(result),
    }


def hosts_of(results: list[Result]) -> list[dict[str, Any]]:
    """One entry per host (its newest result's facts), titled 'label: GPU model, driver'."""
    hosts: dict[str, dict[str, Any]] = {}
    for result in sorted(results, key=lambda r: r.moment):
        host = result.host
        hosts[host.label] = {
            "label": host.label,
            "gpus": sorted(set(host.gpus)),
            "driver": host.driver,
            "cuda_driver": host.cuda_driver,
            "docker_version": host.docker_version,
            "nvidia_runtime": host.nvidia_runtime,
            "last": result.timestamp[:19],
            "title": host.title,
        }
    return [hosts[k] for k in sorted(hosts)]


def view(results: list[Result]) -> dict[str, Any]:
    merged = merge(results)
    return {
        "hosts": hosts_of(merged),
        "stacks": sorted({r.stack for r in merged}),
        "cells": {(r.stack, r.host.label): cell(r) for r in merged},
        "records": merged,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# -- Markdown -----------------------------------------------------------------------------------------------------


def md(value: object) -> str:
    """A value from a record as Markdown table text, shown as typed: no link, image, emphasis, code, raw HTML or
    entity made of it (records come from other hosts), no column break, one line."""
    text = html.escape(" ".join(str(value).split()), quote=False)
    return MARKDOWN.sub(r"\\\1", text)


def md_code(value: str) -> str:
    """A diagnosis code as a code span: inside one nothing is markup (and backslashes are not escapes), so only a
    backtick, which would end it, and '|', which would end the cell, are replaced."""
    return "`" + " ".join(value.split()).replace("`", "'").replace("|", "\\|") + "`"


def _md_cell(c: dict[str, Any] | None) -> str:
    if c is None:
        return MISSING
    parts = [f"{c['mark']} {'predicted ' if c['predicted'] else ''}{c['status']}"]
    if c["label"]:
        parts.append(
            md(c["label"])
            + (f" · CUDA {md(c['build_cuda'])}/cuDNN {md(c['build_cudnn'])}" if c["build_cuda"] else "")
            + (f" · Py {md(c['python'])}" if c["python"] else "")
        )
    if c["gpu_tflops"]:
        parts.append(f"GPU {_fmt(c['gpu_tflops'])} TFLOP/s")
    if c["codes"]:
        parts.append(" ".join(md_code(code) for code in c["codes"]))
    return "<br>".join(parts)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def render_markdown(v: dict[str, Any]) -> str:
    hosts_table = _table(
        [
            [
                md(h["label"]),
                md(", ".join(h["gpus"]) or "no GPU"),
                md(h["driver"] or MISSING),
                md(h["cuda_driver"] or MISSING),
                md(h["docker_version"] or MISSING),
                "yes" if h["nvidia_runtime"] else "no",
                md(h["last"]),
            ]
            for h in v["hosts"]
        ],
        ["Host", "GPUs", "Driver", "CUDA driver", "Docker", "NVIDIA runtime", "Newest record"],
    )
    references = {c["stack"]: c["image"] for c in v["cells"].values() if c["kind"] == "image" and c["image"]}
    grid = _table(
        [
            [
                f"**{md(s)}**" + (f"<br>{md(references[s])}" if s in references else ""),
                *[_md_cell(v["cells"].get((s, h["label"]))) for h in v["hosts"]],
            ]
            for s in v["stacks"]
        ],
        ["Stack", *[md(h["title"]) for h in v["hosts"]]],
    )
    details = _table([_detail_row(c) for c in v["cells"].values()], DETAIL_HEADERS)
    return (
        "# GPU compatibility: TensorFlow, PyTorch, JAX\n\n"
        "Generated by `envcheck table` from result records; do not edit by hand. Every measured value was read "
        "inside the stack's running container (the probe), not copied from matrix.yaml. "
        "A self-contained page with filters and details: [compatibility.html](compatibility.html); the data: "
        "[compatibility.json](compatibility.json).\n\n"
        f"## Hosts\n\n{hosts_table}\n\n## Stacks × hosts\n\n{grid}\n\n"
        "Legend: ✅ `gpu` the framework used a GPU · ❌ `cpu-only` it ran but used no GPU (see the codes) · "
        "💥 `build-failed` / `run-failed` · ⏱ `timeout` · 🔮 predicted by `envcheck plan` (not measured): "
        "`ok`, `warn`, `fails`.\n\n"
        f"## Details\n\n{details}\n"
    )


def _detail_row(c: dict[str, Any]) -> list[str]:
    names = ", ".join(sorted({n for n in c["gpus"] if n}))
    return [
        md(c["stack"]),
        md(c["version"] or MISSING),
        md(c["python"] or MISSING),
        md(c["build_cuda"] or MISSING),
        md(c["build_cudnn"] or MISSING),
        md(c["variant"] or MISSING),
        f"{len(c['gpus'])}" + (f" ({md(names)})" if names else ""),
        md(c["driver"] or MISSING),
        ("predicted " if c["predicted"] else "") + c["status"],
        md(", ".join(c["codes"]) or MISSING),
        _fmt(c["cpu_tflops"]),
        _fmt(c["gpu_tflops"]),
        md(c["date"] or MISSING),
        md(c["host"]),
        md(frameworks.framework(c["framework"]).display_name if c["kind"] == "rendered" else c["label"] or MISSING),
        md(shown_image(c) or MISSING),
        md(f">= {c['needs']['min_driver']}") if c["needs"] and c["needs"]["min_driver"] else MISSING,
    ]


# -- HTML and JSON --------------------------------------------------------------------------------------------


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(v: dict[str, Any]) -> str:
    env = _templates()
    bars = [
        (c["stack"], c["host"], c["gpu_tflops"] or c["cpu_tflops"], "GPU" if c["gpu_tflops"] else "CPU")
        for c in v["cells"].values()
        if (c["gpu_tflops"] or c["cpu_tflops"])
    ]
    labels = sorted({c["label"] for c in v["cells"].values() if c["label"]})
    frameworks = sorted({c["framework"] for c in v["cells"].values()})
    statuses = sorted({c["status"] for c in v["cells"].values()})
    return env.get_template("compatibility.html.j2").render(
        v=v,
        bars=bars,
        labels=labels,
        frameworks=frameworks,
        statuses=statuses,
        fmt=_fmt,
        maximum=max((b[2] for b in bars), default=1),
    )


def render_json(v: dict[str, Any]) -> str:
    data = {
        "schema": SCHEMA,
        "generated": v["generated"],
        "hosts": v["hosts"],
        "cells": list(v["cells"].values()),
        "records": [r.to_dict() for r in v["records"]],
    }
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def write_outputs(docs_dir: Path, results: list[Result]) -> list[Path]:
    """docs/compatibility.md, .html and .json from the same merged results."""
    v = view(results)
    texts = dict(zip(OUTPUTS, (render_markdown(v), render_html(v), render_json(v)), strict=True))
    for name, text in texts.items():
        write_atomic(docs_dir / name, text)
    return [docs_dir / name for name in OUTPUTS]


# -- text, for people at a terminal ---------------------------------------------------------------------------


def format_text(result: Result, with_host: bool = False) -> str:
    """The human summary of one stack (on one host, named when a run had several): verdict first, then each cause
    with its fix."""
    reused = " [reused: image and host unchanged]" if result.reused else ""
    name = f"{result.stack} @ {result.host.label}" if with_host else result.stack
    image = f"{result.image} @ {result.digest}" if result.kind == "image" and result.digest else result.image
    lines = [f"{name}: {result.status}  ({image}){reused}"]
    if result.probe and result.kind != "rendered" and not result.frameworks_found:
        lines.append(f"  no framework found on Python {result.python}; driver: {result.probe_driver or 'none'}")
    elif result.probe:
        lines.append(
            f"  {result.framework_name} {result.framework_version} on Python {result.python}, built for "
            f"CUDA {result.build_cuda or '-'} / cuDNN {result.build_cudnn or '-'}; "
            f"GPUs seen: {len(result.gpu_names)}; driver: {result.probe_driver or 'none'}"
        )
        if result.kind != "rendered":
            lines.append(f"  frameworks found: {found_label(result)}")
    return "\n".join(lines + _cause_lines(result))


def _cause_lines(result: Result) -> list[str]:
    """The error, each diagnosis with its evidence and fix, the benchmark, and what the image needs from a host, as
    `run` prints them."""
    lines = [f"  error: {result.error}"] if result.error else []
    for d in result.diagnoses:
        about = f" ({_display(d.framework)})" if d.framework else ""
        lines.append(f"  [{d.severity}] {d.code}{about}: {d.summary}")
        lines += [f"      evidence: {line}" for line in d.evidence]
        lines.append(f"      fix: {d.fix}")
    for b in result.benchmark:
        figure = f"{b.tflops} TFLOP/s" if b.tflops is not None else f"failed: {b.error}"
        precision = f" ({b.precision})" if b.precision else ""
        lines.append(f"  matmul {b.library} {b.device} {b.dtype}{precision} n={b.n}: {figure}")
    found = needs_of(result.probe)
    if found:
        lines.append(f"  needs: {found.said()}")
    return lines


def format_probe(results: list[Result]) -> str:
    """`envcheck probe`'s text: a row per image (REFERENCE@DIGEST, status, the frameworks found, the codes), each
    followed by its causes as `run` prints them."""
    rows = []
    for r in results:
        digest = r.digest or ""
        where = f"{r.image}@{digest.rsplit('@', 1)[1]}" if "@" in digest else f"{r.image} (local image {digest})"
        found = " + ".join(f"{_display(n)} {v or '?'}" for n, v in r.frameworks_found)
        rows.append([where if digest else str(r.image), str(r.status), found or MISSING, ", ".join(r.codes) or MISSING])
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for r, row in zip(results, rows, strict=True):
        lines.append("  ".join([*(text.ljust(width) for text, width in zip(row, widths, strict=False)), row[3]]))
        lines += _cause_lines(r)
    return "\n".join(lines)


def refresh(results_dir: Path, docs_dir: Path) -> list[Path]:
    """Rewrite the outputs from a results directory's own records (after each stack of a run)."""
    results, _ = store.own_records(results_dir)
    return write_outputs(docs_dir, results)
