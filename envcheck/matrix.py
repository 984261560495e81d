"""matrix.yaml: the stacks to build, read with every value's file position so errors can point at it.

The keys are a public contract (see README). Validation collects every error in one pass and reports each as
``FILE:LINE:COL: error: <what> (expected <what>)``; values that end up in a Dockerfile or shell command are
checked against strict patterns so a matrix file cannot inject commands.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from envcheck.errors import ConfigError

VARIANTS = {
    "and-cuda": "tensorflow[and-cuda]",
    "plain": "tensorflow",
    "cpu": "tensorflow-cpu",
}

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
TF_VERSION_RE = re.compile(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?\Z")
VERSION_RE = re.compile(r"\d+(\.\d+){0,3}\Z")
PYTHON_RE = re.compile(r"3\.\d{1,2}\Z")
IMAGE_RE = re.compile(r"[a-z0-9][a-z0-9._/:@-]*\Z")
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
    """One TensorFlow stack to build and probe, with defaults already merged in."""

    name: str
    tensorflow: str
    variant: str
    cuda: str | None
    cudnn: str | None
    base: str
    python: str
    pip: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    position: Position | None = field(default=None, compare=False)

    @property
    def requirement(self) -> str:
        """The pip requirement string for this stack's TensorFlow package."""
        return f"{VARIANTS[self.variant]}=={self.tensorflow}"

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "tensorflow": self.tensorflow,
            "variant": self.variant,
            "cuda": self.cuda,
            "cudnn": self.cudnn,
            "base": self.base,
            "python": self.python,
            "pip": list(self.pip),
            "env": dict(self.env),
        }


@dataclass(frozen=True)
class Matrix:
    path: Path
    stacks: tuple[Stack, ...]

    @property
    def root(self) -> Path:
        """Results, build contexts and docs go next to the matrix file."""
        return self.path.parent

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


STACK_FIELDS: dict[str, Callable[[yaml.Node], tuple[str | None, str]]] = {
    "name": _string(NAME_RE, "a name of lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"),
    "tensorflow": _string(TF_VERSION_RE, 'an exact TensorFlow version such as "2.15.1"'),
    "variant": _string(re.compile("(" + "|".join(map(re.escape, VARIANTS)) + r")\Z"), "one of " + ", ".join(VARIANTS)),
    "cuda": _string(VERSION_RE, 'a CUDA version such as "12.2"'),
    "cudnn": _string(VERSION_RE, 'a cuDNN version such as "8.9"'),
    "base": _string(IMAGE_RE, 'a Docker image reference such as "debian:bookworm-slim"'),
    "python": _string(PYTHON_RE, 'a Python version such as "3.11"'),
}
LIST_FIELDS = {"pip", "env"}
REQUIRED = ("name", "tensorflow", "variant")
DEFAULTABLE = set(STACK_FIELDS) - {"name"} | LIST_FIELDS
BUILTIN_DEFAULTS = {"base": "debian:bookworm-slim", "python": "3.11"}


class _Validator:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[str] = []

    def pos(self, node: yaml.Node) -> Position:
        return Position(str(self.path), node.start_mark.line + 1, node.start_mark.column + 1)

    def error(self, node: yaml.Node, what: str, expected: str) -> None:
        self.errors.append(f"{self.pos(node)}: error: {what} (expected {expected})")

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

    def fields(self, node: yaml.Node, what: str, allowed: set[str]) -> tuple[dict[str, object], set[str]]:
        """Valid values by key, and every key written (valid or not, so a bad value is not also 'missing')."""
        values: dict[str, object] = {}
        written = self.mapping(node, what)
        for key, (key_node, value_node) in written.items():
            if key not in allowed:
                self.error(key_node, f"unknown key {key!r} in {what}", "one of " + ", ".join(sorted(allowed)))
            elif key == "pip":
                values[key] = self.pip_list(value_node)
            elif key == "env":
                values[key] = self.env_map(value_node)
            else:
                value, expected = STACK_FIELDS[key](value_node)
                if value is None:
                    self.error(value_node, f"bad {key} {_shown(value_node)}", expected)
                else:
                    values[key] = value
        return values, set(written)

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


def _shown(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value)
    return "(a list)" if isinstance(node, yaml.SequenceNode) else "(a mapping)"


def load_matrix(path: str | Path) -> Matrix:
    """Read and validate a matrix file; raise ConfigError listing every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: error: matrix file not found (pass another with -m/--matrix FILE)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: error: cannot read the matrix file: {exc}") from None
    return parse_matrix(text, path)


def parse_matrix(text: str, path: Path) -> Matrix:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: error: YAML syntax: {exc.problem or exc.context} (expected valid YAML)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: error: YAML: {exc} (expected valid YAML)") from None
    v = _Validator(path)
    if root is None:
        raise ConfigError(f"{path}:1:1: error: the matrix file is empty (expected a mapping with 'stacks:')")
    top = v.mapping(root, "the matrix file")
    for key, (key_node, _) in top.items():
        if key not in ("defaults", "stacks"):
            v.error(key_node, f"unknown top-level key {key!r}", "defaults, stacks")
    defaults = dict(BUILTIN_DEFAULTS)
    if "defaults" in top:
        defaults.update(v.fields(top["defaults"][1], "defaults", DEFAULTABLE)[0])
    stacks: list[Stack] = []
    if "stacks" not in top:
        v.error(root, "no 'stacks:' list", "a 'stacks:' list with at least one stack")
    elif not isinstance(top["stacks"][1], yaml.SequenceNode) or not top["stacks"][1].value:
        v.error(top["stacks"][1], "'stacks' is not a non-empty list", "a list of stacks, each a mapping")
    else:
        seen: dict[str, Position] = {}
        for node in top["stacks"][1].value:
            own, written = v.fields(node, "a stack", set(STACK_FIELDS) | LIST_FIELDS)
            values = {**defaults, **own}
            missing = [k for k in REQUIRED if k not in values and k not in written]
            if missing and isinstance(node, yaml.MappingNode):
                v.error(
                    node,
                    f"stack is missing {', '.join(missing)}",
                    "name, tensorflow and variant on every stack",
                )
            name = values.get("name")
            if isinstance(name, str) and name in seen:
                v.error(node, f"duplicate stack name {name!r} (first at {seen[name]})", "unique stack names")
            if any(k not in values for k in REQUIRED) or not isinstance(node, yaml.MappingNode):
                continue
            seen[str(name)] = v.pos(node)
            stacks.append(
                Stack(
                    name=str(name),
                    tensorflow=str(values["tensorflow"]),
                    variant=str(values["variant"]),
                    cuda=values.get("cuda"),  # type: ignore[arg-type]
                    cudnn=values.get("cudnn"),  # type: ignore[arg-type]
                    base=str(values["base"]),
                    python=str(values["python"]),
                    pip=values.get("pip", ()),  # type: ignore[arg-type]
                    env=values.get("env", ()),  # type: ignore[arg-type]
                    position=v.pos(node),
                )
            )
    if v.errors:
        raise ConfigError("\n".join(v.errors))
    return Matrix(path=path, stacks=tuple(stacks))
