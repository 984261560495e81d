"""Matrix runs that are fast on reruns and unbreakable: reuse, one-stack changes, --jobs, timeouts, Ctrl-C,
a second concurrent run, and clean. Real engine, real images (those the session's matrix_run built)."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
import yaml

from conftest import BROKEN, default_stacks, envcheck_containers, run_cli, write_matrix
from envcheck.engine.run import run_probe
from envcheck.results import store

pytestmark = pytest.mark.docker

HIDDEN = next(s for s in BROKEN if s["name"] == "t-hidden")


def test_warm_rerun_reuses_everything(matrix_run: dict[str, Any]):
    saved = {p.stem: json.loads(p.read_text())["timestamp"] for p in (matrix_run["root"] / "results").glob("*.json")}
    done = run_cli("matrix", "-m", str(matrix_run["matrix"]), "--json", "--ca-bundle", "auto", "--quick")
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert all(r["reused"] for r in results)
    assert {r["stack"]: r["timestamp"] for r in results} == saved
    assert "(5 reused unchanged)" in done.stderr  # how fast: benchmarks/matrix_speed.py measures it
    assert "building" not in done.stderr and "running the probe" not in done.stderr


def test_changing_one_stack_rebuilds_and_reruns_only_it(matrix_run: dict[str, Any]):
    data = yaml.safe_load(matrix_run["matrix"].read_text())
    marker = str(time.time())
    for stack in data["stacks"]:
        if stack["name"] == "t-hidden":
            stack["env"] = {"CUDA_VISIBLE_DEVICES": "-1", "TF_ENVCHECK_CHANGE": marker}
    matrix_run["matrix"].write_text(yaml.safe_dump(data))
    try:
        done = run_cli("matrix", "-m", str(matrix_run["matrix"]), "--json", "--ca-bundle", "auto", "--quick")
        assert done.returncode == 0, done.stderr[-2000:]
        results = {r["stack"]: r for r in json.loads(done.stdout)}
        assert [n for n, r in results.items() if not r.get("reused")] == ["t-hidden"]
        assert results["t-hidden"]["build"]["cached"] is False
        assert results["t-hidden"]["probe"]["env"]["TF_ENVCHECK_CHANGE"] == marker
    finally:
        data["stacks"] = [s if s["name"] != "t-hidden" else HIDDEN for s in data["stacks"]]
        matrix_run["matrix"].write_text(yaml.safe_dump(data))


def test_parallel_builds(tmp_path: Path, matrix_run: dict[str, Any], no_leftover_containers: None):
    stacks = [{**HIDDEN, "name": f"t-jobs-{i}", "env": {"TF_ENVCHECK_TEST_JOB": str(i)}} for i in (1, 2)]
    done = run_cli(
        "matrix", "-m", str(write_matrix(tmp_path, stacks)), "--json", "--ca-bundle", "auto", "--quick", "--jobs", "2"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert [(r["stack"], r["status"], r["build"]["cached"]) for r in results] == [
        ("t-jobs-1", "cpu-only", False),
        ("t-jobs-2", "cpu-only", False),
    ]
    assert [r["probe"]["env"]["TF_ENVCHECK_TEST_JOB"] for r in results] == ["1", "2"]


def test_hung_container_is_killed_at_the_run_timeout(docker_api: Any, no_leftover_containers: None):
    outcome = run_probe(docker_api, "debian:bookworm-slim", "t-hang", timeout=3, command=["sleep", "600"])
    assert outcome.timed_out and outcome.probe is None
    assert outcome.error == "the probe was killed after 3s (--run-timeout)"


def test_slow_probe_is_recorded_as_timeout(tmp_path: Path, matrix_run: dict[str, Any], no_leftover_containers: None):
    done = run_cli(
        "run",
        "tf-2.15-cpu",
        "-m",
        str(write_matrix(tmp_path, default_stacks("tf-2.15-cpu"))),
        "--json",
        "--ca-bundle",
        "auto",
        "--run-timeout",
        "1",
    )
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["status"] == "timeout" and "--run-timeout" in result["error"]
    assert result["run"]["timed_out"] is True


class Output:
    """A running process's stdout and stderr, read as they come (a thread each: the process never blocks on a full
    pipe), and whether stderr has shown the awaited line yet."""

    def __init__(self, process: subprocess.Popen, awaited: str | None = None) -> None:
        self.process = process
        self.awaited = awaited
        self.seen = threading.Event()
        self.out: list[str] = []
        self.err: list[str] = []
        self.threads = [
            threading.Thread(target=self.read, args=(process.stdout, self.out), daemon=True),
            threading.Thread(target=self.read, args=(process.stderr, self.err), daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            if lines is self.err and self.awaited is not None and self.awaited in line:
                self.seen.set()

    def saw(self, guard: float) -> bool:
        """Whether the awaited line came: waits for it, or for the process to end first (then False)."""
        deadline = time.monotonic() + guard  # a hang guard, far past anything a passing run takes
        while not self.seen.wait(timeout=0.2) and time.monotonic() < deadline:
            if self.process.poll() is not None:
                for thread in self.threads:
                    thread.join()
                break
        return self.seen.is_set()

    def finish(self, guard: float = 600) -> tuple[str, str]:
        self.process.wait(timeout=guard)
        for thread in self.threads:
            thread.join()
        return "".join(self.out), "".join(self.err)


RUNNING_IN = re.compile(r"---> Running in ([0-9a-f]{12,64})")


def pause_a_build_step(api: Any, build_log: Path, process: subprocess.Popen) -> str | None:
    """Freeze (docker pause) the first step of a stack's build seen running, and say which container it is: the
    classic builder's log names each RUN step's container (" ---> Running in ID"). None if the build ended before a
    step could be caught running."""
    import docker.errors

    done_with: set[str] = set()
    while process.poll() is None:
        log = build_log.read_text(errors="replace") if build_log.exists() else ""
        for container in (c for c in RUNNING_IN.findall(log) if c not in done_with):
            try:
                status = api.inspect_container(container)["State"]["Status"]
                if status == "running":
                    api.pause(container)
                    return container
            except docker.errors.NotFound:
                status = "removed"
            except docker.errors.APIError:
                continue  # it ended between the two calls: seen as such next time round
            if status != "created":  # created: it starts in a moment, so it is looked at again
                done_with.add(container)
        time.sleep(0.05)  # polls the log and the daemon for the event; it never stands in for one
    return None


def test_build_timeout_stops_the_build(tmp_path: Path, docker_api: Any):
    """A build still going at --build-timeout is stopped. The test makes sure it is still going, whatever the layer
    or package cache: it freezes the first build step it sees running and keeps it frozen until envcheck has
    stopped, so the build is silent from then on and cannot finish. --force --no-cache: every RUN step runs in a
    container (none is taken from the layer cache)."""
    import docker.errors

    matrix = write_matrix(tmp_path, [{"name": "t-slow-build", "tensorflow": "2.16.2", "variant": "cpu"}])
    command = ["matrix", "-m", str(matrix), "--json", "--ca-bundle", "auto", "--build-timeout", "10"]
    process = subprocess.Popen(
        [sys.executable, "-m", "envcheck", *command, "--force", "--no-cache"], stdout=PIPE, stderr=PIPE, text=True
    )
    output = Output(process)
    paused = None
    try:
        paused = pause_a_build_step(docker_api, tmp_path / "build" / "t-slow-build" / "build.log", process)
        stdout, stderr = output.finish(guard=1800)  # a hang guard: envcheck gives up 10 s into the build
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if paused:  # the daemon kills and removes it when envcheck drops the build; if not, the test does
            with contextlib.suppress(docker.errors.APIError):
                docker_api.unpause(paused)
            with contextlib.suppress(docker.errors.APIError):
                docker_api.remove_container(paused, force=True)
    assert process.returncode == 1, f"step paused: {paused}\n{stderr[-2000:]}"
    result = json.loads(stdout)[0]
    assert result["status"] == "timeout" and result["build"]["timed_out"] is True
    assert "--build-timeout" in (tmp_path / "build" / "t-slow-build" / "build.log").read_text()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_keeps_finished_results_and_leaves_no_container(
    tmp_path: Path, matrix_run: dict[str, Any], docker_api: Any, signum: int, code: int
):
    matrix = write_matrix(tmp_path, [*default_stacks("tf-2.15-cpu"), HIDDEN])
    process = subprocess.Popen(
        [sys.executable, "-m", "envcheck", "matrix", "-m", str(matrix), "--ca-bundle", "auto"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a terminal's foreground job has it: a test run started in the background (CI under `nohup ... &`)
        # would otherwise hand its ignored SIGINT down, and Python keeps an inherited SIG_IGN.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Builds run in parallel, so either stack may be probed first: wait until one result is saved and the other
    # stack's probe is running.
    names = {"tf-2.15-cpu", "t-hidden"}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        saved = {n for n in names if (tmp_path / "results" / f"{n}.json").exists()}
        running = {c["Labels"].get("envcheck.stack") for c in envcheck_containers(docker_api)}
        if len(saved) == 1 and (names - saved) & running:
            break
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("no moment with one result saved and the other stack's probe running")
    process.send_signal(signum)  # Ctrl-C, or what CI systems and Kubernetes send on cancel
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr[-2000:]
    assert ("interrupted" if signum == signal.SIGINT else "terminated") in stderr
    assert envcheck_containers(docker_api) == []
    ((finished,), (cut,)) = (saved, names - saved)
    # both stacks run on the CPU on any host (a CPU-only build; GPUs hidden by CUDA_VISIBLE_DEVICES=-1)
    assert json.loads((tmp_path / "results" / f"{finished}.json").read_text())["status"] == "cpu-only"
    assert not (tmp_path / "results" / f"{cut}.json").exists()
    assert f"| {finished} " in (tmp_path / "docs" / "compatibility.md").read_text()
    assert not list((tmp_path / "results").glob(".*.tmp")) and not list((tmp_path / "docs").glob(".*.tmp"))


def test_two_runs_at_once_do_not_interleave(tmp_path: Path, matrix_run: dict[str, Any], no_leftover_containers: None):
    """Two runs started together on one results directory take turns. The test holds the results lock (as a
    third run would) while both start, so both must wait and say so; once it lets go, one runs the stack and the
    other, after it, reuses that result."""
    matrix = write_matrix(tmp_path, default_stacks("tf-2.15-cpu"))
    command = [sys.executable, "-m", "envcheck", "matrix", "-m", str(matrix), "--ca-bundle", "auto", "--json"]
    runs: list[subprocess.Popen] = []
    try:
        with store.lock(tmp_path / "results"):
            runs = [subprocess.Popen([*command, "--quick"], stdout=PIPE, stderr=PIPE, text=True) for _ in "ab"]
            outputs = [Output(run, "waiting for it to finish") for run in runs]
            waited = [output.saw(guard=600) for output in outputs]
            assert waited == [True, True], [output.err[-20:] for output in outputs]
        finished = [output.finish() for output in outputs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    assert [p.returncode for p in runs] == [0, 0], finished
    results = [json.loads(out)[0] for out, _ in finished]
    assert sorted(bool(r.get("reused")) for r in results) == [False, True]  # the second reused the first's
    assert json.loads((tmp_path / "results" / "tf-2.15-cpu.json").read_text())["status"] == "cpu-only"


def test_clean_removes_only_what_its_own_matrix_made(tmp_path: Path, matrix_run: dict[str, Any], docker_api: Any):
    """Another project's matrix on the same daemon (a one-stack matrix, cleaned with --package-cache as a test
    once did on a user's daemon): its clean removes none of this run's images, and says what it kept."""
    images = [r["image"] for r in matrix_run["results"].values()]
    other = write_matrix(tmp_path, default_stacks("tf-2.15-cpu"))
    (tmp_path / "build" / "old-stack").mkdir(parents=True)
    env = {"ENVCHECK_PACKAGE_CACHE_DIR": str(tmp_path / "package-cache")}
    done = run_cli("clean", "-m", str(other), "--package-cache", env=env)
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stdout.splitlines() if line.startswith("removing image")]
    assert re.search(r"kept \d+ images of \d+ other matrix files", done.stderr)
    assert all(docker_api.inspect_image(image) for image in images)
    assert not (tmp_path / "build" / "old-stack").exists()  # its own build directory's leftovers do go


def test_clean_dry_run_lists_its_matrixs_stale_images_and_keeps_them(matrix_run: dict[str, Any], docker_api: Any):
    """The run's own matrix without its CUDA stack: that image is stale for it; the CPU one is current."""
    original = matrix_run["matrix"].read_text()
    data = yaml.safe_load(original)
    data["stacks"] = [s for s in data["stacks"] if s["name"] != "tf-2.15-cuda12"]
    matrix_run["matrix"].write_text(yaml.safe_dump(data))
    try:
        done = run_cli("clean", "-m", str(matrix_run["matrix"]), "--dry-run")
    finally:
        matrix_run["matrix"].write_text(original)
    assert done.returncode == 0, done.stderr
    listed = done.stdout.splitlines()
    cuda_image = matrix_run["results"]["tf-2.15-cuda12"]["image"]
    assert any(cuda_image in line and line.startswith("would remove image") for line in listed)
    assert not any(matrix_run["results"]["tf-2.15-cpu"]["image"] in line for line in listed)
    assert any(line.rstrip().endswith("GB)") for line in listed)
    assert docker_api.inspect_image(cuda_image)  # nothing removed


def test_unreachable_daemon_is_exit_3_for_matrix(tmp_path: Path):
    matrix = write_matrix(tmp_path, default_stacks("tf-2.15-cpu"))
    done = run_cli("matrix", "-m", str(matrix), env={"DOCKER_HOST": f"unix://{tmp_path}/stopped.sock"})
    assert done.returncode == 3 and "Cannot reach the Docker daemon" in done.stderr
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").glob("*.json"))


SANDBOX_CHECK = (
    "echo interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '); "
    "echo routes: $(tail -n +2 /proc/net/route | wc -l); "
    "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; "
    "touch /opt/written 2>&1 || true; touch /tmp/written && echo tmp-writable"
)


@pytest.mark.parametrize("sandbox", [True, False])
def test_probe_containers_run_with_least_privilege(docker_api: Any, no_leftover_containers: None, sandbox: bool):
    check = ["sh", "-c", SANDBOX_CHECK]
    outcome = run_probe(docker_api, "debian:bookworm-slim", "t-sandbox", timeout=60, command=check, sandbox=sandbox)
    lines = outcome.stdout.splitlines()
    assert "tmp-writable" in lines
    if sandbox:
        # No network (only loopback, no route), no capabilities, no privilege escalation, a read-only root.
        assert "interfaces: lo" in lines and "routes: 0" in lines
        assert "CapEff:\t0000000000000000" in lines and "NoNewPrivs:\t1" in lines
        assert "touch: cannot touch '/opt/written': Read-only file system" in lines
    else:  # a stack with `sandbox: false` gets Docker's defaults
        assert "interfaces: eth0 lo" in lines and "NoNewPrivs:\t0" in lines
        assert not any("Read-only" in line for line in lines)


def test_run_with_a_pattern_of_several_stacks_prints_one_json_array(matrix_run: dict[str, Any]):
    done = run_cli("run", "t-*", "-m", str(matrix_run["matrix"]), "--json", "--ca-bundle", "auto", "--quick")
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert isinstance(results, list) and sorted(r["stack"] for r in results) == ["t-cudnn9", "t-hidden", "t-plain"]
