"""The matrix on Slurm (issue 28): `envcheck slurm render|submit|collect`.

Fast tests (no cluster): the scripts of every runtime pass shellcheck and are run by bash with hostile values in
every path and the registry; flags are refused by Slurm's documented shapes; sacct's --parsable2 lines (written
from sacct(1)) and `scontrol show job` lines (from a real Slurm 22.05) become the right cells; what a task wrote is
validated. Tests marked `slurm` start a real single-node cluster (tests/slurm_cluster.py) and submit through
`envcheck slurm submit` an array whose runtime is a test stand-in (no GPU, no container runtime here): a task that
writes a probe document, one that fails, one that times out, one cancelled, and `submit --wait` cancelled by
SIGTERM.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster, accounting_missing, missing

from conftest import REPO, run_cli
from envcheck import cli, commands
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import load_matrix
from envcheck.inputs.options import SlurmCollectOptions, SlurmRenderOptions
from envcheck.jobs.slurm import accounting, collect, layout, runtimes, submit
from envcheck.jobs.slurm import render as rendering
from envcheck.probe import parse_output

DATA = REPO / "tests" / "data"
SLURM_DATA = DATA / "slurm"
RECORDED = json.loads((DATA / "probe-jax0.10.2-cuda12-no-gpu-runtime.json").read_text())
REGISTRY = "registry.example.com:5000/team/envcheck"
PASSWORD = "s3cret-Registry-pass"  # a docker config's registry password: never in anything render writes
HOSTILE_DIRS = ["${{ github.token }}", "$(touch PWNED)", 'it\'s "quoted"', "with space", "`touch PWNED` ${HOME} [x]*?"]


def write_matrix(directory: Path, names: list[str], extra: str = "") -> Path:
    """A matrix of JAX stacks (the recorded probe document is JAX 0.10.2 on Python 3.11)."""
    directory.mkdir(parents=True, exist_ok=True)
    stacks = "".join(f'  - name: {n}\n    jax: "0.10.2"\n' for n in names)
    path = directory / "matrix.yaml"
    path.write_text(f'{extra}defaults:\n  base: debian:bookworm-slim\n  python: "3.11"\nstacks:\n{stacks}')
    return path


def shellcheck() -> str:
    found = shutil.which("shellcheck")
    if found is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck): the scripts cannot be linted here")
    return found


def render(matrix: Path, out: Path, **options: object) -> dict[str, str]:
    commands.slurm_render(
        SlurmRenderOptions(matrix=str(matrix), registry=REGISTRY, by_tag=True, output=str(out), **options)  # type: ignore[arg-type]
    )
    return {p.name: p.read_text() for p in out.iterdir() if p.is_file()}


# A runtime that runs no container: pull fails for stacks named *-nopull; run prints the recorded probe document,
# exits 3 without a document for *-crash, or sleeps (*-slow, *-cancel). Only these tests define it.
FAKE = runtimes.Runtime(
    pull='if [ "${stack%-nopull}" != "$stack" ]; then echo "manifest unknown" >&2; false; fi',
    run=f'bash "$PROBE_FILES/../fake-task.sh" "$stack" "$image" {runtimes.MOUNTS} {runtimes.PROBE}',
    mount='--mount="$PROBE_FILES"',
)
FAKE_TASK = """#!/bin/bash
case "$1" in
  *-fail) kill -KILL "$PPID" ;;
  *-crash) echo "Segmentation fault (core dumped)" >&2; exit 3 ;;
  *-slow|*-cancel) sleep 600 ;;
  *) echo "a framework line on stderr" >&2; cat {recorded} ;;
esac
"""


@pytest.fixture
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(runtimes.RUNTIMES, "fake", FAKE)
    monkeypatch.setattr(rendering, "ENVCHECK_COMMAND", (sys.executable, "-m", "envcheck"))


def write_fake_task(out: Path) -> None:
    recorded = out / "recorded-probe.json"
    recorded.write_text(json.dumps(RECORDED["probe"]) + "\n")
    (out / "fake-task.sh").write_text(FAKE_TASK.format(recorded=shlex.quote(str(recorded))))


# -- render -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["apptainer", "podman", "enroot", "charliecloud"])
def test_every_runtimes_scripts_pass_shellcheck_and_name_its_gpu_option(tmp_path: Path, runtime: str):
    matrix = write_matrix(tmp_path, ["jax-a", "jax-b"], extra="")
    files = render(matrix, tmp_path / "out", runtime=runtime, partitions=("a100", "v100"), account="proj-1")
    lint = subprocess.run(
        [shellcheck(), "--shell=bash", *(str(tmp_path / "out" / n) for n in (layout.TASK_SCRIPT, layout.MERGE_SCRIPT))],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    script = files[layout.TASK_SCRIPT]
    gpu = {
        "apptainer": "apptainer exec --nv",
        "podman": "gpus=(--device nvidia.com/gpu=all)",
        "enroot": "srun --ntasks=1 --container-image=",
        "charliecloud": "ch-fromhost --nvidia",
    }[runtime]
    assert gpu in script
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH --account=proj-1" in script
    assert "#SBATCH --time=0:30:00" in script
    rows = [line.split("\t") for line in files[layout.TABLE].splitlines()]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("0", "jax-a", "a100"),
        ("1", "jax-b", "a100"),
        ("2", "jax-a", "v100"),
        ("3", "jax-b", "v100"),
    ]
    image = rows[0][3]
    expected = {
        "apptainer": f"docker://{REGISTRY}/jax-a:",
        "podman": f"{REGISTRY}/jax-a:",
        "enroot": "docker://registry.example.com:5000#team/envcheck/jax-a:",
        "charliecloud": f"{REGISTRY}/jax-a:",
    }[runtime]
    assert image.startswith(expected), image
    manifest = json.loads(files[layout.MANIFEST])
    assert [(a["partition"], a["indices"]) for a in manifest["arrays"]] == [("a100", "0-1"), ("v100", "2-3")]
    assert set((tmp_path / "out" / "probe").iterdir())  # the probe's files, for images envcheck did not render


# Each runtime's commands, as stand-ins on PATH record them (one argument per line, then a blank line); the
# commands that run the probe print the recorded probe document.
STUB = """#!/bin/bash
{{ printf '%s\\n' "$(basename "$0")" "$@"; echo; }} >> {log}
case "$(basename "$0")" in podman) [ "$1" = run ] && cat {recorded} ;; apptainer) [ "$1" = exec ] && cat {recorded} ;;
  srun|ch-run) cat {recorded} ;; esac
exit 0
"""
RUNTIME_COMMANDS = {
    "apptainer": [
        ["apptainer", "pull", "--force", "WORK/image.sif", "docker://IMAGE"],
        ["apptainer", "exec", "--nv", "--containall", "--env", "HOME=/tmp", "--bind=PROBE:/opt/envcheck:ro",
         "WORK/image.sif", "python3", "/opt/envcheck/probe.py", "--framework", "auto", "--quick"],
    ],
    "podman": [
        ["podman", "pull", "--quiet", "IMAGE"],
        ["podman", "run", "--rm", "--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=2", "--network=none",
         "--cap-drop=ALL", "--security-opt=no-new-privileges", "--read-only", "--tmpfs=/tmp", "--env=HOME=/tmp",
         "--pids-limit=4096", "--volume=PROBE:/opt/envcheck:ro", "IMAGE", "python3", "/opt/envcheck/probe.py",
         "--framework", "auto", "--quick"],
    ],
    "enroot": [
        ["enroot", "import", "--output", "WORK/image.sqsh", "docker://registry.example.com:5000#IMAGE_PATH"],
        ["srun", "--ntasks=1", "--container-image=WORK/image.sqsh", "--no-container-mount-home",
         "--container-mounts=PROBE:/opt/envcheck:ro", "python3", "/opt/envcheck/probe.py", "--framework", "auto",
         "--quick"],
    ],
    "charliecloud": [
        ["ch-image", "--no-cache", "--storage", "WORK/storage", "pull", "IMAGE"],
        ["ch-convert", "-i", "ch-image", "-o", "dir", "IMAGE", "WORK/image"],
        ["ch-fromhost", "--nvidia", "WORK/image"],
        ["ch-run", "--no-home", "--private-tmp", "--unset-env=*", "--set-env", "--set-env=HOME=/tmp",
         "--bind=WORK/probe:/opt/envcheck", "WORK/image", "--", "python3", "/opt/envcheck/probe.py", "--framework",
         "auto", "--quick"],
    ],
}  # fmt: skip


def run_with_stand_ins(tmp_path: Path, out: Path, gpus: str | None) -> tuple[subprocess.CompletedProcess, list]:
    """Task 0 of what render wrote into `out`, run by bash with stand-ins of every runtime's commands on PATH
    (SLURM_JOB_GPUS set to `gpus` unless None); its result and the commands they recorded, with the task's work
    directory written WORK and the probe's files PROBE."""
    bin_dir, log = tmp_path / "bin", tmp_path / "commands.log"
    bin_dir.mkdir()
    recorded = tmp_path / "recorded.json"
    recorded.write_text(json.dumps(RECORDED["probe"]) + "\n")
    for name in ("apptainer", "podman", "enroot", "srun", "ch-image", "ch-convert", "ch-fromhost", "ch-run"):
        (bin_dir / name).write_text(STUB.format(log=shlex.quote(str(log)), recorded=shlex.quote(str(recorded))))
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
        "SLURM_ARRAY_TASK_ID": "0",
        "SLURM_ARRAY_JOB_ID": "5",
        "SLURM_JOB_GPUS": gpus or "",
    }
    if gpus is None:
        del env["SLURM_JOB_GPUS"]
    done = subprocess.run(["bash", str(out / layout.TASK_SCRIPT)], env=env, capture_output=True, text=True)
    found = re.search(re.escape(str(tmp_path)) + r"/envcheck\.[A-Za-z0-9]{6}", log.read_text())
    work = found[0] if found else "WORK"  # podman keeps no file of its own there
    ran = [block.split("\n") for block in log.read_text().strip("\n").split("\n\n")]
    return done, [[w.replace(work, "WORK").replace(str(out / "probe"), "PROBE") for w in c] for c in ran]


@pytest.mark.parametrize("runtime", list(RUNTIME_COMMANDS))
def test_what_each_runtime_runs_for_an_image_stack(tmp_path: Path, runtime: str):
    """An image stack (the probe's files mounted, its own Python), by digest, with two GPUs from Slurm: the
    commands the task script runs, read from stand-ins of the runtime's commands."""
    image = "registry.example.com:5000/team/img@sha256:" + "a" * 64
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(f"stacks:\n  - name: img\n    image: {image}\n")
    out = tmp_path / "out"
    render(matrix, out, runtime=runtime, quick=True)
    done, shown = run_with_stand_ins(tmp_path, out, "0,2")
    assert done.returncode == 0, done.stderr
    path = image.split("/", 1)[1]
    expected = [
        [re.sub(r"\bIMAGE\b", image, w.replace("IMAGE_PATH", path)) for w in c] for c in RUNTIME_COMMANDS[runtime]
    ]  # IMAGE as a word: CH_IMAGE_* stays
    if runtime == "apptainer":
        expected[0][-1] = f"docker://{image}"
    assert shown == expected
    status = collect.status_file((out / "results" / "5" / "0" / "status").read_text())
    assert (status["stage"], status["exit"]) == ("probe", "0")
    assert not list(tmp_path.glob("envcheck.*"))  # the task's work directory is removed


@pytest.mark.parametrize(
    ("options", "gpus", "devices"),
    [
        ({}, None, ["--device", "nvidia.com/gpu=all"]),  # Slurm named no GPU: every GPU the node's CDI spec has
        ({}, "1", ["--device", "nvidia.com/gpu=1"]),
        ({"gpus_per_task": 2}, "0,3", ["--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=3"]),
        ({"gres": "none"}, None, []),  # a CPU partition: no CDI device, which would be unresolvable there
    ],
)
def test_the_cdi_devices_a_podman_task_asks_for(tmp_path: Path, options: dict, gpus: str | None, devices: list):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text("stacks:\n  - name: img\n    image: registry.example.com/img:1\n")
    render(matrix, tmp_path / "out", runtime="podman", **options)
    done, shown = run_with_stand_ins(tmp_path, tmp_path / "out", gpus)
    assert done.returncode == 0, done.stderr
    run = shown[1]
    assert run[:3] == ["podman", "run", "--rm"] and run[3 : 3 + len(devices) + 1] == [*devices, "--network=none"]


def test_gpus_per_task_and_gres_and_time(tmp_path: Path):
    matrix = write_matrix(tmp_path, ["jax-a"])
    script = render(matrix, tmp_path / "o1", gpus_per_task=2, time="1-00:00")[layout.TASK_SCRIPT]
    assert "#SBATCH --gpus-per-task=2" in script and "--gres" not in script and "#SBATCH --time=1-00:00" in script
    script = render(matrix, tmp_path / "o2", gres="gpu:a100:1")[layout.TASK_SCRIPT]
    assert "#SBATCH --gres=gpu:a100:1" in script


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--partition", "a100;rm -rf /"], "--partition"),
        (["--partition", "a100\n#SBATCH --uid=0"], "--partition"),
        (["--partition", "a", "--partition", "a"], "--partition"),
        (["--account", "proj 1"], "--account"),
        (["--time", "30min"], "--time"),
        (["--time", "0:30:00\n"], "--time"),
        (["--time", "1-2-3"], "--time"),
        (["--gres", "gpu:1 --uid=0"], "--gres"),
        (["--gres", "gpu:1,mps:100"], "--gres"),
        (["-o", "out%j"], "-o"),
        (["-o", "a:b"], "-o"),
        (["--results", "r,x"], "--results"),
        (["--gres", "gpu:1", "--gpus-per-task", "1"], "--gpus-per-task"),
        (["--runtime", "docker"], "--runtime"),
    ],
)
def test_flags_that_slurm_would_read_otherwise_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], flag: str
):
    matrix = write_matrix(tmp_path, ["jax-a"])
    with pytest.raises(SystemExit) if flag in ("--gpus-per-task", "--runtime") else contextlib.nullcontext():
        code = cli.main(["slurm", "render", "--image-tag", "--registry", REGISTRY, *args, "-m", str(matrix)])
        assert code == 2
    stderr = capsys.readouterr().err
    assert flag in stderr and "Traceback" not in stderr, stderr
    assert not (tmp_path / "slurm").exists() and not list(tmp_path.glob("out*"))


@pytest.mark.parametrize("value", ["30", "30:00", "0:30:00", "2-0", "2-12:00", "2-12:00:30"])
def test_every_documented_time_format_is_taken(value: str):
    rendering.check(SlurmRenderOptions(time=value))


def test_no_registry_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    matrix = write_matrix(tmp_path, ["jax-a"])
    assert cli.main(["slurm", "render", "--image-tag", "-m", str(matrix)]) == 2
    assert "slurm render: no registry" in capsys.readouterr().err


def test_hostile_paths_reach_the_scripts_as_data_only(tmp_path: Path, fake_runtime: None):
    """Each hostile directory holds the matrix, the rendered directory and the results; bash runs the task
    script as Slurm would (its environment), and nothing in the names runs."""
    for i, name in enumerate(HOSTILE_DIRS):
        base = tmp_path / f"h{i}" / name
        matrix = write_matrix(base, ["jax-a"])
        out = base / "render dir"
        render(matrix, out, runtime="fake", partitions=("debug",) if i % 2 else ())  # none: the default's "-"
        write_fake_task(out)
        lint = subprocess.run(
            [shellcheck(), "--shell=bash", str(out / layout.TASK_SCRIPT), str(out / layout.MERGE_SCRIPT)],
            capture_output=True,
            text=True,
        )
        assert lint.returncode == 0, lint.stdout
        env = {
            **os.environ,
            "SLURM_ARRAY_TASK_ID": "0",
            "SLURM_ARRAY_JOB_ID": "77",
            "SLURM_JOB_ID": "78",
            "SLURM_JOB_PARTITION": "debug",
            "SLURMD_NODENAME": "node-1",
        }
        done = subprocess.run(["bash", str(out / layout.TASK_SCRIPT)], cwd=tmp_path, env=env, capture_output=True)
        assert done.returncode == 0, done.stderr
        written = out / "results" / "77" / "0"
        status = collect.status_file((written / "status").read_text())
        assert status["image"] == collect.read_table(out)[0].image
        assert {k: v for k, v in status.items() if k != "image"} == {
            "stack": "jax-a",
            "partition": "debug",
            "node": "node-1",
            "job": "78",
            "stage": "probe",
            "exit": "0",
        }
        assert parse_output((written / "probe.out").read_text()) == RECORDED["probe"]
    assert not list(tmp_path.rglob("PWNED")) and not (Path.cwd() / "PWNED").exists()


def test_stack_names_that_sanitise_alike_stay_apart_in_every_task(tmp_path: Path, fake_runtime: None):
    """The names k8s and CI are tested with (tests/test_jobs_hostile.py): each task runs its own row."""
    names = ["tf-2.15", "tf-2-15", "tf_2.15", "tf-2--15", "a-b", "a", "x" * 100]
    matrix = write_matrix(tmp_path, names)
    out = tmp_path / "out"
    render(matrix, out, runtime="fake", partitions=("p", "p-2"))
    write_fake_task(out)
    table = collect.read_table(out)
    assert len(table) == 2 * len(names) and len({(t.stack, t.partition) for t in table.values()}) == len(table)
    for index, task in table.items():
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(index), "SLURM_ARRAY_JOB_ID": "3"}
        done = subprocess.run(["bash", str(out / layout.TASK_SCRIPT)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        status = collect.status_file((out / "results" / "3" / str(index) / "status").read_text())
        assert (status["stack"], status["partition"], status["image"]) == (task.stack, task.partition, task.image)


def test_the_dry_run_is_a_script_bash_accepts(tmp_path: Path):
    matrix = write_matrix(tmp_path / "with space", ["jax-a"])
    out = tmp_path / "with space" / "o"
    render(matrix, out, partitions=("a100", "v100"))
    done = run_cli("slurm", "submit", "--dry-run", "-o", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("JOB1=$(sbatch --parsable --array=0 --partition=a100 ")
    assert '"--dependency=afterany:$JOB1:$JOB2"' in lines[2] and lines[2].endswith('"$JOB1" "$JOB2"')
    (tmp_path / "dry.sh").write_text("\n".join(lines) + "\n")
    lint = subprocess.run([shellcheck(), "--shell=bash", str(tmp_path / "dry.sh")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def test_no_registry_password_in_anything_render_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(f"robot:{PASSWORD}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {"registry.example.com:5000": {"auth": auth}}}))
    matrix = write_matrix(tmp_path, ["jax-a"], extra=f"registry: {REGISTRY}\n")
    out = tmp_path / "out"
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    for runtime in ("apptainer", "podman", "enroot", "charliecloud"):
        assert (
            cli.main(["slurm", "render", "--image-tag", "--runtime", runtime, "-o", str(out), "-m", str(matrix)]) == 0
        )
        said = capsys.readouterr()
        for text in [said.out, said.err, *(p.read_text() for p in out.rglob("*") if p.is_file())]:
            assert PASSWORD not in text and auth not in text


def test_submit_records_the_ids_and_passes_them_to_the_merge_job(tmp_path: Path):
    matrix = write_matrix(tmp_path, ["jax-a", "jax-b"])
    out = tmp_path / "out"
    render(matrix, out, partitions=("a100", "v100"))
    ran: list[list[str]] = []

    def sbatch(command: list[str]) -> subprocess.CompletedProcess:
        ran.append(command)
        return subprocess.CompletedProcess(command, 0, f"{100 + len(ran)};cluster1\n", "")

    submitted = submit.submit(out, sbatch)
    assert [a["job"] for a in submitted["arrays"]] == ["101", "102"] and submitted["merge"] == "103"
    assert ran[0][:4] == ["sbatch", "--parsable", "--array=0-1", "--partition=a100"]
    assert ran[2][2] == "--dependency=afterany:101:102" and ran[2][-2:] == ["101", "102"]
    assert json.loads((out / layout.SUBMITTED).read_text())["merge"] == "103"
    with pytest.raises(ConfigError, match="not a job id"):
        submit.submit(out, lambda c: subprocess.CompletedProcess(c, 0, "Submitted batch job 5\n", ""))
    with pytest.raises(ConfigError, match="Invalid partition"):
        submit.submit(out, lambda c: subprocess.CompletedProcess(c, 1, "", "sbatch: error: Invalid partition name"))


# -- Slurm's words → cells ----------------------------------------------------------------------------------------


def data_lines(name: str) -> str:
    return "".join(line for line in (SLURM_DATA / name).read_text().splitlines(True) if not line.startswith("#"))


def test_sacct_parsable2_lines_become_one_state_per_task():
    states = {(s.job, s.index): s for s in accounting.parse_sacct(data_lines("sacct-parsable2.txt"))}
    assert sorted(states) == [("4242", i) for i in range(6)] + [("4250", i) for i in (6, 7, 8, 9)]
    assert states[("4242", 1)].state == "FAILED" and states[("4242", 1)].exit_code == 3
    assert states[("4242", 3)].signal == 125 and states[("4242", 3)].node == "gpu-a100-03"
    assert states[("4242", 5)].state == "CANCELLED" and states[("4242", 5)].by == "1000"
    pending = states[("4250", 7)]
    assert pending.state == "PENDING" and pending.node is None and pending.reason == "Resources"
    assert pending.partition == "v100" and pending.submitted == datetime.datetime(2026, 12, 7, 10, 0)


def test_sacct_lines_of_a_real_slurm_with_slurmdbd():
    states = {s.index: s for s in accounting.parse_sacct(data_lines("sacct-22.05-slurmdbd.txt"))}
    assert {i: (s.state, s.exit_code, s.elapsed) for i, s in states.items()} == {
        0: ("COMPLETED", 0, "00:00:00"),
        1: ("FAILED", 3, "00:00:00"),
        2: ("TIMEOUT", 0, "00:01:27"),  # its batch step's CANCELLED (the limit's kill) is a step: not the task's
        3: ("COMPLETED", 0, "00:00:00"),
    }
    assert {(s.job, s.node, s.partition) for s in states.values()} == {("1", "vm", "debug")}


def test_scontrol_lines_of_a_real_slurm_become_the_same_states():
    states = {s.index: s for s in accounting.parse_scontrol(data_lines("scontrol-22.05-array.txt"))}
    assert {i: (s.state, s.exit_code, s.signal) for i, s in states.items()} == {
        0: ("COMPLETED", 0, 0),
        1: ("FAILED", 3, 0),
        2: ("CANCELLED", 0, 15),
    }
    assert states[1].reason == "NonZeroExitCode" and states[1].node == "vm" and states[1].partition == "debug"
    (pending,) = accounting.parse_scontrol(data_lines("scontrol-22.05-pending.txt"))
    assert (pending.state, pending.reason, pending.node) == ("PENDING", "Resources", None)


def test_odd_accounting_lines_are_skipped_not_trusted():
    odd = "\n".join(
        [
            "garbage",
            "1_2|COMPLETED|0:0",
            "x_1|FAILED|1:0|n|p|00:00:01|2026-01-01T00:00:00|None",
            "5_[1-999999]|PENDING|0:0|None assigned|p|00:00:00|2026-01-01T00:00:00|Resources",
            "6_1|FAILED|1:0|no de\x1b[2J|p;rm|00:00:01|never|why\x1b]0;owned\x07",
        ]
    )
    (state,) = accounting.parse_sacct(odd)
    assert state.node is None and state.partition is None and state.submitted is None
    assert "\x1b" not in (state.reason or "") and "\x07" not in (state.reason or "")


def a_task(index: int = 0, stack: str = "jax-a") -> layout.Task:
    return layout.Task(index, stack, "a100", f"{REGISTRY}/{stack}@sha256:{'0' * 64}", "jax", "python", False)


def stack(name: str = "jax-a", tmp_path: Path | None = None) -> object:
    directory = tmp_path or Path("/nonexistent")
    return next(s for s in load_matrix(write_matrix(directory, [name])).stacks if s.name == name)


def state(text: str) -> accounting.TaskState:
    (parsed,) = accounting.parse_sacct(text)
    return parsed


NOW = datetime.datetime(2026, 12, 7, 12, 0)


@pytest.mark.parametrize(
    ("line", "status", "words"),
    [
        ("9_0|FAILED|3:0|gpu-1|a100|00:00:04|2026-12-07T10:00:00|NonZeroExitCode", "run-failed", "exit code 3"),
        ("9_0|TIMEOUT|0:0|gpu-1|a100|00:30:07|2026-12-07T10:00:00|TimeLimit", "timeout", "time limit (--time)"),
        ("9_0|OUT_OF_MEMORY|0:125|gpu-1|a100|00:01:40|2026-12-07T10:00:00|None", "run-failed", "out of memory"),
        ("9_0|NODE_FAIL|0:0|gpu-1|a100|00:12:00|2026-12-07T10:00:00|NodeDown", "host-unreachable", "node failed"),
        ("9_0|CANCELLED by 1000|0:15|gpu-1|a100|00:00:31|2026-12-07T10:00:00|None", "run-failed", "uid 1000"),
        ("9_0|PENDING|0:0|None assigned|a100|00:00:00|2026-12-06T10:00:00|Resources", "host-unreachable", "Resources"),
        ("9_0|COMPLETED|0:0|gpu-1|a100|00:00:10|2026-12-07T10:00:00|None", "run-failed", "no status file"),
    ],
)
def test_a_task_that_wrote_nothing_gets_slurms_reason(tmp_path: Path, line: str, status: str, words: str):
    result = collect.result_of_task(stack(tmp_path=tmp_path), a_task(), {}, state(line), "podman", None, 3600, NOW)
    assert result is not None and result.status.value == status and words in (result.error or ""), result.error
    assert result.host.label == "a100"
    if "gpu-1" in line:
        assert result.host.hostname == "gpu-1"


@pytest.mark.parametrize(
    ("line", "stage", "status", "words"),
    [
        ("9_0|CANCELLED by 0|0:15|gpu-1|a100|00:00:31|2026-12-07T10:00:00|None", "probe", "run-failed", "cancelled"),
        ("9_0|TIMEOUT|0:0|gpu-1|a100|00:30:07|2026-12-07T10:00:00|TimeLimit", "pull", "timeout", "time limit"),
    ],
)
def test_a_task_slurm_ended_says_why_even_when_the_script_wrote_its_status(
    tmp_path: Path, line: str, stage: str, status: str, words: str
):
    """scancel or the time limit signals every process of the task: the probe (or pull) dies with 143 and the
    script may still write its status before its own signal arrives (seen on the test cluster)."""
    task = a_task()
    files = {"status": status_text(task, stage, 143), "probe.err": "Terminated\n"}
    result = collect.result_of_task(stack(tmp_path=tmp_path), task, files, state(line), "podman", None, 3600, NOW)
    assert result is not None and result.status.value == status and words in (result.error or ""), result.error


def test_pending_within_the_limit_and_running_tasks_are_left_for_later(tmp_path: Path):
    s = stack(tmp_path=tmp_path)
    pending = state("9_0|PENDING|0:0|None assigned|a100|00:00:00|2026-12-07T11:30:00|Priority")
    running = state("9_0|RUNNING|0:0|gpu-1|a100|00:02:00|2026-12-07T11:30:00|None")
    for st in (pending, running):
        assert collect.result_of_task(s, a_task(), {}, st, "podman", None, 3600, NOW) is None


def status_text(task: layout.Task, stage: str = "probe", code: int = 0) -> str:
    return f"stack={task.stack}\nimage={task.image}\npartition=a100\nnode=gpu-7\njob=12\nstage={stage}\nexit={code}\n"


def test_a_task_that_wrote_its_probe_output_is_a_record_with_the_partition_as_its_column(tmp_path: Path):
    task = a_task()
    files = {
        "status": status_text(task),
        "probe.out": json.dumps(RECORDED["probe"]) + "\n",
        "probe.err": "I0000 a framework line\n",
    }
    result = collect.result_of_task(stack(tmp_path=tmp_path), task, files, None, "podman", "ab" * 32, 3600)
    assert result is not None and result.status.value == "cpu-only" and result.codes
    assert (result.host.label, result.host.hostname) == ("a100", "gpu-7")
    assert result.host.runtimes == ["slurm", "podman"] and result.host.fingerprint
    assert result.digest == task.image and result.content_hash == "ab" * 32
    assert "a framework line" in result.run.stderr_tail


def test_a_pull_that_failed_and_a_probe_without_json_say_so(tmp_path: Path):
    task = a_task()
    s = stack(tmp_path=tmp_path)
    files = {"status": status_text(task, "pull", 125), "pull.log": "Error: manifest unknown\n"}
    result = collect.result_of_task(s, task, files, None, "podman", None, 3600)
    assert result is not None and result.status.value == "run-failed"
    assert "pulling" in (result.error or "") and "manifest unknown" in (result.error or "")
    files = {"status": status_text(task, "probe", 139), "probe.err": "Segmentation fault\n"}
    result = collect.result_of_task(s, task, files, None, "podman", None, 3600)
    assert result is not None and "no JSON (exit code 139): Segmentation fault" in (result.error or "")


def test_files_of_another_stack_or_framework_are_refused(tmp_path: Path):
    task = a_task()
    s = stack(tmp_path=tmp_path)
    other = status_text(task).replace("stack=jax-a", "stack=jax-b")
    with pytest.raises(collect.Refused, match="jax-b"):
        collect.result_of_task(s, task, {"status": other}, None, "podman", None, 3600)
    torch = {**RECORDED["probe"], "framework": "torch"}
    with pytest.raises(collect.Refused, match="framework torch"):
        collect.result_of_task(
            s, task, {"status": status_text(task), "probe.out": json.dumps(torch)}, None, "podman", None, 3600
        )


def test_a_status_file_keeps_only_the_keys_and_shapes_the_script_writes():
    text = "stack=jax-a\nnode=evil\x1b[2J\nexit=999999\nstage=pwn\npartition=a100\nextra=1\nstack=jax-b\n"
    assert collect.status_file(text) == {"stack": "jax-a", "partition": "a100"}


def test_collect_reads_the_tasks_files_and_asks_slurm_about_the_rest(tmp_path: Path):
    matrix_path = write_matrix(tmp_path, ["jax-a", "jax-b"])
    out = tmp_path / "out"
    render(matrix_path, out, partitions=("a100",))
    (out / layout.SUBMITTED).write_text(json.dumps({"arrays": [{"job": "9", "indices": "0-1", "partition": "a100"}]}))
    table = collect.read_table(out)
    task = table[0]
    written = out / "results" / "9" / "0"
    written.mkdir(parents=True)
    (written / "status").write_text(status_text(task))
    (written / "probe.out").write_text(json.dumps(RECORDED["probe"]) + "\n")
    asked: list[list[str]] = []

    def slurm_says(command: list[str]) -> subprocess.CompletedProcess:
        asked.append(command)
        if command[0] == "sacct":
            return subprocess.CompletedProcess(command, 1, "", "Slurm accounting storage is disabled\n")
        line = data_lines("scontrol-22.05-array.txt").splitlines()[1].replace("ArrayJobId=1", "ArrayJobId=9")
        return subprocess.CompletedProcess(command, 0, line + "\n", "")

    collected = collect.collect(load_matrix(matrix_path), out, run=slurm_says)
    by_stack = {r.stack: r for r in collected.results}
    assert by_stack["jax-a"].status.value == "cpu-only"
    assert by_stack["jax-a"].run is not None and by_stack["jax-a"].run.gpu_requested  # rendered with --gres gpu:1
    assert by_stack["jax-b"].status.value == "run-failed" and "exit code 3" in (by_stack["jax-b"].error or "")
    assert asked[0][:3] == ["sacct", "--jobs", "9"] and asked[1] == ["scontrol", "show", "job", "--oneliner", "9"]
    assert any("accounting storage is disabled" in w for w in collected.skipped)
    # a matrix edited since render is refused, not read against the wrong rows
    matrix_path.write_text(matrix_path.read_text() + "\n# edited\n")
    with pytest.raises(ConfigError, match="another version"):
        collect.collect(load_matrix(matrix_path), out, run=slurm_says)


def test_a_job_sacct_does_not_list_yet_is_asked_of_scontrol():
    """slurmdbd learns of a job from slurmctld asynchronously: right after submit, sacct may list nothing for it
    (seen on the test cluster), which must not read as 'Slurm knows no such task'."""
    pending = data_lines("scontrol-22.05-pending.txt").splitlines()[0]
    job = re.search(r"ArrayJobId=([0-9]+)", pending)[1]  # type: ignore[index]

    def slurm_says(command: list[str]) -> subprocess.CompletedProcess:
        out = "" if command[0] == "sacct" else pending + "\n"  # sacct answers, without the job
        return subprocess.CompletedProcess(command, 0, out, "")

    states, note = accounting.task_states([job], run=slurm_says)
    assert note is None and states and {s.state for s in states.values()} == {"PENDING"}


def test_files_linked_out_of_the_results_directory_are_not_read(tmp_path: Path):
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    (secret / "status").write_text(status_text(a_task()))
    (secret / "probe.out").write_text(json.dumps(RECORDED["probe"]))
    (tmp_path / "results" / "9").mkdir(parents=True)
    (tmp_path / "results" / "9" / "0").symlink_to(secret)
    files = collect.task_files(tmp_path / "results", "9", a_task())
    assert set(files.values()) == {None}
    (tmp_path / "results" / "9" / "1").mkdir()
    (tmp_path / "results" / "9" / "1" / "probe.out").symlink_to(secret / "probe.out")
    assert collect.task_files(tmp_path / "results", "9", a_task(1))["probe.out"] is None


def test_collect_refuses_job_ids_that_are_not_numbers(tmp_path: Path):
    matrix_path = write_matrix(tmp_path, ["jax-a"])
    render(matrix_path, tmp_path / "out")
    with pytest.raises(ConfigError, match="--job"):
        commands.slurm_collect(
            SlurmCollectOptions(matrix=str(matrix_path), directory=str(tmp_path / "out"), jobs=("1;rm",))
        )


# -- a real Slurm -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sacct", "scontrol"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A cluster with accounting (slurmdbd: collect reads sacct), then one without (collect reads scontrol)."""
    why = missing() or (accounting_missing() if request.param == "sacct" else None)
    if why:
        pytest.skip(f"no Slurm cluster ({request.param}) can be started here: {why}")
    started = SlurmCluster(tmp_path_factory.mktemp("slurm"), accounting=request.param == "sacct")
    try:
        started.start()
        yield started
    finally:
        started.stop()


def squeue(cluster: SlurmCluster, *args: str) -> str:
    return subprocess.run(
        ["squeue", "--noheader", *args], capture_output=True, text=True, env={**os.environ, **cluster.env}, check=True
    ).stdout


@pytest.mark.slurm
def test_a_rendered_array_runs_on_a_real_slurm_and_collect_says_why_each_task_ended(
    cluster: SlurmCluster, tmp_path: Path, fake_runtime: None
):
    names = ["jax-ok", "jax-fail", "jax-crash", "jax-nopull", "jax-slow", "jax-cancel"]
    matrix = write_matrix(tmp_path / "project dir", names)
    out = tmp_path / "project dir" / "slurm jobs"
    render(matrix, out, runtime="fake", partitions=("debug",), gres="none", time="1")
    write_fake_task(out)
    done = run_cli("slurm", "submit", "-o", str(out), env=cluster.env)
    assert done.returncode == 0, done.stderr
    array, merge = (line.split("\t")[0] for line in done.stdout.splitlines())
    cancel = names.index("jax-cancel")
    cluster.until(lambda: "R" in squeue(cluster, "--format=%t", f"--jobs={array}_{cancel}"), 60, "the task to run")
    subprocess.run(["scancel", f"{array}_{cancel}"], check=True, env={**os.environ, **cluster.env})
    # the time limit (1 minute) ends jax-slow; slurmctld checks limits every 30 s or so
    cluster.until(lambda: not squeue(cluster, "--format=%i", f"--jobs={array},{merge}"), 180, "every job to end")
    merged = (out / "results" / f"slurm-{merge}-merge.out").read_text()
    assert "jax-ok @ debug: cpu-only" in merged, merged  # the merge job ran collect and wrote the table

    done = run_cli("slurm", "collect", "-o", str(out), "-m", str(matrix), env=cluster.env)
    assert done.returncode == 1, done.stderr
    assert ("accounting storage is disabled" in done.stderr) is not cluster.accounting, done.stderr
    lines = {line.split(" @ ")[0]: line for line in done.stdout.splitlines()}
    assert set(lines) == set(names), done.stdout
    assert lines["jax-ok"].startswith("jax-ok @ debug: cpu-only")
    assert "run-failed (the task failed on " in lines["jax-fail"] and "signal 9" in lines["jax-fail"]
    assert "the probe printed no JSON (exit code 3): Segmentation fault" in lines["jax-crash"]
    assert "pulling" in lines["jax-nopull"] and "manifest unknown" in lines["jax-nopull"]
    assert "timeout (the task reached its time limit (--time)" in lines["jax-slow"]
    assert "run-failed (the task was cancelled" in lines["jax-cancel"]
    records = [json.loads(line) for line in (matrix.parent / "results" / "records.jsonl").read_text().splitlines()]
    assert {r["host"]["label"] for r in records} == {"debug"}
    assert {r["host"]["hostname"] for r in records} == {cluster.node}
    assert {r["run"]["gpu_requested"] for r in records} == {False}  # rendered with --gres none
    assert "jax-ok" in (matrix.parent / "docs" / "compatibility.md").read_text()


@pytest.mark.slurm
def test_sigterm_during_submit_wait_cancels_the_array(cluster: SlurmCluster, tmp_path: Path, fake_runtime: None):
    matrix = write_matrix(tmp_path, ["jax-slow", "jax-cancel"])
    out = tmp_path / "out"
    render(matrix, out, runtime="fake", gres="none", time="5")
    write_fake_task(out)
    waiting = subprocess.Popen(
        [sys.executable, "-m", "envcheck", "slurm", "submit", "--wait", "-o", str(out)],
        env={**os.environ, **cluster.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        cluster.until(lambda: (out / layout.SUBMITTED).exists() and "merge" in (out / layout.SUBMITTED).read_text()
                      and json.loads((out / layout.SUBMITTED).read_text())["merge"],
                      30, "submit to finish")  # fmt: skip
        submitted = json.loads((out / layout.SUBMITTED).read_text())
        array = submitted["arrays"][0]["job"]
        cluster.until(lambda: squeue(cluster, "--format=%t", f"--jobs={array}").split().count("R") == 2, 60, "tasks")
        waiting.send_signal(signal.SIGTERM)
        _stdout, stderr = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 143, stderr
    assert "cancelled jobs" in stderr
    cluster.until(lambda: not squeue(cluster, "--format=%i", f"--jobs={array}"), 60, "the cancelled array to end")


@pytest.mark.slurm
def test_slurmd_stopped_mid_run_is_node_fail_and_nothing_else_is_lost(
    cluster: SlurmCluster, tmp_path: Path, fake_runtime: None
):
    matrix = write_matrix(tmp_path, ["jax-ok", "jax-slow"])
    out = tmp_path / "out"
    render(matrix, out, runtime="fake", gres="none", time="10")
    write_fake_task(out)
    done = run_cli("slurm", "submit", "-o", str(out), env=cluster.env)
    assert done.returncode == 0, done.stderr
    array, merge = (line.split("\t")[0] for line in done.stdout.splitlines())
    cluster.until(lambda: (out / "results" / array / "0" / "status").exists(), 60, "jax-ok to finish")
    cluster.until(lambda: "R" in squeue(cluster, "--format=%t", f"--jobs={array}_1"), 60, "jax-slow to run")
    cluster.kill_slurmd()
    try:
        cluster.until(lambda: not squeue(cluster, "--format=%i", f"--jobs={array}"), 90, "the node to fail")
        done = run_cli("slurm", "collect", "-o", str(out), "-m", str(matrix), env=cluster.env)
    finally:
        cluster.start_slurmd()
    assert done.returncode == 1, done.stderr
    lines = {line.split(" @ ")[0]: line for line in done.stdout.splitlines()}
    assert "jax-ok" in lines, done.stdout + done.stderr
    assert lines["jax-ok"].startswith("jax-ok @ debug: cpu-only"), done.stdout
    assert "host-unreachable (its node failed on " in lines["jax-slow"] and "NODE_FAIL" in lines["jax-slow"]
    # the merge job waited for the node, then ran
    cluster.until(lambda: not squeue(cluster, "--format=%i", f"--jobs={merge}"), 60, "the merge job to run")


@pytest.mark.slurm
def test_a_task_pending_past_the_limit_is_a_cell_with_slurms_reason(
    cluster: SlurmCluster, tmp_path: Path, fake_runtime: None
):
    """The node drained: the task stays PENDING; collect leaves it for later within --pending-limit, and past it
    the cell is host-unreachable with Slurm's reason (exit 1)."""
    matrix = write_matrix(tmp_path, ["jax-ok"])
    out = tmp_path / "out"
    render(matrix, out, runtime="fake", gres="none", time="5")
    write_fake_task(out)
    cluster.set_node("DRAIN")
    try:
        done = run_cli("slurm", "submit", "-o", str(out), env=cluster.env)
        assert done.returncode == 0, done.stderr
        array = done.stdout.split("\t")[0]
        cluster.until(lambda: "PD" in squeue(cluster, "--format=%t", f"--jobs={array}"), 60, "the task to pend")
        within = run_cli("slurm", "collect", "-o", str(out), "-m", str(matrix), env=cluster.env)
        assert "jax-ok" not in within.stdout, within.stdout  # pending within the default day: left for later
        collected: list[subprocess.CompletedProcess] = []

        def past_the_limit() -> bool:
            collected[:] = [run_cli("slurm", "collect", "-o", str(out), "-m", str(matrix), "--pending-limit", "1",
                                    env=cluster.env)]  # fmt: skip
            return "jax-ok" in collected[0].stdout

        cluster.until(past_the_limit, 60, "collect to see the task pending past 1 s")
    finally:
        cluster.set_node("RESUME")
        cluster.cancel_all()
    done = collected[0]
    assert done.returncode == 1, done.stderr
    line = done.stdout.strip()
    assert line.startswith("jax-ok @ debug: host-unreachable (pending for "), line
    assert "past the limit of 1 s" in line and "ReqNodeNotAvail" in line, line
