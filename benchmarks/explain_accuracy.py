"""How often does `envcheck explain` name the cause a public thread settled? Per framework, on the corpora of
benchmarks/corpora/ (logs users posted, each with its thread's cause), apart for the part held aside.

    python benchmarks/explain_accuracy.py [--out FILE] [--show tune|held|all]

A case is held aside when sha256(its URL) % 3 == 0: decided before any case was run, so the held part is never
looked at while rules are tuned; its figure is the one that says how explain does on logs nobody tuned for.
A case is right when explain's first diagnosis is the thread's cause; a `new:` cause (no code yet) is wrong until a
code for it exists; a traceback is wrong and named.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from envcheck.diagnosis.explain import ExplainOptions, explain  # noqa: E402

CORPORA = REPO / "benchmarks" / "corpora"
LOGS = (
    "torch-github.yaml",
    "torch-elsewhere.yaml",
    "torch-more.yaml",
    "jax.yaml",
    "jax-more.yaml",
    "jax-third.yaml",
    "tf-fresh.yaml",
    "torch-fourth.yaml",
    "jax-fourth.yaml",
    "torch-fifth.yaml",
    "jax-fifth.yaml",
    "tf-second.yaml",
)


def held_aside(case: dict[str, Any]) -> bool:
    return int(hashlib.sha256(case["source"].encode()).hexdigest(), 16) % 3 == 0


def settled(case: dict[str, Any]) -> bool:
    """Its collector saw the thread settle the cause; one marked unsure ("UNSURE: ...", "(unsure) ...": the settling
    reply was not in view) is kept in the file for a reviewer but not counted."""
    return not case["thread"].lstrip("(\"' ").lower().startswith("unsure")


def file_cases(names: Iterable[str]) -> list[dict[str, Any]]:
    """Every case of these corpus files, each with the file it is in (`file`)."""
    found = []
    for name in names:
        if (CORPORA / name).exists():
            found += [{**case, "file": name} for case in yaml.safe_load((CORPORA / name).read_text())]
    return found


def cases(unsure: bool = False) -> list[dict[str, Any]]:
    """Every settled case of the corpora (with `unsure`, also those marked unsure)."""
    return [case for case in file_cases(LOGS) if unsure or settled(case)]


def tuned_cases(names: Iterable[str]) -> list[dict[str, Any]]:
    """The settled cases of these files that rules may be tuned on: the part not held aside (the tests' cases)."""
    return [case for case in file_cases(names) if settled(case) and not held_aside(case)]


def explained(case: dict[str, Any]) -> list[str]:
    args = case.get("args")
    framework, version, driver, gpus = (*args[:3], tuple(args[3] or ())) if args else (None, None, None, ())
    try:
        found = explain(case["log"].splitlines(keepends=True), ExplainOptions(framework, version, driver, gpus))
    except Exception as exc:
        return [f"traceback: {type(exc).__name__}: {exc}"]
    return [d.code for d in found.diagnoses]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write every case's answer as JSON")
    parser.add_argument("--show", choices=("tune", "held", "all"), help="print the wrong cases of this part")
    options = parser.parse_args()
    rows, score, per_file = [], {}, {}
    for case in cases():
        part = "held" if held_aside(case) else "tune"
        codes = explained(case)
        right = codes[:1] == [case["cause"]]
        tally = score.setdefault((case["framework"], part), [0, 0])
        tally[0] += right
        tally[1] += 1
        in_file = per_file.setdefault((case["file"], part), [0, 0])
        in_file[0] += right
        in_file[1] += 1
        rows.append(dict(source=case["source"], file=case["file"], framework=case["framework"], part=part,
                         cause=case["cause"], got=codes[:3], right=right))  # fmt: skip
        if options.show in (part, "all") and not right:
            print(f"  wrong ({part}): {case['source']}: {case['cause']} <- {codes[:3]}")
    left_out = len(cases(unsure=True)) - len(cases())
    print(f"explain accuracy, {datetime.date.today()} ({left_out} cases marked unsure by their collector not counted):")
    for (framework, part), (right, total) in sorted(score.items()):
        print(f"  {framework:10} {part}: {right}/{total} = {100 * right / total:.0f} %")
    print("per file:")
    for (name, part), (right, total) in sorted(per_file.items()):
        print(f"  {name:20} {part}: {right}/{total} = {100 * right / total:.0f} %")
    if options.out:
        options.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
