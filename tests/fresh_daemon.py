"""The Docker engine the Docker tests run against: a daemon started fresh for the test session, as a new user's is.

A daemon's first start differs from a restarted one: Debian's docker.io 20.10 reports the default bridge's IPAM
config without a `Gateway` until it has been restarted, and development and CI machines run a daemon that has been
restarted, so tests on it never took the path every new user takes (issue 24). So the session starts its own
dockerd, in a network namespace of its own (it creates its own docker0 and iptables chains there, exactly as on a
new machine; a daemon given an existing bridge with an address would not reproduce it), with its own data root,
exec root, pid file and socket, and the test process itself moves into that namespace: envcheck's package cache
must listen on that daemon's bridges, and the registry and second daemon of the fleet tests live there too. A
veth pair and two host rules naming only it give the namespace its way out (Debian, PyPI). The user's own daemon,
images and containers are never touched: everything the tests make lives in the session's data root, removed at
the end.

Before anything starts the free disk space is checked against what the suite needs (NEEDED_GB, measured), so a
full disk is said up front instead of as `no space left on device` in the middle of a build.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path("/var/lib/envcheck-tests")  # one directory per session: data root, exec root, socket, logs
PREFIX = "envcheck-t"  # network namespace names: envcheck-t<pid of the pytest process>
OUTSIDE = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544 benchmarking range: a /30 per session for the veth pair
CLONE_NEWNET = 0x40000000
# The suite's peak on disk, measured on a full run (the file system's use over its baseline, every 5 s): the images
# in the session's data root, and the wheels its package cache fetches, less those its cache starts with (hard
# links to the user's cache, conftest.seed_package_cache). With room to spare.
# Measured 2026-12-07: 39.5 GB with an empty cache (CI); 31.4 GB after `make matrix` (the cache seeded). With issue
# 26's images (PyTorch + JAX in one, TensorFlow with PyTorch added, user-style images): 34.4 GB over the seeded cache
# (the session's data root and the cache, `du` every 5 s).
IMAGES_GB = 35.0
WHEELS_GB = 11.0
MIN_WHEELS_GB = 2.0  # the tests' own stacks beyond the default matrix's


def setns(path: str) -> None:
    """Move this thread (the main one: threads and processes started later follow it) into a network namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def gpu_settings() -> dict[str, Any]:
    """What /etc/docker/daemon.json says about GPUs (the NVIDIA runtime, CDI), so a GPU host's tests still get GPUs;
    nothing of its networking or storage (the fresh daemon must start as a new one does)."""
    try:
        settings = json.loads(Path("/etc/docker/daemon.json").read_text())
    except (OSError, ValueError):
        return {}
    keep = ("runtimes", "default-runtime", "features", "cdi-spec-dirs")
    return {k: v for k, v in settings.items() if k in keep} if isinstance(settings, dict) else {}


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def must(*command: str) -> None:
    done = run(*command)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


def free_gb(path: Path) -> float:
    for candidate in (path, *path.parents):
        with contextlib.suppress(OSError):
            found = os.statvfs(candidate)
            return found.f_bavail * found.f_frsize / 1e9
    return 0.0


@dataclass
class FreshDaemon:
    """One session's namespace, veth pair, NAT rules and dockerd."""

    pid: int

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.pid}"

    @property
    def root(self) -> Path:
        return ROOT / self.name

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def veth(self) -> tuple[str, str]:
        return f"ect{self.pid}h"[:15], f"ect{self.pid}n"[:15]

    @property
    def addresses(self) -> tuple[str, str, str]:
        """(host side, namespace side, the /30) of the veth pair."""
        block = (self.pid % (OUTSIDE.num_addresses // 4)) * 4
        base = OUTSIDE.network_address + block
        return str(base + 1), str(base + 2), f"{base}/30"

    @property
    def host_rules(self) -> list[list[str]]:
        net = self.addresses[2]
        outside = self.veth[0]
        return [
            ["-t", "nat", "POSTROUTING", "-s", net, "!", "-o", outside, "-j", "MASQUERADE"],
            ["FORWARD", "-i", outside, "-j", "ACCEPT"],
            ["FORWARD", "-o", outside, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ]

    def start(self, base_image: str) -> None:
        """Namespace, veth, rules, dockerd; move this process in; the base image loaded. Undone by stop()."""
        self.root.mkdir(parents=True, exist_ok=True)
        host, inside, _ = self.addresses
        outside, peer = self.veth
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY)  # to come back for the host-side cleanup
        must("ip", "netns", "add", self.name)
        must("ip", "link", "add", outside, "type", "veth", "peer", "name", peer)
        must("ip", "link", "set", peer, "netns", self.name)
        must("ip", "addr", "add", f"{host}/30", "dev", outside)
        must("ip", "link", "set", outside, "up")
        for rule in self.host_rules:
            must(*iptables("-I", rule))
        must("sysctl", "-qw", "net.ipv4.ip_forward=1")
        setns(f"/run/netns/{self.name}")
        must("ip", "link", "set", "lo", "up")
        must("ip", "addr", "add", f"{inside}/30", "dev", peer)
        must("ip", "link", "set", peer, "up")
        must("ip", "route", "add", "default", "via", host)
        (self.root / "daemon.json").write_text(json.dumps(gpu_settings()))
        # This process is in the namespace now: dockerd starts there.
        with (self.root / "dockerd.log").open("ab") as out:
            command = ["dockerd", "--config-file", str(self.root / "daemon.json"), "--host", self.url]
            command += ["--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec")]
            command += ["--pidfile", str(self.root / "docker.pid"), "--containerd-namespace", self.name]
            command += ["--containerd-plugins-namespace", f"{self.name}-plugins"]
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_until_it_answers()
        self.load(base_image)

    def wait_until_it_answers(self) -> None:
        import docker

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the test dockerd exited: {(self.root / 'dockerd.log').read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                docker.APIClient(base_url=self.url, version="auto", timeout=10).ping()
                return
            time.sleep(0.5)
        raise RuntimeError(f"the test dockerd did not answer within 90s (log: {self.root / 'dockerd.log'})")

    def load(self, image: str) -> None:
        """The base image: from the user's own daemon when it has one (docker save | load, seconds), else made as
        `make base` makes it (debootstrap)."""
        env = {**os.environ, "DOCKER_HOST": self.url}
        saved = subprocess.Popen(
            ["docker", "save", image],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"},
        )
        loaded = subprocess.run(["docker", "load"], stdin=saved.stdout, capture_output=True, env=env, check=False)
        saved.wait()
        if saved.returncode == 0 and loaded.returncode == 0:
            return
        made = subprocess.run(
            [str(Path(__file__).resolve().parent.parent / "scripts" / "make-base.sh"), image],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if made.returncode != 0:
            raise RuntimeError(f"cannot make the base image {image} in the test daemon: {made.stderr[-2000:]}")

    def stop(self) -> None:
        """Stop the daemon, come back to this machine's namespace, remove everything the session made."""
        if getattr(self, "process", None) is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "home", None) is not None:
            ctypes.CDLL(None, use_errno=True).setns(self.home, CLONE_NEWNET)
            os.close(self.home)
            self.home = None
        remove(self.name, self.root, self.veth[0], self.host_rules)


def iptables(action: str, rule: list[str]) -> list[str]:
    table, rest = (rule[:2], rule[2:]) if rule[0] == "-t" else ([], rule)
    return ["iptables", *table, action, *rest]


def remove(name: str, root: Path, outside: str, rules: list[list[str]]) -> None:
    """Everything of one session, whether it ended or was killed: its daemon, mounts, namespace, veth, rules, files."""
    pidfile = root / "docker.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if str(root) in line]
    for mount in sorted(mounts, key=len, reverse=True):
        run("umount", "-l", mount)
    for rule in rules:
        while run(*iptables("-D", rule)).returncode == 0:
            pass
    run("ip", "link", "del", outside)
    run("ip", "netns", "del", name)
    shutil.rmtree(root, ignore_errors=True)


def remove_stale() -> None:
    """Sessions that were killed (their pytest process is gone) leave a namespace and a data root: remove them."""
    names = {line.split()[0] for line in run("ip", "netns", "list").stdout.splitlines() if line.startswith(PREFIX)}
    names |= {p.name for p in ROOT.glob(f"{PREFIX}*")} if ROOT.is_dir() else set()
    for name in names:
        pid = name.removeprefix(PREFIX)
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale = FreshDaemon(int(pid))
            remove(name, stale.root, stale.veth[0], stale.host_rules)


def needed_gb(wheels_held: int) -> float:
    return IMAGES_GB + max(MIN_WHEELS_GB, WHEELS_GB - wheels_held / 1e9)


def start_for_session(base_image: str, wheels_held: int) -> tuple[FreshDaemon | None, str]:
    """The session's daemon, or (None, why) when the disk cannot hold the suite (its package cache already holding
    `wheels_held` bytes). DOCKER_HOST is set to it."""
    remove_stale()
    free, need = free_gb(ROOT), needed_gb(wheels_held)
    if free < need:
        return None, (
            f"the Docker tests need about {need:.0f} GB free for their images and package cache, and "
            f"{ROOT.parent} has {free:.1f} GB: free some space (`docker system df`, `envcheck clean`) and run again"
        )
    daemon = FreshDaemon(os.getpid())
    try:
        daemon.start(base_image)
    except BaseException:
        daemon.stop()
        raise
    os.environ["DOCKER_HOST"] = daemon.url
    return daemon, (
        f"a fresh dockerd in network namespace {daemon.name}, data root {daemon.root / 'data'} "
        f"({free:.0f} GB free, about {need:.0f} GB needed)"
    )
