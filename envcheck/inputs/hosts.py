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
holding ca.pem, cert.pem and key.pem, as DOCKER_CERT_PATH does) and are never copied into results or logs. A URL
may still carry a password or token (user:password@, ?token=): `redact` and `scrub` are the one place that takes
them out of every endpoint and message before it is printed, logged, recorded or published.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from envcheck.errors import ConfigError

DEFAULT = "default"
HOST_KEYS = ("name", "docker", "context", "tls_verify", "cert_path")
MAX_HOSTS_FILE_BYTES = 4 * 1024 * 1024  # far beyond any real list of hosts; /dev/zero or a huge file stops here
# Every pattern is matched whole (re.fullmatch): `$` alone would let a trailing newline through.
NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
NAME_EXPECTED = "a name of letters, digits, '.', '_' or '-' (at most 63), starting and ending with a letter or digit"
# host[:port]/path, lowercase as Docker requires of repository names
REGISTRY = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::(?P<port>[0-9]{1,5}))?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*")
REGISTRY_EXPECTED = (
    "a registry and optional path, like registry.example.com:5000/team/envcheck (lowercase, port 1-65535)"
)
# unix:///PATH, or tcp:// and ssh:// with [USER[:PASSWORD]@]HOST[:PORT] (tcp: and a base path)
DOCKER_URL = re.compile(
    r"unix:///[^\s?#]*"
    r"|(?P<scheme>tcp|ssh)://(?:[^\s/?#@]+@)?(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[^\s?#]*)?"
)
ENDPOINT_EXPECTED = "default, or a URL unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT], port 1-65535"
# a URL in running text; punctuation that ends a sentence or closes a parenthesis is not part of it. The scheme's
# length is bounded, so a long run of letters is scanned in linear time (records reach scrub with megabytes).
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s'\"<>`]*[^\s'\"<>`.,;:!?)\]}]")
ANCHOR = re.compile(r"[A-Za-z0-9._-]*")  # a #fragment that only names a place on a page


def redact(url: str) -> str:
    """A URL as it may be shown, logged, recorded or published: without user[:password]@ (a bare user may be a
    token), ?query or a #fragment that is more than an anchor, so tcp://alice:pw@host:2376/?t=x is tcp://host:2376.
    Everything up to the last '@' goes, so an unencoded '@', '/' or '?' in a password cannot keep part of it."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if not rest.startswith("/"):  # unix:///path has no user part
        rest = rest.rpartition("@")[2]
    rest, _, fragment = rest.partition("#")
    rest = rest.partition("?")[0]
    return f"{scheme}://{rest}" + (f"#{fragment}" if fragment and ANCHOR.fullmatch(fragment) else "")


def scrub(text: str, *urls: str) -> str:
    """A message with every URL in it redacted: the URLs given first, wherever they appear verbatim (exception
    texts echo the URL they failed on, even one that a quote or space cuts short), then anything URL-shaped."""
    for url in urls:
        if url:
            text = text.replace(url, redact(url))
    return URL.sub(lambda found: redact(found.group()), text) if "://" in text else text


def _port_ok(port: str | None) -> bool:
    return port is None or 1 <= int(port) <= 65535


def valid_registry(value: str) -> bool:
    found = REGISTRY.fullmatch(value)
    return bool(found) and len(value) <= 200 and _port_ok(found["port"])


def valid_docker_url(value: str) -> bool:
    found = DOCKER_URL.fullmatch(value)
    return bool(found) and _port_ok(found["port"]) and not (found["scheme"] == "ssh" and found["path"])


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
        """Where it is, for people: the URL (without a password or token, see redact) or the context's name."""
        return f"context {self.context}" if self.context else redact(self.docker)


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
    if value is None or not valid_registry(value):
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
        if name is None or not NAME.fullmatch(name) or name == "all":
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
            if value is None or (value != DEFAULT and not valid_docker_url(value)):
                shown = redact(str(getattr(fields["docker"][1], "value", "")))
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
        if not valid_registry(registry):
            raise ConfigError(f"--registry {registry!r}: expected {REGISTRY_EXPECTED}")
        fleet = Fleet(fleet.hosts, registry)
    return fleet, source


def load_hosts_file(path: Path) -> Fleet:
    """--hosts FILE: a YAML file with `hosts:` (and optionally `registry:`), checked like the matrix file; read up
    to MAX_HOSTS_FILE_BYTES, so a huge file or /dev/zero is an error, not a hang or MemoryError."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_HOSTS_FILE_BYTES + 1)
        if len(raw) > MAX_HOSTS_FILE_BYTES:
            raise ConfigError(
                f"{path}: error: the hosts file is larger than {MAX_HOSTS_FILE_BYTES // (1024 * 1024)} MiB "
                "(expected a short YAML list of hosts)"
            )
        root = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
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
