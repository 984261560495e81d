"""Slurm's accounting: what Slurm itself says of array tasks (sacct, or `scontrol show job` where the cluster
keeps none), parsed into one TaskState per task, in the same shape whichever said it. collect's source for a task
that wrote nothing; what Slurm prints is read, not trusted."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from envcheck.jobs.slurm.layout import JOB_ID, NODE, SLURM_NAME
from envcheck.jobs.slurm.submit import Runner, run_command
from envcheck.jobs.untrusted import clean

# sacct --parsable2 columns collect asks for, in this order (Reason last: the only one free text may reach).
SACCT_FORMAT = ("JobID", "State", "ExitCode", "NodeList", "Partition", "Elapsed", "Submit", "Reason")


@dataclass(frozen=True)
class TaskState:
    """What Slurm says of one array task (sacct or scontrol), in the same shape whichever said it."""

    job: str  # the array's job id
    index: int
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, CANCELLED, ...
    exit_code: int | None = None
    signal: int | None = None
    node: str | None = None
    partition: str | None = None
    elapsed: str | None = None
    submitted: datetime.datetime | None = None
    reason: str | None = None
    by: str | None = None  # CANCELLED by UID


def array_indices(text: str) -> list[int] | None:
    """An array's task ids as Slurm prints them: 3, or [0-3,5%2] for tasks still pending together."""
    text = text.strip("[]").split("%", 1)[0]
    found: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        low, high = int(first), int(last or first)
        if high < low or high - low > 100000:
            return None
        found.extend(range(low, high + 1))
    return found


def _time(text: str | None) -> datetime.datetime | None:
    """Slurm's timestamps (2026-12-07T20:31:45, local time of the cluster, no zone)."""
    try:
        return datetime.datetime.fromisoformat(text) if text and text[:1].isdigit() else None
    except ValueError:
        return None


def _exit(text: str) -> tuple[int | None, int | None]:
    """ExitCode `code:signal` (sacct and scontrol)."""
    code, _, signal = text.partition(":")
    return (int(code) if code.isdigit() else None, int(signal) if signal.isdigit() else None)


def _state(text: str) -> tuple[str, str | None]:
    """`CANCELLED by 1000` → (CANCELLED, 1000); a state with a trailing + (sacct's mark of more) loses it."""
    words = text.split()
    state = words[0].rstrip("+") if words else ""
    by = words[2] if len(words) >= 3 and words[1] == "by" else None
    return state, by


def _per_task(
    array: str,
    tasks: str,
    state: str,
    by: str | None,
    exit_code: str,
    nodes: str,
    partition: str,
    elapsed: str,
    submitted: str | None,
    reason: str,
) -> list[TaskState]:
    """One line of sacct or scontrol as one state per array task of `tasks` (none where its ids are not Slurm's
    shape), each value kept only in the shape Slurm prints it."""
    indices = array_indices(tasks)
    if indices is None:
        return []
    code, signal = _exit(exit_code)
    return [
        TaskState(
            job=array,
            index=index,
            state=state,
            exit_code=code,
            signal=signal,
            node=nodes if NODE.fullmatch(nodes) else None,
            partition=partition if SLURM_NAME.fullmatch(partition) else None,
            elapsed=clean(elapsed, 32) or None,
            submitted=_time(submitted),
            reason=None if reason in ("", "None") else clean(reason),
            by=by,
        )
        for index in indices
    ]


def parse_sacct(text: str) -> list[TaskState]:
    """`sacct --parsable2 --noheader --format=JobID,State,ExitCode,NodeList,Partition,Elapsed,Submit,Reason` as
    one state per array task: steps (123_4.batch, .extern, .0) are left out, a pending range 123_[0-3] becomes one
    state per index, and a line that is not of that shape is skipped (accounting is read, not trusted)."""
    states = []
    for line in text.splitlines():
        fields = line.split("|", len(SACCT_FORMAT) - 1)
        if len(fields) != len(SACCT_FORMAT):
            continue
        job_id, state, exit_code, nodes, partition, elapsed, submitted, reason = fields
        array, sep, task = job_id.partition("_")
        if not sep or "." in task or not JOB_ID.fullmatch(array):
            continue
        name, by = _state(state)
        states += _per_task(array, task, name, by, exit_code, nodes, partition, elapsed, submitted, reason)
    return states


def parse_scontrol(text: str) -> list[TaskState]:
    """`scontrol show job --oneliner ID` (what a cluster without accounting still says of jobs it remembers,
    for MinJobAge after they end): one state per array task, as parse_sacct."""
    states = []
    for line in text.splitlines():
        values = dict(re.findall(r"(?:^|\s)([A-Za-z]+)=(\S*)", line))
        array, state = values.get("ArrayJobId", ""), values.get("JobState", "")
        if not JOB_ID.fullmatch(array) or not state:
            continue
        states += _per_task(
            array,
            values.get("ArrayTaskId", ""),
            state,
            None,
            values.get("ExitCode", ""),
            values.get("NodeList", ""),
            values.get("Partition", ""),
            values.get("RunTime", ""),
            values.get("SubmitTime"),
            values.get("Reason", ""),
        )
    return states


def task_states(jobs: list[str], run: Runner = run_command) -> tuple[dict[tuple[str, int], TaskState], str | None]:
    """What Slurm says of every task of `jobs`: sacct, and `scontrol show job` for a job sacct does not list
    (accounting storage disabled, or slurmdbd not told of a job just submitted yet: slurmctld sends it records
    asynchronously). The second value says why sacct was not used, if it was not (a task neither knows nor wrote
    anything for becomes a cell saying Slurm knows no such task)."""
    if not jobs:
        return {}, None
    sacct = run(["sacct", "--jobs", ",".join(jobs), "--parsable2", "--noheader", "--format", ",".join(SACCT_FORMAT)])
    states: dict[tuple[str, int], TaskState] = {}
    if sacct.returncode == 0:
        states = {(s.job, s.index): s for s in parse_sacct(sacct.stdout)}
    failures = []
    for job in [j for j in jobs if not any(key[0] == j for key in states)]:
        shown = run(["scontrol", "show", "job", "--oneliner", job])
        if shown.returncode == 0:
            states.update({(s.job, s.index): s for s in parse_scontrol(shown.stdout)})
        else:
            failures.append(clean(shown.stderr.strip() or f"exit code {shown.returncode}"))
    if sacct.returncode == 0:
        return states, None
    said = clean(sacct.stderr.strip() or f"exit code {sacct.returncode}")
    note = f"sacct: {said}; read `scontrol show job` instead, which forgets a job MinJobAge after it ends"
    return states, note + (f" (scontrol: {failures[0]})" if failures else "")
