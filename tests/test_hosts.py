"""`hosts:` and `registry:` (matrix file or --hosts FILE) and the --on flags: every mistake is one clear error with
its file:line:column or flag and exit code 2, before any Docker daemon is asked (these tests need none)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from envcheck.errors import ConfigError
from envcheck.inputs.hosts import Fleet, HostSpec, fleet_of, load_hosts_file
from envcheck.inputs.matrix import load_matrix, parse_matrix

STACKS = 'stacks:\n  - name: a\n    jax: "0.4.35"\n    variant: cpu\n'


def matrix_text(fleet: str) -> str:
    return fleet + STACKS


def test_hosts_and_registry_are_read_with_their_places(tmp_path: Path):
    text = matrix_text(
        "registry: 127.0.0.1:5000/team/envcheck\n"
        "hosts:\n"
        "  - name: local\n"
        "    docker: default\n"
        "  - name: a100-lab\n"
        "    docker: ssh://ci@a100-lab\n"
        "  - name: d2\n"
        "    docker: tcp://10.0.0.2:2376\n"
        "    tls_verify: true\n"
        "    cert_path: ~/.docker/d2\n"
        "  - name: h100\n"
        "    context: h100-ci\n"
    )
    matrix = parse_matrix(text, tmp_path / "m.yaml")
    assert matrix.fleet.registry == "127.0.0.1:5000/team/envcheck"
    names = [h.name for h in matrix.fleet.hosts]
    assert names == ["local", "a100-lab", "d2", "h100"]
    local, lab, d2, h100 = matrix.fleet.hosts
    assert local.is_default and not lab.is_default and lab.docker == "ssh://ci@a100-lab"
    assert d2.tls_verify and d2.cert_path == "~/.docker/d2" and d2.where == f"{tmp_path / 'm.yaml'}:7:5"
    assert h100.context == "h100-ci" and h100.endpoint == "context h100-ci"
    assert matrix.fleet.select(["all"], "m.yaml") == list(matrix.fleet.hosts)
    assert matrix.fleet.select(["h100", "local"], "m.yaml") == [local, h100]  # file order


@pytest.mark.parametrize(
    ("fleet", "expected"),
    [
        ("registry: Registry.Example.com/x\n", "1:11: error: registry 'Registry.Example.com/x' is not a registry"),
        ("registry: [a]\n", "1:11: error: registry"),
        ("hosts: []\n", "1:8: error: 'hosts' is not a non-empty list"),
        ("hosts:\n  - name: all\n    docker: default\n", "2:11: error: host name 'all'"),
        ("hosts:\n  - name: a\n    docker: http://x:80\n", "3:13: error: docker endpoint 'http://x:80'"),
        ("hosts:\n  - name: a\n", "2:5: error: host 'a' needs exactly one of docker: and context:"),
        ("hosts:\n  - name: a\n    docker: default\n    context: c\n", "2:5: error: host 'a' needs exactly one"),
        ("hosts:\n  - docker: default\n", "2:5: error: host has no name"),
        ("hosts:\n  - name: a\n    docker: default\n    port: 1\n", "4:5: error: unknown host key 'port'"),
        ("hosts:\n  - name: a\n    docker: tcp://h:1\n    tls_verify: yes please\n", "4:17: error: tls_verify"),
        ("hosts:\n  - name: a\n    docker: ssh://h\n    tls_verify: true\n", "2:5: error: host 'a' has TLS settings"),
        (
            "hosts:\n  - name: a\n    docker: default\n  - name: a\n    docker: default\n",
            "4:5: error: duplicate host name 'a' (first at",
        ),
    ],
)
def test_a_wrong_hosts_entry_names_its_place(tmp_path: Path, fleet: str, expected: str):
    path = tmp_path / "m.yaml"
    path.write_text(matrix_text(fleet))
    with pytest.raises(ConfigError) as error:
        load_matrix(path)
    assert f"{path}:{expected}" in str(error.value)


def test_a_hosts_file_replaces_the_matrix_hosts_and_the_flag_the_registry(tmp_path: Path):
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(yaml.safe_dump({"hosts": [{"name": "b", "docker": "unix:///run/b.sock"}]}))
    in_matrix = Fleet((HostSpec("a"),), "reg.example:5000/x")
    fleet, source = fleet_of(in_matrix, tmp_path / "m.yaml", hosts, None)
    assert [h.name for h in fleet.hosts] == ["b"] and fleet.registry == "reg.example:5000/x" and source == str(hosts)
    fleet, _ = fleet_of(in_matrix, tmp_path / "m.yaml", None, "other:5000/y")
    assert [h.name for h in fleet.hosts] == ["a"] and fleet.registry == "other:5000/y"
    with pytest.raises(ConfigError, match="--registry 'HTTP://x': expected"):
        fleet_of(in_matrix, tmp_path / "m.yaml", None, "HTTP://x")
    hosts.write_text("hosts:\n  - name: b\n    docker: default\nstacks: []\n")
    with pytest.raises(ConfigError, match=r"hosts.yaml:4:1: error: unknown key 'stacks' in a hosts file"):
        load_hosts_file(hosts)
    with pytest.raises(ConfigError, match="hosts file not found"):
        load_hosts_file(tmp_path / "missing.yaml")


def test_on_flags_fail_clearly_before_any_daemon_is_asked(tmp_path: Path):
    """Exit 2 and one paragraph, also on a machine without Docker: the names are checked first."""
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        matrix_text("hosts:\n  - name: local\n    docker: default\n  - name: d2\n    docker: tcp://h:2376\n")
    )
    cases = [
        (["--on", "gpu9"], "--on gpu9: no such host in"),
        (["--on", "d2"], "--on d2: a host other than the build host gets its images from a registry"),
        (["--on", "all", "--host-label", "x"], "--host-label names the host of a run without --on"),
        (["--on", "all", "--registry", "Bad Registry"], "--registry 'Bad Registry': expected"),
        (["--on", "local", "--build-on", "nowhere"], "--build-on nowhere: no such host"),
    ]
    for flags, message in cases:
        done = run_cli("matrix", "-m", str(matrix), *flags, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
        assert done.returncode == 2, (flags, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (flags, done.stderr)
    plain = tmp_path / "plain.yaml"
    plain.write_text(STACKS)
    done = run_cli("matrix", "-m", str(plain), "--on", "all", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert done.returncode == 2 and "names no hosts" in done.stderr
    done = run_cli("hosts", "-m", str(plain))
    assert done.returncode == 2 and "names no hosts" in done.stderr


def test_hosts_reports_a_daemon_nobody_runs_as_unreachable(tmp_path: Path):
    """`envcheck hosts` answers for every host, the unreachable one with why, exit 1 (no daemon needed)."""
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(yaml.safe_dump({"hosts": [{"name": "nobody", "docker": f"unix://{tmp_path}/no.sock"}]}))
    done = run_cli("hosts", "--hosts", str(hosts))
    assert done.returncode == 1, done.stderr
    assert "nobody" in done.stdout and "UNREACHABLE" in done.stdout and "Cannot reach host nobody" in done.stdout
