"""Render a stack's build context (Dockerfile + probe) from the Jinja2 template in images/.

The template holds the Dockerfile's shape (shell included); DockerfileTemplate's small hook methods supply the
per-stack pieces and ask the stack's framework (envcheck.frameworks) for its own: what it installs and what may
share a layer (repo2docker's buildpack style), so a new framework or install variant is a new object or method,
not a template fork.

A dockerfile: stack renders nothing: its context is the user's own directory, which envcheck never writes to (its
build log goes to build/NAME/ as a rendered stack's does), hashed as Docker would send it. An image: stack has no
context at all: it is fetched, not built.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import jinja2
from docker.utils.build import exclude_paths

from envcheck import __version__, labels
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import Stack
from envcheck.probe import PROBE_FILES

CA_BUNDLE_NAME = "envcheck-ca.pem"
# The uv that installs stacks with `installer: uv` (the default); a new pin is a new content hash, so a rebuild.
UV_VERSION = "0.13.9"
# Ends each beginning of the Dockerfile that stacks may share (images/Dockerfile.j2).
SHARED_MARK = "# envcheck: shared above\n"
# Files a build writes into the context directory that are not part of the image.
NOT_IN_CONTEXT = ("build.log", "result.json")


def templates_dir() -> Path:
    """images/ at the repository root, or its copy inside an installed wheel."""
    here = Path(__file__).resolve()
    packaged = here.parent.parent / "images"  # envcheck/images in a wheel (pyproject's force-include)
    return packaged if packaged.is_dir() else here.parents[2] / "images"


@dataclass(frozen=True)
class BuildContext:
    stack: Stack
    directory: Path  # what Docker is sent: build/NAME/, or a dockerfile stack's own context
    content_hash: str
    logs: Path | None = None  # where the build log goes when not in `directory` (a dockerfile stack's: build/NAME/)

    @property
    def dockerfile(self) -> Path:
        return self.stack.dockerfile or self.directory / "Dockerfile"

    @property
    def log_path(self) -> Path:
        return (self.logs or self.directory) / "build.log"

    @property
    def tag(self) -> str:
        return f"envcheck/{self.stack.name}:{self.content_hash[:12]}"


class DockerfileTemplate:
    """Fills images/Dockerfile.j2 for one stack: Python, a venv, the framework, the stack's extras and ENV, the
    probe. The framework says what it installs (requirements) and what may share a layer (pinned_libraries)."""

    template_name = "Dockerfile.j2"

    def __init__(self, stack: Stack, ca_bundle: bool) -> None:
        self.stack = stack
        self.ca_bundle = ca_bundle

    def python(self) -> str:
        """The interpreter the venv is made with; installed from the base's apt packages when missing."""
        return f"python{self.stack.python}"

    def pinned_libraries(self) -> list[str]:
        """Exact wheels that get a layer of their own before the framework (shared by stacks that pin alike). None
        for a stack of several frameworks: their pins go into the one install call with the frameworks, so the
        resolver sees every pin at once and refuses a conflict rather than one install replacing the other's."""
        return [] if self.stack.several else self.stack.fw.pinned_libraries(self.stack)

    def requirements(self) -> list[str]:
        """Each framework as its variant installs it (one install call for all), plus NVML's bindings for the probe
        (nvidia-ml-py, not the deprecated pynvml package)."""
        if not self.stack.several:
            return [*self.stack.fw.requirements(self.stack), "nvidia-ml-py"]
        found = [
            arg for part in self.stack.parts for arg in (*part.fw.pinned_libraries(part), *part.fw.requirements(part))
        ]
        return [*dict.fromkeys(found), "nvidia-ml-py"]

    def extra_requirements(self) -> list[str]:
        """The stack's own pip entries, in a later layer so the framework layer stays shared."""
        return [shlex.quote(r) for r in self.stack.pip]

    def render(self) -> str:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates_dir()),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        return env.get_template(self.template_name).render(
            stack=self.stack,
            python=self.python(),
            installer=self.stack.installer,
            uv_version=UV_VERSION,
            pinned_libraries=self.pinned_libraries(),
            requirements=self.requirements(),
            extra_requirements=self.extra_requirements(),
            ca_bundle=CA_BUNDLE_NAME if self.ca_bundle else None,
            stage_label=labels.STAGE,
            adapters=[name for name in PROBE_FILES if name != "probe.py"],
        )


def context_files(stack: Stack, ca_bundle: bool) -> dict[str, str]:
    """The build context's text files, by name: the Dockerfile, the probe and its adapters."""
    return {
        "Dockerfile": DockerfileTemplate(stack, ca_bundle).render(),
        **{name: path.read_text(encoding="utf-8") for name, path in PROBE_FILES.items()},
        ".dockerignore": "".join(f"{name}\n" for name in NOT_IN_CONTEXT),
    }


def content_hash(files: dict[str, str]) -> str:
    """Hash of everything that decides the image: context files (as rendered without a CA bundle) and envcheck's
    version. The CA bundle and the package cache only decide how pip reaches the index during the build, not what
    the image holds, so neither changes the hash."""
    digest = hashlib.sha256(f"envcheck {__version__}\n".encode())
    for name in sorted(files):
        data = files[name].encode()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def render(stack: Stack, build_root: Path, ca_bundle: Path | None = None) -> BuildContext:
    """Write build/NAME/ (Dockerfile, probe, .dockerignore and the CA bundle if given). A dockerfile stack's
    context is its own directory (build/NAME/ gets only its log; no CA bundle: the user's Dockerfile is theirs); an
    image stack has none (ConfigError: it is fetched, not rendered)."""
    if stack.kind == "image":
        raise ConfigError(f"stack {stack.name} names the image {stack.image}: there is nothing to render or build")
    if stack.kind == "dockerfile":
        logs = build_root / stack.name
        logs.mkdir(parents=True, exist_ok=True)
        return BuildContext(stack, own_files(stack)[1], user_content_hash(stack), logs)
    files = context_files(stack, ca_bundle is not None)
    canonical = files if ca_bundle is None else context_files(stack, False)
    directory = build_root / stack.name
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = directory / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    bundle_target = directory / CA_BUNDLE_NAME
    if ca_bundle is not None:
        shutil.copyfile(ca_bundle, bundle_target)
    elif bundle_target.exists():
        bundle_target.unlink()
    return BuildContext(stack=stack, directory=directory, content_hash=content_hash(canonical))


def own_files(stack: Stack) -> tuple[Path, Path]:
    """A dockerfile stack's Dockerfile and build context, both resolved by the matrix (the Dockerfile inside)."""
    if stack.dockerfile is None or stack.context is None:
        raise ValueError(f"stack {stack.name} is not a dockerfile stack")
    return stack.dockerfile, stack.context


def dockerfile_in_context(stack: Stack) -> str:
    """The Dockerfile's path inside its context, as the build's `dockerfile` parameter takes it."""
    dockerfile, context = own_files(stack)
    return dockerfile.relative_to(context).as_posix()


def dockerignore(context: Path) -> list[str]:
    """The context's .dockerignore patterns, read as the docker SDK reads them before it sends the context."""
    try:
        lines = (context / ".dockerignore").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [line for line in (raw.strip() for raw in lines) if line and not line.startswith("#")]


def user_content_hash(stack: Stack) -> str:
    """Hash of what decides a dockerfile stack's image: every file, directory and link Docker would be sent (the
    docker SDK's own walk, so .dockerignore is honoured as the build honours it; names, modes, contents and link
    targets, not times or owners), which of them is the Dockerfile, the build arguments and the target. Not the
    stack's name nor envcheck's version: neither is in the image."""
    context = own_files(stack)[1]
    relative = dockerfile_in_context(stack)
    digest = hashlib.sha256(b"envcheck dockerfile stack\n")
    for name, value in (("dockerfile", relative), ("target", stack.target or "")):
        digest.update(f"{name}\0{value}\0".encode())
    for name, value in sorted(stack.build_args):
        digest.update(f"arg\0{name}\0{len(value.encode())}\0{value}\0".encode())
    try:
        for path in sorted(exclude_paths(str(context), dockerignore(context), dockerfile=relative)):
            digest.update(_entry(context, path))
    except (OSError, UnicodeDecodeError) as exc:
        where = stack.where("dockerfile")
        raise ConfigError(
            f"{where}: error: stack {stack.name}: cannot read its build context {context}: {exc} (expected a context "
            "envcheck can read, as Docker must)"
        ) from None
    return digest.hexdigest()


def _entry(context: Path, relative: str) -> bytes:
    """One path of the context as the hash takes it: its kind, name, permission bits, and its content (a file,
    read in chunks) or target (a link)."""
    full = context / relative
    info = full.lstat()
    name = os.fsencode(relative)
    head = b"%s\0%s\0%o\0" % (_kind(info.st_mode), name, stat.S_IMODE(info.st_mode))
    if stat.S_ISLNK(info.st_mode):
        return head + os.fsencode(os.readlink(full)) + b"\0"
    if not stat.S_ISREG(info.st_mode):
        return head
    content = hashlib.sha256()
    with full.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            content.update(chunk)
    return head + b"%d\0%s\0" % (info.st_size, content.hexdigest().encode())


def _kind(mode: int) -> bytes:
    return b"f" if stat.S_ISREG(mode) else b"d" if stat.S_ISDIR(mode) else b"l" if stat.S_ISLNK(mode) else b"o"
