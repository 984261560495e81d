"""The container runtimes end to end under Slurm (issue 28): a real single-node Slurm cluster
(tests/slurm_cluster.py, with accounting), the fleet tests' registry with a password, served over TLS (Charliecloud
speaks nothing else; tests/charliecloud_parts.py), a stack built and pushed by `envcheck build --push`, and the same
image named as an `image:` stack (its probe's files mounted by the runtime). For each runtime that runs here,
Podman and Charliecloud: `envcheck slurm render --runtime R`, `submit --wait`, and what the merge job's `collect`
wrote: every task pulled its image by digest with that runtime, ran the real probe in it, and became a record with
the partition as its column. No GPU, no CDI spec and no NVIDIA runtime here: the jobs ask Slurm for none (`--gres
none`), and each cell is what the probe says of a host without a GPU (cpu-only). The registry password is grepped
for in every file written and every output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import charliecloud_parts
import podman_parts
import pytest
import yaml
from charliecloud_parts import TlsRegistry
from fleet_parts import PASSWORD, USER, free_port
from slurm_cluster import SlurmCluster, accounting_missing
from slurm_cluster import missing as slurm_missing

from conftest import images_removed_after, run_cli

pytestmark = [pytest.mark.docker, pytest.mark.slurm]

JAX = {"name": "sr-jax", "jax": "0.4.35", "variant": "cpu"}  # the fleet tests' stack: about 140 MB of wheels
STACKS = ("sr-jax", "sr-image")
PARTITIONS = ("debug", "second")  # the cluster's two partitions (slurm_cluster.PARTITIONS)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRegistry]:
    part = TlsRegistry(tmp_path_factory.mktemp("registry"), free_port())
    part.start()
    yield part
    part.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    why = slurm_missing() or accounting_missing()
    if why:
        pytest.skip(f"no Slurm cluster can be started here: {why}")
    started = SlurmCluster(tmp_path_factory.mktemp("slurm"), accounting=True)
    try:
        started.start()
        yield started
    finally:
        started.stop()


def write_matrix(directory: Path, registry: TlsRegistry, stacks: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "matrix.yaml"
    matrix = {
        "registry": f"{registry.address}/envcheck",
        "defaults": {"base": "debian:bookworm-slim", "python": "3.11"},
        "stacks": stacks,
    }
    path.write_text(yaml.safe_dump(matrix, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def pushed(
    tmp_path_factory: pytest.TempPathFactory, docker_api: Any, registry: TlsRegistry
) -> Iterator[tuple[str, list[str]]]:
    """The stack built and pushed once for every runtime's test (its local image removed after): its
    REGISTRY/NAME@sha256 reference and what the build printed."""
    project = tmp_path_factory.mktemp("build")
    with images_removed_after(docker_api):
        matrix = write_matrix(project, registry, [JAX])
        built = run_cli("build", "-m", str(matrix), "--push", env=login(registry))
        assert built.returncode == 0, built.stderr[-3000:]
        reference = built.stdout.strip().splitlines()[-1]
        assert reference.startswith(f"{registry.address}/envcheck/{JAX['name']}@sha256:"), built.stdout
        yield reference, [built.stdout, built.stderr]


def login(registry: TlsRegistry) -> dict[str, str]:
    return {"DOCKER_CONFIG": str(registry.docker_config)}  # the build host's login, where the docker CLI keeps it


def run_on_slurm(
    project: Path, registry: TlsRegistry, cluster: SlurmCluster, reference: str, runtime: str, job_env: dict[str, str]
) -> list[str]:
    """render → submit --wait → collect for both stacks on both partitions; checks the records and the table and
    returns every output."""
    matrix = write_matrix(project, registry, [JAX, {"name": "sr-image", "image": reference}])
    out = project / "slurm jobs"
    partitions = [w for p in PARTITIONS for w in ("--partition", p)]
    rendered = run_cli("slurm", "render", "-m", str(matrix), "--runtime", runtime, "--gres", "none", *partitions,
                       "--time", "15", "-o", str(out), env=login(registry))  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert (out / "tasks.tsv").read_text().count(reference) == 4  # both stacks, both partitions: by digest

    submitted = run_cli("slurm", "submit", "--wait", "-o", str(out), env={**cluster.env, **job_env}, timeout=1500)
    assert submitted.returncode == 0, submitted.stderr
    arrays = [line.split("\t")[0] for line in submitted.stdout.splitlines()][:2]
    merged = next((out / "results").glob("slurm-*-merge.out")).read_text()
    problems = {p.name: p.read_text(errors="replace")[-1500:] for p in (out / "results").rglob("*.log")}
    for stack in STACKS:
        for partition in PARTITIONS:
            assert f"{stack} @ {partition}: cpu-only" in merged, (merged, problems)

    collected = run_cli("slurm", "collect", "-m", str(matrix), "-o", str(out), env=cluster.env)
    assert collected.returncode == 0, collected.stderr
    records = [json.loads(line) for line in (project / "results" / "records.jsonl").read_text().splitlines()]
    cells = {(r["stack"], r["host"]["label"]): r for r in records}
    assert set(cells) == {(s, p) for s in STACKS for p in PARTITIONS}
    for record in cells.values():
        assert record["digest"] == reference
        assert record["host"]["hostname"] == cluster.node and runtime in record["host"]["runtimes"]
        assert (record["probe"]["framework"], record["probe"]["framework_version"]) == ("jax", JAX["jax"])
        assert record["status"] == "cpu-only", record.get("error")
        assert record["run"]["gpu_requested"] is False  # --gres none: the job asked Slurm for no GPU
    page = (project / "docs" / "compatibility.md").read_text()
    header = next(line for line in page.splitlines() if line.startswith("| Stack "))
    assert "| debug: no GPU" in header and "| second: no GPU" in header, page  # a column per partition
    for job in arrays:  # each array's two tasks left their files where collect read them
        assert len([p for p in (out / "results" / job).iterdir() if (p / "status").exists()]) == 2
    return [rendered.stdout, rendered.stderr, submitted.stdout, submitted.stderr, collected.stdout, collected.stderr]


def password_absent(outputs: list[str], *roots: Path) -> None:
    """The registry password in no output and no file under the roots."""
    files = [p.read_text(errors="replace") for root in roots for p in root.rglob("*") if p.is_file()]
    for text in outputs + files:
        assert PASSWORD not in text


def test_podman_tasks_pull_by_digest_and_merge_into_a_column_per_partition(
    tmp_path: Path, registry: TlsRegistry, cluster: SlurmCluster, pushed: tuple[str, list[str]]
):
    why = podman_parts.missing()
    if why:
        pytest.skip(f"Podman cannot run here: {why}")
    reference, build_outputs = pushed
    root = tmp_path / "podman"
    podman = podman_parts.configure(root, registry.address)
    env = {**os.environ, **podman}
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    try:
        done = podman_parts.login(env, registry.address, USER, password_file)
        assert done.returncode == 0, done.stderr
        password_file.unlink()  # the user's own file: every other file is grepped below
        outputs = run_on_slurm(tmp_path / "project", registry, cluster, reference, "podman", podman)
    finally:
        podman_parts.reset(env, root)
    password_absent(build_outputs + outputs, tmp_path / "project")


def test_charliecloud_tasks_pull_by_digest_over_tls_and_run_the_probe(
    tmp_path: Path, registry: TlsRegistry, cluster: SlurmCluster, pushed: tuple[str, list[str]]
):
    why = charliecloud_parts.missing()
    if why:
        pytest.skip(f"Charliecloud cannot run here: {why}")
    reference, build_outputs = pushed
    job_env = charliecloud_parts.environment(registry, tmp_path / "charliecloud")  # the login in ch-image's variables
    outputs = run_on_slurm(tmp_path / "project", registry, cluster, reference, "charliecloud", job_env)
    password_absent(build_outputs + outputs, tmp_path / "project")
