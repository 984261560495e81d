"""How right is `envcheck doctor --script` on real code? Precision and recall on a corpus of public files.

    python benchmarks/script_scan.py [--corpus benchmarks/script_corpus.yaml] [--mirrors DIR]
                                     [--baseline REV] [--out FILE] [--json FILE] [--show tune|held|all]

The corpus (benchmarks/script_corpus.yaml) names public repositories at a commit, the folders of each that count
(every .py and .ipynb file in them), and, read by a person, the lines that force TensorFlow onto the CPU (for a
notebook, cell/line). The files are not in this repository: they are read from local git mirrors of those
repositories (`--mirrors`, one `owner+name/repo` git directory each, as the session tools fetch them). A finding
on an expected line is a true positive, one elsewhere a false alarm, an expected line without one a miss.
`--baseline REV` measures the scanner of an earlier envcheck (its doctor.py at REV) on the same files, side by side.

A file is held aside when sha256(repo + "/" + path) % 3 == 0, fixed before the scanner was tuned on the corpus of
issue 27: rules are tuned on the other part (`--show tune` prints its false alarms and misses), and the held part
says how the scan does on files nobody tuned for. Figures are given per framework: a marked line counts for the
framework its corpus comment names (`path:  # torch`), a false alarm for the framework the scanner named, or for
an "any" finding (CUDA_VISIBLE_DEVICES) the framework the file imports.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import json
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
FRAMEWORKS = ("torch", "jax", "tensorflow")
# The libraries whose import makes a file count as using a framework (the corpus header's counts).
IMPORTS = {
    "torch": ("torch", "torchvision", "lightning", "pytorch_lightning", "stable_baselines3", "peft", "transformers"),
    "jax": ("jax", "jaxlib", "flax", "numpyro", "optax", "diffrax", "netket", "levanter", "equinox", "haiku"),
    "tensorflow": ("tensorflow", "keras", "tensorflow_datasets"),
}
IMPORT_RE = re.compile(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", re.MULTILINE)
# `    path:  # torch` in a corpus: the framework of that file's marked lines.
LABEL_RE = re.compile(
    r"^- repo: (?P<repo>\S+)$|^    (?P<path>\S[^#\n]*?):[ \t]+#[ \t]*(?P<framework>torch|jax|tensorflow)\b", re.M
)
Counts = dict[tuple[str, str], list[int]]  # (part, framework) -> [found, false alarms, missed, files using it]
Row = tuple[str, str, int, int, list, list]  # repo, path, marked, found, false alarms, missed


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


def held_aside(repo: str, path: str) -> bool:
    return int(hashlib.sha256(f"{repo}/{path}".encode()).hexdigest(), 16) % 3 == 0


def labels_of(corpus: str) -> dict[tuple[str, str], str]:
    """(repo, path) -> the framework the corpus comment names for that file's marked lines."""
    labels, repo = {}, ""
    for match in LABEL_RE.finditer(corpus):
        if match["repo"]:
            repo = match["repo"]
        else:
            labels[(repo, match["path"].strip().strip("'\""))] = match["framework"]
    return labels


def frameworks_used(text: str) -> list[str]:
    """The frameworks a file imports (a notebook's JSON still shows its imports line by line)."""
    modules = set(IMPORT_RE.findall(text.replace('\\n"', "\n").replace('"', "\n")))
    return [f for f in FRAMEWORKS if modules & set(IMPORTS[f])]


def expected_of(entry: dict, path: str) -> set[tuple[int | None, int]]:
    found = set()
    for item in (entry.get("forced") or {}).get(path, []):
        if isinstance(item, str):
            cell, line = item.split("/")
            found.add((int(cell), int(line)))
        else:
            found.add((None, int(item)))
    return found


def measure(
    entries: list[dict], mirrors: Path, scanner: Scanner, show: str | None, labels: dict[tuple[str, str], str]
) -> tuple[Counts, list[Row]]:
    """Found / false alarms / missed per (part, framework) ("all" sums the parts), and a row per file that has a
    marked line or a false alarm."""
    counts: Counts = {}
    rows: list[Row] = []
    for entry in entries:
        for path, text in files_of(mirrors, entry):
            try:
                findings = scanner(text, path, path.endswith(".ipynb"))
            except (SyntaxError, ValueError, RecursionError):  # the baseline raises where the scanner now reports
                findings = []
            got = {(f.get("cell"), f["line"]): f.get("framework", "any") for f in findings}
            want = expected_of(entry, path)
            used = frameworks_used(text)
            label = labels.get((entry["repo"], path))
            part = "held" if held_aside(entry["repo"], path) else "tune"

            def framework_of(named: str, label: str | None = label, used: list[str] = used) -> str:
                return label or (named if named != "any" else used[0] if used else "any")

            tallies = [(framework_of("any"), 2, line) for line in want - set(got)]
            tallies += [(framework_of(got[line]), 0 if line in want else 1, line) for line in got]
            for framework in used:
                for key in ((part, framework), ("all", framework)):
                    counts.setdefault(key, [0, 0, 0, 0])[3] += 1
            for framework, kind, _line in tallies:
                for key in ((part, framework), ("all", framework), (part, "all"), ("all", "all")):
                    counts.setdefault(key, [0, 0, 0, 0])[kind] += 1
            extra, missed = sorted(set(got) - want, key=str), sorted(want - set(got), key=str)
            if want or extra:
                rows.append((entry["repo"], path, len(want), len(want & set(got)), extra, missed))
            wrong = sorted((line, ("found", "false alarm", "missed")[kind]) for _, kind, line in tallies if kind)
            if show in (part, "all") and wrong:
                print(f"  {part}: {entry['repo']}:{path}: {wrong}")
    return counts, rows


def scores(tp: int, fp: int, fn: int) -> dict[str, Any]:
    return {
        "found": tp,
        "false_alarms": fp,
        "missed": fn,
        "precision": round(tp / (tp + fp), 3) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 3) if tp + fn else 1.0,
    }


def summary(tp: int, fp: int, fn: int) -> str:
    got = scores(tp, fp, fn)
    return f"{tp} found, {fp} false alarms, {fn} missed: precision {got['precision']:.2f}, recall {got['recall']:.2f}"


def table(counts: Counts) -> dict[str, dict[str, dict[str, Any]]]:
    """{part: {framework: scores and files using it}}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (part, framework), (tp, fp, fn, files) in sorted(counts.items()):
        out.setdefault(part, {})[framework] = (
            {**scores(tp, fp, fn), "files": files} if framework != "all" else scores(tp, fp, fn)
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=HERE / "script_corpus.yaml")
    parser.add_argument("--mirrors", type=Path, default=Path(os.environ.get("ENVCHECK_MIRRORS", "/work/.mirror")))
    parser.add_argument("--baseline", metavar="REV", help="also measure the scanner of envcheck at this git revision")
    parser.add_argument("--out", type=Path, help="write the results as Markdown here")
    parser.add_argument("--json", type=Path, help="write the figures per part and framework as JSON here")
    parser.add_argument("--show", choices=("tune", "held", "all"), help="print the false alarms and misses of a part")
    args = parser.parse_args()
    corpus = args.corpus.read_text()
    entries, labels = yaml.safe_load(corpus), labels_of(corpus)
    try:
        files = sum(len(files_of(args.mirrors, e)) for e in entries)
    except FileNotFoundError as exc:
        sys.exit(f"a corpus repository is missing under {args.mirrors} (fetch it first): {exc}")
    expected = sum(len(lines) for e in entries for lines in (e.get("forced") or {}).values())
    counts, rows = measure(entries, args.mirrors, current, args.show, labels)
    now = summary(*counts.get(("all", "all"), [0, 0, 0])[:3])
    print(f"{files} files from {len(entries)} repositories, {expected} lines that force the CPU")
    print(f"envcheck now: {now}")
    figures = table(counts)
    for part in ("tune", "held"):
        for framework, got in figures.get(part, {}).items():
            used = f", {got['files']} files use it" if "files" in got else ""
            print(f"  {part:4} {framework:10}: {summary(got['found'], got['false_alarms'], got['missed'])}{used}")
    if args.json:
        record = {"date": str(datetime.date.today()), "corpus": str(args.corpus), "files": files, "marked": expected}
        args.json.write_text(json.dumps({**record, "held_aside": 'sha256(repo + "/" + path) % 3 == 0', **figures},
                                        indent=1) + "\n")  # fmt: skip
    before = None
    if args.baseline:
        before = summary(*measure(entries, args.mirrors, baseline(args.baseline), None, labels)[0][("all", "all")][:3])
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
