"""How fast does `envcheck explain` read a big log? Megabytes per second on logs built from real lines.

    python benchmarks/explain_speed.py [--mb 100] [--out FILE]

Three logs of the given size, each written to a temporary file and read by the real command (`python -m envcheck
explain FILE --json`, a fresh process, as a user runs it), one after the other on the same machine:
  repeated  the corpus of users' logs (tests/data/explain_corpus.yaml) over and over: a chatty log that repeats
            its lines (time stamps aside), what TF and training loops mostly print;
  unique    the same lines, each made unique by a counter in front: the worst case, every line new and nearly
            every one a CUDA or framework line that is read in full;
  quiet     a training log: Keras progress lines with varying numbers, and the corpus once in the middle.
The figure is wall time of the whole command (start-up included) and the throughput it gives.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "data" / "explain_corpus.yaml"


def write(path: Path, size: int, kind: str, corpus: str) -> None:
    lines = corpus.splitlines(keepends=True)
    with path.open("w", encoding="utf-8") as out:
        written, i = 0, 0
        while written < size:
            if kind == "repeated":
                chunk = corpus
            elif kind == "unique":
                chunk = f"{i} {lines[i % len(lines)]}"
            else:
                chunk = (
                    f"{i % 1875 + 1}/1875 [==============================] - {i % 9 + 1}s {i % 7 + 2}ms/step - "
                    f"loss: {1 / (i + 2):.4f} - accuracy: {1 - 1 / (i + 3):.4f}\n"
                )
                if i == 500_000:
                    chunk += corpus
            out.write(chunk)
            written += len(chunk.encode())
            i += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="size of each log in MB (default 100)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args()
    corpus = "".join(case["log"] for case in yaml.safe_load(CORPUS.read_text()))
    size = int(args.mb * 1e6)
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("repeated", "unique", "quiet"):
            path = Path(tmp) / f"{kind}.log"
            write(path, size, kind, corpus)
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "envcheck", "explain", str(path), "--json"],
                capture_output=True,
                text=True,
                check=False,
            )
            seconds = time.monotonic() - started
            if done.returncode not in (0, 1):
                print(done.stderr, file=sys.stderr)
                return 1
            doc = json.loads(done.stdout)
            mb = path.stat().st_size / 1e6
            figures.append(
                {
                    "log": kind,
                    "mb": round(mb, 1),
                    "lines": doc["lines"],
                    "seconds": round(seconds, 1),
                    "mb_per_s": round(mb / seconds, 1),
                    "causes": [d["code"] for d in doc["diagnoses"]],
                }
            )
            print(f"{kind:9} {mb:7.1f} MB {doc['lines']:>9} lines {seconds:6.1f} s {mb / seconds:6.1f} MB/s")
            path.unlink()
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}",
        "figures": figures,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
