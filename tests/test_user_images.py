"""User-style images, built here from the local debian:bookworm-slim the way people write their own Dockerfiles,
probed unchanged with `envcheck probe IMAGE` and gated at start with the single-file preflight (issue 26).

No registry can be reached from these tests, so every framework is a real CPU wheel from PyPI, downloaded on this
host by its own pip (which has the proxy's CA; the images never get it) and installed in the images offline with
`pip install --no-index --find-links /wheels`: JAX 0.10.2 (the release envcheck's knowledge data and default
matrix use; jax and jaxlib on PyPI are CPU-only builds: the CUDA side is the separate jax-cuda12-plugin/pjrt) and,
where this host has it in /opt/wheels, PyTorch's `+cpu` wheel (PyTorch's own index is not reachable here).

Where each expected value comes from, never from envcheck's own code:
- status `cpu-only` and the codes: a CPU wheel is not a CUDA build whatever the host has, so `cpu-only-build` is
  always there; `no-gpu-runtime` comes first exactly when this Docker daemon offers no GPUs (conftest's
  daemon_gives_gpus: no NVIDIA runtime, no CDI devices), as envcheck's documented rule order puts root causes
  first. Nothing else is wrong with these images (Python 3.11 is a Python both wheels are built for: their cp311
  tags), so no other code may appear.
- frameworks_found: the versions pinned in the pip calls below; `importable`, since the wheels really import.
- the interpreter: where each Dockerfile puts it, and the order the issue gives for finding a user's Python (the
  image's PATH first, then /opt/conda/bin/python, /usr/local/bin/python3, /usr/bin/python3): the system Python
  is Debian's /usr/bin/python3 (3.11 in bookworm); the venv's is the first PATH entry's python3; the conda-style
  image's PATH has no Python on it while /usr/bin/python3 (without the framework) exists, so only the issue's
  order picks /opt/conda/bin/python, and a wrong pick would show as no framework found.
- `needs` (what the image needs from a host): a CPU wheel carries no CUDA runtime and no GPU code, so no minimum
  driver, no PTX and no GPU generation it runs on, whatever the knowledge data lists for that release's CUDA
  wheels (that is about another wheel).
- the gate: probe.py's documented exit codes (0 passed, 1 failed, 2 bad arguments; boot.py's 3: Python too old)
  and its one code, the first root cause in the diagnosis rules' order: `no-gpu-runtime` in a container that got
  no GPU (this daemon offers none), else `cpu-only-build` (a CPU wheel never computes on a GPU). The ENTRYPOINT
  wrapper `sh -c 'python3 /opt/envcheck-preflight --require gpu && exec "$@"' --` must then not run the user's
  command (its word and marker file must be absent), and does run it when the preflight exits 0.
- digests: an image only on this daemon is recorded by its image id, which the daemon itself reports
  (docker_api.inspect_image) for the image the `docker` CLI built.

Images: one Python base (apt), one layer of wheels and the preflight over it, then the system-Python image (built
with the plain `docker build` CLI), the venv base shared by the non-root, /bin/false and gate images, the
conda-style one, and the PyTorch one when its wheel is here. Each is labelled envcheck's: the session's janitor
removes them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import daemon_gives_gpus, run_cli
from envcheck import labels

JAX_VERSION = "0.10.2"  # knowledge.yaml's jax row and the default matrix's jax stack
TORCH_WHEELS = sorted(Path("/opt/wheels").glob("torch-*+cpu*.whl"))
TORCH_WHEEL = TORCH_WHEELS[-1] if TORCH_WHEELS else None
TORCH_VERSION = TORCH_WHEEL.name.split("-")[1] if TORCH_WHEEL else None  # e.g. 2.13.0+cpu
NO_TORCH = "no PyTorch CPU wheel in /opt/wheels (torch-*+cpu*.whl), and PyTorch's own index is not reachable here"
PIP_DOWNLOAD = [
    *("-m", "pip", "download", "--quiet", "--only-binary", ":all:", "--python-version", "3.11"),
    # this pip does not widen --platform to older manylinux tags: name the ones the wheels use
    *("--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_27_x86_64"),
    *("--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"),
]

TAG = "envcheck-test/user-{}:1"
PYTHON = TAG.format("python")  # Debian's python3, pip and venv: no framework
WHEELS = TAG.format("wheels")  # PYTHON + /wheels (JAX's) + /opt/envcheck-preflight
SYSTEM = TAG.format("system-jax")  # JAX in the system Python (--break-system-packages); built by the docker CLI
VENV = TAG.format("venv-jax")  # JAX in /srv/app/env, on PATH
CONDA = TAG.format("conda-jax")  # JAX in /opt/conda (a venv there), off PATH
NONROOT = TAG.format("nonroot-jax")  # VENV as USER 1000
FALSE = TAG.format("false-jax")  # VENV with ENTRYPOINT ["/bin/false"]
GATED = TAG.format("gated-jax")  # VENV with the preflight as an ENTRYPOINT wrapper
TORCH = TAG.format("system-torch")  # PyTorch's CPU wheel in the system Python
BROKEN = TAG.format("broken-jax")  # PYTHON + a fake JAX 0.4.35 that fails at import as the real one does (issue 27)
PIP_JAX = f"--no-index --find-links /wheels jax=={JAX_VERSION} jaxlib=={JAX_VERSION}"
USER_WORD = "USER-COMMAND-RAN-7f3c"  # what the user's command prints (and writes to a marker file)
USER_COMMAND = f"echo {USER_WORD} > /tmp/user-command-ran && echo {USER_WORD}"

DOCKERFILES = {
    PYTHON: "FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y --no-install-recommends python3 "
    "python3-pip python3-venv && rm -rf /var/lib/apt/lists/*\n",
    WHEELS: f"FROM {PYTHON}\nCOPY wheels /wheels\nCOPY envcheck-preflight /opt/envcheck-preflight\n",
    SYSTEM: f"FROM {WHEELS}\nRUN pip3 install --break-system-packages --no-cache-dir {PIP_JAX}\n",
    VENV: f"FROM {WHEELS}\nRUN python3 -m venv /srv/app/env && /srv/app/env/bin/pip install --no-cache-dir {PIP_JAX}\n"
    "ENV PATH=/srv/app/env/bin:$PATH\n",
    # PATH without /usr/bin and /bin (nor /opt/conda/bin): no Python on it, while /usr/bin/python3 is there
    CONDA: f"FROM {WHEELS}\nRUN python3 -m venv /opt/conda && /opt/conda/bin/pip install --no-cache-dir {PIP_JAX}\n"
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin\n",
    NONROOT: f"FROM {VENV}\nUSER 1000\n",
    FALSE: f'FROM {VENV}\nENTRYPOINT ["/bin/false"]\nCMD ["--never"]\n',
    GATED: f"FROM {VENV}\n"
    """ENTRYPOINT ["sh", "-c", "python3 /opt/envcheck-preflight --require gpu && exec \\"$@\\"", "--"]\n"""
    f'CMD ["sh", "-c", "{USER_COMMAND}"]\n',
    TORCH: f"FROM {PYTHON}\nCOPY wheels /wheels\nRUN pip3 install --break-system-packages --no-cache-dir "
    f"--no-index --find-links /wheels torch=={TORCH_VERSION} numpy && rm -rf /wheels\n",
}
# Debian's python3 looks in /usr/local/lib/python3.11/dist-packages first, where pip would have put the wheels.
DOCKERFILES[BROKEN] = f"FROM {PYTHON}\nCOPY site-packages /usr/local/lib/python3.11/dist-packages/\n"
JAX_IMAGES = [SYSTEM, VENV, CONDA, NONROOT, FALSE]  # probed together, in one `envcheck probe`
EXPECTED_PYTHON = {
    SYSTEM: "/usr/bin/python3",
    VENV: "/srv/app/env/bin/python3",  # PATH's first directory; python3 before python
    CONDA: "/opt/conda/bin/python",
    NONROOT: "/srv/app/env/bin/python3",
    FALSE: "/srv/app/env/bin/python3",
    TORCH: "/usr/bin/python3",
}
CPU_NEEDS = {
    "cuda": None,
    "cuda_from": None,
    "min_driver": None,
    "min_driver_minor_compat": None,
    "ptx_isa": None,
    "min_driver_for_ptx": None,
    "gpus": {"native": [], "ptx_jit": [], "none": []},
    "require_cuda": None,
}


def pip_download(into: Path, *requirements: str) -> None:
    """Wheels for Python 3.11 on x86-64 Linux, fetched by this host's pip (with its proxy and CA)."""
    done = subprocess.run(
        [sys.executable, *PIP_DOWNLOAD, "-d", str(into), *requirements],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def build(api: Any, tag: str, context: Path | None = None) -> None:
    """One image of DOCKERFILES, with the docker SDK, labelled as envcheck's."""
    if context is None:
        source: dict[str, Any] = {"fileobj": io.BytesIO(DOCKERFILES[tag].encode())}
    else:
        (context / "Dockerfile").write_text(DOCKERFILES[tag])
        source = {"path": str(context)}
    said = list(api.build(**source, tag=tag, labels={labels.OWNER: "1"}, rm=True, forcerm=True, decode=True))
    assert not [c for c in said if "error" in c], said[-5:]


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copyfile(source, target)


@pytest.fixture(scope="module")
def user_images(docker_api: Any, image_janitor: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The JAX images (and the PyTorch one where its wheel is here), built; their image ids by tag."""
    context = tmp_path_factory.mktemp("user-jax")
    pip_download(context / "wheels", f"jax=={JAX_VERSION}", f"jaxlib=={JAX_VERSION}")
    written = run_cli("preflight", "-o", str(context / "envcheck-preflight"))
    assert written.returncode == 0, written.stderr
    build(docker_api, PYTHON)
    build(docker_api, WHEELS, context)
    # The system-Python image comes from the plain `docker build` CLI, as a user builds outside envcheck.
    cli = subprocess.run(
        ["docker", "build", "-q", "--label", f"{labels.OWNER}=1", "-t", SYSTEM, "-"],
        input=DOCKERFILES[SYSTEM],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    for tag in (VENV, CONDA, NONROOT, FALSE, GATED):
        build(docker_api, tag)
    if TORCH_WHEEL is not None:
        torch_context = tmp_path_factory.mktemp("user-torch")
        (torch_context / "wheels").mkdir()
        link_or_copy(TORCH_WHEEL, torch_context / "wheels" / TORCH_WHEEL.name)
        pip_download(torch_context / "wheels", str(torch_context / "wheels" / TORCH_WHEEL.name), "numpy")
        build(docker_api, TORCH, torch_context)
    tags = [*JAX_IMAGES, GATED, *([TORCH] if TORCH_WHEEL else [])]
    return {tag: docker_api.inspect_image(tag)["Id"] for tag in tags}


def probe(*images: str) -> list[dict[str, Any]]:
    done = run_cli("probe", *images, "--json", "--quick", timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    results = data if isinstance(data, list) else [data]
    assert [r["image"] for r in results] == list(images), done.stderr[-2000:]
    return results


@pytest.fixture(scope="module")
def probed(user_images: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`envcheck probe --json` of every JAX image at once (one command, as a user would ask)."""
    return {r["image"]: r for r in probe(*JAX_IMAGES)}


@pytest.fixture(scope="module")
def gpus(docker_api: Any) -> bool:
    return daemon_gives_gpus(docker_api)


def expected_codes(gpus: bool) -> list[str]:
    return ([] if gpus else ["no-gpu-runtime"]) + ["cpu-only-build"]


def assert_cpu_wheel(result: dict[str, Any], framework: str, version: str, python: str, gpus: bool) -> None:
    """The verdict every image with a CPU wheel gets, with its interpreter."""
    where = (result["image"], result.get("error"))
    assert result["status"] == "cpu-only", where
    assert [d["code"] for d in result["diagnoses"]] == expected_codes(gpus), where
    probe = result["probe"]
    assert probe["frameworks_found"] == [{"name": framework, "version": version, "importable": True}], where
    assert (probe["framework"], probe["framework_version"], probe["is_cuda_build"]) == (framework, version, False)
    assert probe["executable"] == python and probe["python"].startswith("3.11."), where
    assert result["run"]["exit_code"] == 0 and probe["errors"] == [], where
    cpu_only = next(d for d in result["diagnoses"] if d["code"] == "cpu-only-build")
    assert cpu_only["severity"] == "error" and version.split("+")[0] in cpu_only["summary"]
    assert {**result["needs"], "said": None} == {**CPU_NEEDS, "said": None}, where
    assert (
        result["needs"]["said"].startswith("no GPU driver: ")
        and "nothing here runs on a GPU" in (result["needs"]["said"])
    )


# -- envcheck probe IMAGE: each layout a user's image has --------------------------------------------------------


@pytest.mark.docker
def test_a_system_python_with_a_cpu_jax_wheel_is_a_cpu_only_build(
    probed: dict[str, dict[str, Any]], gpus: bool, no_leftover_containers: None
):
    assert_cpu_wheel(probed[SYSTEM], "jax", JAX_VERSION, EXPECTED_PYTHON[SYSTEM], gpus)


@pytest.mark.docker
def test_a_venv_on_path_in_a_non_standard_place_is_the_python_probed(
    probed: dict[str, dict[str, Any]], gpus: bool, no_leftover_containers: None
):
    assert_cpu_wheel(probed[VENV], "jax", JAX_VERSION, EXPECTED_PYTHON[VENV], gpus)


@pytest.mark.docker
def test_a_conda_style_python_off_path_is_found_before_the_system_one(
    docker_api: Any, probed: dict[str, dict[str, Any]], gpus: bool, no_leftover_containers: None
):
    assert_cpu_wheel(probed[CONDA], "jax", JAX_VERSION, EXPECTED_PYTHON[CONDA], gpus)
    # What makes the pick mean something: the image's /usr/bin/python3, a later usual place, is there without JAX
    # (as in the venv image, whose PATH names its venv first).
    for image in (CONDA, VENV):
        ask = ["/usr/bin/python3", "-c", "import importlib.util; print(importlib.util.find_spec('jax'))"]
        code, stdout, stderr = run_container(docker_api, image, False, entrypoint=ask, command=[])
        assert (code, stdout.strip()) == (0, "None"), (image, code, stdout, stderr)


@pytest.mark.docker
def test_a_non_root_user_gets_the_same_verdict(
    probed: dict[str, dict[str, Any]], gpus: bool, no_leftover_containers: None
):
    assert_cpu_wheel(probed[NONROOT], "jax", JAX_VERSION, EXPECTED_PYTHON[NONROOT], gpus)


@pytest.mark.docker
def test_an_entrypoint_that_exits_at_once_is_overridden(
    probed: dict[str, dict[str, Any]], gpus: bool, no_leftover_containers: None
):
    assert_cpu_wheel(probed[FALSE], "jax", JAX_VERSION, EXPECTED_PYTHON[FALSE], gpus)


@pytest.mark.docker
@pytest.mark.skipif(TORCH_WHEEL is None, reason=NO_TORCH)
def test_a_system_python_with_pytorchs_cpu_wheel_is_a_cpu_only_build(
    user_images: dict[str, str], gpus: bool, no_leftover_containers: None
):
    assert TORCH_VERSION is not None
    (result,) = probe(TORCH)
    assert_cpu_wheel(result, "torch", TORCH_VERSION, EXPECTED_PYTHON[TORCH], gpus)
    assert result["digest"] == user_images[TORCH]


@pytest.mark.docker
def test_a_framework_image_from_the_docker_cli_is_recorded_by_its_image_id(
    docker_api: Any,
    user_images: dict[str, str],
    probed: dict[str, dict[str, Any]],
    gpus: bool,
    no_leftover_containers: None,
):
    image_id = docker_api.inspect_image(SYSTEM)["Id"]
    assert probed[SYSTEM]["digest"] == image_id  # local only: no registry digest, its image id
    assert all(probed[tag]["digest"] == user_images[tag] for tag in JAX_IMAGES)
    done = run_cli("probe", SYSTEM, "--quick", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    row = done.stdout.splitlines()[0]
    assert row.split()[:5] == [SYSTEM, "(local", "image", image_id + ")", "cpu-only"], done.stdout
    assert row.split(None, 5)[5] == f"JAX {JAX_VERSION}  {', '.join(expected_codes(gpus))}", row  # found, causes


# -- the gate at start-up: the preflight as an ENTRYPOINT wrapper -----------------------------------------------


def run_container(api: Any, image: str, gpus: bool, **create: Any) -> tuple[int, str, str]:
    """Run a container of the image to its end (GPUs requested where the daemon has them); exit code, stdout,
    stderr. Removed after, and labelled envcheck's so no_leftover_containers sees one left behind."""
    import docker.types

    requests = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])] if gpus else None
    host_config = api.create_host_config(device_requests=requests)
    container = api.create_container(image, host_config=host_config, labels={labels.OWNER: "1"}, **create)
    try:
        api.start(container)
        code = api.wait(container, timeout=600)["StatusCode"]
        stdout = api.logs(container, stdout=True, stderr=False).decode(errors="replace")
        stderr = api.logs(container, stdout=False, stderr=True).decode(errors="replace")
        return code, stdout, stderr
    finally:
        api.remove_container(container, force=True, v=True)


@pytest.mark.docker
def test_the_gate_as_an_entrypoint_wrapper_stops_the_users_command(
    docker_api: Any, user_images: dict[str, str], gpus: bool, no_leftover_containers: None
):
    code_expected = "no-gpu-runtime" if not gpus else "cpu-only-build"
    code, stdout, stderr = run_container(docker_api, GATED, gpus)
    assert code == 1, (code, stdout, stderr)  # the gate failed: its exit code, and the user's command never ran
    assert USER_WORD not in stdout + stderr
    assert f"envcheck: GPU check failed ({code_expected}): " in stderr, stderr
    assert "Traceback" not in stderr
    # The same gate with --json: the probe's JSON on stdout, the verdict in `gate`.
    entrypoint = ["python3", "/opt/envcheck-preflight", "--require", "gpu", "--json"]
    code, stdout, stderr = run_container(docker_api, GATED, gpus, entrypoint=entrypoint, command=[])
    assert code == 1, (code, stdout, stderr)
    document = json.loads(stdout.strip().splitlines()[-1])
    assert document["gate"]["passed"] is False and document["gate"]["code"] == code_expected, document["gate"]
    assert (document["framework"], document["framework_version"], document["is_cuda_build"]) == (
        "jax",
        JAX_VERSION,
        False,
    )
    assert document["executable"] == "/srv/app/env/bin/python3"  # python3 on the venv's PATH
    # A bad argument is the gate's exit 2, and the user's command does not run either.
    bad = ["sh", "-c", 'python3 /opt/envcheck-preflight --require gpu --min-tflops -1 && exec "$@"', "--"]
    code, stdout, stderr = run_container(docker_api, GATED, gpus, entrypoint=bad)
    assert code == 2 and USER_WORD not in stdout + stderr, (code, stdout, stderr)
    # The wrapper does run the user's command when the check before it exits 0 (the preflight without --require
    # prints the probe's JSON and exits 0): the word, and the marker file it writes, are real evidence.
    passing = ["sh", "-c", 'python3 /opt/envcheck-preflight > /dev/null && exec "$@"', "--"]
    command = ["sh", "-c", f"{USER_COMMAND} && test -f /tmp/user-command-ran"]
    code, stdout, stderr = run_container(docker_api, GATED, gpus, entrypoint=passing, command=command)
    assert code == 0 and stdout.strip() == USER_WORD, (code, stdout, stderr)


# -- an installed framework that fails at import (issue 27) ----------------------------------------------------


@pytest.mark.docker
def test_an_installed_jax_that_fails_at_import_is_framework_import_failed(
    docker_api: Any,
    user_images: dict[str, str],
    gpus: bool,
    tmp_path: Path,
    no_leftover_containers: None,
):
    """JAX 0.4.35 with nvidia-cuda-nvcc-cu12 12.9 (a namespace package): `import jax` raises TypeError in
    jax/_src/lib/__init__.py (tests/test_import_failures.py has the sources). Its dist-info and failing code are
    faked (no registry here), so the probe in the image reads the same metadata and the same exception as in a real
    one: framework-import-failed after no-gpu-runtime where this daemon gives no GPU, never framework-missing."""
    from test_import_failures import jax_0_4_35_with_nvcc_12_9

    jax_0_4_35_with_nvcc_12_9(tmp_path)
    build(docker_api, BROKEN, tmp_path)
    (result,) = probe(BROKEN)
    where = (result["image"], result.get("error"))
    codes = [d["code"] for d in result["diagnoses"]]
    assert codes[: 2 - gpus] == ([] if gpus else ["no-gpu-runtime"]) + ["framework-import-failed"], where
    assert "framework-missing" not in codes and result["status"] == "cpu-only", where
    found = result["probe"]
    assert (found["framework"], found["framework_version"], found["executable"]) == ("jax", None, "/usr/bin/python3")
    failure = found["import_failure"]
    assert failure["distributions"] == {"jax": "0.4.35", "jaxlib": "0.4.34", "jax-cuda12-plugin": "0.4.35"}
    assert failure["exception"] == "TypeError"
    assert failure["dependencies"]["nvidia-cuda-nvcc-cu12"]["installed"] == "12.9.86"
    failed = next(d for d in result["diagnoses"] if d["code"] == "framework-import-failed")
    assert "nvidia-cuda-nvcc-cu12<12.9" in failed["fix"] and "0.4.36" in failed["fix"]
