"""The package cache every build shares (issues 13 and 24): real mirrors, a real private index with a password, real
Docker networks on the session's fresh daemon (its first start: the default bridge has no IPAM gateway).

The session's builds use a package cache of their own (conftest.package_cache_of_the_session). Expectations that
depend on a CA bundle come from what this host's pip has (`--ca-bundle auto`), so the tests hold behind a
TLS-intercepting proxy and without one. The private index here is a small HTTP server with basic auth that serves
one project the way a simple index does (relative file links, so file URLs carry the index URL's credentials).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import http.client
import http.server
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import DATA, images_removed_after, run_cli, write_matrix
from envcheck import labels
from envcheck.engine import network
from envcheck.errors import ConfigError
from envcheck.inputs import options
from envcheck.inputs.options import ca_bundle
from envcheck.package_cache import cache as package_cache
from envcheck.package_cache import mirror
from envcheck.package_cache.cache import IndexSettings, PackageCache

SMALL = {"name": "pc-jax-cpu", "jax": "0.4.35", "variant": "cpu"}  # about 140 MB of wheels
# TF 2.16.2 and 2.17.1: their [and-cuda] extras pin the same NVIDIA wheels (knowledge set cu12-12.3).
SAME_PINS = [
    {"name": "pc-tf-2.16", "tensorflow": "2.16.2", "variant": "and-cuda"},
    {"name": "pc-tf-2.17", "tensorflow": "2.17.1", "variant": "and-cuda"},
]
USER, TOKEN = "alice", "s3cret-TOKEN-4c1e9"  # the private index's credentials: no answer may carry them
PROJECT, WHEEL = "envcheck-test-pkg", "envcheck_test_pkg-1.0-py3-none-any.whl"
WHEEL_BYTES = b"the index's own bytes, passed on unchanged\n" * 5000
NETWORK_DATA = DATA / "network"


# -- the place, the cap, the address ------------------------------------------------------------------------------


def test_the_cache_cap_and_place_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(options.ENV_PACKAGE_CACHE_DIR, str(tmp_path / "c"))
    assert package_cache.directory() == tmp_path / "c"
    monkeypatch.delenv(options.ENV_PACKAGE_CACHE_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert package_cache.directory() == tmp_path / "xdg" / "envcheck" / "packages"
    monkeypatch.setenv(options.ENV_PACKAGE_CACHE_SIZE, "2.5")
    assert package_cache.size_cap() == 2_500_000_000
    for bad in ("0", "-1", "lots", "nan", "inf", "1e308"):
        monkeypatch.setenv(options.ENV_PACKAGE_CACHE_SIZE, bad)
        with pytest.raises(ConfigError, match="ENVCHECK_PACKAGE_CACHE_SIZE"):
            package_cache.size_cap()
    for bad in ("0", "99999", "3141\n", "http", "-1"):
        monkeypatch.setenv(options.ENV_PACKAGE_CACHE_PORT, bad)
        with pytest.raises(ConfigError, match="ENVCHECK_PACKAGE_CACHE_PORT"):
            options.package_cache_port()


def test_the_default_cap_leaves_the_disk_for_the_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """25 GB, or what the cache holds plus a quarter of its disk's free space where that is less (a cache that
    grew to 19 GB beside 42 GB of images filled an 80 GB disk)."""
    monkeypatch.delenv(options.ENV_PACKAGE_CACHE_SIZE, raising=False)
    where = tmp_path / "cache"
    (where / "a").mkdir(parents=True)
    (where / "a" / "x.whl").write_bytes(b"1" * 4096)
    disk = os.statvfs(tmp_path)
    expected = min(25e9, 4096 + 0.25 * disk.f_bavail * disk.f_frsize)
    assert package_cache.size_cap(where) == pytest.approx(max(expected, 1e9), rel=0.01)


def test_usage_counts_finished_files_only(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.whl").write_bytes(b"1" * 10)
    (tmp_path / "a" / "y.whl.proxpi-partial").write_bytes(b"1" * 99)  # a download in progress
    assert package_cache.usage(tmp_path) == package_cache.Usage(1, 10)
    assert package_cache.usage(tmp_path / "none") == package_cache.Usage(0, 0)
    assert package_cache.clear(tmp_path) == package_cache.Usage(1, 10) and not tmp_path.exists()


def test_the_address_on_a_first_start_bridge_is_the_subnets_gateway():
    """Recorded from Debian's docker.io 20.10.24 on its first start: the default bridge's IPAM config has no Gateway
    ({'Subnet': '172.17.0.0/16'}); a restarted daemon reports one. Docker gives a bridge the first host of its subnet
    (docs: `bip`, default 172.17.0.1/16), which is also where the interface's address stands in on this machine."""
    first_start = json.loads((NETWORK_DATA / "bridge-first-start-docker20.10.24.json").read_text())
    assert first_start["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16"}]
    assert network.address_of(first_start) == (
        ipaddress.IPv4Address("172.17.0.1"),
        ipaddress.IPv4Network("172.17.0.0/16"),
    )
    restarted = {**first_start, "IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]}}
    assert network.address_of(restarted)[0] == ipaddress.IPv4Address("172.17.0.1")


@pytest.mark.parametrize(
    "config",
    [
        [{"Subnet": "0.0.0.0/0", "Gateway": "0.0.0.0"}],  # would make the cache listen on every interface
        [{"Subnet": "0.0.0.0/8"}],
        [{"Subnet": "127.0.0.0/8", "Gateway": "127.0.0.1"}],
        [{"Subnet": "224.0.0.0/4", "Gateway": "224.0.0.1"}],
        [{"Subnet": "fd00::/64", "Gateway": "fd00::1"}],
        [{"Subnet": "junk"}],
        [],
        None,
        "Config",
    ],
)
def test_an_address_a_server_must_not_bind_is_refused(config: Any):
    answer = {"Name": "bridge", "Id": "x" * 64, "IPAM": {"Config": config}, "Options": {}}
    found = network.address_of(answer)
    assert isinstance(found, str) and "bridge" in found


def test_a_gateway_outside_its_subnet_gives_way_to_the_subnets_first_host():
    answer = {"Name": "n", "Id": "0" * 64, "IPAM": {"Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.8.0.1"}]}}
    assert network.address_of(answer)[0] == ipaddress.IPv4Address("10.9.0.1")


def test_this_hosts_addresses_are_read_from_the_kernels_table():
    """A request from this host to a bridge's address reaches the mirror from the host's main address (Docker's
    MASQUERADE rule for the bridge rewrites it): the mirror serves this host's own addresses. The table and
    `ip -o -4 addr` were recorded on one machine at the same moment."""
    expected = set()
    for line in (NETWORK_DATA / "ip-addr.txt").read_text().splitlines():
        address = re.search(r"\binet (\S+) .*scope (\w+)", line)
        assert address is not None
        # `scope host` (loopback): the kernel takes the whole prefix as this machine's; otherwise the address alone
        whole = address[2] == "host"
        expected.add(ipaddress.IPv4Network(address[1] if whole else address[1].split("/")[0], strict=False))
    found = mirror.local_networks((NETWORK_DATA / "fib_trie.txt").read_text())
    assert list(ipaddress.collapse_addresses(found)) == list(ipaddress.collapse_addresses(expected))


# -- the index pip would ask -------------------------------------------------------------------------------------


def pip_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """An environment whose pip reads only what the test gives it (no user or global config files)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "PIP_CONFIG_FILE": os.devnull})
    env.update(variables)
    return env


def settings_in(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> IndexSettings | str:
    for key in [k for k in os.environ if k.startswith("PIP_") or k in ("HOME", "XDG_CONFIG_HOME")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return package_cache.index_settings()


def test_the_index_pip_is_told_to_use_is_the_one_the_mirror_asks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An internal index set by PIP_INDEX_URL, or in the file PIP_CONFIG_FILE names ([install] over [global], as
    pip reads it), is what the mirror asks, never PyPI instead (dependency confusion); file:// extras are left out."""
    url = f"https://{USER}:{TOKEN}@pypi.internal.example/simple"
    assert settings_in(pip_env(tmp_path, PIP_INDEX_URL=url), monkeypatch) == IndexSettings(url + "/")
    config = tmp_path / "pip.conf"
    config.write_text(
        "[global]\nindex-url = https://global.example/simple/\n"
        "[install]\nindex-url = https://install.example/simple/\n"
        "extra-index-url =\n    https://extra.example/simple/\n    file:///opt/wheels/simple\n"
    )
    found = settings_in(pip_env(tmp_path, PIP_CONFIG_FILE=str(config)), monkeypatch)
    assert found == IndexSettings(
        "https://install.example/simple/", ("https://extra.example/simple/",), ("file:///opt/wheels/simple",)
    )
    found = settings_in(pip_env(tmp_path, PIP_CONFIG_FILE=str(config), PIP_INDEX_URL=url), monkeypatch)
    assert isinstance(found, IndexSettings) and found.index_url == url + "/"  # the variable wins, as in pip
    assert "no-index" in str(settings_in(pip_env(tmp_path, PIP_NO_INDEX="1"), monkeypatch))
    assert "not an HTTP index" in str(settings_in(pip_env(tmp_path, PIP_INDEX_URL="file:///srv/simple"), monkeypatch))


# -- a real mirror in front of a private index --------------------------------------------------------------------


class PrivateIndex(http.server.BaseHTTPRequestHandler):
    """A simple index with a password: one project, one file, no .metadata files, relative links."""

    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send(401, b"who are you?\n", {"WWW-Authenticate": 'Basic realm="index"'})
        elif self.path == "/simple/":
            self.send(200, f'<html><body><a href="{PROJECT}/">{PROJECT}</a></body></html>'.encode())
        elif self.path == f"/simple/{PROJECT}/":
            digest = hashlib.sha256(WHEEL_BYTES).hexdigest()
            link = f'<a href="../../files/{WHEEL}#sha256={digest}">{WHEEL}</a>'
            self.send(200, f"<html><body>{link}</body></html>".encode())
        elif self.path == f"/files/{WHEEL}":
            self.send(200, WHEEL_BYTES, {"Content-Type": "application/octet-stream"})
        else:
            self.send(404, b"no such file\n")

    do_HEAD = do_GET

    def send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": "text/html", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def private_index() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PrivateIndex)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{USER}:{TOKEN}@127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mirror_for(where: Path, index_url: str, port: int | None = None) -> PackageCache:
    return PackageCache("127.0.0.1", port or free_port(), where, 10**9, None, IndexSettings(index_url))


def ask(cache: PackageCache, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(cache.host, cache.port, timeout=60)  # follows no redirect
    connection.request(method, path, headers={"Accept": "text/html"})  # as pip asks
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def port_is_free(port: int) -> bool:
    try:
        with socket.create_server(("127.0.0.1", port)):
            return True
    except OSError:
        return False


def until(condition: Any, what: str, seconds: float = 30) -> None:
    """Wait for a condition; the deadline only keeps a broken build from hanging the suite."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds:.0f}s")
        time.sleep(0.05)


@pytest.mark.slow
def test_no_answer_carries_the_private_indexs_credentials(tmp_path: Path, private_index: str):
    """proxpi alone answered a .metadata file the index lacks, and every file it could not store, with a redirect to
    the upstream URL: with a private index, http://USER:TOKEN@... The mirror fetches and streams instead."""
    where = tmp_path / "cache"
    where.mkdir()
    (where / "127-0-0-1").write_text("")  # where proxpi would store this index's files: it cannot
    cache = mirror_for(where, private_index)
    assert cache.start() is None
    try:
        answers = [
            ask(cache, f"/index/{PROJECT}/"),
            ask(cache, f"/index/{PROJECT}/{WHEEL}.metadata"),
            ask(cache, f"/index/{PROJECT}/{WHEEL}"),
            ask(cache, f"/index/{PROJECT}/{WHEEL}", "HEAD"),
        ]
    finally:
        cache.stop()
    statuses = [status for status, _, _ in answers]
    assert statuses == [200, 404, 200, 200]
    assert answers[2][2] == WHEEL_BYTES  # streamed from the index, unchanged
    for _, headers, body in answers:
        assert "Location" not in headers
        assert TOKEN not in json.dumps(headers) and TOKEN.encode() not in body
    assert TOKEN not in cache.log_path.read_text()


@pytest.mark.slow
def test_the_mirror_is_read_only_and_serves_the_index_and_health_only(tmp_path: Path, private_index: str):
    cache = mirror_for(tmp_path / "cache", private_index)
    assert cache.start() is None
    try:
        assert ask(cache, "/cache/list", "DELETE")[0] == 405  # proxpi's invalidation, open to anyone before
        assert ask(cache, f"/cache/{PROJECT}", "DELETE")[0] == 405
        assert ask(cache, "/index/", "POST")[0] == 405
        assert ask(cache, "/cache/list")[0] == 404
        status, _, body = ask(cache, f"/index/{PROJECT}/{WHEEL}")
        assert status == 200 and body == WHEEL_BYTES
        assert json.loads(ask(cache, "/health")[2])["status"] == "success"
    finally:
        cache.stop()
    assert package_cache.usage(tmp_path / "cache").files == 1  # stored, as the cache is writable here


@pytest.mark.slow
def test_two_runs_share_one_mirror_which_ends_with_the_last(tmp_path: Path, private_index: str):
    """Two runs starting together: one mirror for the directory, no race for its port; the first run to finish
    leaves it serving the other; the last one's end frees the port."""
    first = mirror_for(tmp_path / "cache", private_index)
    second = mirror_for(tmp_path / "cache", private_index, first.port)
    assert first.start() is None and second.start() is None
    assert first.process is not None and second.process is None  # joined, not started
    first.stop()
    assert ask(second, f"/index/{PROJECT}/{WHEEL}")[2] == WHEEL_BYTES
    second.stop()
    until(lambda: port_is_free(first.port), "the port freed")
    assert first.process.wait(timeout=30) == 0  # ended by itself, cleanly


@pytest.mark.slow
def test_a_run_with_other_index_settings_does_not_use_anothers_mirror(tmp_path: Path, private_index: str):
    first = mirror_for(tmp_path / "cache", private_index)
    assert first.start() is None
    try:
        other = mirror_for(tmp_path / "cache", "https://pypi.org/simple/", first.port)
        why = other.start()
        assert why is not None and "another envcheck run with other settings" in why and TOKEN not in why
    finally:
        first.stop()


@pytest.mark.slow
def test_a_second_mirror_on_the_directory_neither_starts_nor_deletes_the_firsts_downloads(
    tmp_path: Path, private_index: str
):
    where = tmp_path / "cache"
    cache = mirror_for(where, private_index)
    assert cache.start() is None
    try:
        partial = where / "files-example" / f"big.whl{package_cache.PARTIAL}"  # the first mirror's download
        partial.parent.mkdir(parents=True)
        partial.write_bytes(b"half")
        done = subprocess.run(
            [sys.executable, "-m", "envcheck.package_cache.mirror", "127.0.0.1", str(free_port()), str(cache.control)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == mirror.EXIT_TAKEN and "another mirror serves" in done.stderr
        assert partial.read_bytes() == b"half"
    finally:
        cache.stop()


@pytest.mark.slow
def test_a_run_killed_with_sigkill_leaves_no_mirror_listening(tmp_path: Path, private_index: str):
    port = free_port()
    holder = (
        "import sys, time\nfrom pathlib import Path\n"
        "from envcheck.package_cache.cache import IndexSettings, PackageCache\n"
        f"cache = PackageCache('127.0.0.1', {port}, Path({str(tmp_path / 'cache')!r}), 10**9, None, "
        f"IndexSettings({private_index!r}))\n"
        "print(cache.start(), flush=True)\ntime.sleep(3600)\n"
    )
    run = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    assert run.stdout is not None and run.stdout.readline().strip() == "None"  # its mirror answers
    assert not port_is_free(port)
    run.send_signal(signal.SIGKILL)
    run.wait()
    until(lambda: port_is_free(port), "the mirror's end after its run was killed")
    serving = mirror.try_lock(package_cache.control_directory(tmp_path / "cache") / "serving.lock", fcntl.LOCK_EX)
    assert serving is not None
    os.close(serving)


@pytest.mark.slow
def test_a_hung_mirror_is_reclaimed_by_the_next_run(tmp_path: Path, private_index: str):
    first = mirror_for(tmp_path / "cache", private_index)
    assert first.start() is None and first.process is not None
    os.kill(first.process.pid, signal.SIGSTOP)  # holds the directory and the port, answers nothing
    second = mirror_for(tmp_path / "cache", private_index, first.port)
    try:
        assert second.start() is None and second.process is not None
        assert ask(second, f"/index/{PROJECT}/{WHEEL}")[2] == WHEEL_BYTES
        assert first.process.wait(timeout=60) == -signal.SIGKILL
    finally:
        first._leave()
        second.stop()


def test_an_unwritable_cache_directory_means_building_without_it(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cache = mirror_for(blocker / "cache", "https://pypi.org/simple/")
    why = cache.start()
    assert why is not None and why.startswith(f"cannot write the cache directory {blocker / 'cache'}")


def test_emptying_a_cache_a_mirror_serves_is_refused(tmp_path: Path):
    where = tmp_path / "cache"
    where.mkdir()
    control = package_cache.control_directory(where)
    control.mkdir()
    held = mirror.try_lock(control / "serving.lock", fcntl.LOCK_EX)  # as the mirror holds it
    try:
        with pytest.raises(ConfigError, match="in use by a running envcheck"):
            package_cache.clear(where)
        assert where.exists()
    finally:
        assert held is not None
        os.close(held)
    package_cache.clear(where)
    assert not where.exists()


# -- on the session's fresh Docker daemon -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images_go(docker_api: Any) -> Iterator[None]:
    with images_removed_after(docker_api):
        yield


def build(matrix: Path, *flags: str) -> str:
    done = run_cli("build", "-m", str(matrix), "--ca-bundle", "auto", *flags, timeout=2400)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def history(docker_api: Any, image: str) -> list[str]:
    return [entry.get("CreatedBy") or "" for entry in docker_api.history(image)]


def tag_of(docker_api: Any, stack: str) -> str:
    (image,) = docker_api.images(name=f"envcheck/{stack}")
    return image["RepoTags"][0]


def interface_address(name: str) -> str:
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show", name], capture_output=True, text=True, check=True)
    return shown.stdout.split(" inet ")[1].split("/")[0]


@pytest.mark.docker
def test_the_builds_network_and_its_address_on_a_first_started_daemon(docker_api: Any):
    bridge = docker_api.inspect_network("bridge")
    if docker_api.version()["Version"].startswith("20.10."):
        assert "Gateway" not in bridge["IPAM"]["Config"][0]  # the session's daemon started as a new user's does
    found = network.address_of(bridge)
    assert not isinstance(found, str) and str(found[0]) == interface_address(network.interface_name(bridge))
    builds = network.build_network(docker_api)
    assert isinstance(builds, network.BuildNetwork) and builds.name == network.BUILD_NETWORK
    inspected = docker_api.inspect_network(network.BUILD_NETWORK)
    assert inspected["Labels"] == {labels.OWNER: "1"}
    assert inspected["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    assert builds.address == interface_address(network.interface_name(inspected))
    assert network.build_network(docker_api) == builds  # made once


def fetch_from_a_container(docker_api: Any, url_host: str, port: int, path: str, network_mode: str) -> str:
    """The first line of the answer to GET path, asked by a container on that network (bash's /dev/tcp: the base
    image has no curl)."""
    request = f"GET {path} HTTP/1.0\\r\\nAccept: text/html\\r\\n\\r\\n"
    script = f'exec 3<>/dev/tcp/{url_host}/{port}; printf "{request}" >&3; head -1 <&3'
    container = docker_api.create_container(
        "debian:bookworm-slim",
        ["bash", "-c", script],
        host_config=docker_api.create_host_config(network_mode=network_mode),
    )
    try:
        docker_api.start(container)
        docker_api.wait(container, timeout=120)
        return docker_api.logs(container).decode(errors="replace").strip()
    finally:
        docker_api.remove_container(container, force=True)


@pytest.mark.docker
def test_only_build_containers_reach_the_cache(tmp_path: Path, docker_api: Any, private_index: str):
    """A container on the builds' network gets the index; one on the default bridge or on a network of the user's
    own is refused, although both can reach the address (it is this host's)."""
    builds = network.build_network(docker_api)
    assert isinstance(builds, network.BuildNetwork)
    cache = PackageCache(
        builds.address, free_port(), tmp_path / "cache", 10**9, None, IndexSettings(private_index),
        (str(builds.subnet),), builds.name,
    )  # fmt: skip
    assert cache.start() is None
    users = docker_api.create_network("pc-users-own", labels={labels.OWNER: "test"})
    try:
        path = f"/index/{PROJECT}/"
        assert " 200 " in fetch_from_a_container(docker_api, builds.address, cache.port, path, builds.name)
        assert " 403 " in fetch_from_a_container(docker_api, builds.address, cache.port, path, "bridge")
        assert " 403 " in fetch_from_a_container(docker_api, builds.address, cache.port, path, "pc-users-own")
    finally:
        docker_api.remove_network(users["Id"])
        cache.stop()


@pytest.mark.docker
def test_a_rebuild_without_docker_layers_fetches_nothing_and_no_bundle_enters(
    tmp_path: Path, docker_api: Any, images_go: None
):
    matrix = write_matrix(tmp_path, [SMALL])
    cache = package_cache.directory()
    first = build(matrix, "--force", "--no-cache")  # every layer built, so every wheel asked for
    assert "package cache: http://" in first and "package cache not used" not in first
    held = package_cache.usage(cache)
    assert held.files > 0 and held.bytes > 50e6  # jax, jaxlib, numpy, scipy, ... went through it
    again = build(matrix, "--no-cache", "--force")
    assert "package cache: 0 files, 0.00 GB fetched from the index this run" in again
    assert package_cache.usage(cache) == held
    dockerfile = (tmp_path / "build" / SMALL["name"] / "Dockerfile").read_text()
    assert "envcheck-venv" not in dockerfile and "PIP_CERT" not in dockerfile  # one stage: no bundle needed
    assert not (tmp_path / "build" / SMALL["name"] / "envcheck-ca.pem").exists()
    steps = history(docker_api, tag_of(docker_api, SMALL["name"]))
    assert not [s for s in steps if "envcheck-ca" in s or "PIP_CERT" in s]
    builds = network.build_network(docker_api)
    assert isinstance(builds, network.BuildNetwork)
    assert any(f"PIP_INDEX_URL=http://{builds.address}:" in s for s in steps)  # pip really went through the cache


@pytest.mark.docker
def test_without_the_cache_the_build_goes_on_and_the_image_is_the_same(
    tmp_path: Path, docker_api: Any, images_go: None
):
    """The port taken: the cache cannot start, the build says so once and fetches by itself (with the CA bundle
    where this host's pip has one); the content hash, so the image tag, is the same as with the cache."""
    matrix = write_matrix(tmp_path, [SMALL])
    build(matrix)
    with_cache = tag_of(docker_api, SMALL["name"])
    builds = network.build_network(docker_api)
    assert isinstance(builds, network.BuildNetwork)
    with socket.create_server((builds.address, options.DEFAULTS.package_cache_port)):
        stderr = build(matrix, "--force", "--no-cache")
    assert stderr.count("package cache not used: cannot listen on") == 1
    assert tag_of(docker_api, SMALL["name"]) == with_cache
    dockerfile = (tmp_path / "build" / SMALL["name"] / "Dockerfile").read_text()
    assert ("COPY envcheck-ca.pem" in dockerfile) == (ca_bundle("auto") is not None)
    # the bundle's stage (a venv the final image copied) is not left behind
    assert not docker_api.images(filters={"label": f"{labels.STAGE}={SMALL['name']}", "dangling": True})
    assert not docker_api.images(filters={"label": labels.STAGE, "dangling": True})
    stderr = build(matrix, "--force", "--no-package-cache")
    assert "package cache" not in stderr


@pytest.mark.docker
def test_stacks_with_the_same_nvidia_pins_share_that_layer(tmp_path: Path, docker_api: Any, images_go: None):
    """TF 2.16.2 and 2.17.1 [and-cuda], built at the same time: the pinned NVIDIA wheels' layer is one layer (same
    digest) in both images, the framework's is not; neither image's history holds the CA bundle."""
    matrix = write_matrix(tmp_path, SAME_PINS)
    stderr = build(matrix, "--jobs", "2")
    assert "package cache not used" not in stderr
    # what both begin with was built once, first, and not by either stack's build
    assert "[layers shared by 2 stacks] building step" in stderr
    for stack in SAME_PINS:
        log = (tmp_path / "build" / stack["name"] / "build.log").read_text()
        assert "nvidia-cudnn-cu12==8.9.7.29" in log and "Prepared" not in log.split("tensorflow[and-cuda]")[0]
    layers = [docker_api.inspect_image(tag_of(docker_api, s["name"]))["RootFS"]["Layers"] for s in SAME_PINS]
    # base, Python, the installer (uv), NVIDIA wheels; then the framework
    assert layers[0][:4] == layers[1][:4] and layers[0][4] != layers[1][4]
    for stack in SAME_PINS:
        steps = history(docker_api, tag_of(docker_api, stack["name"]))
        assert not [s for s in steps if "envcheck-ca" in s or "PIP_CERT" in s]
        assert any("nvidia-cudnn-cu12==8.9.7.29" in s for s in steps)


def test_clean_empties_the_package_cache_without_docker(tmp_path: Path):
    """--package-cache needs no daemon (the cache is a directory of this host); no daemon here, so the images part
    says it cannot reach one, and nothing of anyone's images is touched."""
    where = tmp_path / "cache"
    (where / "files-pythonhosted-org").mkdir(parents=True)
    (where / "files-pythonhosted-org" / "a.whl").write_bytes(b"x" * 1000)
    matrix = write_matrix(tmp_path, [SMALL])
    env = {"ENVCHECK_PACKAGE_CACHE_DIR": str(where), "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    dry = run_cli("clean", "-m", str(matrix), "--package-cache", "--dry-run", env=env)
    assert f"package cache {where}: would free 1 files, 0.00 GB" in dry.stderr
    assert where.exists()
    done = run_cli("clean", "-m", str(matrix), "--package-cache", env=env)
    assert f"package cache {where}: freed 1 files" in done.stderr
    assert not where.exists()
    assert done.returncode == 3 and "Cannot reach the Docker daemon" in done.stderr


@pytest.mark.slow
def test_the_same_wheel_asked_for_at_once_is_fetched_once_and_never_redirected(tmp_path: Path):
    """Parallel builds ask for the same wheels at the same moment. proxpi 1.3.1 alone redirects some of those
    requests to the upstream URL (its download thread is published before it is started; CI saw a build fail on
    it: the redirect leads to files.pythonhosted.org, which a build cannot reach without the CA bundle). The
    mirror envcheck runs (package_cache/mirror.py) must answer every request with the file, the index's own bytes."""
    cache = mirror_for(tmp_path / "cache", "https://pypi.org/simple/")
    cache.ca_bundle = ca_bundle("auto")
    assert cache.start() is None
    answers: list[tuple[str, int, str]] = []
    try:
        for project in ("mdurl", "six", "idna", "wheel", "packaging", "certifi", "absl-py", "wrapt"):
            request = urllib.request.Request(f"{cache.index_url}{project}/", headers={"Accept": "text/html"})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            page = opener.open(request, timeout=60).read().decode()
            name, sha256 = re.findall(r'href="[^"]*?([^/"#]+\.whl)#sha256=([0-9a-f]{64})"', page)[-1]

            def fetch(project: str = project, name: str = name, sha256: str = sha256) -> None:
                status, _, body = ask(cache, f"/index/{project}/{name}")
                answers.append((name, status, hashlib.sha256(body).hexdigest() == sha256))

            threads = [threading.Thread(target=fetch) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        cache.stop()
    assert len(answers) == 64
    assert [a for a in answers if a[1:] != (200, True)] == []
    assert package_cache.usage(tmp_path / "cache").files == 8  # each wheel downloaded once


def test_the_test_sessions_cache_starts_with_links_to_the_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """conftest.seed_package_cache: the user's wheels without a byte of disk (hard links) or a download, partial
    downloads left out, and the user's files untouched when the session's cache goes."""
    from conftest import seed_package_cache

    user = tmp_path / "user"
    (user / "files-example").mkdir(parents=True)
    (user / "files-example" / "a.whl").write_bytes(b"a" * 100)
    (user / "files-example" / f"b.whl{package_cache.PARTIAL}").write_bytes(b"b")
    monkeypatch.setenv(options.ENV_PACKAGE_CACHE_DIR, str(user))
    session = tmp_path / "session"
    session.mkdir()
    assert seed_package_cache(session) == 100
    linked = session / "files-example" / "a.whl"
    assert linked.stat().st_ino == (user / "files-example" / "a.whl").stat().st_ino
    assert not (session / "files-example" / f"b.whl{package_cache.PARTIAL}").exists()
    package_cache.clear(session)
    assert (user / "files-example" / "a.whl").read_bytes() == b"a" * 100
