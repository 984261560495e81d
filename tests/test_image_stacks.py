"""Stacks that name an image or the user's own Dockerfile instead of a framework version (issue 26): the matrix keys
and their located errors, defaults that apply only where they fit, old files read as before, a dockerfile stack's
content hash and build (the user's context never written to), and what clean, lint and plan make of them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from conftest import REPO, run_cli
from envcheck import labels
from envcheck.diagnosis.lint import lint, predict
from envcheck.diagnosis.plan import PlannedHost, plan
from envcheck.engine import build as engine_build
from envcheck.engine.clean import current_hashes, stale
from envcheck.errors import BaseImageMissing, ConfigError
from envcheck.inputs.matrix import AUTO, Matrix, Stack, load_matrix, parse_matrix
from envcheck.knowledge import Version
from envcheck.render.dockerfile import render, user_content_hash
from envcheck.render.shared import shared_layers

DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE_TAKES = "on an image stack: name, image, python (the interpreter's absolute path), framework, env, sandbox"
DOCKERFILE_TAKES = (
    "on a dockerfile stack: name, dockerfile, context, build_args, target, python (the interpreter's absolute "
    "path), framework, env, sandbox"
)


def parse(text: str, directory: Path | None = None) -> Matrix:
    """The matrix `text` as the file m.yaml (in `directory` when given: dockerfile: paths are relative to it)."""
    return parse_matrix(text, (directory or Path()) / "m.yaml")


def errors_of(text: str, directory: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, directory)
    prefix = f"{directory / 'm.yaml'}:" if directory else "m.yaml:"
    return [line.removeprefix(prefix) for line in str(info.value).splitlines()]


def project(root: Path, files: dict[str, str] | None = None) -> Path:
    """A user's project under root: app/Dockerfile and what `files` add (relative to root)."""
    for name, text in {"app/Dockerfile": "FROM debian:bookworm-slim\nRUN echo hello\n", **(files or {})}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under directory with its mode and content (links: their target): what envcheck must not change."""
    found = {}
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        content = os.readlink(path).encode() if path.is_symlink() else path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(directory))] = (info.st_mode, content)
    return found


# -- the keys --------------------------------------------------------------------------------------------------------


def test_an_image_stack_and_a_dockerfile_stack(tmp_path: Path):
    project(tmp_path, {"app/sub/gpu.Dockerfile": "FROM x\n"})
    matrix = parse(
        "stacks:\n"
        "  - name: ngc\n"
        "    image: nvcr.io/nvidia/pytorch:24.05-py3\n"
        "    python: /usr/bin/python3\n"
        "  - name: notebook\n"
        "    image: jupyter/pytorch-notebook\n"
        "    framework: torch\n"
        "    env: {A: '1'}\n"
        "    sandbox: false\n"
        "  - name: own\n"
        "    dockerfile: app/sub/gpu.Dockerfile\n"
        "    context: app\n"
        "    build_args: {VERSION: 12.10, EMPTY: '', FLAG: true}\n"
        "    target: final\n",
        tmp_path,
    )
    ngc, notebook, own = matrix.stacks
    assert [s.kind for s in matrix.stacks] == ["image", "image", "dockerfile"]
    assert (ngc.image, ngc.interpreter, ngc.framework, ngc.probe_framework) == (
        "nvcr.io/nvidia/pytorch:24.05-py3",
        "/usr/bin/python3",
        AUTO,
        AUTO,
    )
    assert (ngc.version, ngc.variant, ngc.base, ngc.python, ngc.cuda, ngc.cudnn) == ("", "", "", "", None, None)
    assert (notebook.framework, notebook.probe_framework, notebook.fw.name) == ("torch", "torch", "torch")
    assert (own.dockerfile, own.context) == (tmp_path / "app/sub/gpu.Dockerfile", tmp_path / "app")
    # A build argument is what is written: 12.10 stays 12.10, true stays true.
    assert own.build_args == (("VERSION", "12.10"), ("EMPTY", ""), ("FLAG", "true")) and own.target == "final"
    assert str(own.where("dockerfile")) == f"{tmp_path / 'm.yaml'}:11:17"
    assert ngc.as_dict() == {
        "name": "ngc",
        "image": "nvcr.io/nvidia/pytorch:24.05-py3",
        "python": "/usr/bin/python3",
        "framework": "auto",
        "env": {},
        "sandbox": True,
    }
    assert notebook.as_dict() == {
        "name": "notebook",
        "image": "jupyter/pytorch-notebook",
        "framework": "torch",
        "env": {"A": "1"},
        "sandbox": False,
    }
    assert own.as_dict() == {
        "name": "own",
        "dockerfile": "app/sub/gpu.Dockerfile",  # as written, relative to the matrix file: no path of this machine
        "context": "app",
        "build_args": {"VERSION": "12.10", "EMPTY": "", "FLAG": "true"},
        "target": "final",
        "framework": "auto",
        "env": {},
        "sandbox": True,
    }


def test_a_dockerfiles_context_is_its_directory_unless_given(tmp_path: Path):
    project(tmp_path)
    (stack,) = parse("stacks:\n  - {name: own, dockerfile: app/Dockerfile}\n", tmp_path).stacks
    assert (stack.context, stack.build_args, stack.target, stack.interpreter) == (tmp_path / "app", (), None, None)


def test_no_framework_is_taken_for_tensorflow():
    (stack,) = parse("stacks:\n  - {name: hub, image: python}\n").stacks
    with pytest.raises(ValueError, match="names no framework"):
        stack.fw  # noqa: B018  (the property is what is tested)
    assert predict(stack) == []


@pytest.mark.parametrize(
    "reference",
    [
        "python",
        "python:3.11-slim",
        "jupyter/pytorch-notebook",
        "nvcr.io/nvidia/pytorch:24.05-py3",
        "localhost:5000/team/img:v1.0",
        "Registry.Example.com:443/a/b__c/d-e.f",
        f"ghcr.io/org/img@{DIGEST}",
        f"ghcr.io/org/img:tag@{DIGEST}",
        "a/b:" + "t" * 128,
    ],
)
def test_image_references_docker_takes(reference: str):
    assert parse(f"stacks:\n  - {{name: s, image: '{reference}'}}\n").stacks[0].image == reference


@pytest.mark.parametrize(
    "reference",
    [
        "nvcr.io/nvidia/PyTorch:24.05",  # a path component in uppercase
        "python:3.11 ",  # whitespace
        "python\\n",  # a newline (written as the escape in a double-quoted scalar)
        "python:3.11\\nFROM scratch",
        "-python",
        "a//b",
        "a/b:" + "t" * 129,  # a tag of more than 128 characters
        "a/b:-tag",
        "a@sha256:1234",  # not a whole sha256 digest
        "a@md5:" + "0" * 32,
        "a:b:c",
        "https://registry/a",
    ],
)
def test_image_references_docker_refuses(reference: str):
    (error,) = errors_of(f'stacks:\n  - {{name: s, image: "{reference}"}}\n')
    assert error.startswith("2:22: error: bad image ") and "(expected a Docker image reference such as" in error


def test_every_misuse_is_located_in_one_pass(tmp_path: Path):
    project(tmp_path, {"outside.Dockerfile": "FROM x\n"})
    errors = errors_of(
        "stacks:\n"
        "  - name: a\n"  # 2
        "    image: python\n"
        "    variant: cpu\n"  # 4: rendered-only keys on an image stack
        "    cuda: '12.2'\n"
        "    cudnn: '9'\n"
        "    base: debian:bookworm-slim\n"
        "    pip: [numpy]\n"
        "    index: cu121\n"
        "    installer: pip\n"
        "    context: app\n"  # 11: a dockerfile stack's keys on an image stack
        "    build_args: {A: '1'}\n"
        "    target: final\n"
        "    python: '3.11'\n"  # 14: a version where an interpreter's path goes
        "  - name: b\n"  # 15: two kinds at once
        "    image: python\n"
        "    dockerfile: app/Dockerfile\n"
        "  - name: c\n"  # 18
        "    tensorflow: '2.15.1'\n"
        "    variant: cpu\n"
        "    framework: torch\n"  # 21: image and dockerfile stacks' keys on a rendered one
        "    target: final\n"
        "  - name: d\n"  # 23
        "    torch: '2.9.1'\n"
        "    image: python\n"
        "  - image: python\n"  # 26: no name
        "  - name: e\n"  # 27
        "    dockerfile: app/Dockerfile\n"
        "    python: bin/python\n"  # 29
        "    framework: mxnet\n"  # 30
        "    target: 1st\n"  # 31
        '    build_args: {1A: x, B: [1], C: ~, D: "a\\tb"}\n'  # 32
        "  - {name: f, dockerfile: nope/Dockerfile}\n"  # 33
        "  - {name: g, dockerfile: app}\n"  # 34
        "  - {name: h, dockerfile: outside.Dockerfile, context: app}\n"  # 35
        "  - {name: i, dockerfile: app/Dockerfile, context: app/Dockerfile}\n"  # 36
        "  - {name: j, dockerfile: app/Dockerfile, context: nope}\n"  # 37
        "  - {name: k, dockerfile: app/Dockerfile, build_args: [A]}\n",  # 38
        tmp_path,
    )
    rendered_only = "it is for stacks that name a framework version"
    assert errors == [
        f"4:5: error: variant on an image stack: {rendered_only} (expected {IMAGE_TAKES})",
        f"5:5: error: cuda on an image stack: {rendered_only} (expected {IMAGE_TAKES})",
        f"6:5: error: cudnn on an image stack: {rendered_only} (expected {IMAGE_TAKES})",
        f"7:5: error: base on an image stack: {rendered_only} (expected {IMAGE_TAKES})",
        f"8:5: error: pip on an image stack: {rendered_only} (expected {IMAGE_TAKES})",
        f"9:5: error: index on an image stack: {rendered_only} (expected {IMAGE_TAKES})",
        f"10:5: error: installer on an image stack: {rendered_only} (expected {IMAGE_TAKES})",
        f"11:5: error: context on an image stack: it is for dockerfile stacks (expected {IMAGE_TAKES})",
        f"12:5: error: build_args on an image stack: it is for dockerfile stacks (expected {IMAGE_TAKES})",
        f"13:5: error: target on an image stack: it is for dockerfile stacks (expected {IMAGE_TAKES})",
        "14:13: error: bad python '3.11' (expected the absolute path of the Python interpreter to probe with, such "
        'as "/usr/bin/python3" (a Python version is for stacks that name a framework version))',
        "15:5: error: stack names image and dockerfile (expected one of a framework version (tensorflow:, torch: or "
        "jax:), image: or dockerfile: per stack)",
        "21:5: error: framework on a stack without image: or dockerfile: (expected framework only beside image: or "
        "dockerfile:)",
        "22:5: error: target on a stack without image: or dockerfile: (expected target only beside dockerfile:)",
        "23:5: error: stack names torch and image (expected one of a framework version (tensorflow:, torch: or jax:), "
        "image: or dockerfile: per stack)",
        "26:5: error: stack is missing name (expected a name on every stack)",
        "29:13: error: bad python 'bin/python' (expected the absolute path of the Python interpreter to probe with, "
        'such as "/usr/bin/python3" (a Python version is for stacks that name a framework version))',
        "30:16: error: bad framework 'mxnet' (expected tensorflow, torch, jax or auto (the probe reports every "
        "framework it finds))",
        "31:13: error: bad target '1st' (expected the name of a build stage of the Dockerfile (FROM ... AS NAME))",
        "32:18: error: bad build argument name '1A' (expected letters, digits and '_')",
        '32:28: error: bad value for build argument B (a list) (expected a string without control characters ("" '
        "for an empty one))",
        '32:36: error: bad value for build argument C (nothing) (expected a string without control characters ("" '
        "for an empty one))",
        "32:42: error: bad value for build argument D 'a\\tb' (expected a string without control characters (\"\" "
        "for an empty one))",
        f"33:27: error: Dockerfile 'nope/Dockerfile' not found in {tmp_path} (expected the path of a Dockerfile, "
        "relative to the matrix file)",
        f"34:27: error: Dockerfile 'app' is not a regular file ({tmp_path / 'app'}) (expected the path of a "
        "Dockerfile, relative to the matrix file)",
        f"35:27: error: Dockerfile 'outside.Dockerfile' is outside its build context {tmp_path / 'app'} (expected a "
        "Dockerfile inside the context: directory, the one directory Docker sends the daemon)",
        f"36:52: error: context 'app/Dockerfile' is not a directory ({tmp_path / 'app/Dockerfile'}) (expected the "
        "path of the build context's directory, relative to the matrix file)",
        f"37:52: error: context 'nope' not found in {tmp_path} (expected the path of the build context's directory, "
        "relative to the matrix file)",
        "38:55: error: build_args is not a mapping (expected a mapping of key: value)",
    ]


def test_a_dockerfile_that_links_out_of_its_context_is_outside_it(tmp_path: Path):
    project(tmp_path, {"elsewhere/Dockerfile": "FROM x\n"})
    (tmp_path / "app/linked.Dockerfile").symlink_to(tmp_path / "elsewhere/Dockerfile")
    (error,) = errors_of("stacks:\n  - {name: own, dockerfile: app/linked.Dockerfile, context: app}\n", tmp_path)
    assert error.startswith("2:29: error: Dockerfile 'app/linked.Dockerfile' is outside its build context")


def test_values_are_checked_like_the_others():
    errors = errors_of(
        "stacks:\n"
        "  - {name: a, image: 3.11}\n"  # a number, not a string
        "  - {name: b, image: python, python: /usr/bin/../bin/python}\n"
        "  - {name: c, image: python, python: '/usr/bin/python 3'}\n"
        "  - {name: d, image: python, framework: [torch]}\n"
    )
    assert [e.split(" (expected")[0] for e in errors] == [
        "2:22: error: bad image '3.11'",
        "3:38: error: bad python '/usr/bin/../bin/python'",
        "4:38: error: bad python '/usr/bin/python 3'",
        "5:41: error: bad framework (a list)",
    ]
    assert 'written in quotes like "3.11"' in errors[0]


# -- defaults and axes ----------------------------------------------------------------------------------------------


def test_defaults_apply_only_where_they_fit(tmp_path: Path):
    project(tmp_path, {"app/other/Dockerfile": "FROM x\n"})
    matrix = parse(
        "defaults:\n"
        "  base: nvidia/cuda:12.2.2-runtime-ubuntu22.04\n"
        "  python: '3.10'\n"
        "  pip: ['numpy<2']\n"
        "  installer: pip\n"
        "  variant: cpu\n"
        "  cuda: '12.2'\n"
        "  tensorflow: '2.15.1'\n"
        "  env: {A: '1'}\n"
        "  sandbox: false\n"
        "  framework: torch\n"
        "  context: app\n"
        "  build_args: {B: '2'}\n"
        "  target: final\n"
        "stacks:\n"
        "  - {name: tf}\n"
        "  - {name: hub, image: python}\n"
        "  - {name: own, dockerfile: app/other/Dockerfile}\n",
        tmp_path,
    )
    tf, hub, own = matrix.stacks
    assert tf.as_dict() == {
        "name": "tf",
        "framework": "tensorflow",
        "tensorflow": "2.15.1",
        "variant": "cpu",
        "cuda": "12.2",
        "cudnn": None,
        "base": "nvidia/cuda:12.2.2-runtime-ubuntu22.04",
        "python": "3.10",
        "pip": ["numpy<2"],
        "env": {"A": "1"},
        "sandbox": False,
        "installer": "pip",
    }
    assert hub.as_dict() == {
        "name": "hub",
        "image": "python",
        "framework": "torch",
        "env": {"A": "1"},
        "sandbox": False,
    }
    assert (own.context, own.build_args, own.target, own.framework, own.env, own.sandbox) == (
        tmp_path / "app",
        (("B", "2"),),
        "final",
        "torch",
        (("A", "1"),),
        False,
    )
    assert str(own.where("context")) == f"{tmp_path / 'm.yaml'}:12:12"  # the default's own position


def test_a_default_python_is_a_version_for_rendered_stacks_and_a_path_for_the_others():
    text = "stacks:\n  - {name: tf, tensorflow: '2.15.1', variant: cpu}\n  - {name: hub, image: python}\n"
    tf, hub = parse("defaults: {python: /opt/conda/bin/python}\n" + text).stacks
    assert (tf.python, hub.interpreter) == ("3.11", "/opt/conda/bin/python")  # the built-in version stays
    tf, hub = parse("defaults: {python: '3.12'}\n" + text).stacks
    assert (tf.python, hub.interpreter) == ("3.12", None)
    (error,) = errors_of("defaults: {python: ./python}\n" + text)
    assert error.startswith("1:20: error: bad python './python' (expected a Python version such as \"3.11\")")
    (error,) = errors_of("defaults: {python: /usr/bin/../python}\n" + text)
    assert error.startswith("1:20: error: bad python '/usr/bin/../python' (expected the absolute path")


def test_image_and_dockerfile_are_not_defaults():
    (error,) = errors_of("defaults: {image: python}\nstacks:\n  - {name: hub, image: python}\n")
    assert error.startswith("1:12: error: unknown key 'image' in defaults (expected one of base, build_args, context")


def test_axes_take_the_new_keys(tmp_path: Path):
    project(tmp_path)
    matrix = parse(
        "axes:\n"
        "  - name: 'hub-{image}-{framework}'\n"
        "    image: [python, pypy]\n"
        "    framework: [torch, jax]\n"
        "    python: /usr/local/bin/python\n"
        "    exclude: [{image: pypy, framework: jax}]\n"
        "  - name: 'own-{target}'\n"
        "    dockerfile: app/Dockerfile\n"
        "    target: [cpu, gpu]\n"
        "    build_args: {A: '1'}\n",
        tmp_path,
    )
    assert [(s.name, s.kind, s.image, s.framework, s.target) for s in matrix.stacks] == [
        ("hub-python-torch", "image", "python", "torch", None),
        ("hub-python-jax", "image", "python", "jax", None),
        ("hub-pypy-torch", "image", "pypy", "torch", None),
        ("own-cpu", "dockerfile", None, "auto", "cpu"),
        ("own-gpu", "dockerfile", None, "auto", "gpu"),
    ]
    assert {s.interpreter for s in matrix.stacks[:3]} == {"/usr/local/bin/python"}
    assert {s.build_args for s in matrix.stacks[3:]} == {(("A", "1"),)}
    assert str(matrix.stacks[2].where("image")) == f"{tmp_path / 'm.yaml'}:3:21"  # the axis value


def test_axes_errors_for_the_new_keys_are_located_and_said_once():
    errors = errors_of(
        "axes:\n"
        "  - name: 'hub-{framework}'\n"
        "    image: python\n"
        "    framework: [torch, jax]\n"
        "    cuda: ['12.2', '12.4']\n"  # 5: not an image stack's
        "  - name: 'two-{framework}'\n"  # 6: two kinds, for each stack the group makes
        "    image: python\n"
        "    torch: '2.9.1'\n"
        "    framework: [torch, jax]\n"
        "  - name: 'bad-{image}'\n"  # 10
        "    image: [python, 'jupyter/pytorch-notebook']\n"
    )
    assert errors == [
        f"5:5: error: cuda on an image stack: it is for stacks that name a framework version (expected {IMAGE_TAKES})",
        "6:5: error: stack names torch and image (expected one of a framework version (tensorflow:, torch: or jax:), "
        "image: or dockerfile: per stack)",
        "10:11: error: name template makes the bad name 'bad-jupyter/pytorch-notebook' (expected a name of "
        "lowercase letters, digits, '.', '_' or '-', starting with a letter or digit and ending with one, no '..', "
        "at most 100 characters)",
    ]


# -- old files ------------------------------------------------------------------------------------------------------

DEFAULT_MATRIX = [  # the default matrix.yaml's stacks as envcheck read them before image stacks existed
    {"name": "tf-2.15-cuda12", "framework": "tensorflow", "tensorflow": "2.15.1", "variant": "and-cuda",
     "cuda": "12.2", "cudnn": "8.9", "base": "debian:bookworm-slim", "python": "3.11", "pip": [], "env": {},
     "sandbox": True, "installer": "uv"},
    {"name": "tf-2.17-cuda12", "framework": "tensorflow", "tensorflow": "2.17.1", "variant": "and-cuda",
     "cuda": "12.3", "cudnn": "8.9", "base": "debian:bookworm-slim", "python": "3.11", "pip": [], "env": {},
     "sandbox": True, "installer": "uv"},
    {"name": "tf-2.19-cuda12", "framework": "tensorflow", "tensorflow": "2.19.1", "variant": "and-cuda",
     "cuda": "12.5", "cudnn": "9.3", "base": "debian:bookworm-slim", "python": "3.11", "pip": [], "env": {},
     "sandbox": True, "installer": "uv"},
    {"name": "tf-2.15-cpu", "framework": "tensorflow", "tensorflow": "2.15.1", "variant": "cpu", "cuda": None,
     "cudnn": None, "base": "debian:bookworm-slim", "python": "3.11", "pip": [], "env": {}, "sandbox": True,
     "installer": "uv"},
    {"name": "torch-2.9-pypi", "framework": "torch", "torch": "2.9.1", "variant": "pypi", "cuda": "12.8",
     "cudnn": "9.10", "base": "debian:bookworm-slim", "python": "3.11", "pip": [], "env": {}, "sandbox": True,
     "installer": "uv"},
    {"name": "jax-0.10-cu12", "framework": "jax", "jax": "0.10.2", "variant": "cuda12", "cuda": "12", "cudnn": "9",
     "base": "debian:bookworm-slim", "python": "3.11", "pip": [], "env": {}, "sandbox": True, "installer": "uv"},
]  # fmt: skip

OLD_FILE = (
    'defaults: {python: "3.10", env: {A: "1"}, installer: pip, pip: ["numpy<2"]}\n'
    "stacks:\n"
    '  - {name: t, torch: "2.5.1", index: cu121}\n'
    '  - {name: j, jax: "0.4.37", variant: cpu, sandbox: false, env: {B: x}}\n'
    "axes:\n"
    '  - name: "tf-{tensorflow}-{variant}"\n'
    '    tensorflow: ["2.15.1", "2.17.1"]\n'
    "    variant: [and-cuda, cpu]\n"
    "    base: nvidia/cuda:12.2.2-runtime-ubuntu22.04\n"
    '    exclude: [{tensorflow: "2.17.1", variant: cpu}]\n'
)
# OLD_FILE as envcheck read it before image stacks existed: each stack and where each of its values was written.
OLD_STACKS = [
    ({"name": "t", "framework": "torch", "torch": "2.5.1", "variant": "index", "cuda": None, "cudnn": None,
      "base": "debian:bookworm-slim", "python": "3.10", "pip": ["numpy<2"], "env": {"A": "1"}, "sandbox": True,
      "installer": "pip", "index": "cu121"},
     "3:5", {"python": "1:20", "installer": "1:54", "env": "1:33", "pip": "1:64", "pip[0]": "1:65", "name": "3:12",
             "torch": "3:22", "index": "3:38"}),
    ({"name": "j", "framework": "jax", "jax": "0.4.37", "variant": "cpu", "cuda": None, "cudnn": None,
      "base": "debian:bookworm-slim", "python": "3.10", "pip": ["numpy<2"], "env": {"B": "x"}, "sandbox": False,
      "installer": "pip"},
     "4:5", {"python": "1:20", "installer": "1:54", "env": "4:65", "pip": "1:64", "pip[0]": "1:65", "name": "4:12",
             "jax": "4:20", "variant": "4:39", "sandbox": "4:53"}),
    ({"name": "tf-2.15.1-and-cuda", "framework": "tensorflow", "tensorflow": "2.15.1", "variant": "and-cuda",
      "cuda": None, "cudnn": None, "base": "nvidia/cuda:12.2.2-runtime-ubuntu22.04", "python": "3.10",
      "pip": ["numpy<2"], "env": {"A": "1"}, "sandbox": True, "installer": "pip"},
     "6:5", {"base": "9:11", "python": "1:20", "installer": "1:54", "env": "1:33", "pip": "1:64", "pip[0]": "1:65",
             "tensorflow": "7:18", "variant": "8:15", "name": "6:11"}),
    ({"name": "tf-2.15.1-cpu", "framework": "tensorflow", "tensorflow": "2.15.1", "variant": "cpu", "cuda": None,
      "cudnn": None, "base": "nvidia/cuda:12.2.2-runtime-ubuntu22.04", "python": "3.10", "pip": ["numpy<2"],
      "env": {"A": "1"}, "sandbox": True, "installer": "pip"},
     "6:5", {"base": "9:11", "python": "1:20", "installer": "1:54", "env": "1:33", "pip": "1:64", "pip[0]": "1:65",
             "tensorflow": "7:18", "variant": "8:25", "name": "6:11"}),
    ({"name": "tf-2.17.1-and-cuda", "framework": "tensorflow", "tensorflow": "2.17.1", "variant": "and-cuda",
      "cuda": None, "cudnn": None, "base": "nvidia/cuda:12.2.2-runtime-ubuntu22.04", "python": "3.10",
      "pip": ["numpy<2"], "env": {"A": "1"}, "sandbox": True, "installer": "pip"},
     "6:5", {"base": "9:11", "python": "1:20", "installer": "1:54", "env": "1:33", "pip": "1:64", "pip[0]": "1:65",
             "tensorflow": "7:28", "variant": "8:15", "name": "6:11"}),
]  # fmt: skip


def test_the_default_matrix_reads_as_before():
    matrix = load_matrix(REPO / "matrix.yaml")
    assert [s.as_dict() for s in matrix.stacks] == DEFAULT_MATRIX
    assert {s.kind for s in matrix.stacks} == {"rendered"}


def test_an_old_file_reads_as_before_with_every_position():
    matrix = parse(OLD_FILE)
    found = [
        (s.as_dict(), str(s.position), {k: str(p).removeprefix("m.yaml:") for k, p in s.positions.items()})
        for s in matrix.stacks
    ]
    assert found == [(d, f"m.yaml:{p}", ps) for d, p, ps in OLD_STACKS]
    assert all(s.image is s.dockerfile is s.context is s.target is s.interpreter is None for s in matrix.stacks)
    assert all(s.build_args == () and s.probe_framework == s.framework for s in matrix.stacks)


# -- a dockerfile stack's context and content hash -------------------------------------------------------------------


def own_stack(root: Path, extra: str = "", name: str = "own") -> Stack:
    (stack,) = parse(f"stacks:\n  - {{name: {name}, dockerfile: app/Dockerfile{extra}}}\n", root).stacks
    return stack


def test_the_content_hash_follows_what_docker_is_sent(tmp_path: Path):
    project(
        tmp_path,
        {
            "app/.dockerignore": "# comment\n*.log\ncache/\n!keep.log\n",
            "app/src/main.py": "print(1)\n",
            "app/run.log": "noise\n",
            "app/keep.log": "kept\n",
            "app/cache/blob": "x\n",
        },
    )
    first = user_content_hash(own_stack(tmp_path))
    assert user_content_hash(own_stack(tmp_path, name="renamed")) == first  # the name is not in the image
    (tmp_path / "app/run.log").write_text("more noise\n")  # ignored
    (tmp_path / "app/cache/blob").write_text("y\n")
    (tmp_path / "app/cache/new").write_text("z\n")
    assert user_content_hash(own_stack(tmp_path)) == first
    os.utime(tmp_path / "app/src/main.py", (0, 0))  # times are not compared
    assert user_content_hash(own_stack(tmp_path)) == first

    seen = {first}

    def changed() -> None:
        now = user_content_hash(own_stack(tmp_path))
        assert now not in seen
        seen.add(now)

    (tmp_path / "app/src/main.py").write_text("print(2)\n")
    changed()
    (tmp_path / "app/keep.log").write_text("kept, changed\n")  # re-included by !keep.log
    changed()
    (tmp_path / "app/src/new.py").write_text("")
    changed()
    (tmp_path / "app/src/new.py").chmod(0o755)  # modes reach the image
    changed()
    (tmp_path / "app/src/link").symlink_to("main.py")
    changed()
    (tmp_path / "app/Dockerfile").write_text("FROM debian:bookworm-slim\nRUN echo bye\n")
    changed()
    (tmp_path / "app/.dockerignore").write_text("*.log\n")  # now cache/ is sent
    changed()
    for extra in (", build_args: {A: '1'}", ", build_args: {A: '2'}", ", target: final"):
        now = user_content_hash(own_stack(tmp_path, extra))
        assert now not in seen
        seen.add(now)


def test_the_same_context_with_another_dockerfile_is_another_image(tmp_path: Path):
    project(tmp_path, {"app/b.Dockerfile": "FROM debian:bookworm-slim\nRUN echo hello\n"})
    a = own_stack(tmp_path)
    (b,) = parse("stacks:\n  - {name: own, dockerfile: app/b.Dockerfile}\n", tmp_path).stacks
    assert user_content_hash(a) != user_content_hash(b)


def test_an_unreadable_context_is_a_located_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    project(tmp_path, {"app/data.bin": "x"})
    stack = own_stack(tmp_path)
    real_open = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "data.bin":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(ConfigError, match=r"m\.yaml:2:29: error: stack own: cannot read its build context .*"):
        user_content_hash(stack)


def test_render_writes_nothing_into_the_users_context(tmp_path: Path):
    project(tmp_path, {"app/.dockerignore": "x\n", "app/x": "1"})
    stack = own_stack(tmp_path)
    before = snapshot(tmp_path / "app")
    ctx = render(stack, tmp_path / "build", ca_bundle=tmp_path / "app/x")  # no CA bundle for a user's Dockerfile
    assert snapshot(tmp_path / "app") == before
    assert (ctx.directory, ctx.dockerfile, ctx.content_hash) == (
        tmp_path / "app",
        tmp_path / "app/Dockerfile",
        user_content_hash(stack),
    )
    assert ctx.log_path == tmp_path / "build/own/build.log" and ctx.log_path.parent.is_dir()
    assert ctx.tag == f"envcheck/own:{ctx.content_hash[:12]}"
    assert list((tmp_path / "build/own").iterdir()) == []


def test_an_image_stack_has_nothing_to_render(tmp_path: Path):
    (stack,) = parse("stacks:\n  - {name: hub, image: python}\n").stacks
    with pytest.raises(ConfigError, match="stack hub names the image python: there is nothing to render or build"):
        render(stack, tmp_path / "build")
    assert not (tmp_path / "build").exists()


def test_shared_layers_leave_dockerfile_stacks_out(tmp_path: Path):
    project(tmp_path)
    matrix = parse(
        "stacks:\n"
        "  - {name: a, tensorflow: '2.15.1', variant: cpu}\n"
        "  - {name: b, tensorflow: '2.15.1', variant: plain}\n"
        "  - {name: own, dockerfile: app/Dockerfile}\n",
        tmp_path,
    )
    # The user's Dockerfile even carries the mark rendered Dockerfiles end a shared beginning with.
    (tmp_path / "app/Dockerfile").write_text("FROM debian:bookworm-slim\n# envcheck: shared above\nRUN true\n")
    contexts = [render(s, tmp_path / "build") for s in matrix.stacks]
    layers, waits = shared_layers(contexts)
    assert layers and all("own" not in layer.stacks for layer in layers)
    assert "own" not in waits and {"a", "b"} <= set(waits)


# -- building one (the daemon's side faked: what envcheck asks of it) -----------------------------------------------


class FakeDaemon:
    """Records the builds asked of it; has no image, so every build runs."""

    def __init__(self) -> None:
        self.builds: list[dict[str, Any]] = []
        self.inspected: list[str] = []

    def inspect_image(self, name: str) -> dict[str, Any]:
        self.inspected.append(name)
        raise docker.errors.ImageNotFound(f"no such image: {name}")

    def build(self, **kwargs: Any) -> Any:
        self.builds.append(kwargs)
        return iter([{"stream": "Step 1/2 : FROM debian:bookworm-slim\n"}, {"stream": "Successfully built 1\n"}])

    def pull(self, repository: str, tag: str) -> None:
        raise docker.errors.NotFound(f"{repository}:{tag} is in no registry this daemon reaches")

    def images(self, **_: Any) -> list[dict[str, Any]]:
        return []

    def containers(self, **_: Any) -> list[dict[str, Any]]:
        return []

    def info(self) -> dict[str, Any]:
        return {"NCPU": 2}


def test_a_dockerfile_stack_is_built_as_written(tmp_path: Path):
    project(tmp_path, {"app/docker/gpu.Dockerfile": "FROM debian:bookworm-slim\n"})
    (stack,) = parse(
        "stacks:\n  - {name: own, dockerfile: app/docker/gpu.Dockerfile, context: app, build_args: {A: '1'}, "
        "target: final}\n",
        tmp_path,
    ).stacks
    ctx = render(stack, tmp_path / "build")
    daemon = FakeDaemon()
    via_cache = {"buildargs": {"PIP_INDEX_URL": "http://cache/simple"}, "network_mode": "envcheck-builds"}
    built = engine_build.build(daemon, ctx, via_cache=via_cache, matrix_file=tmp_path / "m.yaml")
    assert built.ok and not built.cached
    (asked,) = daemon.builds
    assert asked["path"] == str(tmp_path / "app") and asked["dockerfile"] == "docker/gpu.Dockerfile"
    assert asked["buildargs"] == {"A": "1"} and asked["target"] == "final"
    assert "network_mode" not in asked  # neither the package cache nor its network: the Dockerfile is the user's
    assert asked["tag"] == ctx.tag and asked["labels"] == {
        labels.HASH: ctx.content_hash,
        labels.STACK: "own",
        labels.OWNER: "1",
        labels.MATRIX: labels.matrix_id(tmp_path / "m.yaml"),
    }
    assert daemon.inspected == [ctx.tag]  # no base image looked for: the user's FROM lines are the daemon's to pull
    assert "Step 1/2" in ctx.log_path.read_text() and ctx.log_path == tmp_path / "build/own/build.log"


def test_envcheck_build_builds_dockerfile_stacks_and_leaves_image_stacks_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """What `envcheck build` does with both (MatrixRun.build_only): the image stack has no context and nothing to
    build; the dockerfile stack's build starts no package cache."""
    from envcheck.inputs.options import Options
    from envcheck.runs import pipeline

    project(tmp_path)
    matrix = parse("stacks:\n  - {name: hub, image: python}\n  - {name: own, dockerfile: app/Dockerfile}\n", tmp_path)
    daemon = FakeDaemon()
    monkeypatch.setattr(pipeline, "connect", lambda **_: daemon)
    monkeypatch.setattr(pipeline, "package_cache", lambda *_: pytest.fail("the package cache was started"))
    run = pipeline.MatrixRun(matrix, Options(package_cache=True))
    contexts = run.render(list(matrix.stacks))
    assert list(contexts) == ["own"] and run.prepare(contexts["own"], None) is contexts["own"]
    ((ctx, outcome),) = run.build_only(list(matrix.stacks))
    assert ctx.stack.name == "own" and not isinstance(outcome, str) and outcome.ok
    (asked,) = daemon.builds
    assert asked["path"] == str(tmp_path / "app") and asked["buildargs"] == {} and "network_mode" not in asked


def test_without_target_or_arguments_none_is_sent(tmp_path: Path):
    project(tmp_path)
    ctx = render(own_stack(tmp_path), tmp_path / "build")
    assert engine_build.as_written(ctx) == {"dockerfile": "Dockerfile", "buildargs": {}}


def test_a_rendered_stacks_build_is_unchanged(tmp_path: Path):
    (stack,) = parse("stacks:\n  - {name: tf, tensorflow: '2.15.1', variant: cpu}\n").stacks
    ctx = render(stack, tmp_path / "build")
    daemon = FakeDaemon()
    with pytest.raises(BaseImageMissing, match="base image 'debian:bookworm-slim'"):  # looked for, pulled first
        engine_build.build(daemon, ctx, via_cache={"network_mode": "envcheck-builds"})
    assert daemon.inspected == [ctx.tag, "debian:bookworm-slim"] and daemon.builds == []


# -- clean, lint, plan -----------------------------------------------------------------------------------------------


class ListingDaemon:
    """A daemon that lists envcheck's images of one matrix (and nothing else)."""

    def __init__(self, images: list[dict[str, Any]]) -> None:
        self.listed = images

    def images(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self.listed if filters == {"label": labels.OWNER} else []

    def containers(self, **_: Any) -> list[dict[str, Any]]:
        return []


def test_clean_keeps_current_dockerfile_images_and_never_an_image_stacks(tmp_path: Path):
    project(tmp_path)
    matrix_file = tmp_path / "m.yaml"
    matrix = parse(
        "stacks:\n"
        "  - {name: own, dockerfile: app/Dockerfile}\n"
        "  - {name: pinned, image: 'envcheck/old:0123456789ab'}\n"
        "  - {name: hub, image: 'docker.io/library/python'}\n",
        tmp_path,
    )
    own = user_content_hash(matrix.stacks[0])
    assert current_hashes(matrix) == {own}

    def image(tag: str, content_hash: str) -> dict[str, Any]:
        found = {labels.OWNER: "1", labels.HASH: content_hash, labels.MATRIX: labels.matrix_id(matrix_file)}
        return {"Id": f"sha256:{tag}", "RepoTags": [tag], "Labels": found, "Size": 1}

    daemon = ListingDaemon(
        [
            image(f"envcheck/own:{own[:12]}", own),  # current
            image("envcheck/own:aaaaaaaaaaaa", "a" * 64),  # an earlier build of it: stale
            image("envcheck/old:0123456789ab", "b" * 64),  # stale by its hash, but an image stack names it
            image("python:latest", "c" * 64),  # named, as Docker Hub's library/python
        ]
    )
    items, _ = stale(daemon, matrix)
    assert [item.name for item in items] == ["envcheck/own:aaaaaaaaaaaa"]


def test_lint_predicts_nothing_for_them_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    project(tmp_path)
    matrix = parse("stacks:\n  - {name: hub, image: python}\n  - {name: own, dockerfile: app/Dockerfile}\n", tmp_path)
    assert lint(matrix) == [] and lint(matrix, strict=True) == []
    said = capsys.readouterr().err.splitlines()
    where = tmp_path / "m.yaml"
    assert said[0].endswith(
        f"{where}:2:24: info: stack hub names the image python: nothing to predict from envcheck's knowledge (what "
        "it holds is known once it is probed: `envcheck run hub`)"
    )
    assert said[1].endswith(
        f"{where}:3:29: info: stack own names its own Dockerfile {tmp_path / 'app/Dockerfile'}: nothing to predict "
        "from envcheck's knowledge (what it holds is known once it is probed: `envcheck run own`)"
    )
    assert len(said) == 4  # each line once, for lint and for lint --strict


def test_plan_says_a_probe_is_needed(tmp_path: Path):
    project(tmp_path)
    matrix = parse(
        "stacks:\n"
        "  - {name: tf, tensorflow: '2.15.1', variant: and-cuda}\n"
        "  - {name: hub, image: python}\n"
        "  - {name: own, dockerfile: app/Dockerfile}\n",
        tmp_path,
    )
    tf, hub, own = plan(list(matrix.stacks), PlannedHost(Version("450.80.02")))
    assert "driver-too-old" in tf.codes and "no stack in this matrix works on this driver" in tf.reasons
    for verdict, what in ((hub, "the image python"), (own, f"its own Dockerfile {tmp_path / 'app/Dockerfile'}")):
        assert verdict.as_dict() == {
            "stack": verdict.stack,
            "verdict": "warn",
            "codes": ["probe-needed"],
            "reason": f"{verdict.stack} names {what}: which framework, CUDA and GPU code it holds is known only by "
            f"probing it, and no saved probe of it is in results/: run `envcheck run {verdict.stack}` first (on any "
            "host), then plan answers from that probe",
        }


# -- on Docker -------------------------------------------------------------------------------------------------------


@pytest.mark.docker
def test_envcheck_build_builds_a_dockerfile_stack_and_skips_it_unchanged(
    tmp_path: Path, docker_api: Any, image_janitor: None
):
    """`envcheck build -m` on a tiny dockerfile stack: the tag and labels of a rendered stack's image, the build
    arguments and target honoured, nothing written into the user's directory, and no rebuild while what Docker is
    sent stays the same (an ignored file changing included); a changed file is a new image."""
    app = tmp_path / "app"
    project(
        tmp_path,
        {
            # The stage after the target fails: the build passes only if the target is honoured.
            "app/Dockerfile": 'FROM debian:bookworm-slim AS tiny\nARG GREETING\nRUN echo "$GREETING" > /greeting\n'
            "COPY message.txt /message.txt\nFROM tiny AS broken\nRUN exit 1\n",
            "app/message.txt": "hello\n",
            "app/.dockerignore": "*.tmp\n",
            "app/scratch.tmp": "1\n",
        },
    )
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "stacks:\n"
        "  - name: own-tiny\n"
        "    dockerfile: app/Dockerfile\n"
        "    build_args: {GREETING: hello-from-a-build-argument}\n"
        "    target: tiny\n"
    )
    before = snapshot(app)
    done = run_cli("build", "-m", str(matrix), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    content_hash = user_content_hash(load_matrix(matrix).stacks[0])
    tag = f"envcheck/own-tiny:{content_hash[:12]}"
    assert done.stdout.split() == [tag]
    found = docker_api.inspect_image(tag)["Config"]["Labels"]
    assert {k: found.get(k) for k in (labels.HASH, labels.STACK, labels.OWNER, labels.MATRIX)} == {
        labels.HASH: content_hash,
        labels.STACK: "own-tiny",
        labels.OWNER: "1",
        labels.MATRIX: labels.matrix_id(matrix),
    }
    steps = " ".join(entry.get("CreatedBy") or "" for entry in docker_api.history(tag))
    assert "GREETING=hello-from-a-build-argument" in steps and "exit 1" not in steps
    log = (tmp_path / "build/own-tiny/build.log").read_text()
    assert "Step 1/" in log and "message.txt" in log
    assert snapshot(app) == before  # nothing written into the user's directory

    (app / "scratch.tmp").write_text("2\n")  # ignored: the same image
    again = run_cli("build", "-m", str(matrix), timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.split() == [tag] and f"image {tag} is up to date, not rebuilding" in again.stderr

    (app / "message.txt").write_text("changed\n")
    third = run_cli("build", "-m", str(matrix), timeout=900)
    assert third.returncode == 0, third.stderr[-3000:]
    changed = f"envcheck/own-tiny:{user_content_hash(load_matrix(matrix).stacks[0])[:12]}"
    assert changed != tag and third.stdout.split() == [changed] and "up to date" not in third.stderr
    docker_api.inspect_image(changed)
