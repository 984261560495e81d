#!/usr/bin/env python3
"""`make gpu-check`: record what a GPU host really has, for the knowledge and the GPU rules' tests.

For a host with an NVIDIA GPU and no Docker (a lent H100/H200 machine, a workstation): runs `envcheck doctor
--json --full` for every framework this Python has (TensorFlow, PyTorch, JAX; the full benchmark: float32 with
its TF32 state, float16 and bfloat16 at n = 8192, 4096 and 2048, warmed up, synchronised, median of repeats) and
writes into one folder:

- doctor.json          the whole report (every framework, the driver, Docker's answer);
- probe-FRAMEWORK.json the probe's facts for each framework, as a container's probe would print them;
- nvidia-smi.txt       `nvidia-smi -q`, when the tool exists;
- summary.md           per framework: the verdict, the GPUs it saw, and each GPU matmul with its % of the card's
                       dense datasheet peak.

Usage: scripts/gpu_check.py [--out DIR] [--quick]   (default DIR: gpu-check/; exit 0 when every framework found
uses the GPU, 1 otherwise, 2 when the report could not be made).

gpu-check/ is git-ignored; tests/test_gpu_recorded.py reads a recorded run from tests/data/gpu-check/, which is
not: the script ends by printing the commands that put this run there and stage it for a commit.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECORDED = Path("tests") / "data" / "gpu-check"  # what tests/test_gpu_recorded.py reads, from the repository's root


def shown(path: Path) -> str:
    """A path as typed at the repository's root (where `make gpu-check` runs): relative inside it."""
    resolved = path.resolve()
    return shlex.quote(str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(resolved))


def record_instructions(out: Path) -> str:
    """The commands, run at the repository's root, that make the run written to `out` the recorded one that
    tests/test_gpu_recorded.py checks, staged for a commit."""
    target = shown(REPO / RECORDED)
    if out.resolve() == (REPO / RECORDED).resolve():
        return f"To commit this recorded run (tests/test_gpu_recorded.py reads {target}/):\n  git add {target}"
    return (
        f"To record this run for tests/test_gpu_recorded.py (it reads {target}/; this run is in {shown(out)}/):\n"
        f"  mkdir -p {target} && cp {shown(out)}/* {target}/ && git add {target}\n"
        f"or record straight there next time:\n"
        f"  make gpu-check GPU_CHECK_DIR={target} && git add {target}"
    )


def summary(report: dict) -> str:
    lines = ["# gpu-check", ""]
    for check in report.get("frameworks") or []:
        probe = check.get("probe") or {}
        seen = probe.get("gpus") or []
        gpus = ", ".join(f"{g.get('device_name') or g.get('name')} (cc {g.get('compute_capability')})" for g in seen)
        lines += [
            f"## {check['framework']} {check.get('version') or '(not importable)'}",
            "",
            f"- verdict: {check['verdict']}",
            f"- driver {probe.get('driver') or 'none'}, CUDA build {probe.get('build_cuda')}, "
            f"TF32 for float32 matmuls: {probe.get('tf32_enabled')}",
            f"- GPUs seen: {gpus or 'none'}",
            f"- diagnoses: {', '.join(d['code'] for d in check.get('diagnoses') or []) or 'none'}",
        ]
        for b in probe.get("benchmark") or []:
            if b.get("device") != "gpu":
                continue
            figure = f"{b['tflops']} TFLOP/s" if b.get("tflops") is not None else f"failed: {b.get('error')}"
            peak = f", {b['percent_of_peak']}% of {b['peak_tflops']}" if b.get("percent_of_peak") else ""
            lines.append(f"- matmul {b['dtype']} ({b.get('precision') or b['dtype']}) n={b['n']}: {figure}{peak}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "gpu-check", help="folder for the recorded facts")
    parser.add_argument("--quick", action="store_true", help="the quick benchmark (n=4096 only)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "envcheck", "doctor", "--json", *([] if args.quick else ["--full"])]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    (args.out / "doctor.stderr.txt").write_text(done.stderr)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        print(f"envcheck doctor printed no report (exit {done.returncode}):\n{done.stderr[-2000:]}", file=sys.stderr)
        return 2
    (args.out / "doctor.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    for check in report["frameworks"]:
        path = args.out / f"probe-{check['framework']}.json"
        path.write_text(json.dumps(check["probe"], indent=1, sort_keys=True) + "\n")
    smi = shutil.which("nvidia-smi")
    if smi:
        queried = subprocess.run([smi, "-q"], capture_output=True, text=True, check=False, timeout=60)
        (args.out / "nvidia-smi.txt").write_text(queried.stdout + queried.stderr)
    text = summary(report)
    (args.out / "summary.md").write_text(text)
    print(text)
    print(record_instructions(args.out))
    found = [c for c in report["frameworks"] if c.get("version")]
    return 0 if found and all(c["uses_gpu"] for c in found) else 1


if __name__ == "__main__":
    sys.exit(main())
