"""Shared fixtures. Docker tests use the real engine and real images; they fail (never skip) without one."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from envcheck import labels
from envcheck.results.model import Result

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
    cwd: Path | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """The real `envcheck` command in a subprocess, as a user runs it (`input` goes to its standard input)."""
    return subprocess.run(
        [sys.executable, "-m", "envcheck", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def load_json(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


@dataclass(frozen=True)
class ThisHost:
    """What the machine running the tests has, read without envcheck's own readers (NVIDIA's nvidia-smi, the
    device nodes, the loader's cache, TensorFlow itself): tests derive their expectations from it, so the suite
    passes on a bare CI machine and on a GPU host with a driver, an NVIDIA runtime or TensorFlow alike, and a wrong
    reading of envcheck's fails there."""

    smi_driver: str | None  # nvidia-smi's driver version; None on a host without NVIDIA at all
    gpus: tuple[str, ...]  # nvidia-smi's GPU names
    compute_capabilities: tuple[str, ...]  # nvidia-smi's compute_cap, one per GPU (none before driver R510)
    tensorflow: bool  # importable in this Python
    tensorflow_gpus: int = 0  # the GPUs TensorFlow itself lists (tf.config.list_physical_devices); 0 without it
    unknown: str = ""  # why the driver cannot be read independently here ("" where it can)

    @property
    def driver(self) -> str | None:
        """The driver version, None without NVIDIA. Where an NVIDIA driver is installed but nvidia-smi is not (or
        fails), nothing independent of envcheck says which driver it is: the test reading this skips from here on,
        saying why, after the checks it made before."""
        if self.unknown:
            pytest.skip(self.unknown)
        return self.smi_driver


SMI_QUERY = ["--query-gpu=driver_version,name,compute_cap", "--format=csv,noheader"]
SMI_QUERY_OLD = ["--query-gpu=driver_version,name", "--format=csv,noheader"]
NVML_LIBRARY_GLOBS = (
    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so*",
    "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so*",
    "/usr/lib64/libnvidia-ml.so*",
    "/usr/lib/libnvidia-ml.so*",
    "/usr/local/nvidia/lib64/libnvidia-ml.so*",
    "/usr/lib/wsl/lib/libnvidia-ml.so*",
)


def nvidia_traces() -> list[str]:
    """What shows an NVIDIA driver installed, seen without nvidia-smi and without envcheck: device nodes, the
    kernel module's version file, libnvidia-ml where the loader (ldconfig, via ctypes.util) or the usual
    directories have it."""
    import ctypes.util
    import glob

    found = sorted(glob.glob("/dev/nvidia*"))
    if Path("/proc/driver/nvidia/version").exists():
        found.append("/proc/driver/nvidia/version")
    library = ctypes.util.find_library("nvidia-ml")
    found += [library] if library else []
    found += sorted(path for pattern in NVML_LIBRARY_GLOBS for path in glob.glob(pattern))
    return found


def read_this_host() -> ThisHost:
    tensorflow = importlib.util.find_spec("tensorflow") is not None
    tensorflow_gpus = 0
    if tensorflow:  # TensorFlow's own answer, in a Python of its own (importing it here would slow every test)
        listed = subprocess.run(
            [sys.executable, "-c", "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        lines = listed.stdout.split()
        tensorflow_gpus = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    smi = shutil.which("nvidia-smi")
    if smi is None:
        traces = nvidia_traces()
        if traces:
            why = (
                f"an NVIDIA driver is installed here ({', '.join(traces[:3])}) but nvidia-smi is not: nothing "
                "independent of envcheck says which driver and GPUs it has, so this comparison is not made"
            )
            return ThisHost(None, (), (), tensorflow, tensorflow_gpus, unknown=why)
        return ThisHost(None, (), (), tensorflow, tensorflow_gpus)  # no NVIDIA at all
    done = subprocess.run([smi, *SMI_QUERY], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:  # a driver older than compute_cap (R510): the driver and names alone
        older = subprocess.run([smi, *SMI_QUERY_OLD], capture_output=True, text=True, timeout=120, check=False)
        done = older if older.returncode == 0 else done
    rows = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not rows:
        said = (done.stdout + done.stderr).strip().splitlines()
        why = f"nvidia-smi failed (exit {done.returncode}: {said[0] if said else 'no output'}): not compared"
        return ThisHost(None, (), (), tensorflow, tensorflow_gpus, unknown=why)
    drivers, names, capabilities = [], [], []
    for row in rows:  # "580.65.06, NVIDIA H100 80GB HBM3, 9.0": the name between the first and the last comma
        driver, rest = row.split(",", 1)
        if done.args[1] == SMI_QUERY[0]:
            name, capability = rest.rsplit(",", 1)
            capabilities.append(capability.strip())
        else:
            name = rest
        drivers.append(driver.strip())
        names.append(name.strip())
    assert len(set(drivers)) == 1, f"nvidia-smi names several drivers: {rows}"
    return ThisHost(drivers[0], tuple(names), tuple(capabilities), tensorflow, tensorflow_gpus)


@pytest.fixture(scope="session")
def this_host() -> ThisHost:
    return read_this_host()


def daemon_gives_gpus(api: Any) -> bool:
    """Whether this Docker daemon can give containers GPUs (an NVIDIA runtime or CDI GPU devices)."""
    from envcheck.engine.client import host_facts

    facts = host_facts(api)
    return bool(facts["nvidia_runtime"] or facts["cdi_devices"])


BASE = "debian:bookworm-slim"
ENV_TEST_DOCKER_HOST = "ENVCHECK_TEST_DOCKER_HOST"


@pytest.fixture(scope="session", autouse=True)
def docker_engine(request: pytest.FixtureRequest, package_cache_of_the_session: Path) -> Iterator[None]:
    """When the session runs Docker tests, they (and every envcheck they start) use a daemon started fresh for the
    session (tests/fresh_daemon.py), never the user's; ENVCHECK_TEST_DOCKER_HOST=URL uses that daemon instead (for
    development only: it is not a first start)."""
    if not any(item.get_closest_marker("docker") for item in request.session.items):
        yield
        return
    plugins = request.config.pluginmanager

    def say(line: str) -> None:  # on the terminal, past pytest's capture of fixture output
        with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
            plugins.get_plugin("terminalreporter").write_line(line)

    chosen = os.environ.get(ENV_TEST_DOCKER_HOST)
    if chosen:
        os.environ["DOCKER_HOST"] = chosen
        say(f"Docker tests: the daemon at {chosen} ({ENV_TEST_DOCKER_HOST})")
        yield
        return
    import fresh_daemon

    from envcheck.package_cache import cache as package_cache

    wheels = package_cache.usage(package_cache_of_the_session).bytes  # already here: not downloaded again
    daemon, said = fresh_daemon.start_for_session(BASE, wheels)
    if daemon is None:
        pytest.exit(f"Docker tests not run: {said}", returncode=1)
    say(f"Docker tests: {said}")
    try:
        yield
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def docker_api(docker_engine: None) -> Any:
    from envcheck.engine.client import connect
    from envcheck.errors import DockerUnavailable

    try:
        return connect()
    except DockerUnavailable as exc:
        pytest.fail(f"Docker tests need a running engine (scripts/setup.sh starts one): {exc}")


def envcheck_containers(api: Any) -> list[dict[str, Any]]:
    return api.containers(all=True, filters={"label": labels.OWNER})


@pytest.fixture
def no_leftover_containers(docker_api: Any) -> Iterator[None]:
    """Fails the test if it leaves an envcheck container behind; removes any it finds, always."""
    yield
    left = envcheck_containers(docker_api)
    for container in left:
        docker_api.remove_container(container["Id"], force=True)
    assert not left, f"envcheck containers left behind: {[c['Names'] for c in left]}"


@pytest.fixture(scope="session", autouse=True)
def package_cache_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The builds of a test session share one package cache of their own, removed at its end (the disk is shared;
    ENVCHECK_PACKAGE_CACHE_DIR set by hand is kept). It starts with hard links to the files of the user's own
    cache (the main job's wheels, `make matrix` then `make test`): no byte of disk and no download twice, and the
    user's files are never changed (the mirror replaces a file, it does not write into one)."""
    if os.environ.get("ENVCHECK_PACKAGE_CACHE_DIR"):
        yield Path(os.environ["ENVCHECK_PACKAGE_CACHE_DIR"])
        return
    where = tmp_path_factory.mktemp("package-cache")
    seed_package_cache(where)
    os.environ["ENVCHECK_PACKAGE_CACHE_DIR"] = str(where)
    try:
        yield where
    finally:
        del os.environ["ENVCHECK_PACKAGE_CACHE_DIR"]
        shutil.rmtree(where, ignore_errors=True)


def seed_package_cache(where: Path) -> int:
    """Hard-link the user's package cache into `where`; the bytes linked (0 on another file system)."""
    from envcheck.package_cache import cache as package_cache

    user = package_cache.directory()
    linked = 0
    for file in sorted(user.rglob("*")) if user.is_dir() else []:
        if not file.is_file() or file.name.endswith(package_cache.PARTIAL):
            continue
        target = where / file.relative_to(user)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, target)
        except OSError:
            break  # another file system, or not ours to link: the session downloads what it needs
        linked += target.stat().st_size
    return linked


@pytest.fixture(scope="session")
def image_janitor(docker_api: Any) -> Iterator[None]:
    """Removes the envcheck images this test session created (disk is shared); ENVCHECK_KEEP_IMAGES=1 keeps them."""
    with images_removed_after(docker_api):
        yield


@contextlib.contextmanager
def images_removed_after(docker_api: Any) -> Iterator[None]:
    """Remove the envcheck images created inside the block, the build stages they left behind and the steps
    failed builds left (untagged, unlabelled); older ones stay (they are the layer cache later tests rebuild from)."""

    def ours() -> list[dict[str, Any]]:
        labelled = [i for label in (labels.OWNER, labels.STAGE) for i in docker_api.images(filters={"label": label})]
        return labelled + docker_api.images(filters={"dangling": True})

    before = {i["Id"] for i in ours()}
    yield
    if os.environ.get("ENVCHECK_KEEP_IMAGES") == "1":
        return
    for image in ours():
        if image["Id"] not in before:
            for ref in [r for r in image.get("RepoTags") or [] if r != "<none>:<none>"] or [image["Id"]]:
                subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)


STACKS = ["tf-2.15-cuda12", "tf-2.15-cpu"]
# Stacks made broken on purpose, each for one diagnosis; they share the base, Python and (hidden, cudnn9) the
# and-cuda TensorFlow layers with the default stacks.
BROKEN = [
    {"name": "t-plain", "tensorflow": "2.15.1", "variant": "plain"},
    {"name": "t-hidden", "tensorflow": "2.15.1", "variant": "and-cuda", "env": {"CUDA_VISIBLE_DEVICES": "-1"}},
    {"name": "t-cudnn9", "tensorflow": "2.15.1", "variant": "and-cuda", "pip": ["nvidia-cudnn-cu12==9.3.0.75"]},
]


def write_matrix(directory: Path, stacks: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "matrix.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"base": "debian:bookworm-slim", "python": "3.11"}, "stacks": stacks}))
    return path


def default_stacks(*names: str) -> list[dict[str, Any]]:
    stacks = yaml.safe_load((REPO / "matrix.yaml").read_text())["stacks"]
    return [s for s in stacks if s["name"] in names]


@pytest.fixture(scope="session")
def matrix_run(tmp_path_factory: pytest.TempPathFactory, docker_api: Any, image_janitor: None) -> dict[str, Any]:
    """`envcheck matrix --json` over the TF 2.15.1 stacks, as a user runs it."""
    root = tmp_path_factory.mktemp("matrix")
    return run_matrix(root, default_stacks(*STACKS) + BROKEN)


def run_matrix(root: Path, stacks: list[dict[str, Any]]) -> dict[str, Any]:
    """Write a matrix of these stacks under root and run `envcheck matrix --json --quick` on it."""
    matrix = write_matrix(root, stacks)
    done = run_cli("matrix", "-m", str(matrix), "--json", "--ca-bundle", "auto", "--quick")
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["stack"]: r for r in json.loads(done.stdout)}
    return {"root": root, "matrix": matrix, "results": results, "stderr": done.stderr}


# -- result records as hosts write them (for report and page tests) --

RECORDED_PROBE = load_json("probe-tf2.15.1-and-cuda-no-gpu-runtime.json")


def record_dict(stack: str, host: str, when: str, status: str = "cpu-only", **extra) -> dict:
    """A record as a host writes it (the JSON line), from the recorded real probe."""
    probe = copy.deepcopy(RECORDED_PROBE["probe"])
    bench = probe.pop("benchmark")
    base = {
        "stack": stack,
        "status": status,
        "timestamp": when,
        "host": {"label": host, "hostname": host, "gpus": [], "driver": None, "docker_version": "20.10"},
        "definition": {"variant": "and-cuda", "tensorflow": "2.15.1"},
        "probe": probe,
        "diagnoses": [{"code": "no-gpu-runtime", "severity": "error", "summary": "s", "fix": "f", "evidence": []}],
        "benchmark": bench,
    }
    base.update(extra)
    return base


def record(stack: str, host: str, when: str, status: str = "cpu-only", **extra) -> Result:
    return Result.from_dict(record_dict(stack, host, when, status, **extra))


def gpu_record(stack: str, host: str, when: str) -> Result:
    r = record_dict(stack, host, when, status="gpu", diagnoses=[])
    r["host"].update(gpus=["NVIDIA H100 80GB HBM3"], driver="550.54.15", nvidia_runtime=True)
    r["probe"]["gpus"] = [{"name": "/physical_device:GPU:0", "device_name": "NVIDIA H100 80GB HBM3"}]
    r["probe"]["driver"] = "550.54.15"
    r["benchmark"] = [{"library": "tensorflow", "device": "gpu", "dtype": "float16", "n": 8192, "tflops": 412.5}]
    return Result.from_dict(r)
