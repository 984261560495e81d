"""`envcheck slurm collect`: what the tasks wrote under the results directory (untrusted: read in bounded
amounts, only the keys and shapes the task script writes, refused where it is another stack's) and, for a task
that wrote nothing, Slurm's accounting, as one record per task."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck.errors import ConfigError
from envcheck.inputs.matrix import Matrix, Stack
from envcheck.inputs.options import DEFAULTS
from envcheck.jobs.k8s import matrix_hash
from envcheck.jobs.slurm.accounting import TaskState, array_indices, task_states
from envcheck.jobs.slurm.layout import JOB_ID, NO_PARTITION, NODE, SLURM_NAME, SUBMITTED, TABLE, Task, json_value
from envcheck.jobs.slurm.submit import Runner, manifest_of, run_command
from envcheck.jobs.untrusted import clean, disagreement
from envcheck.probe import parse_output
from envcheck.results.model import Host, Result, RunInfo, Status
from envcheck.runs.pipeline import judge, new_result, seen_by_probe

STAGES = ("pull", "inject", "probe")  # what a task was doing when it stopped (its status file says)
TAIL_CHARS = 4000
# Slurm states of a task that Slurm itself ended (its signal, not the task's own failure)
ENDED_BY_SLURM = ("CANCELLED", "TIMEOUT", "DEADLINE", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "PREEMPTED")
READ_LIMIT = 8 * 1024 * 1024  # a probe document is ~100 kB; a task that wrote more is not read past this


class Refused(Exception):
    """A task's files that cannot be the cell they claim (another stack, another image, another framework)."""


def read_table(directory: Path) -> dict[int, Task]:
    """tasks.tsv as render wrote it (rows that are not of its shape are skipped: collect trusts only the matrix)."""
    try:
        text = (directory / TABLE).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{directory / TABLE} cannot be read ({exc.strerror or exc}): render again") from None
    tasks = {}
    for line in text.splitlines():
        cells = line.split("\t")
        if len(cells) == 7 and cells[0].isdigit():
            index, stack, partition, image, framework, python, how = cells
            tasks[int(index)] = Task(
                int(index),
                stack,
                None if partition == NO_PARTITION else partition,
                image,
                framework,
                python,
                how == "mounted",
            )
    return tasks


def _read(path: Path, limit: int = READ_LIMIT) -> str | None:
    """At most `limit` bytes of a file a task wrote, as text (bytes that are not UTF-8 replaced); None if absent.
    Symbolic links are not followed: a task's directory could point collect at any file of the login node."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        with path.open("rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def status_file(text: str) -> dict[str, str]:
    """A task's status file: key=value lines; only the keys the task script writes, each of its shape."""
    shapes = {
        "stack": re.compile(r"[a-z0-9._-]{1,100}"),
        "image": re.compile(r"[!-~]{1,512}"),
        "partition": SLURM_NAME,
        "node": NODE,
        "job": JOB_ID,
        "stage": re.compile("|".join(STAGES)),
        "exit": re.compile(r"[0-9]{1,3}"),
    }
    found = {}
    for line in text.splitlines()[:32]:
        key, sep, value = line.partition("=")
        if sep and key in shapes and key not in found and shapes[key].fullmatch(value):
            found[key] = value
    return found


@dataclass
class Collected:
    results: list[Result] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    running: int = 0


def host_for(partition: str | None, node: str | None, runtime: str) -> Host:
    """The table's column is the partition (one node type each, as sites arrange them); the node its hostname."""
    host = Host(label=partition or node or "slurm", hostname=node, runtimes=["slurm", runtime])
    return host


def result_of_task(
    stack: Stack,
    task: Task,
    files: dict[str, str | None],
    state: TaskState | None,
    runtime: str,
    content_hash: str | None,
    pending_limit: float,
    now: datetime.datetime | None = None,
    gpu_requested: bool = True,
) -> Result | None:
    """One cell from what a task wrote (`files`: status, probe.out, probe.err, pull.log, slurm.out; None where
    absent) and what Slurm says of it (`gpu_requested`: whether its job asked Slurm for GPUs). None while it is
    still pending (within the limit) or running. Raises Refused where its files are another stack's or image's."""
    status = status_file(files.get("status") or "")
    if status and (status.get("stack") != task.stack or status.get("image") != task.image):
        raise Refused(
            f"its status file names stack {status.get('stack')!r} and image {clean(status.get('image') or '')!r}, "
            f"not {task.stack} and {clean(task.image)} as tasks.tsv has them"
        )
    partition = status.get("partition") or (state.partition if state else None) or task.partition
    node = status.get("node") or (state.node if state else None)
    image = task.image.split("://", 1)[-1]
    result = new_result(
        stack,
        host_for(partition, node, runtime),
        Status.RUN_FAILED,
        image=image,
        content_hash=content_hash,
        digest=image if "@" in image else None,
    )
    if not status:
        return _from_slurm(result, task, files, state, pending_limit, now, gpu_requested)
    code = int(status["exit"])
    if code != 0 and state is not None and state.state in ENDED_BY_SLURM:
        # Slurm's signal ended the pull or the probe, and the script lived long enough to write its status: the
        # cell says why Slurm ended it, not only the signal's exit code
        return _from_slurm(result, task, files, state, pending_limit, now, gpu_requested)
    stderr = files.get("probe.err") or ""
    if status["stage"] == "pull":
        result.error = f"pulling {clean(image)} failed (exit code {code}): {_last_line(files.get('pull.log'))}"
        result.run = RunInfo(
            exit_code=code, gpu_requested=gpu_requested, stderr_tail=(files.get("pull.log") or "")[-TAIL_CHARS:]
        )
        return result
    probe = parse_output(files.get("probe.out") or "")
    result.run = RunInfo(exit_code=code, gpu_requested=gpu_requested, stderr_tail=stderr[-TAIL_CHARS:])
    if probe is None:
        result.error = f"the probe printed no JSON (exit code {code}): {_last_line(stderr)}"
        return result
    contradiction = disagreement(stack, probe)
    if contradiction:
        raise Refused(f"its probe document is not of stack {stack.name}: {contradiction}")
    result.host = seen_by_probe(result.host, probe)
    result.host.fingerprint = result.host.decisive_fingerprint()
    judge(result, probe)
    return result


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return clean(lines[-1]) if lines else "nothing written"


def _from_slurm(
    result: Result,
    task: Task,
    files: dict[str, str | None],
    state: TaskState | None,
    pending_limit: float,
    now: datetime.datetime | None,
    gpu_requested: bool,
) -> Result | None:
    """A task that wrote no status: its cell from Slurm's own words (None while it may still run)."""
    said = f" ({state.reason})" if state and state.reason else ""
    where = f" on {state.node}" if state and state.node else ""
    if state is None:
        result.status = Status.HOST_UNREACHABLE
        result.error = "the task wrote nothing and Slurm knows no such task (was it submitted, or purged?)"
        return result
    if state.state == "PENDING":
        waited = (now or datetime.datetime.now()) - state.submitted if state.submitted else None
        if waited is None or waited.total_seconds() < pending_limit:
            return None
        result.status = Status.HOST_UNREACHABLE
        result.error = (
            f"pending for {int(waited.total_seconds())} s, past the limit of {pending_limit:g} s{said}: the "
            "partition never had room for it (or its request cannot be met)"
        )
        return result
    if state.state in ("RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"):
        return None
    exit_text = f"exit code {state.exit_code}" + (f", signal {state.signal}" if state.signal else "")
    result.run = RunInfo(
        exit_code=state.exit_code, gpu_requested=gpu_requested, stderr_tail=(files.get("slurm.out") or "")[-TAIL_CHARS:]
    )
    words = {
        "TIMEOUT": (Status.TIMEOUT, f"the task reached its time limit (--time) after {state.elapsed}{where}"),
        "DEADLINE": (Status.TIMEOUT, f"the task passed its deadline{where}"),
        "FAILED": (Status.RUN_FAILED, f"the task failed{where} ({exit_text}) before writing a status"),
        "OUT_OF_MEMORY": (Status.RUN_FAILED, f"the task ran out of memory{where} (OUT_OF_MEMORY, {exit_text})"),
        "NODE_FAIL": (Status.HOST_UNREACHABLE, f"its node failed{where} (NODE_FAIL){said}"),
        "BOOT_FAIL": (Status.HOST_UNREACHABLE, f"its node failed to boot{where} (BOOT_FAIL){said}"),
        "CANCELLED": (
            Status.RUN_FAILED,
            "the task was cancelled" + (f" by uid {state.by}" if state.by else "") + f"{where}{said}",
        ),
        "PREEMPTED": (Status.RUN_FAILED, f"the task was preempted{where}"),
        "COMPLETED": (Status.RUN_FAILED, f"the task completed{where} but wrote no status file"),
    }
    result.status, result.error = words.get(
        state.state, (Status.RUN_FAILED, f"Slurm says {clean(state.state)}{where} ({exit_text}){said}")
    )
    return result


def task_files(results: Path, job: str, task: Task) -> dict[str, str | None]:
    """What one task wrote: its directory's files and Slurm's output file for it (nothing from a directory that
    links out of the results directory)."""
    directory = results / job / str(task.index)
    try:
        inside = directory.resolve().is_relative_to(results.resolve())
    except OSError:
        inside = False
    if not inside:  # a task's directory linked elsewhere: its files could be any file of the login node
        directory = results / job / "-"
    files = {
        name: _read(directory / name, READ_LIMIT if name == "probe.out" else 256 * 1024)
        for name in ("status", "probe.out", "probe.err", "pull.log")
    }
    files["slurm.out"] = _read(results / f"slurm-{job}_{task.index}.out", 256 * 1024)
    return files


def submitted_jobs(directory: Path) -> list[dict[str, Any]]:
    """The arrays submit recorded in DIR/submitted.json (their ids and indices)."""
    text = _read(directory / SUBMITTED, 1024 * 1024)
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        data = {}
    arrays = json_value(data, "arrays")
    return [
        a
        for a in (arrays if isinstance(arrays, list) else [])
        if isinstance(json_value(a, "job"), str)
        and JOB_ID.fullmatch(a["job"])
        and isinstance(json_value(a, "indices"), str)
    ]


def collect(
    matrix: Matrix,
    directory: Path,
    jobs: Iterable[str] = (),
    results: Path | None = None,
    pending_limit: float = DEFAULTS.slurm_pending_limit,
    run: Runner = run_command,
) -> Collected:
    """The cells of the arrays `jobs` (none: those submit recorded), from the files their tasks wrote under
    `results` (None: where render put them) and, for a task that wrote none, from Slurm's accounting."""
    manifest = manifest_of(directory)
    if manifest.get("matrix_hash") != matrix_hash(matrix):
        raise ConfigError(
            f"{directory} was rendered from another version of {matrix.path}: collect with the matrix it was "
            "rendered from, or render and submit again"
        )
    results = results or Path(manifest["results"])
    runtime = str(manifest.get("runtime"))
    gpus = manifest.get("gpus") is not False  # render's `--gres none` (older renders: GPUs were asked for)
    hashes = manifest.get("content_hashes") if isinstance(manifest.get("content_hashes"), dict) else {}
    table = read_table(directory)
    stacks = {s.name: s for s in matrix.stacks}
    recorded = submitted_jobs(directory)
    given = list(jobs)
    for job in given:
        if not JOB_ID.fullmatch(job):
            raise ConfigError(f"--job {job!r}: expected a Slurm job id (digits), as submit printed it")
    arrays = {a["job"]: array_indices(a["indices"]) or [] for a in recorded}
    if given:
        arrays = {job: arrays.get(job, []) for job in given}
    if not arrays:
        raise ConfigError(f"no job to collect: nothing was submitted from {directory} (give --job ID)")
    states, why = task_states(list(arrays), run)
    out = Collected()
    if why:
        out.skipped.append(why)
    for job, indices in arrays.items():
        wanted = set(indices) | {i for (j, i) in states if j == job}
        if (results / job).is_dir():
            wanted |= {int(p.name) for p in (results / job).iterdir() if p.name.isdigit() and len(p.name) < 9}
        for index in sorted(wanted):
            task = table.get(index)
            if task is None or task.stack not in stacks:
                out.skipped.append(f"task {job}_{index}: not a row of {directory / TABLE} for this matrix; left out")
                continue
            try:
                result = result_of_task(
                    stacks[task.stack],
                    task,
                    task_files(results, job, task),
                    states.get((job, index)),
                    runtime,
                    hashes.get(task.stack) if isinstance(hashes.get(task.stack), str) else None,
                    pending_limit,
                    gpu_requested=gpus,
                )
            except Refused as exc:
                out.skipped.append(f"task {job}_{index}: {exc}; its cell is left out")
                continue
            if result is None:
                out.running += 1
            else:
                out.results.append(result)
    return out
