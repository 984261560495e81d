"""`envcheck doctor`: the same probe and rules for the user's own host, no Docker needed.

The probe runs in a child process of the current Python (so TensorFlow's import cannot take envcheck down),
Docker is asked whether it could give containers a GPU, and `--script` scans the user's code for what forces
the CPU.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck.diagnose import ERROR, Facts, diagnose, uses_gpu
from envcheck.engine.client import daemon_facts
from envcheck.errors import ConfigError
from envcheck.probe import PROBE_SOURCE, parse_output
from envcheck.results.model import Benchmark, Diagnosis
from envcheck.scan import Scan, scan_paths

PROBE_TIMEOUT = 300


def probe_host(quick: bool = True) -> dict[str, Any]:
    """The probe's report for the current Python on this host."""
    args = [sys.executable, str(PROBE_SOURCE), *(["--quick"] if quick else [])]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return {"errors": [f"the probe did not finish in {PROBE_TIMEOUT}s"], "tensorflow": None}
    facts = parse_output(done.stdout)
    if facts is not None:
        return facts
    return {
        "errors": [f"the probe printed no report (exit {done.returncode}): {done.stderr[-500:]}"],
        "tensorflow": None,
    }


def docker_facts() -> dict[str, Any]:
    """Whether a Docker daemon answers here, and whether it has an NVIDIA runtime or CDI GPU devices."""
    try:
        from envcheck.engine import connect, host_facts

        return {"reachable": True, **host_facts(connect(timeout=10))}
    except Exception as sdk_error:  # no SDK, or no daemon: try the CLI, which needs no SDK
        cli = shutil.which("docker")
        if cli is None:
            return {"reachable": False, "error": f"docker: {sdk_error}"}
        try:
            done = subprocess.run(
                [cli, "info", "--format", "{{json .}}"], capture_output=True, text=True, timeout=20, check=False
            )
            info = json.loads(done.stdout)
        except (OSError, subprocess.SubprocessError, ValueError):
            return {"reachable": False, "error": str(sdk_error)}
        if not info.get("ServerVersion"):
            return {"reachable": False, "error": "; ".join(info.get("ServerErrors") or []) or str(sdk_error)}
        return {"reachable": True, "docker_version": info.get("ServerVersion"), **daemon_facts(info)}


def scan_scripts(paths: list[str]) -> Scan:
    """--script FILE|DIR: what forces the CPU in the user's code (envcheck.scan)."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise ConfigError(f"--script {', '.join(missing)}: no such file or directory")
    return scan_paths([Path(p) for p in paths])


@dataclass
class HostCheck:
    """What `envcheck doctor` found on this host: the verdict first, then the facts it rests on."""

    verdict: str
    uses_gpu: bool
    probe: dict[str, Any]
    docker: dict[str, Any]
    script_findings: list[dict[str, Any]]
    unreadable_scripts: list[dict[str, str]] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    benchmark: list[Benchmark] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "uses_gpu": self.uses_gpu,
            "probe": {**self.probe, "benchmark": [b.to_dict() for b in self.benchmark]},
            "docker": self.docker,
            "script_findings": self.script_findings,
            "unreadable_scripts": self.unreadable_scripts,
            "diagnoses": [d.to_dict() for d in self.diagnoses],
        }


def doctor(scripts: list[str] | None = None, quick: bool = True) -> HostCheck:
    """Probe this host, ask Docker, scan the scripts, and diagnose."""
    scanned = scan_scripts(scripts or [])
    probe = probe_host(quick)
    docker = docker_facts()
    facts = Facts(probe=probe, in_container=False, docker=docker, script_findings=tuple(scanned.findings))
    diagnoses = diagnose(facts)
    return HostCheck(
        verdict(probe, diagnoses),
        uses_gpu(probe, diagnoses),
        probe,
        docker,
        scanned.findings,
        scanned.unreadable,
        diagnoses,
        facts.benchmark,
    )


def verdict(probe: dict[str, Any], diagnoses: list[Diagnosis]) -> str:
    errors = [d for d in diagnoses if d.severity == ERROR]
    if probe.get("gpus") and not errors:
        names = ", ".join(g.get("device_name") or g["name"] for g in probe["gpus"])
        return f"TensorFlow {probe.get('tensorflow')} uses the GPU here ({names})."
    if errors:
        return f"TensorFlow will not use a GPU here: {errors[0].summary}"
    return "TensorFlow will not use a GPU here."


def format_text(check: HostCheck) -> str:
    """Verdict first, then each cause with its evidence and fix, then the facts it rests on."""
    probe = check.probe
    out = [check.verdict, ""]
    for d in check.diagnoses:
        out.append(f"[{d.severity}] {d.code}: {d.summary}")
        out += [f"    evidence: {e}" for e in d.evidence]
        out.append(f"    fix: {d.fix}")
    nvml = probe.get("nvml") or {}
    docker = check.docker
    gpus = ", ".join(g.get("name") or f"GPU {g.get('index')}" for g in nvml.get("gpus") or [])
    out += [
        "",
        f"Python {probe.get('python')}; TensorFlow {probe.get('tensorflow') or 'not importable'}"
        + (
            f" (CUDA build: {probe.get('is_cuda_build')}, CUDA {probe.get('build_cuda')}, cuDNN "
            f"{probe.get('build_cudnn')})"
            if probe.get("tensorflow")
            else ""
        ),
        f"NVIDIA driver: {probe.get('driver') or 'none'}"
        + (f" (CUDA {probe.get('cuda_driver')})" if probe.get("cuda_driver") else "")
        + (f"; GPUs: {gpus}" if gpus else "")
        + ("; NVML read through ctypes (nvidia-ml-py is not installed)" if nvml.get("bindings") == "ctypes" else ""),
        "Docker: "
        + (
            f"{docker.get('docker_version')}, runtimes {', '.join(docker.get('runtimes') or [])}"
            if docker.get("reachable")
            else f"not reachable ({docker.get('error', '')[:120]})"
        ),
    ]
    out += [f"--script could not read {u['file']}: {u['reason']}" for u in check.unreadable_scripts]
    for b in check.benchmark:
        figure = f"{b.tflops} TFLOP/s" if b.tflops is not None else f"failed: {b.error}"
        peak = f" ({b.percent_of_peak}% of peak)" if b.percent_of_peak else ""
        out.append(
            f"matmul {b.library} {b.device} {b.dtype}{f' as {b.precision}' if b.precision else ''} n={b.n}: "
            f"{figure}{peak}"
        )
    return "\n".join(out)
