"""Real parts for the many-hosts tests, started on this machine and always torn down: Debian's docker-registry on
127.0.0.1 with a password (htpasswd, bcrypt), and a second Docker daemon standing in for a remote GPU host — its
own socket, data root, exec root, pid file, containerd namespace and bridge interface, reached over TCP with TLS
client certificates. The first daemon's docker0 and iptables chains are left alone (`--bridge=none` would delete
docker0; this daemon gets a bridge of its own, no iptables of its own, and three rules naming only its bridge so
its builds reach the package registries).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USER = "envcheck-ci"
PASSWORD = "s3cret-registry-pw-7Qz"  # the tests grep every output for it
BRIDGE = "envcheck-br2"
BRIDGE_ADDRESS = "172.31.250.1/24"
BRIDGE_NET = "172.31.250.0/24"
# The second daemon runs without iptables (two daemons would rewrite each other's chains), so its containers get
# their way out from these rules, as Docker gives docker0 its own; they name only this bridge and are removed after.
NAT_RULES = [
    ["-t", "nat", "POSTROUTING", "-s", BRIDGE_NET, "!", "-o", BRIDGE, "-j", "MASQUERADE"],
    ["FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "ACCEPT"],
    ["FORWARD", "-o", BRIDGE, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
]


def iptables(action: str, rule: list[str]) -> subprocess.CompletedProcess[bytes]:
    """-I / -D one of NAT_RULES (the table option stays before the chain)."""
    table, rest = (rule[:2], rule[2:]) if rule[0] == "-t" else ([], rule)
    return subprocess.run(["iptables", *table, action, *rest], capture_output=True, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not come up within {seconds:.0f}s")


@dataclass
class Registry:
    """docker-registry serving plain HTTP on 127.0.0.1 (Docker trusts loopback registries without TLS)."""

    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def docker_config(self) -> Path:
        """A DOCKER_CONFIG directory holding the login, as `docker login` writes it."""
        return self.root / "docker-config"

    def tls(self) -> dict[str, str]:
        """The registry's http.tls settings (none: plain HTTP)."""
        return {}

    def context(self) -> ssl.SSLContext | None:
        """How get() trusts the registry (None: plain HTTP)."""
        return None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tls = self.tls()
        hashed = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True).stdout
        (self.root / "htpasswd").write_text(hashed)
        (self.root / "config.yml").write_text(
            json.dumps(  # JSON is YAML
                {
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {"filesystem": {"rootdirectory": str(self.root / "data")}, "delete": {"enabled": True}},
                    "http": {"addr": self.address, **({"tls": tls} if tls else {})},
                    "auth": {"htpasswd": {"realm": "envcheck-test", "path": str(self.root / "htpasswd")}},
                }
            )
        )
        self.docker_config.mkdir(exist_ok=True)
        login = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (self.docker_config / "config.json").write_text(json.dumps({"auths": {self.address: {"auth": login}}}))
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(self.root / "config.yml")],
            stdout=(self.root / "registry.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self.answers, "docker-registry" + (" (TLS)" if tls else ""))

    def get(self, path: str) -> Any:
        context = self.context()
        request = urllib.request.Request(f"{'https' if context else 'http'}://{self.address}{path}")
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return json.load(response)

    def answers(self) -> bool:
        try:
            self.get("/v2/")
            return True
        except OSError:
            return False

    def tags(self, repository: str) -> list[str]:
        try:
            return self.get(f"/v2/{repository}/tags/list").get("tags") or []
        except OSError:
            return []

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> tuple[Path, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as Docker's "protect the daemon socket"
    guide makes them. Returns (server directory, client directory with ca.pem, cert.pem, key.pem)."""
    server, client = directory / "server", directory / "client"
    server.mkdir(parents=True)
    client.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=envcheck test CA",
            "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=directory)  # fmt: skip
    for who, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                     ("client", "extendedKeyUsage=clientAuth")):  # fmt: skip
        (directory / f"{who}.ext").write_text(ext + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout", f"{who}-key.pem",
                "-out", f"{who}.csr", cwd=directory)  # fmt: skip
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}-cert.pem", cwd=directory)  # fmt: skip
    for who, target in (("server", server), ("client", client)):
        shutil.copy(directory / "ca.pem", target / "ca.pem")
        shutil.copy(directory / f"{who}-cert.pem", target / "cert.pem")
        shutil.copy(directory / f"{who}-key.pem", target / "key.pem")
    return server, client


@dataclass
class SecondDaemon:
    """A second dockerd on this machine: unix socket for the tests' own look, TCP+TLS for envcheck."""

    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    client_certs: Path | None = None
    server_certs: Path | None = None

    @property
    def socket(self) -> Path:
        return self.root / "run" / "docker.sock"

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "run").mkdir(exist_ok=True)
        self.server_certs, self.client_certs = make_certificates(self.root / "certs")
        (self.root / "daemon.json").write_text("{}\n")  # nothing from /etc/docker/daemon.json
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        for command in (
            ["ip", "link", "add", BRIDGE, "type", "bridge"],
            ["ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE],
            ["ip", "link", "set", BRIDGE, "up"],
        ):
            subprocess.run(command, check=True, capture_output=True)
        for rule in NAT_RULES:
            while iptables("-D", rule).returncode == 0:  # a crashed earlier run's copy
                pass
            iptables("-I", rule).check_returncode()

    def start(self) -> None:
        assert self.server_certs is not None
        certs = self.server_certs
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--config-file",
                str(self.root / "daemon.json"),
                "--host",
                f"unix://{self.socket}",
                "--host",
                f"tcp://127.0.0.1:{self.port}",
                "--tlsverify",
                "--tlscacert",
                str(certs / "ca.pem"),
                "--tlscert",
                str(certs / "cert.pem"),
                "--tlskey",
                str(certs / "key.pem"),
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "run" / "docker.pid"),
                "--bridge",
                BRIDGE,
                "--iptables=false",
                "--ip-masq=false",
                "--containerd-namespace",
                "envcheck-d2",
                "--containerd-plugins-namespace",
                "envcheck-d2-plugins",
            ],
            stdout=(self.root / "dockerd.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self.answers, "the second dockerd", 90)

    def api(self) -> Any:
        import docker

        return docker.APIClient(base_url=f"unix://{self.socket}", version="auto", timeout=60)

    def answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the second dockerd exited: {(self.root / 'dockerd.log').read_text()[-2000:]}")
        try:
            self.api().ping()
            return True
        except Exception:
            return False

    def stop(self) -> None:
        """SIGTERM, as `systemctl stop docker` does; waits until it is gone."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def remove(self) -> None:
        self.stop()
        for rule in NAT_RULES:
            iptables("-D", rule)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
