"""matrix.yaml: the stacks to build, read with every value's file position so errors can point at it.

The keys are a public contract (see README). Validation collects every error in one pass and reports each as
``FILE:LINE:COL: error: <what> (expected <what>)``; values that end up in a Dockerfile or shell command are
checked against strict patterns so a matrix file cannot inject commands.

A stack is one of three kinds, by the key that says what it is: a framework version (tensorflow:, torch:, jax:),
which envcheck renders into a Dockerfile; an image (image:), probed as it is; or the user's own Dockerfile
(dockerfile:), built as written. Each kind takes its own keys, and defaults apply only where they fit.

A rendered stack may name several framework versions, installed into one environment; the first it names is its
primary framework. `variant:` is then one variant every one of them has (cpu for TensorFlow and JAX), or a mapping
of framework to variant ({tensorflow: and-cuda, torch: pypi}) in which a framework left out takes its default
(TensorFlow has none, so it must be named).
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import os
import re
import stat
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from envcheck import frameworks
from envcheck.errors import ConfigError
from envcheck.frameworks import DEFAULT, Framework
from envcheck.inputs.hosts import Fleet, parse_fleet

# Names become Docker repository components (envcheck/NAME) and directory names: Docker's grammar for a path
# component (lowercase alphanumerics joined by '.', '_', '__' or dashes), at most 100 characters.
NAME_RE = re.compile(r"(?=.{1,100}\Z)[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
VERSION_RE = re.compile(r"[0-9]+(\.[0-9]+){0,3}\Z")
PYTHON_RE = re.compile(r"3\.[0-9]{1,2}\Z")
MAX_STACKS = 10_000  # an axes product larger than this is refused before it is expanded
MAX_DEPTH = 20  # nesting of YAML collections; a matrix file needs 5
MAX_MATRIX_BYTES = 4 * 1024 * 1024  # of a matrix file read; 10,000 stacks written out take about 1.5 MB
IMAGE_RE = re.compile(r"[a-z0-9][a-z0-9._/:@-]*\Z")
# An image: stack's reference, Docker's grammar ([registry[:port]/]path[:tag][@sha256:digest]) matched whole: the
# registry a host name (letters of either case) with an optional port, each path component lowercase.
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REFERENCE_RE = re.compile(
    rf"(?=.{{1,512}}\Z)(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?\Z"
)
# The interpreter an image or dockerfile stack is probed with: an absolute path, no '.' or '..' components.
INTERPRETER_RE = re.compile(r"(?=.{1,4096}\Z)(?:/(?!\.\.?(?:/|\Z))[A-Za-z0-9_.+-]+)+\Z")
FILE_PATH_RE = re.compile(r"[^\x00-\x1f\x7f]{1,4096}\Z")  # dockerfile:, context: (checked on disk afterwards)
BUILD_ARG_VALUE_RE = re.compile(r"[^\x00-\x1f\x7f]*\Z")
STAGE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}\Z")  # a build stage's name, as FROM ... AS takes it
AUTO = "auto"  # an image or dockerfile stack's framework when it names none: the probe reports what it finds
DOCKERFILE_EXPECTED = "the path of a Dockerfile, relative to the matrix file"
CONTEXT_EXPECTED = "the path of the build context's directory, relative to the matrix file"
PIP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-\[\],<>=!~*+ ]*\Z")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
ENV_VALUE_RE = re.compile(r"[^\x00-\x1f\x7f$`\\\"]*\Z")


@dataclass(frozen=True)
class Position:
    """Where a value was written, 1-based as editors show it."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Stack:
    """One stack to build and probe, with defaults already merged in: one framework's release (its matrix key and
    version), installed as one of its variants (kind "rendered"), with any other frameworks the stack names installed
    beside it (extra_frameworks; framework, version and variant are always the first's, the primary); or an image as
    it is (image), or the user's own Dockerfile (dockerfile), where version, variant, base and python are empty and
    framework is the one named or AUTO."""

    name: str
    version: str
    variant: str
    cuda: str | None
    cudnn: str | None
    base: str
    python: str
    pip: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    sandbox: bool = True  # probe with least privilege (no network, no capabilities, read-only root)
    framework: str = DEFAULT.name  # the key the stack names its version with (tensorflow, torch, jax)
    index: str | None = None  # the wheel index (cu121, cpu, ...) of a framework's index variant (torch)
    installer: str = "uv"  # what installs the wheels in the build: uv (fast) or pip (exactly pip's resolver)
    position: Position | None = field(default=None, compare=False)
    positions: dict[str, Position] = field(default_factory=dict, compare=False)
    image: str | None = None  # an image stack's reference
    dockerfile: Path | None = None  # a dockerfile stack's Dockerfile, absolute
    context: Path | None = None  # and its build context, absolute (the Dockerfile's directory unless given)
    build_args: tuple[tuple[str, str], ...] = ()  # a dockerfile stack's build arguments
    target: str | None = None  # a dockerfile stack's build stage
    interpreter: str | None = None  # the Python an image or dockerfile stack is probed with (None: the probe's pick)
    # The frameworks installed beside the primary one, (name, version, variant), in the order the stack names them.
    extra_frameworks: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def named(cls, name: str, **fields: Any) -> Stack:
        """An image or dockerfile stack: none of a rendered stack's version, variant, CUDA, cuDNN, base or Python
        (what its image holds is found by probing it)."""
        return cls(name=name, version="", variant="", cuda=None, cudnn=None, base="", python="", **fields)

    @property
    def frameworks(self) -> tuple[tuple[str, str, str], ...]:
        """(name, version, variant) of every framework the stack installs, the primary first."""
        return ((self.framework, self.version, self.variant), *self.extra_frameworks)

    @property
    def several(self) -> bool:
        """Whether the stack installs more than one framework into its environment."""
        return bool(self.extra_frameworks)

    def only(self, name: str) -> Stack:
        """This stack as if it installed only its framework `name`: what that framework's Dockerfile hooks and the
        rules of lint and plan take. The index stays with the framework installed from one; a variant the stack
        wrote for this framework alone (variant: {NAME: ...}) is where findings about its variant point."""
        framework, version, variant = next(f for f in self.frameworks if f[0] == name)
        positions = dict(self.positions)
        if f"variant[{name}]" in positions:
            positions["variant"] = positions[f"variant[{name}]"]
        index = self.index if frameworks.framework(name).index_variant else None
        return replace(
            self,
            framework=framework,
            version=version,
            variant=variant,
            index=index,
            extra_frameworks=(),
            positions=positions,
        )

    @property
    def parts(self) -> tuple[Stack, ...]:
        """The stack once per framework it installs (only()), the primary first; a one-framework stack is itself."""
        return tuple(self.only(name) for name, _, _ in self.frameworks) if self.several else (self,)

    def where(self, key: str) -> Position | None:
        """Where a field was written (the stack itself when it came from defaults)."""
        return self.positions.get(key, self.position)

    @property
    def kind(self) -> str:
        """rendered (envcheck writes the Dockerfile), image (probed as it is) or dockerfile (the user's, built)."""
        return "image" if self.image else "dockerfile" if self.dockerfile else "rendered"

    @property
    def probe_framework(self) -> str:
        """What the probe's --framework gets: the framework's name, or AUTO (report every one, probe the first); for
        a stack of several frameworks, their names joined by commas, the primary first (the probe imports each in
        turn, in one process)."""
        return ",".join(name for name, _, _ in self.frameworks)

    @property
    def fw(self) -> Framework:
        """The framework object behind `framework` (envcheck.frameworks). Only rendered stacks and image stacks
        that name one have it: ValueError for AUTO, so no caller takes an unknown framework for TensorFlow."""
        if self.framework == AUTO:
            raise ValueError(f"stack {self.name} names no framework (framework: {AUTO}); its probe finds which")
        return frameworks.framework(self.framework)

    @property
    def requirement(self) -> str:
        """The pip requirement string for this stack's framework package."""
        return self.fw.requirement(self.variant, self.version)

    @property
    def index_url(self) -> str | None:
        """The wheel index a stack of its framework's index variant installs from (PyTorch's own, also where PyTorch
        is not the stack's primary framework)."""
        if not self.index:
            return None
        named = (frameworks.framework(name) for name, _, _ in self.frameworks if name != AUTO)
        return next((fw for fw in named if fw.index_variant), self.fw).index_url.format(index=self.index)

    def as_dict(self) -> dict[str, object]:
        if self.kind != "rendered":
            return self._named_as_dict()
        data: dict[str, object] = {
            "name": self.name,
            "framework": self.framework,
            self.framework: self.version,
            **{name: version for name, version, _ in self.extra_frameworks},
            "variant": self.variant,
            "cuda": self.cuda,
            "cudnn": self.cudnn,
            "base": self.base,
            "python": self.python,
            "pip": list(self.pip),
            "env": dict(self.env),
            "sandbox": self.sandbox,
            "installer": self.installer,
        }
        if self.index:
            data["index"] = self.index
        if self.several:  # added keys: a one-framework stack's record is as it always was
            data["frameworks"] = [name for name, _, _ in self.frameworks]
            data["variants"] = {name: variant for name, _, variant in self.frameworks}
        return data

    def _as_written(self, path: Path | None) -> str:
        """A path relative to the matrix file, as written: records and the published table hold no absolute path
        of this machine (a home directory names its user)."""
        if path is None or self.position is None:
            return str(path)
        return os.path.relpath(path, Path(self.position.file).resolve().parent)

    def _named_as_dict(self) -> dict[str, object]:
        """An image or dockerfile stack as records hold it: what names the image, not the keys envcheck renders."""
        data: dict[str, object] = {"name": self.name}
        if self.image:
            data["image"] = self.image
        else:
            data.update(
                dockerfile=self._as_written(self.dockerfile),
                context=self._as_written(self.context),
                build_args=dict(self.build_args),
                target=self.target,
            )
        if self.interpreter:
            data["python"] = self.interpreter
        data.update(framework=self.probe_framework, env=dict(self.env), sandbox=self.sandbox)
        return data


@dataclass(frozen=True)
class Layout:
    """Where a matrix's outputs go: build/, results/ and docs/ next to the matrix file."""

    root: Path

    @classmethod
    def of(cls, matrix_file: str | Path) -> Layout:
        return cls(Path(matrix_file).parent)

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def docs(self) -> Path:
        return self.root / "docs"


@dataclass(frozen=True)
class Matrix:
    path: Path
    stacks: tuple[Stack, ...]
    fleet: Fleet = field(default_factory=Fleet)  # hosts: and registry:, for --on

    @property
    def layout(self) -> Layout:
        return Layout.of(self.path)

    def select(self, patterns: Iterable[str]) -> list[Stack]:
        """Stacks whose name matches any of the names or shell-style globs, in matrix order."""
        patterns = list(patterns)
        if not patterns:
            return list(self.stacks)
        unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(s.name, p) for s in self.stacks)]
        if unmatched:
            known = ", ".join(s.name for s in self.stacks)
            raise ConfigError(
                f"{self.path}: no stack matches {', '.join(repr(p) for p in unmatched)}. Stacks in this file: {known}."
            )
        return [s for s in self.stacks if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]


# -- validation ---------------------------------------------------------------------------------------------


def _string(pattern: re.Pattern[str], expected: str) -> Callable[[yaml.Node], tuple[str | None, str]]:
    def check(node: yaml.Node) -> tuple[str | None, str]:
        if not isinstance(node, yaml.ScalarNode):
            return None, expected
        if node.tag != "tag:yaml.org,2002:str" and node.style is None:
            # 12.10 would silently become 12.1 as a float: insist on quotes for versions.
            return None, f'{expected}, written in quotes like "{node.value}"'
        if not pattern.match(node.value):
            return None, expected
        return node.value, expected

    return check


TOP_KEYS = ("defaults", "stacks", "axes", "hosts", "registry")
NAME_EXPECTED = (
    "a name of lowercase letters, digits, '.', '_' or '-', starting with a letter or digit "
    "and ending with one, no '..', at most 100 characters"
)
# A field's value and where it was written (None for built-in defaults).
Entry = dict[str, tuple[object, "Position | None"]]


def _boolean(expected: str) -> Callable[[yaml.Node], tuple[bool | None, str]]:
    def check(node: yaml.Node) -> tuple[bool | None, str]:
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:bool":
            return None, expected
        return node.value.lower() in ("true", "yes", "on", "y"), expected

    return check


def _variant(framework: str | None) -> Callable[[yaml.Node], tuple[str | None, str]]:
    """A variant of one framework's (the stack's), or of any where the framework is not known (defaults)."""
    chosen = [frameworks.framework(framework)] if framework else frameworks.FRAMEWORKS
    names = list(dict.fromkeys(v for fw in chosen for v in fw.variants))
    return _string(re.compile("(" + "|".join(map(re.escape, names)) + r")\Z"), "one of " + ", ".join(names))


STACK_FIELDS: dict[str, Callable[[yaml.Node], tuple[object, str]]] = {
    "name": _string(NAME_RE, NAME_EXPECTED),
    **{
        fw.name: _string(fw.version_pattern, f'an exact {fw.display_name} version such as "{fw.version_example}"')
        for fw in frameworks.FRAMEWORKS
    },
    "variant": _variant(None),
    "index": _string(re.compile(r"(cu[0-9]{3}|cpu)\Z"), "a PyTorch wheel index such as cu121, cu124, cu128 or cpu"),
    "cuda": _string(VERSION_RE, 'a CUDA version such as "12.2"'),
    "cudnn": _string(VERSION_RE, 'a cuDNN version such as "8.9"'),
    "base": _string(IMAGE_RE, 'a Docker image reference such as "debian:bookworm-slim"'),
    "python": _string(PYTHON_RE, 'a Python version such as "3.11"'),
    "sandbox": _boolean("true or false"),
    "installer": _string(re.compile(r"(uv|pip)\Z"), "uv or pip"),
    "image": _string(
        REFERENCE_RE,
        'a Docker image reference such as "nvcr.io/nvidia/pytorch:24.05-py3" ([registry[:port]/]path[:tag]'
        "[@sha256:digest], the path in lowercase)",
    ),
    "dockerfile": _string(FILE_PATH_RE, DOCKERFILE_EXPECTED),
    "context": _string(FILE_PATH_RE, CONTEXT_EXPECTED),
    "target": _string(STAGE_RE, "the name of a build stage of the Dockerfile (FROM ... AS NAME)"),
    "framework": _string(
        re.compile("(" + "|".join((AUTO, *frameworks.NAMES)) + r")\Z"),
        f"{', '.join(frameworks.NAMES)} or {AUTO} (the probe reports every framework it finds)",
    ),
}
INTERPRETER_EXPECTED = (
    'the absolute path of the Python interpreter to probe with, such as "/usr/bin/python3" (a Python version '
    "is for stacks that name a framework version)"
)
_INTERPRETER = _string(INTERPRETER_RE, INTERPRETER_EXPECTED)
LIST_FIELDS = {"pip", "env", "build_args"}  # keys whose value is a collection, never an axis
REQUIRED = ("name",)
MISSING_EXPECTED = (
    f"name, {DEFAULT.name} and variant on every stack (or "
    f"{' or '.join(name for name in frameworks.NAMES if name != DEFAULT.name)} instead of {DEFAULT.name})"
)
INDEX_EXPECTED = (
    "index: only on "
    + " or ".join(
        f"{fw.name} stacks, with variant {fw.index_variant}" for fw in frameworks.FRAMEWORKS if fw.index_variant
    )
    + " (or no variant)"
)
# The key that says what a stack is, and the kind it makes: a framework version (rendered), image: or dockerfile:.
IDENTITY = {**{name: "rendered" for name in frameworks.NAMES}, "image": "image", "dockerfile": "dockerfile"}
ONE_KIND = (
    f"one of a framework version ({', '.join(f'{n}:' for n in frameworks.NAMES[:-1])} or {frameworks.NAMES[-1]}:), "
    "image: or dockerfile: per stack"
)
# The keys each kind of stack takes, in the order messages list them.
KIND_KEYS = {
    "rendered": (
        "name",
        *frameworks.NAMES,
        "variant",
        "index",
        "cuda",
        "cudnn",
        "base",
        "python",
        "pip",
        "env",
        "sandbox",
        "installer",
    ),
    "image": ("name", "image", "python", "framework", "env", "sandbox"),
    "dockerfile": ("name", "dockerfile", "context", "build_args", "target", "python", "framework", "env", "sandbox"),
}
DEFAULTABLE = set(STACK_FIELDS) - {"name", "image", "dockerfile"} | LIST_FIELDS
BUILTIN_DEFAULTS = {"base": "debian:bookworm-slim", "python": "3.11", "installer": "uv"}


def _kind_of(written: Iterable[str]) -> str | None:
    """The kind of stack its keys make (a stack with no such key is a TensorFlow stack missing its version, as
    ever); None when it names two kinds at once."""
    kinds = {IDENTITY[key] for key in written if key in IDENTITY}
    return "rendered" if not kinds else kinds.pop() if len(kinds) == 1 else None


def _takes(kind: str) -> str:
    """What a kind of stack takes, for messages."""
    article = "an" if kind == "image" else "a"
    keys = ", ".join("python (the interpreter's absolute path)" if k == "python" else k for k in KIND_KEYS[kind])
    return f"on {article} {kind} stack: {keys}"


def _is_interpreter(value: object) -> bool:
    return isinstance(value, str) and value.startswith("/")


def _defaults_for(kind: str, builtin: Entry, given: Entry) -> Entry:
    """The defaults a stack of this kind takes: only keys it takes (env and sandbox apply to every stack), and
    python only as what it means there: a version on rendered stacks, an interpreter's path on the others."""
    merged = {**builtin, **given} if kind == "rendered" else dict(given)
    python = given.get("python")
    if python and _is_interpreter(python[0]) != (kind != "rendered"):
        if kind == "rendered":
            merged["python"] = builtin["python"]
        else:
            del merged["python"]
    return {key: entry for key, entry in merged.items() if key.partition("[")[0] in KIND_KEYS[kind]}


class _Validator:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[tuple[int, int, str]] = []
        self.expanded = 0  # stacks the axes groups read so far expand to

    def pos(self, node: yaml.Node) -> Position:
        return Position(str(self.path), node.start_mark.line + 1, node.start_mark.column + 1)

    def error(self, node: yaml.Node, what: str, expected: str) -> None:
        self.error_at(self.pos(node), what, expected)

    def error_at(self, pos: Position, what: str, expected: str) -> None:
        self.errors.append((pos.line, pos.column, f"{pos}: error: {what} (expected {expected})"))

    def misplaced(self, node: yaml.Node, key: str, kind: str) -> None:
        """A key this kind of stack does not take (a stack's kind is the key that says what it is)."""
        if kind == "rendered":
            owners = " or ".join(f"{k}:" for k in ("image", "dockerfile") if key in KIND_KEYS[k])
            self.error(node, f"{key} on a stack without image: or dockerfile:", f"{key} only beside {owners}")
        else:
            article = "an" if kind == "image" else "a"
            owner = "dockerfile stacks" if key in KIND_KEYS["dockerfile"] else "stacks that name a framework version"
            self.error(node, f"{key} on {article} {kind} stack: it is for {owner}", _takes(kind))

    def mapping(self, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Keys of a mapping node, with duplicate keys reported (PyYAML silently keeps the last)."""
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} is not a mapping", "a mapping of key: value")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                self.error(key, f"{what} has a non-string key", "string keys")
                continue
            if key.value in out:
                self.error(key, f"duplicate key {key.value!r} in {what}", "each key once")
            out[key.value] = (key, value)
        return out

    def framework_fits(
        self,
        node: yaml.Node,
        framework: str,
        variant: tuple[object, Position | None] | None,
        index: tuple[object, Position | None] | None,
        several: bool = False,
    ) -> bool:
        """The variant (and an index, for a framework installed from a wheel index) belong to this framework of the
        stack; `several`: the stack names other frameworks too, whose index is not this one's to judge."""
        ok = True
        fw = frameworks.framework(framework)
        if variant is None and fw.default_variant is None and not (index and fw.index_variant):
            choices = "|".join(fw.variants)
            self.error(
                node,
                f"stack names no variant for {framework}",
                f"variant: {{{framework}: {choices}}} beside the other frameworks' (those left out take their default)",
            )
            return False
        if variant and variant[0] not in fw.variants:
            where = variant[1] or self.pos(node)
            mapping = " or a mapping that names each framework's, such as {tensorflow: and-cuda, torch: pypi}"
            self.errors.append(
                (
                    where.line,
                    where.column,
                    f"{where}: error: variant {variant[0]!r} is not one of {framework}'s "
                    f"(expected one of {', '.join(fw.variants)}{mapping if several else ''})",
                )
            )
            ok = False
        if index and (fw.index_variant is None or (variant and variant[0] != fw.index_variant)) and not several:
            where = index[1] or self.pos(node)
            self.errors.append(
                (where.line, where.column, f"{where}: error: index {index[0]!r} here (expected {INDEX_EXPECTED})")
            )
            ok = False
        if fw.index_variant and variant and variant[0] == fw.index_variant and not index:
            self.error(
                node,
                f"{framework} stack of variant {fw.index_variant} names no index",
                "index: cu121, cu124, cu128, cpu, ...",
            )
            ok = False
        return ok

    def frameworks_fit(self, node: yaml.Node, named: list[str], values: Entry) -> bool:
        """A stack of several frameworks (or one whose variant is a mapping): each framework's variant, from the
        mapping or the one variant they all have, fits it; the mapping names only the stack's frameworks; an index
        only beside the framework installed from one, in its index variant."""
        variant, index = values.get("variant"), values.get("index")
        chosen = dict(variant[0]) if variant and isinstance(variant[0], tuple) else None
        ok = True
        for name in chosen or ():
            if name not in named:
                where = values.get(f"variant[{name}]", variant)[1] if variant else None
                self.error_at(
                    where or self.pos(node),
                    f"variant for {name}, which this stack does not install",
                    f"variants for the stack's frameworks only: {', '.join(named)}",
                )
                ok = False
        for name in named:
            own = variant
            if chosen is not None:
                own = (chosen[name], values.get(f"variant[{name}]", variant)[1]) if name in chosen else None
            ok = self.framework_fits(node, name, own, index, several=len(named) > 1) and ok
        owner = next((fw for fw in map(frameworks.framework, named) if fw.index_variant), None)
        if index and len(named) > 1:
            # The framework installed from an index must be one of them, in its index variant where one is written.
            owner_variant = chosen.get(owner.name) if owner and chosen is not None else None
            if owner is None or owner_variant not in (None, owner.index_variant):
                where = index[1] or self.pos(node)
                self.error_at(where, f"index {index[0]!r} here", INDEX_EXPECTED)
                ok = False
        return ok

    def value(self, key: str, node: yaml.Node, framework: str | None = None, kind: str | None = None) -> object | None:
        """One field's validated value, or None after reporting why it is wrong. python is a version on a rendered
        stack, an interpreter's path on the others, and either where the kind is not known (defaults)."""
        if key == "pip":
            return self.pip_list(node)
        if key == "env":
            return self.env_map(node)
        if key == "build_args":
            return self.build_args_map(node)
        if key == "variant" and isinstance(node, yaml.MappingNode):
            return self.variant_map(node)
        if key == "python" and kind != "rendered":
            path = kind is not None or (isinstance(node, yaml.ScalarNode) and node.value.startswith("/"))
            check = _INTERPRETER if path else STACK_FIELDS[key]
        else:
            check = _variant(framework) if key == "variant" and framework else STACK_FIELDS[key]
        value, expected = check(node)
        if value is None:
            self.error(node, f"bad {key} {_shown(node)}", expected)
        return value

    def fields(self, node: yaml.Node, what: str, allowed: set[str]) -> tuple[Entry, set[str]]:
        """Valid values (with positions) by key, and every key written, valid or not (so it is not 'missing')."""
        values: Entry = {}
        written = self.mapping(node, what)
        framework = _framework_of(written, DEFAULT.name if what == "a stack" else None)
        kind = _kind_of(written) if what == "a stack" else None
        for key, (key_node, value_node) in written.items():
            if key not in allowed:
                self.error(key_node, f"unknown key {key!r} in {what}", "one of " + ", ".join(sorted(allowed)))
                continue
            if kind and key not in KIND_KEYS[kind] and key not in IDENTITY:
                self.misplaced(key_node, key, kind)
                continue
            value = self.value(key, value_node, framework, kind)
            if value is not None:
                values[key] = (value, self.pos(value_node))
            if key == "pip" and isinstance(value_node, yaml.SequenceNode):
                # Each requirement's own position, so findings can point at the one at fault.
                values.update({f"pip[{i}]": (None, self.pos(item)) for i, item in enumerate(value_node.value)})
            if key == "variant" and isinstance(value_node, yaml.MappingNode):
                # Each framework's variant where it was written, for errors and findings about that framework.
                values.update(
                    {f"variant[{k.value}]": (None, self.pos(item)) for k, item in value_node.value if k.value}
                )
        return values, set(written)

    def axes_group(self, node: yaml.Node) -> list[tuple[Entry, set[str]]]:
        """Expand one `axes:` group: the product of its list-valued keys, less its `exclude:` entries."""
        allowed = set(STACK_FIELDS) | LIST_FIELDS | {"exclude"}
        written = self.mapping(node, "an axes group")
        framework = _framework_of(written, DEFAULT.name)
        kind = _kind_of(written)
        options: dict[str, list[tuple[object, Position]]] = {}
        template: tuple[str, yaml.Node] | None = None
        excludes: list[tuple[dict[str, str], yaml.Node]] = []
        for key, (key_node, value_node) in written.items():
            if key not in allowed:
                self.error(key_node, f"unknown key {key!r} in an axes group", "one of " + ", ".join(sorted(allowed)))
            elif kind and key not in (*KIND_KEYS[kind], "exclude") and key not in IDENTITY:
                self.misplaced(key_node, key, kind)
            elif key == "name":
                if isinstance(value_node, yaml.ScalarNode) and value_node.value:
                    template = (value_node.value, value_node)
                else:
                    self.error(value_node, "bad name template", 'a string such as "tf-{tensorflow}-{variant}"')
            elif key == "exclude":
                excludes = self.exclude_list(value_node)
            elif key in LIST_FIELDS or not isinstance(value_node, yaml.SequenceNode):
                value = self.value(key, value_node, framework, kind)
                if value is not None:
                    options[key] = [(value, self.pos(value_node))]
            else:
                valid = [(self.value(key, item, framework, kind), self.pos(item)) for item in value_node.value]
                options[key] = [(value, pos) for value, pos in valid if value is not None]
                if not value_node.value:
                    self.error(value_node, f"axis {key!r} is empty", "at least one value")
        if template is None:
            if "name" not in written:
                self.error(node, "axes group has no name template", 'name: "tf-{tensorflow}-{variant}"')
            return []
        text, template_node = template
        placeholders = template_fields(text)
        if isinstance(placeholders, str):
            self.error(template_node, placeholders, 'placeholders like {tensorflow}, e.g. "tf-{tensorflow}-{variant}"')
            return []
        unknown = set(placeholders) - set(options)
        if unknown:
            self.error(
                template_node,
                f"name template uses {', '.join(sorted(unknown))}, which the group does not set",
                "placeholders among " + ", ".join(sorted(options)),
            )
            return []
        for rule, rule_node in excludes:
            strangers = sorted(set(rule) - set(options))
            if not rule:
                self.error(rule_node, "an exclude rule with no keys would remove every stack", "axis: value pairs")
            elif strangers:
                self.error(
                    rule_node,
                    f"exclude rule names {', '.join(strangers)}, which the group does not set",
                    "keys among " + ", ".join(sorted(options)),
                )
        if any(not rule or set(rule) - set(options) for rule, _ in excludes):
            return []
        size = math.prod(len(values) for values in options.values())
        if self.expanded + size > MAX_STACKS:
            self.error(
                node,
                f"axes would make {self.expanded + size:,} stacks (this group alone {size:,})",
                f"at most {MAX_STACKS:,} stacks in a matrix; split it into several files",
            )
            return []
        self.expanded += size
        stacks = []
        bad_names = False
        keys = list(options)
        for combination in itertools.product(*(options[k] for k in keys)):
            entry: Entry = dict(zip(keys, combination, strict=True))
            if any(all(str(entry[k][0]) == v for k, v in rule.items()) for rule, _ in excludes):
                continue
            name = text.format(**{k: entry[k][0] for k in placeholders})
            if not NAME_RE.match(name):
                self.error(template_node, f"name template makes the bad name {name!r}", NAME_EXPECTED)
                bad_names = True
                continue
            entry["name"] = (name, self.pos(template_node))
            stacks.append((entry, set(entry)))
        if excludes and size and not stacks and not bad_names:
            self.error(node, "exclude removes every stack of this axes group", "at least one combination left")
        return stacks

    def exclude_list(self, node: yaml.Node) -> list[tuple[dict[str, str], yaml.Node]]:
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, "exclude is not a list", 'a list of mappings such as {tensorflow: "2.15.1", variant: cpu}')
            return []
        rules = []
        for item in node.value:
            rule = {}
            for key, (key_node, value_node) in self.mapping(item, "an exclude rule").items():
                if key not in STACK_FIELDS or not isinstance(value_node, yaml.ScalarNode):
                    self.error(key_node, f"bad exclude key {key!r}", "axis keys with single values")
                else:
                    rule[key] = value_node.value
            if isinstance(item, yaml.MappingNode):
                rules.append((rule, item))
        return rules

    def variant_map(self, node: yaml.MappingNode) -> tuple[tuple[str, str], ...] | None:
        """variant: {torch: pypi, jax: cuda12}: a variant for each framework named, by its matrix key (None after
        reporting what is wrong)."""
        items = []
        for name, (key_node, value_node) in self.mapping(node, "variant").items():
            if name not in frameworks.NAMES:
                self.error(key_node, f"bad variant key {name!r}", f"a framework: {', '.join(frameworks.NAMES)}")
                return None
            value, expected = _variant(name)(value_node)
            if value is None:
                self.error(value_node, f"bad variant for {name} {_shown(value_node)}", expected)
                return None
            items.append((name, value))
        if not items:
            self.error(
                node, "variant is an empty mapping", "a variant, or a mapping such as {torch: pypi, jax: cuda12}"
            )
            return None
        return tuple(items)

    def pip_list(self, node: yaml.Node) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, "pip is not a list", 'a list of requirement strings such as ["numpy<2"]')
            return ()
        items = []
        for item in node.value:
            if isinstance(item, yaml.ScalarNode) and PIP_RE.match(item.value):
                items.append(item.value)
            else:
                self.error(
                    item,
                    f"bad pip requirement {_shown(item)}",
                    "a requirement such as \"nvidia-cudnn-cu12==9.3.0.75\" without quotes, ';', '$' or '`'",
                )
        return tuple(items)

    def env_map(self, node: yaml.Node) -> tuple[tuple[str, str], ...]:
        items = []
        for name, (key_node, value_node) in self.mapping(node, "env").items():
            if not ENV_NAME_RE.match(name):
                self.error(key_node, f"bad environment variable name {name!r}", "letters, digits and '_'")
            elif not isinstance(value_node, yaml.ScalarNode) or not ENV_VALUE_RE.match(value_node.value):
                self.error(
                    value_node,
                    f"bad value for {name} {_shown(value_node)}",
                    "a plain string without '$', '`', '\\', '\"' or control characters",
                )
            else:
                items.append((name, value_node.value))
        return tuple(items)

    def build_args_map(self, node: yaml.Node) -> tuple[tuple[str, str], ...]:
        """A dockerfile stack's build arguments: names as Docker's ARG takes them, each value a string (what is
        written, so 12.10 stays 12.10). They reach the daemon as the build's arguments, never a shell of envcheck's."""
        items = []
        for name, (key_node, value_node) in self.mapping(node, "build_args").items():
            if not ENV_NAME_RE.match(name):
                self.error(key_node, f"bad build argument name {name!r}", "letters, digits and '_'")
            elif (
                not isinstance(value_node, yaml.ScalarNode)
                or value_node.tag == "tag:yaml.org,2002:null"
                or not BUILD_ARG_VALUE_RE.match(value_node.value)
            ):
                shown = "(nothing)" if value_node.tag == "tag:yaml.org,2002:null" else _shown(value_node)
                self.error(
                    value_node,
                    f"bad value for build argument {name} {shown}",
                    'a string without control characters ("" for an empty one)',
                )
            else:
                items.append((name, value_node.value))
        return tuple(items)

    def dockerfile_paths(self, values: Entry) -> tuple[Path, Path] | None:
        """A dockerfile stack's Dockerfile and build context, absolute and resolved (paths are relative to the
        matrix file), or None after reporting what is wrong: the Dockerfile must be a regular file inside the context,
        the one directory Docker sends the daemon (the context is the Dockerfile's directory unless given)."""
        root = Path(os.path.abspath(self.path.parent))
        text, where = values["dockerfile"]
        assert where is not None  # a stack's own value or a default's, both written somewhere
        dockerfile = self.existing(root, str(text), where, "Dockerfile", DOCKERFILE_EXPECTED)
        if "context" in values:
            context_text, context_where = values["context"]
            assert context_where is not None
            context = self.existing(root, str(context_text), context_where, "context", CONTEXT_EXPECTED)
        else:
            context = dockerfile.parent if dockerfile else None
        if dockerfile is None or context is None:
            return None
        if not dockerfile.is_relative_to(context):
            self.error_at(
                where,
                f"Dockerfile {text!r} is outside its build context {context}",
                "a Dockerfile inside the context: directory, the one directory Docker sends the daemon",
            )
            return None
        return dockerfile, context

    def existing(self, root: Path, text: str, where: Position, what: str, expected: str) -> Path | None:
        """The resolved path `text` names (relative to root), if it exists and is what it must be (the context a
        directory, a Dockerfile a regular file); None after reporting what it is instead."""
        try:
            path = (root / text).resolve()
            mode = path.stat().st_mode
        except FileNotFoundError:
            self.error_at(where, f"{what} {text!r} not found in {root}", expected)
            return None
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop, on Python before 3.13
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.error_at(where, f"{what} {text!r} cannot be read in {root} ({why})", expected)
            return None
        directory = what == "context"
        if not (stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)):
            kind = "a directory" if directory else "a regular file"
            self.error_at(where, f"{what} {text!r} is not {kind} ({path})", expected)
            return None
        return path


def _framework_of(written: dict, default: str | None) -> str | None:
    """The framework a mapping names (its version key); a stack without one is read as TensorFlow's, as
    matrix files always were, and defaults as nobody's."""
    named = [k for k in frameworks.NAMES if k in written]
    return named[0] if len(named) == 1 else default if not named else None


def template_fields(text: str) -> list[str] | str:
    """The placeholders of an axes name template, or what is wrong with it: only plain {key} fields."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        return f"bad name template {text!r}: {exc}"
    names = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            return f"bad name template {text!r}: {shown} is not a plain {{key}} placeholder"
        names.append(name)
    return names


def _shown(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value)
    return "(a list)" if isinstance(node, yaml.SequenceNode) else "(a mapping)"


def read_matrix_file(path: Path) -> str:
    """The matrix file's text, refused (a ConfigError naming the file) unless it is a regular file of at most
    MAX_MATRIX_BYTES of UTF-8: /dev/zero would fill memory, and a FIFO without a writer would block the open for
    ever (it is opened without waiting for one, then refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ConfigError(f"{path}: error: matrix file not found (pass another with -m/--matrix FILE)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: error: cannot read the matrix file: {exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(
            f"{path}: error: the matrix file is not a regular file (a directory, device or pipe; expected a YAML file)"
        )
    with os.fdopen(fd, "rb") as stream:
        try:
            data = stream.read(MAX_MATRIX_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{path}: error: cannot read the matrix file: {exc}") from None
    if len(data) > MAX_MATRIX_BYTES:
        raise ConfigError(
            f"{path}: error: the matrix file is larger than the {MAX_MATRIX_BYTES:,} bytes envcheck reads (expected "
            "a YAML file of a few kilobytes; split a larger matrix into several files)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: error: cannot read the matrix file: {exc}") from None


def too_deep(root: yaml.Node | None) -> yaml.Node | None:
    """The first collection nested more than MAX_DEPTH deep, or None: breadth first and each node once, so aliases
    (which may repeat or nest a node into itself) cost no more than the nodes written."""
    level: list[yaml.Node] = [root] if root is not None else []
    seen: set[int] = set()
    for _ in range(MAX_DEPTH):
        collections = [n for n in level if isinstance(n, yaml.CollectionNode) and id(n) not in seen]
        seen.update(map(id, collections))
        level = [
            child
            for node in collections
            for child in (
                [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else node.value
            )
        ]
    return next((n for n in level if isinstance(n, yaml.CollectionNode) and id(n) not in seen), None)


def load_matrix(path: str | Path) -> Matrix:
    """Read and validate a matrix file; raise ConfigError listing every problem found."""
    path = Path(path)
    return parse_matrix(read_matrix_file(path), path)


def parse_matrix(text: str, path: Path) -> Matrix:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ConfigError(
            f"{path}: error: YAML nested too deeply (expected a matrix file, a few levels deep)"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        context = ""
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            context = f", {exc.context} at line {exc.context_mark.line + 1} column {exc.context_mark.column + 1}"
        raise ConfigError(f"{where}: error: YAML syntax: {exc.problem}{context} (expected valid YAML)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: error: YAML: {exc} (expected valid YAML)") from None
    deep = too_deep(root)
    if deep is not None:
        mark = deep.start_mark
        raise ConfigError(
            f"{path}:{mark.line + 1}:{mark.column + 1}: error: YAML nested more than {MAX_DEPTH} levels deep "
            "(expected a matrix file, a few levels deep)"
        )
    v = _Validator(path)
    if root is None:
        raise ConfigError(f"{path}:1:1: error: the matrix file is empty (expected a mapping with 'stacks:')")
    top = v.mapping(root, "the matrix file")
    for key, (key_node, _) in top.items():
        if key not in TOP_KEYS:
            v.error(key_node, f"unknown top-level key {key!r}", ", ".join(TOP_KEYS))
    fleet = parse_fleet(root, path, v.errors) if isinstance(root, yaml.MappingNode) else Fleet()
    builtin: Entry = {key: (value, None) for key, value in BUILTIN_DEFAULTS.items()}
    given: Entry = v.fields(top["defaults"][1], "defaults", DEFAULTABLE)[0] if "defaults" in top else {}
    entries: list[tuple[yaml.Node, Entry, set[str]]] = []
    if "stacks" in top:
        node = top["stacks"][1]
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            v.error(node, "'stacks' is not a non-empty list", "a list of stacks, each a mapping")
        else:
            for item in node.value:
                entries.append((item, *v.fields(item, "a stack", set(STACK_FIELDS) | LIST_FIELDS)))
    if "axes" in top:
        node = top["axes"][1]
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            v.error(node, "'axes' is not a non-empty list", "a list of axes groups, each a mapping")
        else:
            for group in node.value:
                entries.extend((group, entry, written) for entry, written in v.axes_group(group))
    if "stacks" not in top and "axes" not in top and isinstance(root, yaml.MappingNode):
        v.error(root, "no 'stacks:' or 'axes:' list", "a 'stacks:' list with at least one stack")
    stacks: list[Stack] = []
    seen: dict[str, Position] = {}
    for node, own, written in entries:
        if not isinstance(node, yaml.MappingNode):
            continue
        kind = _kind_of(written)
        if kind is None:
            v.error(node, f"stack names {' and '.join(k for k in IDENTITY if k in written)}", ONE_KIND)
            continue
        values = {**_defaults_for(kind, builtin, given), **own}
        files = None
        if kind == "rendered":
            if not _rendered_fits(v, node, values, written):
                continue
        else:
            if "name" not in written:
                v.error(node, "stack is missing name", "a name on every stack")
            if "name" not in values or kind not in values:
                continue  # missing, or written but invalid: already reported
            files = v.dockerfile_paths(values) if kind == "dockerfile" else None
            if kind == "dockerfile" and files is None:
                continue
        name = str(values["name"][0])
        position = v.pos(node)  # the stack, or the axes group that generated it
        if name in seen:
            v.error(node, f"duplicate stack name {name!r} (first at {seen[name]})", "unique stack names")
            continue
        seen[name] = position
        stacks.append(_stack(values, position) if kind == "rendered" else _named_stack(values, position, files))
    if v.errors:
        # An axes group's own mistake is found once per stack it makes: said once.
        errors = sorted(dict.fromkeys(v.errors), key=lambda e: e[:2])
        raise ConfigError("\n".join(text for _, _, text in errors))
    return Matrix(path=path, stacks=tuple(stacks), fleet=fleet)


def _rendered_fits(v: _Validator, node: yaml.Node, values: Entry, written: set[str]) -> bool:
    """Whether a stack that names framework versions (or none: TensorFlow's, missing) is whole: its name, a variant
    where a framework has no default, and variants and index that fit each framework; reports what not."""
    named = _named_frameworks(values, written)
    missing = [k for k in REQUIRED if k not in values and k not in written]
    if not named:
        missing.append(DEFAULT.name)  # a stack without a framework key is read as TensorFlow's, as ever
    fw = frameworks.framework(named[0] if named else DEFAULT.name)
    if len(named) < 2 and fw.default_variant is None and "variant" not in values and "variant" not in written:
        missing.append("variant")
    if missing:
        v.error(node, f"stack is missing {', '.join(missing)}", MISSING_EXPECTED)
    if missing or not named or not all(k in values for k in (*REQUIRED, *named)):
        return False
    if "variant" in written and "variant" not in values:
        return False  # written, but invalid: already reported
    return v.frameworks_fit(node, named, values)


def _named_frameworks(values: Entry, written: set[str] | None = None) -> list[str]:
    """The frameworks a stack names, in the order it names them (the first is its primary)."""
    keys = [*values, *sorted((written or set()) - set(values))]
    return [k for k in keys if k in frameworks.NAMES]


def _stack(values: Entry, position: Position) -> Stack:
    def get(key: str, default: object = None) -> Any:
        return values[key][0] if key in values else default

    named = _named_frameworks(values)
    index = get("index")
    variant = get("variant")
    chosen = dict(variant) if isinstance(variant, tuple) else None

    def variant_of(name: str) -> str:
        fw = frameworks.framework(name)
        written = variant if chosen is None else chosen.get(name)
        return written or (fw.index_variant if index and fw.index_variant else fw.default_variant)

    primary, *others = named
    return Stack(
        name=get("name"),
        framework=primary,
        version=get(primary),
        variant=variant_of(primary),
        index=index,
        cuda=get("cuda"),
        cudnn=get("cudnn"),
        base=get("base"),
        python=get("python"),
        pip=get("pip", ()),
        env=get("env", ()),
        sandbox=get("sandbox", True),
        installer=get("installer"),
        position=position,
        positions={key: pos for key, (_, pos) in values.items() if pos is not None},
        extra_frameworks=tuple((name, get(name), variant_of(name)) for name in others),
    )


def _named_stack(values: Entry, position: Position, files: tuple[Path, Path] | None) -> Stack:
    """An image or dockerfile stack: what names its image, the interpreter and framework to probe, env, sandbox."""

    def get(key: str, default: object = None) -> Any:
        return values[key][0] if key in values else default

    dockerfile, context = files or (None, None)
    return Stack.named(
        get("name"),
        env=get("env", ()),
        sandbox=get("sandbox", True),
        framework=get("framework", AUTO),
        image=get("image"),
        dockerfile=dockerfile,
        context=context,
        build_args=get("build_args", ()),
        target=get("target"),
        interpreter=get("python"),
        position=position,
        positions={key: pos for key, (_, pos) in values.items() if pos is not None},
    )
