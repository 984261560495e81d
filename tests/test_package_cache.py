"""The package cache every build shares (issue 13), on a real Docker engine with real wheels from the index.

The session's builds use a package cache of their own (conftest.package_cache_of_the_session). Expectations that
depend on a CA bundle come from what this host's pip has (`--ca-bundle auto`), so the tests hold behind a
TLS-intercepting proxy and without one.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import images_removed_after, run_cli, write_matrix
from envcheck import labels
from envcheck.engine import package_cache
from envcheck.errors import ConfigError
from envcheck.options import ca_bundle

SMALL = {"name": "pc-jax-cpu", "jax": "0.4.35", "variant": "cpu"}  # about 140 MB of wheels
# TF 2.16.2 and 2.17.1: their [and-cuda] extras pin the same NVIDIA wheels (knowledge set cu12-12.3).
SAME_PINS = [
    {"name": "pc-tf-2.16", "tensorflow": "2.16.2", "variant": "and-cuda"},
    {"name": "pc-tf-2.17", "tensorflow": "2.17.1", "variant": "and-cuda"},
]


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


@pytest.mark.docker
def test_a_rebuild_without_docker_layers_fetches_nothing_and_no_bundle_enters(
    tmp_path: Path, docker_api: Any, images_go: None
):
    matrix = write_matrix(tmp_path, [SMALL])
    cache = package_cache.directory()
    first = build(matrix, "--force", "--no-cache")  # every layer built, so every wheel asked for
    assert "package cache: http://" in first
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
    assert any("PIP_INDEX_URL=http://" in s for s in steps)  # pip really went through the cache


@pytest.mark.docker
def test_without_the_cache_the_build_goes_on_and_the_image_is_the_same(
    tmp_path: Path, docker_api: Any, images_go: None
):
    """The port taken: the cache cannot start, the build says so once and fetches by itself (with the CA bundle
    where this host's pip has one); the content hash, so the image tag, is the same as with the cache."""
    matrix = write_matrix(tmp_path, [SMALL])
    build(matrix)
    with_cache = tag_of(docker_api, SMALL["name"])
    gateway = package_cache.bridge_gateway(docker_api)
    assert gateway is not None
    with socket.create_server((gateway, package_cache.DEFAULT_PORT)):
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


@pytest.mark.docker
def test_clean_empties_the_package_cache(tmp_path: Path):
    where = tmp_path / "cache"
    (where / "files-pythonhosted-org").mkdir(parents=True)
    (where / "files-pythonhosted-org" / "a.whl").write_bytes(b"x" * 1000)
    matrix = write_matrix(tmp_path, [SMALL])
    env = {"ENVCHECK_PACKAGE_CACHE_DIR": str(where)}
    dry = run_cli("clean", "-m", str(matrix), "--package-cache", "--dry-run", env=env)
    assert dry.returncode == 0 and f"package cache {where}: would free 1 files, 0.00 GB" in dry.stderr
    assert where.exists()
    done = run_cli("clean", "-m", str(matrix), "--package-cache", env=env)
    assert done.returncode == 0 and f"package cache {where}: freed 1 files" in done.stderr
    assert not where.exists()


def test_the_cache_cap_and_place_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(package_cache.ENV_DIR, str(tmp_path / "c"))
    assert package_cache.directory() == tmp_path / "c"
    monkeypatch.delenv(package_cache.ENV_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert package_cache.directory() == tmp_path / "xdg" / "envcheck" / "packages"
    monkeypatch.setenv(package_cache.ENV_SIZE, "2.5")
    assert package_cache.size_cap() == 2_500_000_000
    for bad in ("0", "-1", "lots", "nan"):
        monkeypatch.setenv(package_cache.ENV_SIZE, bad)
        with pytest.raises(ConfigError, match="ENVCHECK_PACKAGE_CACHE_SIZE"):
            package_cache.size_cap()


def test_usage_counts_finished_files_only(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.whl").write_bytes(b"1" * 10)
    (tmp_path / "a" / "y.whl.proxpi-partial").write_bytes(b"1" * 99)  # a download in progress
    assert package_cache.usage(tmp_path) == package_cache.Usage(1, 10)
    assert package_cache.usage(tmp_path / "none") == package_cache.Usage(0, 0)
    assert package_cache.clear(tmp_path) == package_cache.Usage(1, 10) and not tmp_path.exists()


@pytest.mark.slow
def test_the_same_wheel_asked_for_at_once_is_fetched_once_and_never_redirected(tmp_path: Path):
    """Parallel builds ask for the same wheels at the same moment. proxpi 1.3.1 alone redirects some of those
    requests to the upstream URL (its download thread is published before it is started; CI saw a build fail on
    it: the redirect leads to files.pythonhosted.org, which a build cannot reach without the CA bundle). The
    mirror envcheck runs (engine/mirror.py) must answer every request with the file, the index's own bytes."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cache = package_cache.PackageCache("127.0.0.1", port, tmp_path / "cache", 10**9, ca_bundle("auto"))
    assert cache.start() is None
    answers: list[tuple[str, int, str]] = []
    try:
        for project in ("mdurl", "six", "idna", "wheel", "packaging", "certifi", "absl-py", "wrapt"):
            request = urllib.request.Request(f"{cache.index_url}{project}/", headers={"Accept": "text/html"})
            page = urllib.request.urlopen(request, timeout=60).read().decode()
            name, sha256 = re.findall(r'href="[^"]*?([^/"#]+\.whl)#sha256=([0-9a-f]{64})"', page)[-1]

            def fetch(project: str = project, name: str = name, sha256: str = sha256) -> None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                connection.request("GET", f"/index/{project}/{name}")
                response = connection.getresponse()  # http.client follows no redirect
                body = response.read()
                answers.append((name, response.status, hashlib.sha256(body).hexdigest() == sha256))

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
