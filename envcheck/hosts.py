"""The Docker hosts a matrix runs on and the registry that carries images to them (`hosts:` and `registry:` in the
matrix file, or a file given with --hosts): parsed and checked here, with file:line:column in every error.

    registry: registry.example.com:5000/team/envcheck
    hosts:
      - name: a100-lab                  # the label in the table
        docker: ssh://ci@a100-lab       # or tcp://HOST:2376 (tls_verify, cert_path), unix:///PATH, default
      - name: h100-ci
        context: h100                   # a Docker context, from the store the docker CLI uses
      - name: local
        docker: default                 # the daemon envcheck uses without --on (DOCKER_HOST, DOCKER_TLS_VERIFY, ...)

Only where to reach a daemon lives here; keys and certificates stay in their files (cert_path names the directory
holding ca.pem, cert.pem and key.pem, as DOCKER_CERT_PATH does) and are never copied into results or logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from envcheck.errors import ConfigError

DEFAULT = "default"
SCHEMES = ("unix", "tcp", "ssh")
HOST_KEYS = ("name", "docker", "context", "tls_verify", "cert_path")
NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
NAME_EXPECTED = "a name of letters, digits, '.', '_' or '-' (at most 63), starting and ending with a letter or digit"
# host[:port]/path, lowercase as Docker requires of repository names
REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$")
REGISTRY_EXPECTED = "a registry and optional path, like registry.example.com:5000/team/envcheck (lowercase)"
ENDPOINT_EXPECTED = "default, or a URL unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST"


@dataclass(frozen=True)
class HostSpec:
    """One Docker daemon to probe on: a URL, a Docker context by name, or `default`."""

    name: str
    docker: str = DEFAULT
    context: str | None = None
    tls_verify: bool = False
    cert_path: str | None = None
    where: str = ""  # FILE:LINE:COLUMN of its entry

    @property
    def is_default(self) -> bool:
        return self.context is None and self.docker == DEFAULT

    @property
    def endpoint(self) -> str:
        """Where it is, for people: the URL or the context's name; no secrets (those stay in their files)."""
        return f"context {self.context}" if self.context else self.docker


@dataclass(frozen=True)
class Fleet:
    """The hosts and registry a matrix file (or a hosts file) names."""

    hosts: tuple[HostSpec, ...] = ()
    registry: str | None = None

    def select(self, names: list[str], source: str, flag: str = "--on") -> list[HostSpec]:
        """--on NAME… or --on all: the hosts named, in file order; an unknown name lists the known ones."""
        if names == ["all"] or "all" in names:
            if not self.hosts:
                raise ConfigError(
                    f"--on all: {source} names no hosts. Add a 'hosts:' list (see README, 'Many hosts') "
                    "or give a hosts file with --hosts FILE."
                )
            return list(self.hosts)
        known = {h.name: h for h in self.hosts}
        unknown = [n for n in names if n not in known]
        if unknown:
            listed = ", ".join(known) or "none"
            raise ConfigError(
                f"{flag} {' '.join(unknown)}: no such host in {source} (hosts there: {listed}); "
                "add it under 'hosts:' or use --hosts FILE."
            )
        return [h for h in self.hosts if h.name in names]


Errors = list[tuple[int, int, str]]


def _error(errors: Errors, path: Path, node: yaml.Node, what: str, expected: str) -> None:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    errors.append((line, column, f"{path}:{line}:{column}: error: {what} (expected {expected})"))


def _scalar(node: yaml.Node, tag: str = "tag:yaml.org,2002:str") -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) and node.tag == tag else None


def parse_registry(node: yaml.Node, path: Path, errors: Errors) -> str | None:
    value = _scalar(node)
    if value is None or not REGISTRY.match(value) or len(value) > 200:
        _error(errors, path, node, f"registry {getattr(node, 'value', '')!r} is not a registry", REGISTRY_EXPECTED)
        return None
    return value


def parse_hosts(node: yaml.Node, path: Path, errors: Errors) -> tuple[HostSpec, ...]:
    """The `hosts:` list; every problem is added to errors with its position."""
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        _error(errors, path, node, "'hosts' is not a non-empty list", "a list of hosts, each with name and docker")
        return ()
    specs: list[HostSpec] = []
    seen: dict[str, str] = {}
    for item in node.value:
        where = f"{path}:{item.start_mark.line + 1}:{item.start_mark.column + 1}"
        if not isinstance(item, yaml.MappingNode):
            _error(errors, path, item, "a host is not a mapping", "name: and docker: (or context:)")
            continue
        fields: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in item.value:
            if not isinstance(key, yaml.ScalarNode) or key.value not in HOST_KEYS:
                _error(errors, path, key, f"unknown host key {getattr(key, 'value', '?')!r}", ", ".join(HOST_KEYS))
            elif key.value in fields:
                _error(errors, path, key, f"duplicate key {key.value!r} in a host", "each key once")
            else:
                fields[key.value] = (key, value)
        if "name" not in fields:
            _error(errors, path, item, "host has no name", NAME_EXPECTED)
            continue
        name = _scalar(fields["name"][1])
        if name is None or not NAME.match(name) or name == "all":
            shown = getattr(fields["name"][1], "value", "")
            _error(errors, path, fields["name"][1], f"host name {shown!r}", NAME_EXPECTED + ", not 'all'")
            continue
        if name in seen:
            _error(errors, path, item, f"duplicate host name {name!r} (first at {seen[name]})", "unique host names")
            continue
        seen[name] = where
        if ("docker" in fields) == ("context" in fields):
            _error(errors, path, item, f"host {name!r} needs exactly one of docker: and context:", ENDPOINT_EXPECTED)
            continue
        docker, context = DEFAULT, None
        if "docker" in fields:
            value = _scalar(fields["docker"][1])
            scheme = value.split("://", 1)[0] if value and "://" in value else None
            if value != DEFAULT and (scheme not in SCHEMES or not value.split("://", 1)[1]):
                shown = getattr(fields["docker"][1], "value", "")
                _error(errors, path, fields["docker"][1], f"docker endpoint {shown!r}", ENDPOINT_EXPECTED)
                continue
            docker = value
        else:
            context = _scalar(fields["context"][1])
            if not context:
                _error(errors, path, fields["context"][1], "context is not a name", "a Docker context's name")
                continue
        tls_verify = False
        if "tls_verify" in fields:
            flag = _scalar(fields["tls_verify"][1], "tag:yaml.org,2002:bool")
            if flag is None:
                _error(errors, path, fields["tls_verify"][1], "tls_verify is not true or false", "true or false")
                continue
            tls_verify = flag.lower() in ("true", "yes", "on")
        cert_path = _scalar(fields["cert_path"][1]) if "cert_path" in fields else None
        if "cert_path" in fields and not cert_path:
            _error(errors, path, fields["cert_path"][1], "cert_path is not a path", "a directory with ca.pem, ...")
            continue
        if (tls_verify or cert_path) and not (docker.startswith("tcp://")):
            _error(errors, path, item, f"host {name!r} has TLS settings without a tcp:// endpoint", "tcp://HOST:PORT")
            continue
        specs.append(HostSpec(name, docker, context, tls_verify, cert_path, where))
    return tuple(specs)


def parse_fleet(root: yaml.MappingNode, path: Path, errors: Errors) -> Fleet:
    """`hosts:` and `registry:` of a mapping (the matrix file's top level, or a hosts file's)."""
    hosts: tuple[HostSpec, ...] = ()
    registry = None
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "hosts":
            hosts = parse_hosts(value, path, errors)
        elif isinstance(key, yaml.ScalarNode) and key.value == "registry":
            registry = parse_registry(value, path, errors)
    return Fleet(hosts, registry)


def fleet_of(
    matrix_fleet: Fleet, matrix_path: Path, hosts_file: Path | None, registry: str | None
) -> tuple[Fleet, str]:
    """The hosts and registry a run uses: --hosts FILE instead of the matrix file's `hosts:`, --registry over any
    file's `registry:`. Returns them and the file they came from (for messages)."""
    fleet, source = (load_hosts_file(hosts_file), str(hosts_file)) if hosts_file else (matrix_fleet, str(matrix_path))
    if hosts_file and fleet.registry is None:
        fleet = Fleet(fleet.hosts, matrix_fleet.registry)
    if registry is not None:
        if not REGISTRY.match(registry) or len(registry) > 200:
            raise ConfigError(f"--registry {registry!r}: expected {REGISTRY_EXPECTED}")
        fleet = Fleet(fleet.hosts, registry)
    return fleet, source


def load_hosts_file(path: Path) -> Fleet:
    """--hosts FILE: a YAML file with `hosts:` (and optionally `registry:`), checked like the matrix file."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: error: hosts file not found (--hosts FILE)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: error: cannot read the hosts file: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: error: YAML syntax: {exc.problem} (expected valid YAML)") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"{path}: error: not a hosts file: {exc}") from None
    errors: Errors = []
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}:1:1: error: the hosts file is not a mapping (expected 'hosts:' and 'registry:')")
    for key, _ in root.value:
        if not isinstance(key, yaml.ScalarNode) or key.value not in ("hosts", "registry"):
            _error(errors, path, key, f"unknown key {getattr(key, 'value', '?')!r} in a hosts file", "hosts, registry")
    fleet = parse_fleet(root, path, errors)
    if not any(isinstance(k, yaml.ScalarNode) and k.value == "hosts" for k, _ in root.value):
        _error(errors, path, root, "no 'hosts:' list", "a 'hosts:' list")
    if errors:
        raise ConfigError("\n".join(text for _, _, text in sorted(errors)))
    return fleet
