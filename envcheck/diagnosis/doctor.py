"""`envcheck doctor`: the same probe and rules for the user's own host, no Docker needed.

The probe runs in a child process of the current Python (so a framework's import cannot take envcheck down),
once for the framework asked about (--framework, TensorFlow by default) and once for every other framework this
Python has (TensorFlow, PyTorch, JAX); Docker is asked whether it could give containers a GPU, and `--script`
scans the user's code for what forces each framework onto the CPU.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck import frameworks
from envcheck.diagnosis.diagnose import ERROR, diagnose, uses_gpu
from envcheck.diagnosis.pick import with_install_hint
from envcheck.diagnosis.probe_facts import Facts
from envcheck.diagnosis.scan import Scan, scan_paths
from envcheck.engine.client import connect, daemon_facts, docker_errors, host_facts
from envcheck.errors import ConfigError, DockerUnavailable
from envcheck.inputs.hosts import scrub
from envcheck.inputs.options import DEFAULTS
from envcheck.knowledge import Knowledge, Version
from envcheck.probe import parse_output, staged
from envcheck.results.model import Benchmark, Diagnosis

PROBE_TIMEOUT = 300


def installed_frameworks() -> list[str]:
    """The frameworks this Python has, found without importing them."""
    return [fw.name for fw in frameworks.FRAMEWORKS if importlib.util.find_spec(fw.name) is not None]


def probe_host(quick: bool = True, framework: str = DEFAULTS.framework) -> dict[str, Any]:
    """The probe's report on one framework for the current Python on this host."""
    failed = {"framework": framework, "framework_version": None, "tensorflow": None}
    try:
        with staged() as probe:
            args = [sys.executable, str(probe), "--framework", framework, *(["--quick"] if quick else [])]
            done = subprocess.run(args, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return {**failed, "errors": [f"the probe did not finish in {PROBE_TIMEOUT}s"]}
    facts = parse_output(done.stdout)
    if facts is not None:
        return facts
    return {**failed, "errors": [f"the probe printed no report (exit {done.returncode}): {done.stderr[-500:]}"]}


def docker_facts() -> dict[str, Any]:
    """Whether a Docker daemon answers here, and whether it has an NVIDIA runtime or CDI GPU devices: asked through
    the docker SDK, as builds and runs ask it (`via: sdk`); through the docker CLI only where the SDK is missing
    (`via: cli`). Errors never show a password or token of DOCKER_HOST."""
    try:
        importlib.import_module("docker")
    except ImportError as missing:  # no SDK (or a broken one): the CLI needs none
        return _cli_facts(f"docker SDK: {missing}")
    try:
        return {"reachable": True, "via": "sdk", **host_facts(connect(timeout=10))}
    except (DockerUnavailable, *docker_errors()) as exc:
        return {"reachable": False, "via": "sdk", "error": scrub(str(exc))}


def _cli_facts(why_not_sdk: str) -> dict[str, Any]:
    """`docker info` from the CLI, for a Python without the docker SDK."""
    cli = shutil.which("docker")
    if cli is None:
        return {"reachable": False, "via": "cli", "error": f"{why_not_sdk}; no docker command either"}
    try:
        done = subprocess.run(
            [cli, "info", "--format", "{{json .}}"], capture_output=True, text=True, timeout=20, check=False
        )
        info = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {"reachable": False, "via": "cli", "error": why_not_sdk}
    if not info.get("ServerVersion"):
        return {
            "reachable": False,
            "via": "cli",
            "error": scrub("; ".join(info.get("ServerErrors") or []) or why_not_sdk),
        }
    return {"reachable": True, "via": "cli", "docker_version": info.get("ServerVersion"), **daemon_facts(info)}


def scan_scripts(paths: list[str]) -> Scan:
    """--script FILE|DIR: what forces the CPU in the user's code (envcheck.diagnosis.scan)."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise ConfigError(f"--script {', '.join(missing)}: no such file or directory")
    return scan_paths([Path(p) for p in paths])


@dataclass
class FrameworkCheck:
    """One framework of this host's Python: its verdict, the probe's facts, the diagnoses and the benchmark."""

    framework: str
    verdict: str
    uses_gpu: bool
    probe: dict[str, Any]
    diagnoses: list[Diagnosis] = field(default_factory=list)
    benchmark: list[Benchmark] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "version": self.probe.get("framework_version") or self.probe.get("tensorflow"),
            "verdict": self.verdict,
            "uses_gpu": self.uses_gpu,
            "probe": {**self.probe, "benchmark": [b.to_dict() for b in self.benchmark]},
            "diagnoses": [d.to_dict() for d in self.diagnoses],
        }


@dataclass
class HostCheck:
    """What `envcheck doctor` found on this host: every framework this Python has, the one asked about first (its
    verdict is the host's), and what Docker and the scripts said."""

    frameworks: list[FrameworkCheck]  # never empty: the framework asked about is probed even when missing
    docker: dict[str, Any]
    script_findings: list[dict[str, Any]]
    unreadable_scripts: list[dict[str, str]] = field(default_factory=list)

    @property
    def first(self) -> FrameworkCheck:
        return self.frameworks[0]

    @property
    def verdict(self) -> str:
        return self.first.verdict

    @property
    def uses_gpu(self) -> bool:
        return self.first.uses_gpu

    def to_dict(self) -> dict[str, Any]:
        first = self.first.to_dict()
        return {
            "verdict": first["verdict"],
            "uses_gpu": first["uses_gpu"],
            "probe": first["probe"],
            "docker": self.docker,
            "script_findings": self.script_findings,
            "unreadable_scripts": self.unreadable_scripts,
            "diagnoses": first["diagnoses"],
            "frameworks": [f.to_dict() for f in self.frameworks],
        }


def check_framework(
    framework: str, quick: bool, docker: dict[str, Any], findings: list[dict[str, Any]]
) -> FrameworkCheck:
    """Probe one framework and diagnose it with the script findings that concern it."""
    probe = probe_host(quick, framework)
    mine = tuple(f for f in findings if f.get("framework", "any") in ("any", framework))
    facts = Facts(probe=probe, in_container=False, docker=docker, script_findings=mine)
    gpus = [
        (g.get("name") or f"GPU {g.get('index')}", Version.lenient(g.get("compute_capability")))
        for g in (probe.get("nvml") or {}).get("gpus") or []
    ]
    fw = frameworks.framework(framework)
    diagnoses = with_install_hint(diagnose(facts), fw, probe.get("driver"), gpus, probe.get("python"), Knowledge.load())
    return FrameworkCheck(
        framework, verdict(probe, diagnoses, framework), uses_gpu(probe, diagnoses), probe, diagnoses, facts.benchmark
    )


def doctor(scripts: list[str] | None = None, quick: bool = True, framework: str = DEFAULTS.framework) -> HostCheck:
    """Probe this host for `framework` and every other framework its Python has, ask Docker, scan the scripts,
    and diagnose each framework."""
    scanned = scan_scripts(scripts or [])
    docker = docker_facts()
    names = [framework, *(name for name in installed_frameworks() if name != framework)]
    checks = [check_framework(name, quick, docker, scanned.findings) for name in names]
    return HostCheck(checks, docker, scanned.findings, scanned.unreadable)


def verdict(probe: dict[str, Any], diagnoses: list[Diagnosis], framework: str = DEFAULTS.framework) -> str:
    name = frameworks.framework(framework).display_name
    errors = [d for d in diagnoses if d.severity == ERROR]
    if probe.get("gpus") and not errors:
        names = ", ".join(g.get("device_name") or g["name"] for g in probe["gpus"])
        version = probe.get("framework_version") or probe.get("tensorflow")
        return f"{name} {version} uses the GPU here ({names})."
    if errors:
        return f"{name} will not use a GPU here: {errors[0].summary}"
    return f"{name} will not use a GPU here."


def format_text(check: HostCheck) -> str:
    """Verdict first, then each cause with its evidence and fix, then the facts it rests on."""
    first = check.first
    probe = first.probe
    out = [first.verdict, ""]
    for d in first.diagnoses:
        out.append(f"[{d.severity}] {d.code}: {d.summary}")
        out += [f"    evidence: {e}" for e in d.evidence]
        out.append(f"    fix: {d.fix}")
    nvml = probe.get("nvml") or {}
    docker = check.docker
    gpus = ", ".join(g.get("name") or f"GPU {g.get('index')}" for g in nvml.get("gpus") or [])
    name = frameworks.framework(first.framework).display_name
    version = probe.get("framework_version") or probe.get("tensorflow")
    out += [
        "",
        f"Python {probe.get('python')}; {name} {version or 'not importable'}"
        + (
            f" (CUDA build: {probe.get('is_cuda_build')}, CUDA {probe.get('build_cuda')}, cuDNN "
            f"{probe.get('build_cudnn')})"
            if version
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
    for other in check.frameworks[1:]:
        out.append(f"also in this Python: {other.verdict}")
        out += [f"    [{d.severity}] {d.code}: {d.summary}" for d in other.diagnoses if d.severity == ERROR]
    for b in (b for c in check.frameworks for b in c.benchmark):
        figure = f"{b.tflops} TFLOP/s" if b.tflops is not None else f"failed: {b.error}"
        peak = f" ({b.percent_of_peak}% of peak)" if b.percent_of_peak else ""
        out.append(
            f"matmul {b.library} {b.device} {b.dtype}{f' as {b.precision}' if b.precision else ''} n={b.n}: "
            f"{figure}{peak}"
        )
    return "\n".join(out)
