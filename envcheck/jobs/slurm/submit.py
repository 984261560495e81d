"""`envcheck slurm submit`: jobs.json of a rendered directory turned into sbatch commands (an array per
partition, then the merge job), run, or printed for --dry-run, and their ids kept in submitted.json; --wait and
its cancel; and the runner of Slurm's client commands, which collect asks Slurm's accounting through too."""

from __future__ import annotations

import datetime
import json
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envcheck.errors import ConfigError
from envcheck.jobs.slurm.layout import JOB_ID, MANIFEST, MERGE_SCRIPT, SLURM_NAME, SUBMITTED, TASK_SCRIPT, json_value
from envcheck.jobs.untrusted import clean


def manifest_of(directory: Path) -> dict[str, Any]:
    """jobs.json of a rendered directory (render wrote it; checked, since submit turns it into sbatch arguments)."""
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: run `envcheck slurm render -o {directory}` first") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from None
    arrays = data.get("arrays") if isinstance(data, dict) else None
    if not isinstance(arrays, list) or not isinstance(data.get("results"), str):
        raise ConfigError(f"{path} is not what `envcheck slurm render` writes: render again")
    for array in arrays:
        partition, indices = json_value(array, "partition"), json_value(array, "indices")
        if partition is not None and not (isinstance(partition, str) and SLURM_NAME.fullmatch(partition)):
            raise ConfigError(f"{path}: partition {partition!r} is not a Slurm partition name: render again")
        if not (isinstance(indices, str) and re.fullmatch(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*", indices)):
            raise ConfigError(f"{path}: the array indices {indices!r} are not what render writes: render again")
    return data


def sbatch_commands(directory: Path, manifest: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """The sbatch command lines: one array per partition, then the merge job's (its dependency and arguments
    come from the arrays' ids once known: `{jobs}` and `{job_args}` stand for them here)."""
    results = manifest["results"]
    arrays = []
    for array in manifest["arrays"]:
        command = ["sbatch", "--parsable", f"--array={array['indices']}"]
        if array["partition"]:
            command.append(f"--partition={array['partition']}")
        command += [f"--output={results}/slurm-%A_%a.out", str(directory / TASK_SCRIPT)]
        arrays.append(command)
    merge = ["sbatch", "--parsable", "--dependency=afterany:{jobs}", f"--output={results}/slurm-%j-merge.out"]
    partition = manifest.get("merge_partition")
    if isinstance(partition, str) and SLURM_NAME.fullmatch(partition):
        merge.append(f"--partition={partition}")
    merge += [str(directory / MERGE_SCRIPT), "{job_args}"]
    return arrays, merge


def job_id_of(stdout: str) -> str:
    """sbatch --parsable prints `jobid` or `jobid;cluster`."""
    first = stdout.strip().split(";", 1)[0]
    if not JOB_ID.fullmatch(first):
        raise ConfigError(f"sbatch printed {clean(stdout.strip())!r}, not a job id")
    return first


Runner = Callable[[list[str]], subprocess.CompletedProcess]


def run_command(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """A Slurm client command, its output as text; a missing command is a ConfigError naming it."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ConfigError(f"{command[0]} is not installed here: run envcheck slurm on a Slurm login node") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{command[0]} did not answer in {timeout:g} s (is slurmctld reachable?)") from None


def submit(directory: Path, run: Runner = run_command) -> dict[str, Any]:
    """Every array, then the merge job; their ids, also written to DIR/submitted.json for collect."""
    directory = directory.absolute()
    manifest = manifest_of(directory)
    Path(manifest["results"]).mkdir(parents=True, exist_ok=True)
    arrays, merge = sbatch_commands(directory, manifest)
    submitted: dict[str, Any] = {"submitted": _now(), "arrays": [], "merge": None}
    for array, command in zip(manifest["arrays"], arrays, strict=True):
        done = run(command)
        if done.returncode != 0:
            raise ConfigError(f"{shlex.join(command)} failed: {clean(done.stderr.strip() or done.stdout.strip())}")
        submitted["arrays"].append({**array, "job": job_id_of(done.stdout)})
        _save(directory / SUBMITTED, submitted)  # what is queued is never forgotten, even if a later sbatch fails
    ids = [a["job"] for a in submitted["arrays"]]
    command = [w.replace("{jobs}", ":".join(ids)) for w in merge if w != "{job_args}"] + ids
    done = run(command)
    if done.returncode != 0:
        raise ConfigError(f"{shlex.join(command)} failed: {clean(done.stderr.strip() or done.stdout.strip())}")
    submitted["merge"] = job_id_of(done.stdout)
    _save(directory / SUBMITTED, submitted)
    return submitted


def dry_run(directory: Path) -> list[str]:
    """The commands submit would run, as a user could paste them into bash ($JOB1... for ids not known yet)."""
    directory = directory.absolute()
    arrays, merge = sbatch_commands(directory, manifest_of(directory))
    names = [f"JOB{i + 1}" for i in range(len(arrays))]
    lines = [f"{name}=$({shlex.join(command)})" for name, command in zip(names, arrays, strict=True)]
    dependency = "afterany:" + ":".join(f"${name}" for name in names)
    words = [f'"--dependency={dependency}"' if "{jobs}" in w else shlex.quote(w) for w in merge if w != "{job_args}"]
    lines.append(" ".join(words + [f'"${name}"' for name in names]))
    return lines


def wait(ids: list[str], run: Runner = run_command, interval: float = 5.0) -> None:
    """Until squeue lists none of the jobs (the caller cancels them on Ctrl-C or SIGTERM)."""
    while True:
        done = run(["squeue", "--noheader", "--format=%i", f"--jobs={','.join(ids)}"])
        if done.returncode == 0 and not done.stdout.strip():
            return
        time.sleep(interval)  # polling squeue: Slurm has no event to wait on from a login node


def cancel(ids: list[str], run: Runner = run_command) -> subprocess.CompletedProcess:
    return run(["scancel", *ids])


def _save(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
