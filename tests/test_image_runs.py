"""Images people already run, probed unchanged (issue 26): `image:` stacks and `envcheck probe IMAGE`.

Without Docker: the command line, how the probe enters a container and how the image's Python is found (against a
stand-in daemon that answers the Engine API calls envcheck makes, as Docker 20.10 answers them), odd images, records
and the table with hostile values, and the CI pipelines and Kubernetes Jobs of image stacks through the same
validators as the rendered ones. With Docker (marked `docker`): real images built in the test, each odd case with
the status and words it must give.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

from conftest import DATA, daemon_gives_gpus, run_cli
from envcheck import labels
from envcheck.engine import images, run
from envcheck.inputs.matrix import load_matrix
from envcheck.inputs.options import DEFAULTS, Options
from envcheck.jobs.k8s import GATE, Refused, probe_files_name, result_of_pod
from envcheck.probe import PROBE_FILES
from envcheck.results import junit, publish
from envcheck.results.model import Host, Result, Status
from envcheck.runs import pipeline

RECORDED = json.loads((DATA / "probe-torch2.9.1-pypi-no-gpu-runtime.json").read_text())
FOUND = [{"name": "torch", "version": "2.9.1"}, {"name": "jax", "version": "0.4.35"}]
PASSWORD = "s3cr3t-registry-password"
REGISTRY = "registry.example.com:5000/team/envcheck"
PYTORCH = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
DIGEST = "sha256:" + "ab" * 32
IMAGE_ID = "sha256:" + "cd" * 32
GO_DIR, GO_SYMLINK = 1 << 31, 1 << 27  # Go's os.FileMode bits, as the archive API reports them
MATRIX = f"""\
registry: {REGISTRY}
defaults:
  base: debian:bookworm-slim
  python: "3.11"
stacks:
  - name: torch-2.5-cu121
    torch: "2.5.1"
    index: cu121
  - name: people-pytorch
    image: {PYTORCH}
  - name: people-jax
    image: ghcr.io/example/jax-train@{DIGEST}
    framework: jax
    python: /opt/venv/bin/python
    env:
      XLA_PYTHON_CLIENT_PREALLOCATE: "false"
"""


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[test]'` brings it (these checks run offline)")
    return found


def probe_document(**changes: Any) -> dict[str, Any]:
    """A real probe's document (PyTorch 2.9.1 without a GPU runtime) as a probe of an image with two frameworks
    writes it."""
    return {**copy.deepcopy(RECORDED["probe"]), "frameworks_found": copy.deepcopy(FOUND), **changes}


# -- a stand-in Docker daemon: the Engine API calls envcheck makes, answered as Docker 20.10 answers them -----------


class Response:
    def __init__(self, status: int, stat: dict[str, Any] | None = None) -> None:
        self.status_code = status
        encoded = base64.b64encode(json.dumps(stat).encode()).decode() if stat else None
        self.headers = {"X-Docker-Container-Path-Stat": encoded} if encoded else {}


class Daemon:
    """Holds images (inspect data and a file tree each) and records every container made and what was done to it.
    `logs` is what the probe container prints; `arch` is the daemon's."""

    def __init__(self, attrs: dict[str, Any], files: dict[str, tuple[int, str]], logs: str = "", arch: str = "amd64"):
        self.attrs, self.files, self.stdout, self.arch = attrs, files, logs, arch
        self.timeout = 60
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.created: dict[str, dict[str, Any]] = {}
        self.removed: list[tuple[str, dict[str, Any]]] = []
        self.archives: dict[str, bytes] = {}

    def version(self) -> dict[str, str]:
        return {"Os": "linux", "Arch": self.arch}

    def inspect_image(self, image: str) -> dict[str, Any]:
        return self.attrs

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_container(self, image: str, **kwargs: Any) -> dict[str, str]:
        self.created[kwargs["name"]] = {"image": image, **kwargs}
        self.calls.append(("create", kwargs["name"], kwargs))
        return {"Id": kwargs["name"]}

    def put_archive(self, container: str, path: str, data: bytes) -> bool:
        self.calls.append(("put_archive", container, {"path": path}))
        self.archives[container] = data
        return True

    def start(self, container: str) -> None:
        self.calls.append(("start", container, {}))

    def wait(self, container: str, timeout: float) -> dict[str, int]:
        return {"StatusCode": 0}

    def logs(self, container: str, stdout: bool, stderr: bool) -> bytes:
        return self.stdout.encode() if stdout else b""

    def kill(self, container: str) -> None:
        pass

    def remove_container(self, container: str, **kwargs: Any) -> None:
        self.removed.append((container, kwargs))

    def _url(self, pathfmt: str, *args: str) -> str:
        return pathfmt.format(*args)

    def head(self, url: str, params: dict[str, str], timeout: float) -> Response:
        """HEAD /containers/ID/archive: the stat of a path, a symlink's target resolved in the container's root."""
        self.calls.append(("stat", url, params))
        path = params["path"]
        if path not in self.files:
            return Response(404)
        mode, target = self.files[path]
        return Response(200, {"name": Path(path).name, "size": 1, "mode": mode, "linkTarget": target})

    def _raise_for_status(self, response: Response) -> None:
        assert response.status_code == 200


def image_attrs(env: list[str] | None = None, arch: str = "amd64", **extra: Any) -> dict[str, Any]:
    return {"Id": IMAGE_ID, "Os": "linux", "Architecture": arch, "Config": {"Env": env or []}, **extra}


VENV = {  # a venv's python: a symlink to the interpreter, which is a regular executable file
    "/opt/venv/bin/python3": (GO_SYMLINK | 0o777, "/usr/local/bin/python3.11"),
    "/usr/local/bin/python3.11": (0o755, ""),
}


def image_stack(**fields: Any) -> Any:
    return pipeline.image_stacks(pipeline.ProbeOptions(images=(fields.pop("image", PYTORCH),), **fields))[0]


def probed(daemon: Daemon, stack: Any, hint: str = pipeline.STACK_HINT) -> Result:
    result = pipeline.new_result(stack, Host(label="here"), Status.RUN_FAILED, image=stack.image)
    pipeline.probe_stack(daemon, IMAGE_ID, stack, result, Options(quick=True), hint=hint)
    return result


# -- how the probe enters a container, and with which Python ------------------------------------------------------


def test_the_probe_enters_through_a_volume_before_start_and_leaves_with_it():
    daemon = Daemon(image_attrs(["PATH=/opt/venv/bin:/usr/bin"]), VENV, json.dumps(probe_document()))
    result = probed(daemon, image_stack())
    assert result.status == Status.CPU_ONLY and result.frameworks_found == [("torch", "2.9.1"), ("jax", "0.4.35")]
    look, probe = daemon.created.values()  # a container to look into, never started; then the probe's
    assert look["entrypoint"] == run.NEVER_STARTED and ("start", look["name"], {}) not in daemon.calls
    # the venv's python is run as found (its symlink's target alone would not be that venv)
    assert probe["entrypoint"] == ["/opt/venv/bin/python3"]
    assert probe["command"] == [run.BOOT, "--framework", "auto", "--quick"]
    assert probe["volumes"] == [run.PROBE_DIR] and probe["environment"] is None  # the image's ENV, nothing forced
    assert "user" not in probe and "working_dir" not in probe  # its USER and WORKDIR stay the image's
    assert probe["host_config"]["read_only"] and probe["host_config"]["network_mode"] == "none"  # the sandbox
    steps = [(step, name) for step, name, _ in daemon.calls if name == probe["name"]]
    assert steps == [("create", probe["name"]), ("put_archive", probe["name"]), ("start", probe["name"])]
    with tarfile.open(fileobj=io.BytesIO(daemon.archives[probe["name"]])) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == set(PROBE_FILES)  # flat, boot.py among them
        assert all(m.isfile() and m.mode == 0o644 and m.uid == 0 for m in members.values())  # any USER reads them
        assert tar.extractfile("boot.py").read() == PROBE_FILES["boot.py"].read_bytes()  # type: ignore[union-attr]
    assert {name for name, _ in daemon.removed} == {look["name"], probe["name"]}
    assert all(kwargs == {"force": True, "v": True} for _, kwargs in daemon.removed)  # with the volume
    assert all(c["labels"][labels.OWNER] == "1" for c in daemon.created.values())


def test_a_stacks_env_goes_over_the_images_own_and_its_python_is_taken_as_named(tmp_path: Path):
    daemon = Daemon(image_attrs(["PATH=/usr/bin"]), {"/opt/venv/bin/python": (0o755, "")}, json.dumps(probe_document()))
    stack = load_matrix(write(tmp_path, MATRIX)).stacks[2]
    probed(daemon, stack)
    _, probe = daemon.created.values()
    assert [c[2]["path"] for c in daemon.calls if c[0] == "stat"] == ["/opt/venv/bin/python"]
    assert probe["entrypoint"] == ["/opt/venv/bin/python"] and probe["command"][1:3] == ["--framework", "jax"]
    assert probe["environment"] == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def test_pythons_are_looked_for_where_a_users_python_would_be_found():
    attrs = image_attrs(["LANG=C.UTF-8", "PATH=/opt/conda/envs/x/bin:relative:/usr/bin/"])
    assert run.python_candidates(attrs) == [
        "/opt/conda/envs/x/bin/python3",
        "/opt/conda/envs/x/bin/python",
        "/usr/bin/python3",
        "/usr/bin/python",
        *run.WELL_KNOWN_PYTHONS[:2],  # /usr/bin/python3 only once
    ]
    default = run.python_candidates(image_attrs())  # no PATH in the image: Docker's own
    assert default[:2] == ["/usr/local/sbin/python3", "/usr/local/sbin/python"] and len(default) == 13


@pytest.mark.parametrize(
    ("files", "found"),
    [
        ({"/usr/bin/python3": (0o755, "")}, "/usr/bin/python3"),
        ({"/usr/bin/python3": (0o644, ""), "/usr/bin/python": (0o755, "")}, "/usr/bin/python"),  # not executable
        ({"/usr/bin/python3": (GO_DIR | 0o755, "")}, None),  # a directory
        ({"/usr/bin/python3": (GO_SYMLINK | 0o777, "/usr/bin/python3.11")}, None),  # a dangling link
        ({"/usr/bin/python3": (GO_SYMLINK | 0o777, "/usr/bin/python3")}, None),  # a loop: a few hops, then no
    ],
)
def test_a_candidate_counts_only_as_an_executable_file_or_a_link_to_one(files: dict, found: str | None):
    daemon = Daemon(image_attrs(["PATH=/usr/bin"]), files)
    assert run.find_python(daemon, "img", daemon.attrs, "s")[0] == found
    assert len([c for c in daemon.calls if c[0] == "stat"]) <= 2 * len(run.python_candidates(daemon.attrs)) + 4


def test_odd_images_are_each_one_clear_result():
    no_python = probed(Daemon(image_attrs(["PATH=/usr/bin:/bin"]), {}), image_stack())
    assert no_python.status == Status.RUN_FAILED
    assert no_python.error == (
        "no Python in this image (looked in: /usr/bin/python3, /usr/bin/python, /bin/python3, /bin/python, "
        "/opt/conda/bin/python, /usr/local/bin/python3); name one with `python: /path/to/python` in the stack"
    )
    named = probed(Daemon(image_attrs(), {}), image_stack(python="/opt/py/bin/python"), pipeline.PROBE_HINT)
    assert named.error == (
        "the Python named, /opt/py/bin/python, is not an executable file in this image; name one with --python "
        "/path/to/python"
    )
    arm = Daemon(image_attrs(arch="arm64", Variant="v8"), VENV)
    other = probed(arm, image_stack())
    assert other.error == "image is for linux/arm64/v8, this Docker host runs linux/amd64"
    assert other.status == Status.RUN_FAILED and not arm.created  # nothing was made of it
    too_old = {"probe_schema": 2, "error": "python-too-old", "python": "2.7.18", "executable": "/usr/bin/python"}
    old = probed(Daemon(image_attrs(["PATH=/opt/venv/bin"]), VENV, json.dumps(too_old)), image_stack())
    assert (old.status, old.probe) == (Status.RUN_FAILED, None)
    assert old.error == (
        "Python 2.7 in this image is too old for the probe (it needs Python 3.8 or newer); name one with "
        "`python: /path/to/python` in the stack"
    )
    silent = probed(
        Daemon(image_attrs(["PATH=/opt/venv/bin"]), VENV, "Traceback (most recent call last)\n"), image_stack()
    )
    assert silent.error == "the probe printed no JSON (exit code 0)"


def test_images_are_fetched_as_they_are_and_named_by_digest():
    class Registry(Daemon):
        def __init__(self, pulled: list[dict[str, Any]], present: bool) -> None:
            super().__init__(image_attrs(RepoDigests=[f"other/name@{IMAGE_ID}", f"pytorch/pytorch@{DIGEST}"]), {})
            self.chunks, self.present, self.pulls = pulled, present, 0

        def inspect_image(self, image: str) -> dict[str, Any]:
            if not self.present:
                import docker.errors

                raise docker.errors.ImageNotFound("No such image")
            return self.attrs

        def pull(self, reference: str, stream: bool, decode: bool) -> list[dict[str, Any]]:
            self.pulls += 1
            self.present = True
            return self.chunks

    here = images.fetch(Registry([], present=True), f"docker.io/{PYTORCH}", lambda text: None)
    assert (here.pulled, here.digest, here.image_id) == (False, f"pytorch/pytorch@{DIGEST}", IMAGE_ID)
    pulled = images.fetch(Registry([{"status": "Pulling"}], present=False), PYTORCH, lambda text: None)
    assert pulled.pulled and pulled.digest == f"pytorch/pytorch@{DIGEST}"
    refused = Registry([{"error": f"unauthorized: see https://user:{PASSWORD}@registry.example.com/token"}], False)
    with pytest.raises(images.ImageUnusable) as caught:
        images.fetch(refused, PYTORCH, lambda text: None)
    assert str(caught.value) == (
        f"image {PYTORCH} is not on this Docker host and cannot be pulled: unauthorized: see "
        "https://registry.example.com/token"
    )
    assert PASSWORD not in str(caught.value) and "user" not in str(caught.value)
    # an image built or loaded here, never pushed: its id
    assert images.digest_of("mine:1", image_attrs(RepoDigests=[])) == IMAGE_ID
    assert images.digest_of(f"ghcr.io/a/b@{DIGEST}", image_attrs()) == f"ghcr.io/a/b@{DIGEST}"


def test_a_pull_the_daemon_refuses_is_said_exactly():
    import docker.errors

    class Denied(Daemon):
        def inspect_image(self, image: str) -> dict[str, Any]:
            raise docker.errors.ImageNotFound("No such image")

        def pull(self, reference: str, stream: bool, decode: bool) -> Any:
            response = type("R", (), {"status_code": 404, "reason": "Not Found", "url": "http://d/images/create"})()
            said = (
                "pull access denied for nosuch/image, repository does not exist or may require 'docker login': "
                "denied: requested access to the resource is denied"
            )
            raise docker.errors.ImageNotFound("404 Client Error", response=response, explanation=said)

    with pytest.raises(images.ImageUnusable) as caught:
        images.fetch(Denied(image_attrs(), {}), "nosuch/image:1", lambda text: None)
    assert str(caught.value) == (
        "image nosuch/image:1 is not on this Docker host and cannot be pulled: pull access denied for nosuch/image, "
        "repository does not exist or may require 'docker login': denied: requested access to the resource is denied"
    )


# -- the command line ----------------------------------------------------------------------------------------------


def test_probe_and_preflight_parse_into_their_options():
    from envcheck import cli

    args = cli.build_parser().parse_args(
        [
            *("probe", PYTORCH, f"ghcr.io/a/b@{DIGEST}", "--framework", "torch", "--python", "/opt/venv/bin/python"),
            *("--format", "junit", "--run-timeout", "30", "--quick"),
        ]
    )
    options = cli.command_of(args).options(args)
    assert options.images == (PYTORCH, f"ghcr.io/a/b@{DIGEST}") and options.probe_framework == "torch"
    assert (options.python, options.output) == ("/opt/venv/bin/python", "junit")
    assert (options.engine.run_timeout, options.engine.quick) == (30.0, True)
    bare = cli.build_parser().parse_args(["probe", PYTORCH])
    assert cli.command_of(bare).options(bare).probe_framework == DEFAULTS.probe_framework == "auto"


@pytest.mark.parametrize(
    "argv",
    [
        ["probe"],
        ["probe", f"user:{PASSWORD}@registry.example.com/team/image:1"],
        ["probe", f"https://user:{PASSWORD}@registry.example.com/team/image"],
        ["probe", "Upper/Case:1"],
        ["probe", PYTORCH, "--framework", "mxnet"],
        ["probe", PYTORCH, "--python", "python3"],
        ["probe", PYTORCH, "--python", "/opt/../bin/python"],
        ["probe", PYTORCH, "--run-timeout", "inf"],
    ],
)
def test_bad_arguments_are_exit_2_before_any_daemon_and_show_no_password(argv: list[str]):
    done = run_cli(*argv, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr + done.stdout


def test_without_docker_probe_is_exit_3():
    done = run_cli("probe", PYTORCH, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert done.returncode == 3 and "Cannot reach the Docker daemon" in done.stderr, done.stderr


def test_preflight_writes_one_runnable_file(tmp_path: Path):
    done = run_cli("preflight", "-o", str(tmp_path))
    written = tmp_path / DEFAULTS.preflight
    assert done.returncode == 0 and done.stdout.strip() == str(written), done.stderr
    assert written.stat().st_mode & 0o111 and written.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(written) as archive:
        assert set(PROBE_FILES) <= set(archive.namelist())
    elsewhere = run_cli("preflight", "-o", str(tmp_path / "gate.pyz"))
    assert elsewhere.returncode == 0 and (tmp_path / "gate.pyz").is_file()
    unwritable = run_cli("preflight", "-o", str(tmp_path / "no" / "such" / "dir" / "x"))
    assert unwritable.returncode == 2 and "cannot write" in unwritable.stderr and "Traceback" not in unwritable.stderr
    into = run_cli("preflight", "-o", f"{tmp_path / 'new' / 'dir'}/")  # DIR/: a directory, made when missing
    assert into.returncode == 0 and (tmp_path / "new" / "dir" / DEFAULTS.preflight).is_file(), into.stderr
    assert (tmp_path / "new" / "dir" / DEFAULTS.preflight).read_bytes() == written.read_bytes()  # the same bytes


def test_images_named_alike_become_stacks_apart():
    options = pipeline.ProbeOptions(images=("a/b:1", "a-b:1", "a/b:1", "a_b@" + DIGEST))
    stacks = pipeline.image_stacks(options)
    assert [s.name for s in stacks] == ["a-b-1", "a-b-1-2", "a_b-" + DIGEST.replace(":", "-")]
    assert all(s.kind == "image" and s.probe_framework == "auto" for s in stacks)


# -- records and the table -----------------------------------------------------------------------------------------


def image_record(stack: str = "people-pytorch", host: str = "a100", **changes: Any) -> dict[str, Any]:
    probe = probe_document()
    probe.pop("benchmark", None)
    record = {
        "stack": stack,
        "status": "cpu-only",
        "timestamp": "2026-11-27T10:00:00+00:00",
        "host": {"label": host},
        "definition": {"name": stack, "image": PYTORCH, "framework": "auto", "env": {}, "sandbox": True},
        "image": PYTORCH,
        "digest": f"pytorch/pytorch@{DIGEST}",
        "probe": probe,
        "diagnoses": [{"code": "no-gpu-runtime", "severity": "error", "summary": "s", "fix": "f", "evidence": []}],
    }
    record.update(changes)
    return record


def test_an_image_stack_is_shown_by_its_reference_digest_and_the_frameworks_found():
    result = Result.from_dict(image_record())
    assert (result.kind, result.digest, result.content_hash) == ("image", f"pytorch/pytorch@{DIGEST}", None)
    cell = publish.cell(result)
    assert cell["label"] == "PyTorch 2.9.1 + JAX 0.4.35 (image)"
    assert cell["frameworks_found"] == FOUND and cell["image"] == PYTORCH
    text = publish.render_markdown(publish.view([result]))
    assert f"**people-pytorch**<br>{PYTORCH}" in text and "PyTorch 2.9.1 + JAX 0.4.35 \\(image\\)" in text
    assert "sha256:abababababab…" in text  # the digest's start in the details; all of it in the JSON
    page = publish.render_html(publish.view([result]))
    assert f"Image {PYTORCH} · pytorch/pytorch@{DIGEST}" in page
    data = json.loads(publish.render_json(publish.view([result])))
    assert data["records"][0]["probe"]["frameworks_found"] == FOUND and data["cells"][0]["kind"] == "image"
    assert Result.from_dict(json.loads(json.dumps(result.to_dict()))).frameworks_found == result.frameworks_found
    xml = junit.render_junit([result])
    assert f'"image": "{PYTORCH}"' in xml and '"frameworks_found"' in xml
    none_found = Result.from_dict(image_record(probe={"frameworks_found": [], "framework": None}))
    assert publish.cell(none_found)["label"] == "no framework found (image)"
    not_run = Result.from_dict(image_record(status="run-failed", probe=None, error="no Python in this image"))
    assert publish.cell(not_run)["label"] is None


def test_old_records_read_as_before():
    old = Result.from_dict(
        {
            "stack": "tf",
            "status": "gpu",
            "timestamp": "2025-01-01",
            "host": {"label": "h"},
            "definition": {"tensorflow": "2.15.1", "variant": "and-cuda"},
            "image": "envcheck/tf:abc",
        }
    )
    assert (old.kind, old.frameworks_found) == ("rendered", [])
    assert publish.cell(old)["label"] == "TensorFlow 2.15.1"
    assert '"image"' not in junit.render_junit([old])


HOSTILE = "x](javascript:alert(1))|<script>alert(1)</script>`*_"


def test_hostile_image_records_stay_text_in_every_output():
    record = image_record(
        image=HOSTILE,
        digest=HOSTILE + "@sha256:" + "<b>" * 5,
        probe={
            **probe_document(),
            "frameworks_found": [
                {"name": HOSTILE, "version": "<img src=x onerror=alert(1)>|"},
                {"name": ["not", "text"], "version": 1},
                "torch",
                {"name": "jax", "version": {"nested": True}},
            ],
        },
        definition={"name": "people", "kind": "image", "image": HOSTILE},
    )
    result = Result.from_dict(record)
    assert result.frameworks_found == [(HOSTILE, "<img src=x onerror=alert(1)>|"), ("jax", None)]
    v = publish.view([result])
    text = publish.render_markdown(v)
    for table in re.findall(r"(?:^\|.*\n)+", text, re.MULTILINE):  # every row has its header's columns
        assert len({len(re.findall(r"(?<!\\)\|", row)) for row in table.splitlines()}) == 1, table
    assert "<script>" not in text and "<img" not in text and "](javascript" not in text
    page = publish.render_html(v)
    assert "<script>alert" not in page and "<img src=x" not in page
    xml = junit.render_junit([result])
    ElementTree.fromstring(xml)  # well-formed
    assert publish.format_probe([result]).count("\n") >= 1


def test_probe_text_is_a_row_per_image_then_its_causes():
    found = Result.from_dict(image_record())
    local = Result.from_dict(
        image_record(
            stack="mine",
            image="mine:1",
            digest=IMAGE_ID,
            status="run-failed",
            probe=None,
            diagnoses=[],
            error="no Python in this image (looked in: ...)",
        )
    )
    lines = publish.format_probe([found, local]).splitlines()
    assert lines[0].split() == [
        f"{PYTORCH}@{DIGEST}",
        "cpu-only",
        "PyTorch",
        "2.9.1",
        "+",
        "JAX",
        "0.4.35",
        "no-gpu-runtime",
    ]
    assert lines[1:3] == ["  [error] no-gpu-runtime: s", "      fix: f"]
    row = next(line for line in lines if line.startswith("mine:1"))
    assert row.split()[:5] == ["mine:1", "(local", "image", IMAGE_ID + ")", "run-failed"]
    assert lines[-1] == "  error: no Python in this image (looked in: ...)"


# -- CI and Kubernetes ---------------------------------------------------------------------------------------------


def write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "matrix.yaml"
    path.write_text(text)
    return path


def test_image_stacks_pass_the_ci_validators_and_run_as_every_stack_does(tmp_path: Path):
    matrix = write(tmp_path, MATRIX)
    github = run_cli("ci", "github", "--runner", "a100", "-m", "matrix.yaml", cwd=tmp_path)
    assert github.returncode == 0, github.stderr
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "envcheck.yml").write_text(github.stdout)
    (tmp_path / ".github" / "actionlint.yaml").write_text(yaml.safe_dump({"self-hosted-runner": {"labels": ["a100"]}}))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    lint = subprocess.run([tool("actionlint"), "-no-color"], cwd=tmp_path, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    schema = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflows / "envcheck.yml")],
        capture_output=True,
        text=True,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    probe = yaml.safe_load(github.stdout)["jobs"]["probe"]
    assert probe["strategy"]["matrix"]["stack"] == ["torch-2.5-cu121", "people-pytorch", "people-jax"]
    gitlab = run_cli("ci", "gitlab", "--runner", "a100", "-m", "matrix.yaml", cwd=tmp_path)
    assert gitlab.returncode == 0, gitlab.stderr
    (tmp_path / ".gitlab-ci.yml").write_text(gitlab.stdout)
    schema = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(tmp_path / ".gitlab-ci.yml")],
        capture_output=True,
        text=True,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    assert load_matrix(matrix).stacks[1].kind == "image"


def test_image_stacks_as_kubernetes_jobs_with_the_probe_from_a_config_map(tmp_path: Path):
    write(tmp_path, MATRIX)
    done = run_cli(
        "k8s",
        "render",
        "--image-tag",
        "--gate",
        "--gpu-product",
        "NVIDIA-A100-SXM4-80GB",
        "-o",
        "jobs",
        "-m",
        "matrix.yaml",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    files = sorted((tmp_path / "jobs").glob("*.yaml"))
    check = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", *map(str, files)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    documents = [yaml.safe_load(f.read_text()) for f in files]
    (config_map,) = [d for d in documents if d["kind"] == "ConfigMap"]
    assert config_map["metadata"]["name"] == probe_files_name()
    assert config_map["data"] == {name: path.read_text() for name, path in PROBE_FILES.items()}
    jobs = {
        d["metadata"]["labels"]["envcheck/stack"]: d["spec"]["template"]["spec"]
        for d in documents
        if d["kind"] == "Job"
    }
    assert set(jobs) == {"torch-2.5-cu121", "people-pytorch", "people-jax"}
    people = jobs["people-pytorch"]["containers"][0]
    assert people["image"] == PYTORCH
    assert people["command"] == ["python3", "/opt/envcheck/boot.py", "--framework", "auto"]
    assert {"name": "probe", "mountPath": "/opt/envcheck", "readOnly": True} in people["volumeMounts"]
    assert "env" not in people  # the image's own ENV, HOME included
    jax = jobs["people-jax"]["containers"][0]
    assert jax["image"] == f"ghcr.io/example/jax-train@{DIGEST}"
    assert jax["command"][:4] == ["/opt/venv/bin/python", "/opt/envcheck/boot.py", "--framework", "jax"]
    assert jax["env"] == [{"name": "XLA_PYTHON_CLIENT_PREALLOCATE", "value": "false"}]
    rendered = jobs["torch-2.5-cu121"]["containers"][0]
    assert rendered["command"][:2] == ["python", "/opt/envcheck/probe.py"]  # the baked-in probe, as before
    for name, pod in jobs.items():
        (gate,) = pod["initContainers"]
        python = "python" if name == "torch-2.5-cu121" else jobs[name]["containers"][0]["command"][0]
        assert gate["command"][:4] == [python, "/opt/envcheck/boot.py", "--require", "gpu"]
        assert gate["resources"]["limits"]["nvidia.com/gpu"] == 1 and gate["name"] == GATE
        assert {"name": "probe", "configMap": {"name": probe_files_name(), "defaultMode": 0o444}} in pod["volumes"]
    plain = run_cli("k8s", "render", "--image-tag", "-m", "matrix.yaml", cwd=tmp_path)
    assert plain.returncode == 0 and "initContainers" not in plain.stdout and "kind: ConfigMap" in plain.stdout


def test_collect_reads_an_image_stacks_pod_and_a_failed_gate(tmp_path: Path):
    stack = load_matrix(write(tmp_path, MATRIX)).stacks[1]
    job = {"metadata": {"name": "j", "labels": {}}, "status": {}}
    pod = {
        "metadata": {"name": "j-x"},
        "spec": {"nodeName": "n", "containers": [{"name": "probe", "image": f"docker.io/pytorch/pytorch@{DIGEST}"}]},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"name": "probe", "state": {"terminated": {"exitCode": 0}}}],
        },
    }
    result = result_of_pod(stack, job, pod, json.dumps(probe_document()), {})
    assert result is not None and result.status == Status.CPU_ONLY
    assert result.digest == f"docker.io/pytorch/pytorch@{DIGEST}" and result.content_hash is None
    assert publish.cell(result)["label"] == "PyTorch 2.9.1 + JAX 0.4.35 (image)"
    gated = copy.deepcopy(pod)
    gated["status"] = {
        "phase": "Failed",
        "initContainerStatuses": [
            {
                "name": GATE,
                "state": {
                    "terminated": {
                        "exitCode": 1,
                        "message": "envcheck: GPU check failed (no-gpu-runtime): no GPU device node\n",
                    }
                },
            }
        ],
    }
    failed = result_of_pod(stack, job, gated, None, {})
    assert failed is not None and failed.status == Status.RUN_FAILED
    assert failed.error == (
        f"the GPU gate (initContainer {GATE}) failed, so the probe did not run: exit code 1: envcheck: GPU check "
        "failed (no-gpu-runtime): no GPU device node"
    )
    other = copy.deepcopy(pod)
    other["spec"]["containers"][0]["image"] = "someone/else:1"
    with pytest.raises(Refused, match="not an image of stack people-pytorch"):
        result_of_pod(stack, job, other, json.dumps(probe_document()), {})


class FleetDaemon(Daemon):
    """A daemon of --on: it has some images (by reference; every id), pulls, tags and pushes, and knows nothing of
    what a registry holds (so envcheck pushes)."""

    def __init__(self, name: str, has: set[str]) -> None:
        super().__init__(image_attrs(["PATH=/opt/venv/bin"]), VENV, json.dumps(probe_document()))
        self.name, self.has = name, has
        self.pushed: list[tuple[str, str]] = []

    def inspect_image(self, image: str) -> dict[str, Any]:
        import docker.errors

        if image not in self.has and not image.startswith("sha256:"):
            raise docker.errors.ImageNotFound("No such image")
        return {**self.attrs, "RepoDigests": [f"python@{DIGEST}"] if image.startswith("python") else []}

    def pull(self, reference: str, stream: bool, decode: bool) -> list[dict[str, Any]]:
        self.has.add(reference)
        return [{"status": "Downloaded"}]

    def tag(self, image: str, repository: str, tag: str) -> bool:
        self.has.add(f"{repository}:{tag}")
        return True

    def inspect_distribution(self, reference: str) -> dict[str, Any]:
        import docker.errors

        raise docker.errors.NotFound("manifest unknown")

    def push(self, repository: str, tag: str, stream: bool, decode: bool) -> list[dict[str, Any]]:
        self.pushed.append((repository, tag))
        return [{"aux": {"Digest": "sha256:" + "22" * 32}}]

    def close(self) -> None:
        pass


def test_on_other_hosts_a_registry_image_is_pulled_by_digest_and_a_local_one_goes_through_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from envcheck.runs import fleet

    write(
        tmp_path,
        f"registry: {REGISTRY}\nhosts:\n  - {{name: local, docker: default}}\n  - {{name: d2, docker: 'tcp://d2:2376'}}\n"
        "stacks:\n  - {name: mine, image: 'mine:1'}\n  - {name: hub, image: 'python:3.11'}\n",
    )
    local, d2 = FleetDaemon("local", {"mine:1", "python:3.11"}), FleetDaemon("d2", set())
    for module in (pipeline, fleet):
        monkeypatch.setattr(
            module, "connect", lambda timeout=300, spec=None: d2 if spec and spec.name == "d2" else local
        )
        monkeypatch.setattr(module, "describe_host", lambda api, label=None: Host(label=label or api.name))
    matrix = load_matrix(tmp_path / "matrix.yaml")
    results = fleet.FleetRun(matrix, Options(), list(matrix.fleet.hosts), REGISTRY).run(list(matrix.stacks))
    cells = {(r.stack, r.host.label): r for r in results}
    assert {cell.status for cell in cells.values()} == {Status.CPU_ONLY}
    assert cells[("mine", "local")].digest == IMAGE_ID  # the build host runs its own image
    pushed = f"{REGISTRY}/mine@sha256:" + "22" * 32
    assert cells[("mine", "d2")].digest == pushed and local.pushed == [(f"{REGISTRY}/mine", IMAGE_ID[7:])]
    assert cells[("hub", "local")].digest == cells[("hub", "d2")].digest == f"python@{DIGEST}"
    assert d2.has == {pushed, f"python@{DIGEST}"}  # each pulled by digest, from where it is
    assert all(c["image"] == IMAGE_ID for c in d2.created.values())  # and probed as pulled, by id
    again = fleet.FleetRun(matrix, Options(), list(matrix.fleet.hosts), REGISTRY).run(list(matrix.stacks))
    assert all(r.reused for r in again)


# -- with Docker: real images, each odd case with its status and words ---------------------------------------------

PYTHON_IMAGE = "envcheck-test/image-python:1"  # debian:bookworm-slim with Debian's python3: a Python, no framework
DOCKERFILES = {
    PYTHON_IMAGE: "FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y --no-install-recommends python3 "
    "&& rm -rf /var/lib/apt/lists/*\n",
    "envcheck-test/image-user:1": f"FROM {PYTHON_IMAGE}\nUSER 4321:4321\nWORKDIR /nonexistent-home\n",
    "envcheck-test/image-false:1": f'FROM {PYTHON_IMAGE}\nENTRYPOINT ["/bin/false"]\nCMD ["--never"]\n',
    "envcheck-test/image-nopython:1": "FROM debian:bookworm-slim\nENV PATH=/opt/nothing/bin:/usr/bin:/bin\n",
}


@pytest.fixture(scope="module")
def built_images(docker_api: Any, image_janitor: None) -> dict[str, str]:
    """The images above, labelled as envcheck's so the session removes them."""
    for tag, dockerfile in DOCKERFILES.items():
        stream = docker_api.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=tag, labels={labels.OWNER: "1"}, rm=True, decode=True
        )
        said = [chunk for chunk in stream]
        assert not [c for c in said if "error" in c], said[-5:]
    return {tag: docker_api.inspect_image(tag)["Id"] for tag in DOCKERFILES}


def probe_json(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    done = run_cli("probe", *args, "--json", "--quick", timeout=900)
    data = json.loads(done.stdout) if done.stdout.strip() else []
    return done.returncode, data if isinstance(data, list) else [data], done.stderr


@pytest.mark.docker
def test_real_odd_images_each_give_their_result(
    docker_api: Any, built_images: dict[str, str], no_leftover_containers: None
):
    volumes_before = len(docker_api.volumes(filters={"dangling": True}).get("Volumes") or [])
    images_in_order = [PYTHON_IMAGE, "envcheck-test/image-user:1", "envcheck-test/image-false:1"]
    code, results, stderr = probe_json(*images_in_order)
    assert code == 0, stderr[-3000:]
    gpus = daemon_gives_gpus(docker_api)
    for result, image in zip(results, images_in_order, strict=True):
        assert result["status"] == "cpu-only", (image, result.get("error"), stderr[-2000:])
        assert result["image"] == image and result["digest"] == built_images[image]  # local only: its image id
        assert result["probe"]["frameworks_found"] == [] and result["run"]["exit_code"] == 0
        assert result["probe"]["python"].startswith("3.11")  # bookworm's python3, found on the image's PATH
        if not gpus:
            assert "no-gpu-runtime" in [d["code"] for d in result["diagnoses"]]
    (nopython,) = probe_json("envcheck-test/image-nopython:1")[1]
    assert nopython["status"] == "run-failed"
    assert nopython["error"] == (
        "no Python in this image (looked in: /opt/nothing/bin/python3, /opt/nothing/bin/python, /usr/bin/python3, "
        "/usr/bin/python, /bin/python3, /bin/python, /opt/conda/bin/python, /usr/local/bin/python3); name one with "
        "--python /path/to/python"
    )
    volumes_after = len(docker_api.volumes(filters={"dangling": True}).get("Volumes") or [])
    assert volumes_after == volumes_before  # every probe's volume left with its container


@pytest.mark.docker
def test_a_missing_reference_is_said_and_exit_1(docker_api: Any, no_leftover_containers: None):
    code, (result,), stderr = probe_json("localhost:1/envcheck-no-such-image:1")
    assert code == 1 and result["status"] == "run-failed", stderr[-2000:]
    assert result["error"].startswith(
        "image localhost:1/envcheck-no-such-image:1 is not on this Docker host and cannot be pulled: "
    )
    assert "connection refused" in result["error"].lower()


@pytest.mark.docker
def test_an_image_built_with_docker_build_is_probed_by_its_id(
    docker_api: Any, built_images: dict[str, str], tmp_path: Path, no_leftover_containers: None
):
    (tmp_path / "Dockerfile").write_text(f"FROM {PYTHON_IMAGE}\nLABEL {labels.OWNER}=1\nENV MINE=1\n")
    built = subprocess.run(
        ["docker", "build", "-q", "-t", "envcheck-test/plain-build:1", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    image_id = docker_api.inspect_image("envcheck-test/plain-build:1")["Id"]
    done = run_cli("probe", "envcheck-test/plain-build:1", "--quick", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    row = done.stdout.splitlines()[0].split()
    assert row[:5] == ["envcheck-test/plain-build:1", "(local", "image", image_id + ")", "cpu-only"]


@pytest.mark.docker
def test_an_image_stack_runs_records_its_digest_and_is_reused(
    docker_api: Any, built_images: dict[str, str], tmp_path: Path, no_leftover_containers: None
):
    matrix = write(
        tmp_path, f"stacks:\n  - name: people-python\n    image: {PYTHON_IMAGE}\n    python: /usr/bin/python3\n"
    )
    first = run_cli("run", "people-python", "-m", str(matrix), "--json", "--quick", timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads(first.stdout)
    assert (record["image"], record["digest"], record["status"]) == (
        PYTHON_IMAGE,
        built_images[PYTHON_IMAGE],
        "cpu-only",
    )
    assert record["definition"]["image"] == PYTHON_IMAGE and record["content_hash"] is None
    table = json.loads((tmp_path / "docs" / "compatibility.json").read_text())
    assert table["cells"][0]["label"] == "no framework found (image)"
    again = run_cli("run", "people-python", "-m", str(matrix), "--json", "--quick", timeout=900)
    assert again.returncode == 0 and json.loads(again.stdout)["reused"] is True, again.stderr[-2000:]


# -- with Docker, a registry and a second daemon (tests/fleet_parts.py): credentials and other hosts ----------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from fleet_parts import Registry, free_port

    part = Registry(tmp_path_factory.mktemp("registry"), free_port())
    part.start()
    yield part
    part.stop()


@pytest.fixture(scope="module")
def second_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from fleet_parts import SecondDaemon, free_port

    part = SecondDaemon(Path(tmp_path_factory.mktemp("d2")), free_port())
    part.prepare()
    part.start()
    yield part
    part.remove()


@pytest.mark.docker
def test_a_registry_image_is_pulled_with_the_docker_clis_login(
    docker_api: Any, built_images: dict[str, str], registry: Any, tmp_path: Path, no_leftover_containers: None
):
    from fleet_parts import PASSWORD as REGISTRY_PASSWORD

    reference = f"{registry.address}/people/python:1"
    login = ["docker", "--config", str(registry.docker_config)]
    for step in (["tag", PYTHON_IMAGE, reference], ["push", reference], ["rmi", reference]):
        done = subprocess.run([*login, *step], capture_output=True, text=True, check=False)
        assert done.returncode == 0, (step, done.stderr)
    pulled = run_cli("probe", reference, "--json", "--quick", env={"DOCKER_CONFIG": str(registry.docker_config)})
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    result = json.loads(pulled.stdout)
    assert result["status"] == "cpu-only" and result["build"]["log"] == f"pulled {reference}"
    assert result["digest"].startswith(f"{registry.address}/people/python@sha256:")
    subprocess.run(["docker", "rmi", reference], capture_output=True, check=True)
    (tmp_path / "no-login").mkdir()
    refused = run_cli("probe", reference, "--json", env={"DOCKER_CONFIG": str(tmp_path / "no-login")})
    result = json.loads(refused.stdout)
    assert refused.returncode == 1 and result["status"] == "run-failed"
    assert result["error"].startswith(f"image {reference} is not on this Docker host and cannot be pulled: ")
    assert "no basic auth credentials" in result["error"]
    for text in (pulled.stdout, pulled.stderr, refused.stdout, refused.stderr):
        assert REGISTRY_PASSWORD not in text


@pytest.mark.docker
def test_a_local_only_image_reaches_other_hosts_through_the_registry(
    docker_api: Any, built_images: dict[str, str], registry: Any, second_daemon: Any, tmp_path: Path
):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        yaml.safe_dump(
            {
                "registry": f"{registry.address}/envcheck",
                "hosts": [
                    {"name": "local", "docker": "default"},
                    {
                        "name": "d2",
                        "docker": second_daemon.url,
                        "tls_verify": True,
                        "cert_path": str(second_daemon.client_certs),
                    },
                ],
                "stacks": [{"name": "fl-image", "image": PYTHON_IMAGE}],
            }
        )
    )
    args = ("matrix", "-m", str(matrix), "--on", "all", "--quick", "--json")
    done = run_cli(*args, env={"DOCKER_CONFIG": str(registry.docker_config)}, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["host"]["label"]: r for r in json.loads(done.stdout)}
    image_id = built_images[PYTHON_IMAGE]
    assert results["local"]["digest"] == image_id  # the build host ran its own image
    assert results["d2"]["digest"].startswith(f"{registry.address}/envcheck/fl-image@sha256:")  # pulled by digest
    assert registry.tags("envcheck/fl-image") == [image_id.removeprefix("sha256:")]  # pushed once, by image id
    for label, result in results.items():
        assert (result["status"], result["image"]) == ("cpu-only", PYTHON_IMAGE), (label, result.get("error"))
    again = run_cli(*args, env={"DOCKER_CONFIG": str(registry.docker_config)}, timeout=1800)
    assert again.returncode == 0 and all(r["reused"] for r in json.loads(again.stdout)), again.stderr[-2000:]
