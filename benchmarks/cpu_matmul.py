"""Is envcheck's CPU matmul figure right? Compare it with NumPy's BLAS in the same container.

Runs the probe's full benchmark in an image several times and reports, for n=2048 float32, TensorFlow's
TFLOP/s, NumPy's, and their ratio (the goal: within 20%). For contrast it also times a careless loop (eager
matmuls, one warm-up, the mean of three runs, no synchronisation care), the way many blog posts measure.

    python benchmarks/cpu_matmul.py envcheck/tf-2.15-cuda12:<hash> [--rounds 5] [--out docs/cpu-matmul.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
from pathlib import Path

CARELESS = """
import time, tensorflow as tf
a = tf.random.uniform((2048, 2048)); b = tf.random.uniform((2048, 2048))
tf.matmul(a, b)
times = []
for _ in range(3):
    t = time.time(); c = tf.matmul(a, b); times.append(time.time() - t)
print(2 * 2048**3 / (sum(times) / len(times)) / 1e12)
"""


def docker_python(image: str, *args: str) -> str:
    done = subprocess.run(
        ["docker", "run", "--rm", image, "python", *args], capture_output=True, text=True, check=True, timeout=600
    )
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args()

    rows = []
    for round_ in range(1, args.rounds + 1):
        report = json.loads(docker_python(args.image, "/opt/envcheck/probe.py").strip().splitlines()[-1])
        figures = {b["library"]: b["tflops"] for b in report["benchmark"] if b["n"] == 2048 and b["device"] == "cpu"}
        careless = float(docker_python(args.image, "-c", CARELESS).strip().splitlines()[-1])
        rows.append((round_, figures["tensorflow"], figures["numpy"], careless))
        print(
            f"round {round_}: tensorflow {figures['tensorflow']:.4f}  numpy {figures['numpy']:.4f}  "
            f"careless {careless:.4f} TFLOP/s",
            flush=True,
        )
    ratios = [tf / np for _, tf, np, _ in rows]
    median_ratio = statistics.median(ratios)
    verdict = "within 20%" if abs(median_ratio - 1) <= 0.2 else "NOT within 20%"
    lines = [
        "# CPU matmul: envcheck's figure against NumPy",
        "",
        f"{datetime.date.today()} on {platform.node()} ({platform.processor() or platform.machine()}), image "
        f"`{args.image}`; n=2048 float32, TFLOP/s, {args.rounds} rounds (`benchmarks/cpu_matmul.py`).",
        "",
        "| round | envcheck (TensorFlow) | NumPy | ratio | careless loop |",
        "|---|---|---|---|---|",
        *[f"| {r} | {tf:.4f} | {np:.4f} | {tf / np:.2f} | {c:.4f} |" for r, tf, np, c in rows],
        "",
        f"Median ratio TensorFlow/NumPy: {median_ratio:.2f} ({verdict}). Median careless loop: "
        f"{statistics.median(c for *_, c in rows):.4f} TFLOP/s.",
    ]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
