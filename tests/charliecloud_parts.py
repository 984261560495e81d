"""Charliecloud as the Slurm tasks' runtime on this machine (issue 28): the test registry with TLS, and the
environment in which the tasks' `ch-image pull`, `ch-convert`, `ch-fromhost --nvidia` and `ch-run`, exactly as
render writes them, pull from it with its login.

What Charliecloud 0.31 (Debian's charliecloud) needs, found by running the rendered task script as root here:
- HTTPS: ch-image talks to registries only over https:// (registry.py builds "https://HOST:PORT/v2"; no option or
  variable for plain HTTP), so against the fleet tests' plain-HTTP registry it fails with "SSLError(... WRONG_VERSION_
  NUMBER ...)". TlsRegistry serves the same registry with a certificate for 127.0.0.1 from a test CA
  (fleet_parts.make_certificates); ch-image uses Python requests, which trusts the bundle named by
  REQUESTS_CA_BUNDLE (no --tls-no-verify needed on the rendered command line).
- the login: CH_IMAGE_AUTH=yes (without it ch-image asks for an anonymous token only: "unauthorized or not in
  registry ... hint: if your registry needs authentication, use --auth") and CH_IMAGE_USERNAME/CH_IMAGE_PASSWORD,
  its only non-interactive way (no login command, no credentials file; otherwise it prompts on stdin, which in a
  batch job ends in "EOFError: EOF when reading a line"). The password stays out of every command line and file;
  the rendered ch-run unsets CH_IMAGE_* so the image's processes do not get it.
- $USER set (ch-run: "error: $USER not set"), and ch-image run by the system Python: it is `#!/usr/bin/env
  python3` and imports lark (python3-lark), which a pyenv or virtualenv python3 earlier on PATH lacks.
- root is fine: ch-run as root maps root to root in its user namespace (uid_map "0 0 1"); unprivileged users work
  too (user namespaces are allowed here: user.max_user_namespaces > 0).
- ch-fromhost --nvidia needs nvidia-container-cli (libnvidia-container-tools) on the node; here it prints
  "nvidia-container-cli: not found" / "ch-fromhost: nvidia-container-cli failed; does this host have GPUs?" and
  exits 1, which the task script tolerates.
Docker treats 127.0.0.0/8 registries as insecure (HTTPS without verifying, else HTTP), so `envcheck build --push`
should push to TlsRegistry as it does to fleet_parts.Registry.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fleet_parts import PASSWORD, USER, Registry, make_certificates

COMMANDS = ("ch-image", "ch-convert", "ch-run", "ch-fromhost")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def missing() -> str | None:
    absent = [c for c in COMMANDS if shutil.which(c, path=SYSTEM_PATH) is None]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install charliecloud)"
    lark = subprocess.run(["/usr/bin/python3", "-c", "import lark, requests"], capture_output=True, check=False)
    if lark.returncode != 0:
        return "ch-image's Python modules missing (apt-get install python3-lark python3-requests)"
    return None


@dataclass
class TlsRegistry(Registry):
    """fleet_parts.Registry (docker-registry on 127.0.0.1, htpasswd login) serving HTTPS with a test CA's
    certificate: ch-image speaks nothing else."""

    certificates: Path | None = None  # the server's and the client's files (ca.pem, cert.pem, key.pem)

    @property
    def ca(self) -> Path:
        assert self.certificates is not None, "start() first"
        return self.certificates / "client" / "ca.pem"

    def tls(self) -> dict[str, str]:
        """A certificate for 127.0.0.1 from a test CA, made as the registry starts."""
        self.certificates = self.root / "certs"
        server, _ = make_certificates(self.certificates)
        return {"certificate": str(server / "cert.pem"), "key": str(server / "key.pem")}

    def context(self) -> ssl.SSLContext:
        """get() trusts the test CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def environment(registry: TlsRegistry, root: Path) -> dict[str, str]:
    """What a task needs, on top of os.environ, to pull from the registry with its login (sbatch passes the
    submitter's environment to the job): the login in ch-image's variables, a CA bundle of the system's CAs and
    the test CA, the system Python first on PATH, $USER, and 127.0.0.1 past any proxy."""
    root.mkdir(parents=True, exist_ok=True)
    bundle = root / "ca-bundle.pem"
    system = SYSTEM_BUNDLE.read_text() if SYSTEM_BUNDLE.exists() else ""
    bundle.write_text(system + registry.ca.read_text())
    no_proxy = ",".join(p for p in (os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), "127.0.0.1") if p)
    return {
        "PATH": f"{SYSTEM_PATH}:{os.environ.get('PATH', '')}",
        "USER": os.environ.get("USER") or "root",
        "CH_IMAGE_AUTH": "yes",
        "CH_IMAGE_USERNAME": USER,
        "CH_IMAGE_PASSWORD": PASSWORD,
        "REQUESTS_CA_BUNDLE": str(bundle),
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }
