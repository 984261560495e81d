"""How fast is a matrix run, cold, warm, after a one-stack change, and against a naive build-and-run loop?

    python benchmarks/matrix_speed.py [--matrix FILE] [--out docs/performance.md]

Without --matrix it writes a 4-stack matrix of CPU-package stacks (TF 2.15-2.18, small enough to build
cold in minutes here) into a temporary directory. Steps, each timed from the outside as a user sees it:
  cold     envcheck matrix --force --no-cache  (rebuild without the layer cache, rerun every probe)
  warm     envcheck matrix          (nothing changed: every result reused)
  changed  one stack's env edited    (only that stack rebuilt and rerun)
  naive    docker build + docker run per stack, as a shell loop would (layer cache on, probes rerun)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from envcheck import labels

DEFAULT_STACKS = [
    {"name": f"bench-tf-{v}-cpu", "tensorflow": v, "variant": "cpu"} for v in ("2.15.1", "2.16.2", "2.17.1", "2.18.1")
]


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.monotonic() - start


def remove_images(names: list[str]) -> None:
    """TF images are gigabytes each and the disk is shared: remove what this benchmark made."""
    listing = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True, check=False
    ).stdout.split()
    ours = tuple(f"envcheck/{n}:" for n in names) + tuple(f"envcheck-bench/{n}:" for n in names)
    tags = [tag for tag in listing if tag.startswith(ours)]
    if tags:
        subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True, check=False)
    subprocess.run(
        ["docker", "image", "prune", "-f", "--filter", f"label={labels.STAGE}"], capture_output=True, check=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--ca-bundle", default="auto")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="envcheck-bench-"))
    matrix = workdir / "matrix.yaml"
    data = yaml.safe_load(args.matrix.read_text()) if args.matrix else {"stacks": DEFAULT_STACKS}
    matrix.write_text(yaml.safe_dump(data))
    envcheck = [sys.executable, "-m", "envcheck", "matrix", "-m", str(matrix), "--ca-bundle", args.ca_bundle]
    names = [s["name"] for s in data["stacks"]]
    times: dict[str, float] = {}

    print(f"cold run of {len(names)} stacks in {workdir} ...", flush=True)
    times["cold"] = timed([*envcheck, "--force", "--no-cache"])
    print(f"cold {times['cold']:.1f}s; warm rerun ...", flush=True)
    times["warm"] = timed(envcheck)
    data["stacks"][0]["env"] = {"ENVCHECK_BENCH": str(time.time())}
    matrix.write_text(yaml.safe_dump(data))
    times["changed"] = timed(envcheck)
    print(f"warm {times['warm']:.1f}s; one stack changed {times['changed']:.1f}s; naive loop ...", flush=True)
    start = time.monotonic()
    for name in names:
        context = workdir / "build" / name
        subprocess.run(
            ["docker", "build", "-q", "-t", f"envcheck-bench/{name}", str(context)], check=True, capture_output=True
        )
        subprocess.run(["docker", "run", "--rm", f"envcheck-bench/{name}"], check=True, capture_output=True)
    times["naive"] = time.monotonic() - start
    remove_images(names)

    lines = [
        "# Performance",
        "",
        f"Measured {datetime.date.today()} with `benchmarks/matrix_speed.py` on {platform.node()} "
        f"({os.cpu_count()} cores, {platform.machine()}), {len(names)} stacks: {', '.join(names)}.",
        "",
        "| run | seconds | vs cold |",
        "|---|---|---|",
        *[f"| {k} | {v:.1f} | {100 * v / times['cold']:.1f}% |" for k, v in times.items()],
        "",
        f"Goal (issue 5): warm rerun under 5% of cold and under 15 s: "
        f"{'met' if times['warm'] < 0.05 * times['cold'] and times['warm'] < 15 else 'NOT met'} "
        f"({times['warm']:.1f}s, {100 * times['warm'] / times['cold']:.1f}%).",
        "",
        "cold: `envcheck matrix --force --no-cache` (no layer cache, every probe). warm: nothing changed, every result "
        "reused. changed: one stack's `env:` edited, only it rebuilt (one layer) and rerun. naive: `docker build` "
        "+ `docker run` per stack in a loop, with Docker's layer cache, every probe rerun.",
    ]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
