"""The connection to the Docker daemon, with one clear error when there is none, and the host as results record it.

The docker SDK is imported here and only here, lazily, so `envcheck doctor`, `lint` and `plan` work without it.
"""

from __future__ import annotations

import os
from typing import Any

from envcheck.errors import DockerUnavailable
from envcheck.results.model import Host

PING_TIMEOUT = 5  # seconds a daemon gets to answer at all: a socket that accepts and never answers is not a daemon


def connect(timeout: int = 300) -> Any:
    """A docker.APIClient for the daemon in DOCKER_HOST (or the default socket), checked with a ping within
    PING_TIMEOUT seconds; later requests (builds, waits) get `timeout`."""
    try:
        import docker
    except ImportError:
        raise DockerUnavailable(
            "The docker SDK for Python is not installed (pip install 'docker>=7.2'); "
            "building and running stacks needs it."
        ) from None
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.APIClient(
            base_url=where if "DOCKER_HOST" in os.environ else None, version="auto", timeout=PING_TIMEOUT
        )
        client.ping()
        client.timeout = timeout
    except Exception as exc:
        raise DockerUnavailable(
            f"Cannot reach the Docker daemon at {where}: {exc}. Start it (for example `dockerd &` as root, "
            "or `systemctl start docker`), or point DOCKER_HOST at a running one, then run envcheck again."
        ) from None
    return client


def docker_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the daemon refused or lost a request (for `except` clauses)."""
    import docker.errors
    import requests.exceptions

    return (docker.errors.DockerException, requests.exceptions.RequestException)


def daemon_facts(info: dict[str, Any]) -> dict[str, Any]:
    """What `docker info` says that matters for GPUs (from the SDK or the CLI's JSON alike)."""
    runtimes = sorted((info.get("Runtimes") or {}).keys())
    return {
        "runtimes": runtimes,
        "nvidia_runtime": "nvidia" in runtimes,
        "cdi_devices": [d.get("ID") for d in info.get("DiscoveredDevices") or [] if d.get("Source") == "cdi"],
        "kernel": info.get("KernelVersion"),
        "hostname": info.get("Name"),
    }


def host_facts(api: Any) -> dict[str, Any]:
    """What the daemon says about itself that matters for GPUs."""
    return {"docker_version": api.version().get("Version"), **daemon_facts(api.info())}


def describe_host(api: Any, label: str | None = None) -> Host:
    """This host as its results record it: the daemon's facts, NVML's driver and GPUs, and the fingerprint that
    decides whether a saved result can be reused here."""
    from envcheck.probe.probe import probe_nvml

    facts = host_facts(api)
    nvml = probe_nvml()
    host = Host(
        label=label or facts["hostname"] or "unknown host",
        hostname=facts["hostname"],
        docker_version=facts["docker_version"],
        runtimes=facts["runtimes"],
        nvidia_runtime=facts["nvidia_runtime"],
        cdi_devices=facts["cdi_devices"],
        kernel=facts["kernel"],
        driver=nvml["driver"],
        cuda_driver=nvml["cuda_driver"],
        gpus=[g["name"] or f"GPU {g['index']}" for g in nvml["gpus"]],
    )
    host.fingerprint = host.decisive_fingerprint()
    return host
