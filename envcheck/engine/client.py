"""The connection to the Docker daemon, with one clear error when there is none, and the host as results record it.

The docker SDK is imported here and only here, lazily, so `envcheck doctor`, `lint` and `plan` work without it.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from envcheck.errors import ConfigError, DockerUnavailable, HostUnreachable
from envcheck.inputs.hosts import HostSpec, scrub
from envcheck.results.model import Host

PING_TIMEOUT = 5  # seconds a daemon gets to answer at all: a socket that accepts and never answers is not a daemon


def client_settings(spec: HostSpec | None = None) -> tuple[str, dict[str, Any]]:
    """Where a host's daemon is (for messages) and the docker.APIClient arguments that reach it: `default` from
    DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH as the docker CLI reads them, a context from the CLI's context
    store, a URL with its TLS files. The arguments hold paths to key files, never their contents."""
    import docker
    import docker.context
    import docker.tls
    import docker.utils

    if spec is None or spec.is_default:
        kwargs = docker.utils.kwargs_from_env()
        where = kwargs.get("base_url") or "unix:///var/run/docker.sock"
        return where, kwargs
    if spec.context:
        try:
            context = docker.context.ContextAPI.get_context(spec.context)
        except Exception as exc:  # the store is the CLI's files: unreadable or malformed says so here
            raise ConfigError(
                f"host {spec.name} ({spec.where}): cannot read Docker context {spec.context!r}: {exc}"
            ) from None
        if context is None:
            raise ConfigError(
                f"host {spec.name} ({spec.where}): there is no Docker context {spec.context!r} "
                "(`docker context ls` lists them; `docker context create` makes one)."
            )
        return f"{context.Host} (context {spec.context})", {"base_url": context.Host, "tls": context.TLSConfig or False}
    kwargs: dict[str, Any] = {"base_url": spec.docker}
    if spec.docker.startswith("ssh://"):
        kwargs["use_ssh_client"] = importlib.util.find_spec("paramiko") is None  # the ssh command when no paramiko
    if spec.tls_verify or spec.cert_path:
        directory = Path(spec.cert_path or Path.home() / ".docker").expanduser()
        missing = [n for n in ("ca.pem", "cert.pem", "key.pem") if not (directory / n).is_file()]
        if missing:
            raise ConfigError(
                f"host {spec.name} ({spec.where}): cert_path {str(directory)!r} lacks {', '.join(missing)} "
                "(the directory needs ca.pem, cert.pem and key.pem, as DOCKER_CERT_PATH does)."
            )
        kwargs["tls"] = docker.tls.TLSConfig(
            client_cert=(str(directory / "cert.pem"), str(directory / "key.pem")),
            ca_cert=str(directory / "ca.pem"),
            verify=spec.tls_verify,
        )
    return spec.docker, kwargs


def connect(timeout: int = 300, spec: HostSpec | None = None) -> Any:
    """A docker.APIClient for a host's daemon (without spec: the default one, DOCKER_HOST or the socket), checked
    with a ping within PING_TIMEOUT seconds; later requests (builds, waits) get `timeout`."""
    if importlib.util.find_spec("docker") is None:
        raise DockerUnavailable(
            "The docker SDK for Python is not installed (pip install 'docker>=7.2'); "
            "building and running stacks needs it."
        )
    where, kwargs = client_settings(spec)
    url = str(kwargs.get("base_url") or "")
    try:
        client = _client_class()(version="auto", timeout=PING_TIMEOUT, **kwargs)
        client.ping()
        client.timeout = timeout
    except Exception as exc:
        shown = scrub(where, url)  # DOCKER_HOST, a hosts file or a context may hold user:password@ or ?token=
        where = shown if shown == where else f"{shown} (its user, password or query not shown)"
        if spec is not None and not spec.is_default:
            raise HostUnreachable(
                f"Cannot reach host {spec.name}'s Docker daemon at {where}: {_reason(exc, url)}"
            ) from None
        raise DockerUnavailable(
            f"Cannot reach the Docker daemon at {where}: {scrub(str(exc), url)}. Start it (for example `dockerd &` "
            "as root, or `systemctl start docker`), or point DOCKER_HOST at a running one, then run envcheck again."
        ) from None
    return client


@functools.cache
def _client_class() -> type:
    """docker.APIClient that trusts the daemon's own CA. requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on
    many machines behind a TLS-intercepting proxy) replace the CA a session was given, so TLS to a daemon with its
    own CA fails there; the daemon's CA wins here, and the environment's proxies still apply."""
    import docker

    class Client(docker.APIClient):  # type: ignore[misc]
        def __init__(self, *args: Any, tls: Any = None, **kwargs: Any) -> None:
            self.daemon_ca = tls.ca_cert if tls and tls.verify and tls.ca_cert else None
            super().__init__(*args, tls=tls or False, **kwargs)

        def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if self.daemon_ca:
                settings["verify"] = self.daemon_ca
            return settings

    return Client


def is_local(api: Any) -> bool:
    """The daemon runs on this machine (a unix socket), so this machine's NVML describes its GPUs."""
    return str(getattr(api, "base_url", "")).startswith("http+docker://localhost")


def _reason(exc: BaseException, *urls: str) -> str:
    """The innermost cause in one line (requests nests the useful part several levels deep), without the password
    or token of any URL it echoes (urls: the ones it may echo verbatim)."""
    text = scrub(str(exc).strip(), *urls) or type(exc).__name__
    return " ".join(text.split())[:300]


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
    """The daemon's host as its results record it: the daemon's facts, NVML's driver and GPUs, and the fingerprint
    that decides whether a saved result can be reused there. NVML is this machine's, so it is asked only when the
    daemon runs here (a unix socket); a remote host's driver and GPUs come from its probes (what its containers saw),
    and its fingerprint from its daemon (kernel, runtimes, CDI devices)."""
    from envcheck.readers.nvml import probe_nvml

    facts = host_facts(api)
    nvml = probe_nvml() if is_local(api) else {"driver": None, "cuda_driver": None, "gpus": []}
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
