"""Many hosts in one run (issue 14), on real parts started here: Debian's docker-registry with a password on
127.0.0.1, and a second Docker daemon reached over TCP with TLS client certificates, standing in for a remote GPU
host (tests/fleet_parts.py). The first daemon is the build host and the host `local`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fleet_parts import PASSWORD, Registry, SecondDaemon, free_port

from conftest import REPO, images_removed_after, run_cli
from envcheck import labels

pytestmark = pytest.mark.docker

JAX = {"name": "fl-jax", "jax": "0.4.35", "variant": "cpu"}  # about 140 MB of wheels
JAX_ENV = {**JAX, "name": "fl-jax-env", "env": {"ENVCHECK_FLEET": "1"}}  # every layer shared but the last


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    part = Registry(tmp_path_factory.mktemp("registry"), free_port())
    part.start()
    yield part
    part.stop()


@pytest.fixture(scope="module")
def second_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondDaemon]:
    part = SecondDaemon(Path(tmp_path_factory.mktemp("d2")), free_port())
    part.prepare()
    part.start()
    yield part
    part.remove()


@pytest.fixture(scope="module")
def images_go(docker_api: Any) -> Iterator[None]:
    with images_removed_after(docker_api):
        yield


def fleet_matrix(directory: Path, stacks: list[dict[str, Any]], registry: Registry, d2: SecondDaemon) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "matrix.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "registry": f"{registry.address}/envcheck",
                "hosts": [
                    {"name": "local", "docker": "default"},
                    {"name": "d2", "docker": d2.url, "tls_verify": True, "cert_path": str(d2.client_certs)},
                ],
                "defaults": {"base": "debian:bookworm-slim", "python": "3.11"},
                "stacks": stacks,
            },
            sort_keys=False,
        )
    )
    return path


def envcheck_env(registry: Registry) -> dict[str, str]:
    return {"DOCKER_CONFIG": str(registry.docker_config)}  # the registry login, where the docker CLI keeps it


def started_containers(api: Any, since: float, stack: str) -> int:
    """Container starts of envcheck probes of `stack` on that daemon since a time: proof a probe ran there."""
    events = api.events(
        since=int(since), until=int(time.time()) + 1, decode=True, filters={"type": "container", "event": "start"}
    )
    return sum((e.get("Actor", {}).get("Attributes") or {}).get(labels.STACK) == stack for e in events)


def secrets_absent(texts: list[str], root: Path, d2: SecondDaemon) -> None:
    """Neither the registry password nor the TLS client key is in any output or any file envcheck wrote."""
    assert d2.client_certs is not None
    key = (d2.client_certs / "key.pem").read_text()
    key_body = "".join(key.splitlines()[1:3])  # the key's own base64, whatever the line breaks
    files = [p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and p.suffix != ".pem"]
    for text in texts + files:
        assert PASSWORD not in text
        assert key_body not in "".join(text.splitlines())


def test_on_all_builds_once_pushes_once_and_every_host_probes(
    tmp_path: Path, docker_api: Any, registry: Registry, second_daemon: SecondDaemon, images_go: None
):
    matrix = fleet_matrix(tmp_path, [JAX], registry, second_daemon)
    d2 = second_daemon.api()
    start = time.time() - 1
    args = ("matrix", "-m", str(matrix), "--on", "all", "--quick", "--json", "--ca-bundle", "auto")
    done = run_cli(*args, env=envcheck_env(registry), timeout=2400)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["host"]["label"]: r for r in json.loads(done.stdout)}
    assert set(results) == {"local", "d2"}
    assert done.stderr.count("built envcheck/fl-jax:") == 1  # one build, on the build host
    content_hash = results["local"]["content_hash"]
    assert registry.tags("envcheck/fl-jax") == [content_hash]  # pushed once, tagged by content hash
    for label, result in results.items():
        assert result["status"] in ("gpu", "cpu-only"), (label, result.get("error"))
        assert result["digest"].startswith(f"{registry.address}/envcheck/fl-jax@sha256:")
        assert result["probe"]["framework_version"] == "0.4.35"  # read inside that host's container
    assert results["local"]["digest"] == results["d2"]["digest"]
    # each daemon ran its own probe container; d2 holds the image it pulled by digest
    assert started_containers(docker_api, start, "fl-jax") >= 1
    assert started_containers(d2, start, "fl-jax") >= 1
    assert d2.inspect_image(results["d2"]["digest"])["Config"]["Labels"][labels.HASH] == content_hash
    table = json.loads((tmp_path / "docs" / "compatibility.json").read_text())
    assert {h["label"] for h in table["hosts"]} == {"local", "d2"}
    assert {(c["stack"], c["host"]) for c in table["cells"]} == {("fl-jax", "local"), ("fl-jax", "d2")}

    again_start = time.time()
    again = run_cli(*args, env=envcheck_env(registry), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(r["reused"] for r in json.loads(again.stdout))
    assert "pushing" not in again.stderr and "pulling" not in again.stderr
    assert started_containers(d2, again_start, "fl-jax") == 0
    secrets_absent([done.stdout, done.stderr, again.stdout, again.stderr], tmp_path, second_daemon)


def test_hosts_preflight_reads_contexts_and_names_the_host_that_is_down(
    tmp_path: Path, docker_api: Any, registry: Registry, second_daemon: SecondDaemon
):
    """`envcheck hosts`: the default daemon, the second one through a Docker context the docker CLI made (TLS files
    in the CLI's store), and a host nobody listens on."""
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text("{}")
    certs = second_daemon.client_certs
    assert certs is not None
    subprocess.run(
        ["docker", "--config", str(config), "context", "create", "d2ctx", "--docker",
         f"host={second_daemon.url},ca={certs / 'ca.pem'},cert={certs / 'cert.pem'},key={certs / 'key.pem'}"],
        check=True, capture_output=True,
    )  # fmt: skip
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(
        yaml.safe_dump(
            {
                "hosts": [
                    {"name": "local", "docker": "default"},
                    {"name": "d2", "context": "d2ctx"},
                    {"name": "gone", "docker": f"tcp://127.0.0.1:{free_port()}"},
                ]
            }
        )
    )
    done = run_cli("hosts", "--hosts", str(hosts), "--json", env={"DOCKER_CONFIG": str(config)}, timeout=120)
    assert done.returncode == 1, done.stderr  # one host is down
    found = {h["name"]: h for h in json.loads(done.stdout)["hosts"]}
    assert found["local"]["reachable"] and found["local"]["docker_version"] == docker_api.version()["Version"]
    d2_runtimes = second_daemon.api().info()["Runtimes"]
    assert found["d2"]["reachable"] and found["d2"]["nvidia_runtime"] == ("nvidia" in d2_runtimes)
    assert not found["gone"]["reachable"] and "gone" in found["gone"]["error"]
    text = run_cli("hosts", "--hosts", str(hosts), env={"DOCKER_CONFIG": str(config)}, timeout=120)
    assert "gone" in text.stdout and "UNREACHABLE" in text.stdout
    secrets_absent([done.stdout, done.stderr, text.stdout, text.stderr], tmp_path, second_daemon)


def test_a_host_that_stops_mid_run_costs_only_its_own_cells(
    tmp_path: Path, docker_api: Any, registry: Registry, second_daemon: SecondDaemon, images_go: None
):
    """The second daemon is stopped (SIGTERM, as `systemctl stop docker`) while its first probe runs: its cells are
    host-unreachable with the reason, the first host's complete, the exit code says some stacks did not run, and the
    first daemon keeps working."""
    matrix = fleet_matrix(tmp_path, [JAX, JAX_ENV], registry, second_daemon)
    command = [sys.executable, "-m", "envcheck", "matrix", "-m", str(matrix), "--on", "all", "--quick", "--json"]
    command += ["--force", "--ca-bundle", "auto"]

    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, **envcheck_env(registry)},
    )
    stopped = False
    stderr = []
    assert process.stderr is not None
    try:
        for line in process.stderr:
            stderr.append(line)
            if not stopped and "@ d2]" in line and ("running the probe" in line or "pulling" in line):
                second_daemon.stop()
                stopped = True
        stdout = process.stdout.read() if process.stdout else ""
        code = process.wait(timeout=1800)
    finally:
        if process.poll() is None:
            process.kill()
        if second_daemon.process is None or second_daemon.process.poll() is not None:
            second_daemon.start()  # for the tests after this one
    log = "".join(stderr)
    assert stopped, log[-3000:]
    assert code == 1, log[-3000:]
    cells = {(r["stack"], r["host"]["label"]): r for r in json.loads(stdout)}
    assert len(cells) == 4
    for stack in ("fl-jax", "fl-jax-env"):
        assert cells[(stack, "local")]["status"] in ("gpu", "cpu-only"), cells[(stack, "local")].get("error")
    d2_statuses = [cells[(s, "d2")]["status"] for s in ("fl-jax", "fl-jax-env")]
    assert "host-unreachable" in d2_statuses and set(d2_statuses) <= {"host-unreachable", "gpu", "cpu-only"}
    for stack in ("fl-jax", "fl-jax-env"):
        if cells[(stack, "d2")]["status"] == "host-unreachable":
            assert "host d2" in cells[(stack, "d2")]["error"]
    docker_api.ping()  # the first daemon is untouched, its bridge too
    assert subprocess.run(["ip", "link", "show", "docker0"], capture_output=True).returncode == 0
    table = json.loads((tmp_path / "docs" / "compatibility.json").read_text())
    assert any(c["status"] == "host-unreachable" and c["host"] == "d2" for c in table["cells"])
    secrets_absent([stdout, log], tmp_path, second_daemon)


def test_ctrl_c_removes_the_probe_on_every_host_and_keeps_what_finished(
    tmp_path: Path, docker_api: Any, registry: Registry, second_daemon: SecondDaemon, images_go: None
):
    """Ctrl-C while both hosts probe (the full benchmark, so the probes last): exit 130, no envcheck container left
    on either daemon, and no probe cut short is recorded as if it had failed."""
    matrix = fleet_matrix(tmp_path, [JAX], registry, second_daemon)
    command = [sys.executable, "-m", "envcheck", "matrix", "-m", str(matrix), "--on", "all", "--force"]
    process = subprocess.Popen(
        [*command, "--ca-bundle", "auto"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, **envcheck_env(registry)},
        # a test run in the background (nohup, CI) would hand down an ignored SIGINT, which Python keeps
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "@ d2] running the probe" in line:
            time.sleep(2)  # the container is up
            process.send_signal(signal.SIGINT)
            break
    rest = process.communicate(timeout=300)[1]
    log = "".join(seen) + rest
    assert process.returncode == 130, log[-3000:]
    assert "interrupted; finished results are kept" in log
    for api in (docker_api, second_daemon.api()):
        assert not api.containers(all=True, filters={"label": labels.OWNER}), log[-2000:]
    # what finished is kept; a probe cut short is not recorded as a finding (no run-failed cell from Ctrl-C)
    records = tmp_path / "results" / "records.jsonl"
    statuses = [json.loads(line)["status"] for line in records.read_text().splitlines()] if records.exists() else []
    assert set(statuses) <= {"gpu", "cpu-only"}, statuses


def run_step(step: dict[str, Any], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A generated CI step's script, exactly as written, with the variables the CI system would set."""
    values = {k: str(v) for k, v in (step.get("env") or {}).items()}
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=cwd,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **values, **env},
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )


def test_the_generated_ci_jobs_run_here_and_merge_into_a_two_host_table(
    tmp_path: Path, docker_api: Any, registry: Registry, second_daemon: SecondDaemon, images_go: None
):
    """The GitHub workflow's build step and probe steps, run as written (GitHub's part — checkout, runners,
    artifacts — done by hand): one build pushes, a probe job on each of two Docker hosts pulls by content hash and
    leaves its record, and `envcheck table --results` merges them into a table with both hosts' columns."""
    repo = tmp_path / "repo"
    matrix = fleet_matrix(repo, [JAX], registry, second_daemon)
    done = run_cli("ci", "github", "-m", "matrix.yaml", "--runner", "local", "--runner", "d2", cwd=repo)
    assert done.returncode == 0, done.stderr
    jobs = yaml.safe_load(done.stdout)["jobs"]
    build_steps = {s.get("name"): s for s in jobs["build"]["steps"]}
    probe_steps = {s.get("name"): s for s in jobs["probe"]["steps"]}
    login = envcheck_env(registry)
    there_before = registry.tags("envcheck/fl-jax")  # an earlier test may have pushed this very image
    built = run_step(build_steps["Build and push"], repo, {"REGISTRY": f"{registry.address}/envcheck", **login})
    assert built.returncode == 0, built.stderr[-3000:]
    assert len(registry.tags("envcheck/fl-jax")) == 1  # one tag, the content hash: never the same image twice
    assert ("already has it" in built.stderr) == bool(there_before) and ("pushing" in built.stderr) != bool(
        there_before
    )
    assert built.stdout.strip().startswith(f"{registry.address}/envcheck/fl-jax@sha256:")  # pushed, by digest
    assert second_daemon.client_certs is not None
    daemons = {
        "local": {},
        "d2": {
            "DOCKER_HOST": second_daemon.url,
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(second_daemon.client_certs),
        },
    }
    artifacts = tmp_path / "artifacts"
    for runner, daemon in daemons.items():
        checkout = tmp_path / f"checkout-{runner}"  # each probe job has a fresh checkout of the repository
        checkout.mkdir()
        (checkout / "matrix.yaml").write_text(matrix.read_text())
        env = {"STACK": "fl-jax", "RUNNER": runner, "REGISTRY": f"{registry.address}/envcheck", **login, **daemon}
        probed = run_step({**probe_steps["Probe"], "env": {**probe_steps["Probe"]["env"], **env}}, checkout, {})
        assert probed.returncode == 0, probed.stderr[-3000:]
        kept = run_step(
            {**probe_steps["Keep the record"], "env": {**probe_steps["Keep the record"]["env"], **env}}, checkout, {}
        )
        assert kept.returncode == 0, kept.stderr
        junit = (checkout / f"junit-fl-jax@{runner}.xml").read_text()
        assert '<testsuite name="envcheck" tests="1" failures="0"' in junit
        shutil.copytree(checkout / "records", artifacts / f"envcheck-record-fl-jax-{runner}")
        (record,) = [
            json.loads(line) for line in (checkout / "records" / f"fl-jax@{runner}.jsonl").read_text().splitlines()
        ]
        assert record["host"]["label"] == runner and record["digest"].startswith(f"{registry.address}/envcheck/fl-jax@")
    merged = run_cli("table", "-m", str(matrix), "--results", str(artifacts))
    assert merged.returncode == 0, merged.stderr
    table = json.loads((repo / "docs" / "compatibility.json").read_text())
    assert {h["label"] for h in table["hosts"]} == {"local", "d2"}
    assert {(c["stack"], c["host"], c["status"] in ("gpu", "cpu-only")) for c in table["cells"]} == {
        ("fl-jax", "local", True),
        ("fl-jax", "d2", True),
    }
    secrets_absent([built.stdout, built.stderr, merged.stdout, merged.stderr], tmp_path, second_daemon)


def test_a_rendered_kubernetes_job_run_as_a_container_is_collected_into_a_record(
    tmp_path: Path, docker_api: Any, registry: Registry, second_daemon: SecondDaemon, images_go: None
):
    """No cluster here: `k8s render` asks the real registry for the digest, the Job's container (image by digest,
    command, environment, read-only root) runs on Docker, and its log — stdout and stderr together, as a pod log —
    with GPU Feature Discovery's node labels becomes a record that `envcheck table` puts in its own column."""
    from envcheck.inputs.matrix import load_matrix
    from envcheck.jobs.k8s import result_of_pod

    repo = tmp_path / "repo"
    matrix = fleet_matrix(repo, [JAX], registry, second_daemon)
    built = run_cli("build", "-m", str(matrix), "--push", "--ca-bundle", "auto", env=envcheck_env(registry))
    assert built.returncode == 0, built.stderr[-3000:]
    product = "NVIDIA-A100-SXM4-80GB"
    rendered = run_cli("k8s", "render", "-m", str(matrix), "--gpu-product", product, env=envcheck_env(registry))
    assert rendered.returncode == 0, rendered.stderr
    (job,) = list(yaml.safe_load_all(rendered.stdout))
    (spec,) = job["spec"]["template"]["spec"]["containers"]
    assert spec["image"] == built.stdout.strip()  # by digest, the one the build pushed
    container = docker_api.create_container(
        spec["image"],
        command=spec["command"],
        environment={e["name"]: e["value"] for e in spec["env"]},
        host_config=docker_api.create_host_config(read_only=True, tmpfs={"/tmp": ""}, network_mode="none"),
        labels={labels.OWNER: "1"},
    )
    try:
        docker_api.start(container)
        exit_code = docker_api.wait(container, timeout=600)["StatusCode"]
        log = docker_api.logs(container, stdout=True, stderr=True).decode()
    finally:
        docker_api.remove_container(container, force=True)
    pod = {
        "metadata": {"name": f"{job['metadata']['name']}-abcde", "creationTimestamp": "2026-11-27T10:00:00Z"},
        "spec": {"nodeName": "gpu-node-1", "containers": [spec]},
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [{"name": "probe", "state": {"terminated": {"exitCode": exit_code}}}],
        },
    }
    node = {"nvidia.com/gpu.product": product, "nvidia.com/gpu.count": "1"}
    stack = load_matrix(matrix).stacks[0]
    result = result_of_pod(stack, job, pod, log, node)
    assert result is not None and result.status.value in ("gpu", "cpu-only"), result
    assert result.probe and result.probe["framework_version"] == "0.4.35"
    assert result.content_hash == job["metadata"]["annotations"]["envcheck/content-hash"]
    from envcheck.results import store

    store.append(tmp_path / "k8s.jsonl", [result])
    merged = run_cli("table", "-m", str(matrix), "--results", str(tmp_path / "k8s.jsonl"))
    assert merged.returncode == 0, merged.stderr
    table = json.loads((repo / "docs" / "compatibility.json").read_text())
    assert [h["label"] for h in table["hosts"]] == [product]


def test_a_probe_over_its_timeout_is_a_timeout_cell_on_every_host(
    tmp_path: Path, docker_api: Any, registry: Registry, second_daemon: SecondDaemon, images_go: None
):
    """--run-timeout applies on each host as on one: the probe (JAX's full benchmark on a CPU takes longer than
    two seconds) is killed there, the cell says timeout, and neither daemon keeps the container."""
    matrix = fleet_matrix(tmp_path, [JAX], registry, second_daemon)
    args = (
        "matrix",
        "-m",
        str(matrix),
        "--on",
        "all",
        "--force",
        "--run-timeout",
        "2",
        "--json",
        "--ca-bundle",
        "auto",
    )
    done = run_cli(*args, env=envcheck_env(registry), timeout=1800)
    assert done.returncode == 1, done.stderr[-3000:]
    cells = {r["host"]["label"]: r for r in json.loads(done.stdout)}
    for label in ("local", "d2"):
        assert cells[label]["status"] == "timeout" and "--run-timeout" in cells[label]["error"], cells[label]
    for api in (docker_api, second_daemon.api()):
        assert not api.containers(all=True, filters={"label": labels.OWNER})


def test_build_on_another_host_then_probe_here_from_the_registry(
    tmp_path: Path, docker_api: Any, registry: Registry, second_daemon: SecondDaemon, images_go: None
):
    """--build-on d2 --on local: the second daemon builds (its base pulled from the registry, as a build machine
    would) and pushes; this daemon, which did not build, pulls the image by digest and probes it."""
    from fleet_parts import PASSWORD, USER

    base = f"{registry.address}/envcheck-base/debian:bookworm-slim"
    docker_api.tag("debian:bookworm-slim", base.rsplit(":", 1)[0], "bookworm-slim")
    try:
        for chunk in docker_api.push(
            base.rsplit(":", 1)[0], tag="bookworm-slim", stream=True, decode=True,
            auth_config={"username": USER, "password": PASSWORD},
        ):  # fmt: skip
            assert "error" not in chunk, chunk
    finally:
        docker_api.remove_image(base)
    matrix = fleet_matrix(tmp_path, [{**JAX, "name": "fl-jax-d2", "base": base}], registry, second_daemon)
    args = (
        "matrix",
        "-m",
        str(matrix),
        "--on",
        "local",
        "--build-on",
        "d2",
        "--quick",
        "--json",
        "--ca-bundle",
        "auto",
    )
    done = run_cli(*args, env=envcheck_env(registry), timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(done.stdout)
    assert result["host"]["label"] == "local" and result["status"] in ("gpu", "cpu-only")
    assert second_daemon.api().images(filters={"label": f"{labels.STACK}=fl-jax-d2"})  # built there
    assert result["digest"] in (docker_api.inspect_image(result["image"]).get("RepoDigests") or [])  # pulled here
    assert "pulling" in done.stderr and "[fl-jax-d2] built" in done.stderr
    # d2 is reached over TCP: its builds could not reach a cache on this machine's address, so none is offered
    assert f"package cache not used: the Docker daemon (127.0.0.1:{second_daemon.port}) is not on this machine" in (
        done.stderr
    )
