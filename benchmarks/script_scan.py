"""How right is `envcheck doctor --script` on real code? Precision and recall on a corpus of public files.

    python benchmarks/script_scan.py [--corpus benchmarks/script_corpus.yaml] [--mirrors DIR]
                                     [--baseline REV] [--out FILE] [--show]

The corpus (benchmarks/script_corpus.yaml) names public repositories at a commit, the folders of each that count
(every .py and .ipynb file in them), and, read by a person, the lines that force TensorFlow onto the CPU (for a
notebook, cell/line). The files are not in this repository: they are read from local git mirrors of those
repositories (`--mirrors`, one `owner+name/repo` git directory each, as the session tools fetch them). A finding
on an expected line is a true positive, one elsewhere a false alarm, an expected line without one a miss.
`--baseline REV` measures the scanner of an earlier envcheck (its doctor.py at REV) on the same files, side by side.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from envcheck.diagnosis.scan import analyse

HERE = Path(__file__).resolve().parent
Scanner = Callable[[str, str, bool], list[dict[str, Any]]]


def git_dir(mirrors: Path, repo: str) -> str:
    base = mirrors / repo.replace("/", "+") / "repo"
    return str(base / ".git") if (base / ".git").is_dir() else str(base)


def git(directory: str, *args: str) -> bytes:
    done = subprocess.run(["git", "--git-dir", directory, *args], capture_output=True, check=False)
    if done.returncode:
        raise FileNotFoundError(done.stderr.decode(errors="replace").strip())
    return done.stdout


def files_of(mirrors: Path, entry: dict) -> list[tuple[str, str]]:
    """(path, text) of every .py and .ipynb file under the entry's folders at its commit."""
    directory = git_dir(mirrors, entry["repo"])
    names = git(directory, "ls-tree", "-r", "-z", "--name-only", entry["commit"]).decode().split("\0")
    chosen = [n for n in names if n.endswith((".py", ".ipynb")) and any(n.startswith(p) for p in entry["include"])]
    return [(n, git(directory, "show", f"{entry['commit']}:{n}").decode("utf-8", "replace")) for n in chosen]


def current(text: str, path: str, notebook: bool) -> list[dict[str, Any]]:
    return analyse(text, path, notebook)[0]


def baseline(rev: str) -> Scanner:
    """The scanner of envcheck at an earlier revision: its doctor.py's scan_source and the helpers it uses."""
    source = subprocess.run(["git", "show", f"{rev}:envcheck/doctor.py"], capture_output=True, text=True, check=True)
    tree = ast.parse(source.stdout)
    keep = {"NOTEBOOK_ENV_RE", "_const", "_attr_name", "_hides_gpus", "_call_forces_cpu", "scan_source"}
    body = [
        n
        for n in tree.body
        if (isinstance(n, ast.FunctionDef) and n.name in keep)
        or (isinstance(n, ast.Assign) and any(getattr(t, "id", "") in keep for t in n.targets))
    ]
    namespace: dict[str, Any] = {
        "ast": ast,
        "re": re,
        "Any": Any,
        "HIDING_VALUES": {"", "-1", "none", "void", "nodevfiles"},
    }
    exec(compile(ast.Module(body=body, type_ignores=[]), f"{rev}:envcheck/doctor.py", "exec"), namespace)
    return lambda text, path, notebook: namespace["scan_source"](text, path)


def expected_of(entry: dict, path: str) -> set[tuple[int | None, int]]:
    found = set()
    for item in (entry.get("forced") or {}).get(path, []):
        if isinstance(item, str):
            cell, line = item.split("/")
            found.add((int(cell), int(line)))
        else:
            found.add((None, int(item)))
    return found


def measure(entries: list[dict], mirrors: Path, scanner: Scanner, show: bool) -> tuple[int, int, int, list]:
    tp = fp = fn = 0
    rows = []
    for entry in entries:
        for path, text in files_of(mirrors, entry):
            try:
                got = {(f.get("cell"), f["line"]) for f in scanner(text, path, path.endswith(".ipynb"))}
            except (SyntaxError, ValueError, RecursionError):  # the baseline raises where the scanner now reports
                got = set()
            want = expected_of(entry, path)
            hits, extra, missed = got & want, got - want, want - got
            tp, fp, fn = tp + len(hits), fp + len(extra), fn + len(missed)
            if want or extra:
                rows.append(
                    (entry["repo"], path, len(want), len(hits), sorted(extra, key=str), sorted(missed, key=str))
                )
            if show and (extra or missed):
                print(f"{entry['repo']}:{path}: false alarms {sorted(extra, key=str)} missed {sorted(missed, key=str)}")
    return tp, fp, fn, rows


def summary(tp: int, fp: int, fn: int) -> str:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return f"{tp} found, {fp} false alarms, {fn} missed: precision {precision:.2f}, recall {recall:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=HERE / "script_corpus.yaml")
    parser.add_argument("--mirrors", type=Path, default=Path(os.environ.get("ENVCHECK_MIRRORS", "/work/.mirror")))
    parser.add_argument("--baseline", metavar="REV", help="also measure the scanner of envcheck at this git revision")
    parser.add_argument("--out", type=Path, help="write the results as Markdown here")
    parser.add_argument("--show", action="store_true", help="print every false alarm and miss")
    args = parser.parse_args()
    entries = yaml.safe_load(args.corpus.read_text())
    try:
        files = sum(len(files_of(args.mirrors, e)) for e in entries)
    except FileNotFoundError as exc:
        sys.exit(f"a corpus repository is missing under {args.mirrors} (fetch it first): {exc}")
    expected = sum(len(lines) for e in entries for lines in (e.get("forced") or {}).values())
    tp, fp, fn, rows = measure(entries, args.mirrors, current, args.show)
    now = summary(tp, fp, fn)
    print(f"{files} files from {len(entries)} repositories, {expected} lines that force the CPU")
    print(f"envcheck now: {now}")
    before = None
    if args.baseline:
        before = summary(*measure(entries, args.mirrors, baseline(args.baseline), False)[:3])
        print(f"envcheck at {args.baseline}: {before}")
    if args.out:
        lines = [
            "# `envcheck doctor --script` on real code",
            "",
            f"Measured {datetime.date.today()} with `benchmarks/script_scan.py` on `benchmarks/script_corpus.yaml`: "
            f"{files} Python files and notebooks from {len(entries)} public repositories (each named with its commit), "
            f"in which a person marked {expected} lines that force TensorFlow onto the CPU. The files stay in their "
            "repositories; the corpus names them.",
            "",
            f"- **envcheck now:** {now}",
        ]
        if before:
            lines.append(f"- envcheck at `{args.baseline}` (the scanner before issue 10), same files: {before}")
        lines += [
            "",
            "How the lines were marked: every line of these files that names CUDA_VISIBLE_DEVICES, device_count,",
            "set_visible_devices, an environ update, a CPU device string or a strategy over devices was read in its",
            "context, as were the scanner's findings. A CPU placement counts (a `with tf.device('/CPU:0')` scope, a",
            "strategy over CPUs, GPUs hidden); a CPU chosen only when no GPU exists, a helper that returns a device,",
            "and other frameworks' devices do not. The marking was done alongside the scanner's development, so the",
            "figures for envcheck now are an upper bound for code unlike this corpus.",
        ]
        lines += ["", "| repository | file | marked | found | false alarms | missed |", "|---|---|---|---|---|---|"]
        for repo, path, want, hits, extra, missed in rows:
            lines.append(
                f"| {repo} | `{path}` | {want} | {hits} | {', '.join(map(str, extra)) or '–'} | "
                f"{', '.join(map(str, missed)) or '–'} |"
            )
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
