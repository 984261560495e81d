"""Is envcheck faster than doing it by hand? Cold and warm matrix runs side by side, in one run, on the same stacks.

    python benchmarks/matrix_speed.py [--matrix FILE] [--out FILE.json] [--ca-bundle auto|FILE|none]

Without --matrix it uses the default matrix (matrix.yaml); benchmarks/layer_sharing.yaml is the set of four stacks
that differ only in TF release with the same [and-cuda] pins, `env:` or `pip:` extras. Every step is timed from the
outside, as a user sees it, on the same stacks, one after the other:
  1 naive cold    per stack `docker build --no-cache` + `docker run` of the probe, the CA bundle handled as by hand
                  (COPY'd into the one stage, PIP_CERT set, pip straight to the index), after removing the images
  2 cold, empty   envcheck matrix --force --no-cache with an empty package cache, images removed first
  3 cold, warm    images removed again, the package cache 2 filled, then `envcheck matrix` as a CI runner with a
                  persistent package cache and a fresh Docker runs it: no layer exists when it starts (so no
                  --no-cache is needed); layers made by one stack of the run serve the next (base + Python)
  4 warm rerun    envcheck matrix, nothing changed
  5 one change    one stack's env: edited
For each envcheck step: the bytes fetched from the index (the package cache's growth). After step 3: the sum of
the images' sizes against the bytes of their distinct layers (Docker's own accounting), and whether any
intermediate build-stage image was left. The figures go to stdout and, with --out, to a JSON file.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from envcheck import labels
from envcheck.engine.client import connect
from envcheck.inputs.matrix import load_matrix
from envcheck.inputs.options import ENV_PACKAGE_CACHE_DIR, ca_bundle
from envcheck.package_cache import cache as package_cache
from envcheck.render.dockerfile import render

REPO = Path(__file__).resolve().parents[1]
RAN = {"gpu", "cpu-only"}  # a stack that built and probed, with or without a GPU


def run(command: list[str], env: dict[str, str]) -> float:
    """Time one `envcheck matrix --json`; a stack that did not build or probe makes the figure worthless."""
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.monotonic() - start
    try:
        failed = [f"{r['stack']}: {r['status']}" for r in json.loads(done.stdout) if r["status"] not in RAN]
    except (ValueError, KeyError, TypeError):
        failed = ["no JSON results"]
    if done.returncode not in (0, 1) or failed:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}, {failed}):\n{done.stderr[-3000:]}")
    return seconds


def remove_images(api: Any, names: list[str]) -> None:
    """The stacks' images (envcheck's and the naive loop's) and any build-stage image: gigabytes on a shared disk."""
    repositories = {f"envcheck/{n}" for n in names} | {f"naive/{n}" for n in names}
    for image in api.images():
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        staged = labels.STAGE in (image.get("Labels") or {})
        if staged or any(t.rsplit(":", 1)[0] in repositories for t in tags):
            subprocess.run(["docker", "rmi", "-f", image["Id"]], capture_output=True, check=False)
    subprocess.run(["docker", "image", "prune", "-f"], capture_output=True, check=False)  # no layer cache stays


def disk(api: Any, names: list[str]) -> dict[str, float]:
    """Sum of the stacks' image sizes vs the distinct layer bytes Docker holds for everything (GB)."""
    df = api.df()
    ours = [
        i for i in df["Images"] if any(t.split(":")[0] == f"envcheck/{n}" for t in i["RepoTags"] or [] for n in names)
    ]
    stages = api.images(filters={"label": labels.STAGE, "dangling": True})
    return {
        "sum_of_image_sizes_gb": round(sum(i["Size"] for i in ours) / 1e9, 2),
        "distinct_layer_gb": round(df["LayersSize"] / 1e9, 2),
        "stage_images_left": len(stages),
    }


def naive_context(stack: Any, root: Path, bundle: Path | None) -> Any:
    """The stack's Dockerfile as a user would adapt it by hand behind a TLS proxy: the same single-stage file
    envcheck renders, with the bundle copied in right after FROM and PIP_CERT pointing at it (it stays in the
    image, as it does when done by hand), and pip as the installer, as by hand."""
    ctx = render(dataclasses.replace(stack, installer="pip"), root)
    if bundle:
        shutil.copy(bundle, ctx.directory / "ca.pem")
        lines = ctx.dockerfile.read_text().splitlines(keepends=True)
        first = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
        lines[first + 1 : first + 1] = ["COPY ca.pem /etc/naive-ca.pem\n", "ENV PIP_CERT=/etc/naive-ca.pem\n"]
        ctx.dockerfile.write_text("".join(lines))
    return ctx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", type=Path, default=REPO / "matrix.yaml")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--ca-bundle", default="auto")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="envcheck-bench-"))
    matrix_file = work / "matrix.yaml"
    data = yaml.safe_load(args.matrix.read_text())
    matrix_file.write_text(yaml.safe_dump(data))
    stacks = load_matrix(str(matrix_file)).stacks
    names = [s.name for s in stacks]
    cache_dir = work / "package-cache"
    env = {**os.environ, ENV_PACKAGE_CACHE_DIR: str(cache_dir)}
    envcheck = [sys.executable, "-m", "envcheck", "matrix", "-m", str(matrix_file), "--quick", "--json"]
    envcheck += ["--ca-bundle", args.ca_bundle]
    api = connect()
    bundle = ca_bundle(args.ca_bundle)
    steps: list[dict[str, Any]] = []

    def step(name: str, seconds: float, fetched: package_cache.Usage | None) -> None:
        steps.append(
            {"step": name, "seconds": round(seconds, 1), "fetched_gb": fetched and round(fetched.bytes / 1e9, 2)}
        )
        print(
            f"{name:<34} {seconds:8.1f} s" + (f"  {fetched.bytes / 1e9:6.2f} GB fetched" if fetched else ""), flush=True
        )

    remove_images(api, names)
    start = time.monotonic()
    for stack in stacks:  # by hand: one stage, the CA bundle COPY'd in and PIP_CERT set, pip straight to the index
        ctx = naive_context(stack, work / "naive", bundle)
        subprocess.run(
            ["docker", "build", "--no-cache", "-q", "-t", f"naive/{stack.name}", str(ctx.directory)],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                f"naive/{stack.name}",
                "python",
                "/opt/envcheck/probe.py",
                "--framework",
                stack.framework,
                "--quick",
            ],
            capture_output=True,
            check=False,
        )
    step("1 naive cold", time.monotonic() - start, None)
    remove_images(api, names)
    for number, label in ((2, "cold, empty package cache"), (3, "cold layers, warm package cache")):
        before = package_cache.usage(cache_dir)
        seconds = run([*envcheck, "--force", "--no-cache"] if number == 2 else envcheck, env)
        step(f"{number} {label}", seconds, package_cache.usage(cache_dir) - before)
        if number == 3:
            layers = disk(api, names)
        else:
            remove_images(api, names)
    before = package_cache.usage(cache_dir)
    step("4 warm rerun", run(envcheck, env), package_cache.usage(cache_dir) - before)
    data["stacks"][0]["env"] = {**(data["stacks"][0].get("env") or {}), "ENVCHECK_BENCH": str(time.time())}
    matrix_file.write_text(yaml.safe_dump(data))
    before = package_cache.usage(cache_dir)
    step("5 one stack's env: changed", run(envcheck, env), package_cache.usage(cache_dir) - before)
    remove_images(api, names)
    shutil.rmtree(work, ignore_errors=True)
    naive = steps[0]["seconds"]
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "matrix": str(args.matrix),
        "stacks": names,
        "envcheck": "default options: --jobs per the daemon's CPUs (at most 4), installer uv, package cache on",
        "docker_cpus": api.info().get("NCPU"),
        "steps": steps,
        "disk_after_step_3": layers,
        "ratios_to_naive_cold": {s["step"]: round(s["seconds"] / naive, 2) for s in steps[1:]},
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
