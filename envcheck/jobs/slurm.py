"""`envcheck slurm render|submit|collect`: the matrix as Slurm job arrays, with the container runtime the cluster
has (Apptainer, Podman with CDI, Enroot/Pyxis or Charliecloud), and what the tasks left turned back into records.

render writes a directory the compute nodes can read (a shared file system):

- tasks.tsv: one row per stack × partition, `INDEX STACK PARTITION IMAGE FRAMEWORK PYTHON HOW` (tab-separated).
  A task's SLURM_ARRAY_TASK_ID picks its row, so no matrix value is ever pasted into a script: the scripts read
  them as data at run time and use them only in double quotes.
- probe.sbatch: the task script. Slurm gives a job one partition, so submit sends it once per partition, as an
  array of exactly that partition's indices. A task pulls its image by digest (a built stack's
  REGISTRY/NAME@sha256, pushed by `envcheck build --push`; an image stack's own reference), runs the probe with
  the runtime's GPU option and writes the probe's output and a status file under RESULTS/ARRAY_JOB_ID/INDEX/.
- merge.sbatch: submitted with --dependency=afterany on every array; runs `envcheck slurm collect`, which writes
  the table.
- probe/: the probe's files, mounted read-only at /opt/envcheck into images envcheck did not render.
- jobs.json: what submit and collect need (arrays per partition, the results directory, the matrix's hash).

Every value from the matrix or a flag reaches a script through shlex.quote or after validation here (partitions,
account, --time, --gres). What a task wrote is untrusted input (a job runs an image, on a file system others can
write): collect reads bounded amounts, accepts only the keys and shapes it expects, and keeps a cell only when the
task's row, stack and probe document agree with what render wrote; a task that wrote nothing gets its cell from
Slurm's accounting (sacct, or `scontrol show job` where the cluster keeps no accounting), saying why.
"""

from __future__ import annotations

import datetime
import json
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck import __version__
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import Matrix, Stack
from envcheck.inputs.options import DEFAULTS, SlurmRenderOptions
from envcheck.jobs import first_repeated
from envcheck.jobs.k8s import IMAGE_PYTHON, matrix_hash
from envcheck.jobs.untrusted import clean, disagreement
from envcheck.probe import PROBE_COMMAND, PROBE_FILES, parse_output
from envcheck.results.model import Host, Result, RunInfo, Status
from envcheck.runs.pipeline import judge, new_result, seen_by_probe

# Slurm's names: partitions and accounts are plain words in slurm.conf and sacctmgr; refusing anything else keeps
# them safe in #SBATCH lines, which sbatch parses itself (no shell quoting applies there).
SLURM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# sbatch --time: "minutes", "minutes:seconds", "hours:minutes:seconds", "days-hours", "days-hours:minutes",
# "days-hours:minutes:seconds" (sbatch(1)).
TIME = re.compile(r"[0-9]{1,6}(?::[0-9]{1,2}){0,2}|[0-9]{1,4}-[0-9]{1,2}(?::[0-9]{1,2}){0,2}")
# --gres: name[[:type]:count] (sbatch(1)); "none" asks for no generic resource (a CPU partition, a test cluster).
GRES = re.compile(r"none|[a-z][a-z0-9_]{0,31}(?::[A-Za-z0-9_.-]{1,64})?(?::[0-9]{1,4})?")
NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
JOB_ID = re.compile(r"[0-9]{1,12}")
STAGES = ("pull", "inject", "probe")  # what a task was doing when it stopped (its status file says)
TAIL_CHARS = 4000
READ_LIMIT = 8 * 1024 * 1024  # a probe document is ~100 kB; a task that wrote more is not read past this
TABLE = "tasks.tsv"
# A task without --partition (the cluster's default) says so with "-", never an empty cell: tab is whitespace to
# `read`, so an empty cell would vanish and shift the cells after it.
NO_PARTITION = "-"
MANIFEST = "jobs.json"
SUBMITTED = "submitted.json"
TASK_SCRIPT = "probe.sbatch"
MERGE_SCRIPT = "merge.sbatch"
PROBE_FILES_DIR = "probe"
ENVCHECK_COMMAND: tuple[str, ...] = ("envcheck",)  # how the merge job runs envcheck (tests run this checkout's)
# The paths assigned below are single-quoted on purpose: a '$' or '`' in them is part of the name, not an expansion
# (shellcheck's SC2016 would say otherwise for such a path).
LITERAL = "# shellcheck disable=SC2016\n"
# sacct --parsable2 columns collect asks for, in this order (Reason last: the only one free text may reach).
SACCT_FORMAT = ("JobID", "State", "ExitCode", "NodeList", "Partition", "Elapsed", "Submit", "Reason")


@dataclass(frozen=True)
class Runtime:
    """How a task pulls an image and runs the probe in it with the GPUs Slurm gave the job: bash lines that use
    only the task's variables ($image, $python, $framework, $work, and the arrays mounts, quick and gpus expanded
    as ${a[@]+"${a[@]}"}, since bash before 4.4, still on older compute nodes, calls an empty array unbound under
    set -u), never a matrix value."""

    pull: str
    run: str
    mount: str  # the option (one word, with $PROBE_FILES) that mounts the probe's files at /opt/envcheck
    image_prefix: str = ""  # how the runtime names a registry image (apptainer: docker://)
    inject: str = ""  # a step between pull and run that gives the image the host's GPU libraries


MOUNTS = '${mounts[@]+"${mounts[@]}"}'
PROBE = '"$python" /opt/envcheck/probe.py --framework "$framework" ${quick[@]+"${quick[@]}"}'
# The GPUs Slurm gave the job as CDI device names (SLURM_JOB_GPUS holds their indices), else every GPU.
CDI_GPUS = (
    "gpus=(--device nvidia.com/gpu=all)\n"
    'if [[ "${SLURM_JOB_GPUS:-}" =~ ^[0-9]+(,[0-9]+)*$ ]]; then\n'
    "  gpus=()\n"
    "  for gpu in ${SLURM_JOB_GPUS//,/ }; do\n"
    '    gpus+=(--device "nvidia.com/gpu=$gpu")\n'
    "  done\n"
    "fi\n"
)
RUNTIMES: dict[str, Runtime] = {
    # Apptainer: --nv binds the host's NVIDIA libraries and devices; --containall keeps $HOME, /tmp and the
    # environment of the login node out (as the Docker sandbox does), and a SIF file is made per task.
    "apptainer": Runtime(
        pull='apptainer pull --force "$work/image.sif" "$image"',
        run=f'apptainer exec --nv --containall --env HOME=/tmp {MOUNTS} "$work/image.sif" {PROBE}',
        mount='--bind="$PROBE_FILES:/opt/envcheck:ro"',
        image_prefix="docker://",
    ),
    # Podman with the NVIDIA Container Toolkit's CDI spec (nvidia-ctk cdi generate): the GPUs Slurm gave the job
    # (SLURM_JOB_GPUS, as CDI names nvidia.com/gpu=N; nvidia.com/gpu=all where Slurm names none); the rest is the
    # Docker sandbox's least privilege.
    "podman": Runtime(
        pull='podman pull --quiet "$image"',
        run='podman run --rm ${gpus[@]+"${gpus[@]}"} --network=none --cap-drop=ALL '
        "--security-opt=no-new-privileges --read-only --tmpfs=/tmp --env=HOME=/tmp --pids-limit=4096 "
        f'{MOUNTS} "$image" {PROBE}',
        mount='--volume="$PROBE_FILES:/opt/envcheck:ro"',
    ),
    # Enroot imports the image once per task; Pyxis' srun --container-image runs it in the job step, where
    # enroot's NVIDIA hook gives it the job's GPUs.
    "enroot": Runtime(
        pull='enroot import --output "$work/image.sqsh" "$image"',
        run=f'srun --ntasks=1 --container-image="$work/image.sqsh" --no-container-mount-home {MOUNTS} {PROBE}',
        mount='--container-mounts="$PROBE_FILES:/opt/envcheck:ro"',
        image_prefix="docker://",
    ),
    # Charliecloud: the image pulled into the task's own storage, unpacked to a directory, the host's NVIDIA
    # libraries injected with ch-fromhost --nvidia (Charliecloud's GPU support), then run unprivileged without
    # the login node's home and /tmp.
    "charliecloud": Runtime(
        pull='ch-image --storage "$work/storage" pull "$image" && '
        'ch-convert --storage "$work/storage" "$image" "$work/image" && mkdir -p "$work/image/opt/envcheck"',
        inject='ch-fromhost --nvidia "$work/image"',
        run=f'ch-run --no-home --private-tmp --set-env=HOME=/tmp {MOUNTS} "$work/image" -- {PROBE}',
        mount='--bind="$PROBE_FILES:/opt/envcheck"',
    ),
}


# -- render ------------------------------------------------------------------------------------------------------


def check(options: SlurmRenderOptions) -> None:
    """Every flag that reaches a script or an #SBATCH line, refused here (ConfigError naming the flag) unless it
    has the shape Slurm documents."""
    for partition in options.partitions:
        if not SLURM_NAME.fullmatch(partition):
            raise ConfigError(
                f"--partition {partition!r}: expected a Slurm partition name (letters, digits, '_', '.', '-', "
                "at most 64), as sinfo lists it"
            )
    twice = first_repeated(options.partitions)
    if twice is not None:
        raise ConfigError(f"--partition {twice!r} is given twice: each partition runs every stack once")
    if options.account is not None and not SLURM_NAME.fullmatch(options.account):
        raise ConfigError(f"--account {options.account!r}: expected a Slurm account name, as sacctmgr lists it")
    if not TIME.fullmatch(options.time):
        raise ConfigError(
            f"--time {options.time!r}: expected a Slurm time limit: minutes, minutes:seconds, hours:minutes:seconds, "
            "days-hours, days-hours:minutes or days-hours:minutes:seconds (e.g. 0:30:00)"
        )
    if options.gres is not None and options.gpus_per_task is not None:
        raise ConfigError("--gres and --gpus-per-task both ask for GPUs: give one")
    if options.gres is not None and not GRES.fullmatch(options.gres):
        raise ConfigError(f"--gres {options.gres!r}: expected name[:type][:count], like gpu:1 or gpu:a100:1, or none")
    if options.gpus_per_task is not None and not 1 <= options.gpus_per_task <= 64:
        raise ConfigError(f"--gpus-per-task {options.gpus_per_task}: expected 1 to 64")
    if options.runtime not in RUNTIMES:
        raise ConfigError(f"--runtime {options.runtime!r}: expected one of {', '.join(RUNTIMES)}")
    for flag, path in (("-o", options.output), ("--results", options.results)):
        if path is not None and re.search(r"[\x00-\x1f\x7f%:,\\]", path):
            raise ConfigError(
                f"{flag} {path!r}: Slurm reads '%' and '\\' in output paths as patterns, and the runtimes' mount "
                "options split on ':' and ','; choose a directory without them (or control characters)"
            )


def runtime_image(image: str, runtime: str) -> str:
    """An image reference as the runtime names it: Apptainer and Enroot want docker://, Enroot with '#' between
    the registry host and the repository (enroot import docker://[REGISTRY#]IMAGE)."""
    if runtime == "enroot":
        first, _, rest = image.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            image = f"{first}#{rest}"
    return RUNTIMES[runtime].image_prefix + image


@dataclass(frozen=True)
class Task:
    """One row of tasks.tsv: a stack on a partition (None: the cluster's default partition)."""

    index: int
    stack: str
    partition: str | None
    image: str
    framework: str
    python: str
    mounted: bool  # the probe's files come from probe/ (an image envcheck did not render)

    def row(self) -> str:
        cells = [
            str(self.index),
            self.stack,
            self.partition or NO_PARTITION,
            self.image,
            self.framework,
            self.python,
            "mounted" if self.mounted else "baked",
        ]
        for cell in cells:  # the table is read with `read -r`: one line, tab-separated
            if re.search(r"[\x00-\x1f\x7f]", cell):
                raise ConfigError(f"stack {self.stack}: {cell!r} has a control character and cannot be a task's value")
        return "\t".join(cells)


def tasks_of(matrix: Matrix, images: dict[str, str], options: SlurmRenderOptions) -> list[Task]:
    """Every stack × partition, numbered: partition by partition, so each partition's array is one range."""
    partitions: list[str | None] = list(options.partitions) or [None]
    tasks = []
    for partition in partitions:
        for stack in matrix.stacks:
            rendered = stack.kind == "rendered"
            tasks.append(
                Task(
                    index=len(tasks),
                    stack=stack.name,
                    partition=partition,
                    image=runtime_image(images[stack.name], options.runtime),
                    framework=stack.probe_framework,
                    python=PROBE_COMMAND[0] if rendered else stack.interpreter or IMAGE_PYTHON,
                    mounted=not rendered,
                )
            )
    return tasks


def directives(options: SlurmRenderOptions, name: str, gpus: bool) -> list[str]:
    """#SBATCH lines: only validated values (sbatch parses these lines itself, not the shell)."""
    lines = [f"#SBATCH --job-name={name}", "#SBATCH --nodes=1", "#SBATCH --ntasks=1", "#SBATCH --no-requeue"]
    lines.append(f"#SBATCH --time={options.time if gpus else DEFAULTS.slurm_merge_time}")
    if options.account:
        lines.append(f"#SBATCH --account={options.account}")
    if gpus:
        if options.gpus_per_task is not None:
            lines.append(f"#SBATCH --gpus-per-task={options.gpus_per_task}")
        else:
            lines.append(f"#SBATCH --gres={options.gres or DEFAULTS.slurm_gres}")
    return lines


def task_script(matrix: Matrix, options: SlurmRenderOptions, directory: Path, results: Path) -> str:
    """The array task: its row of tasks.tsv, the image pulled, the probe run, everything written under
    RESULTS/ARRAY_JOB_ID/INDEX/ (status last, so a status file means the task's files are complete)."""
    runtime = RUNTIMES[options.runtime]
    q = shlex.quote
    inject = (
        f'if ! {runtime.inject} > "$out/inject.log" 2>&1; then\n'
        '  echo "envcheck: injecting the host GPU libraries failed; the probe runs without them" >&2\n'
        "fi\n"
        if runtime.inject
        else ""
    )
    return (
        "#!/bin/bash\n"
        f"# Generated by `envcheck slurm render` (envcheck {__version__}) from {_comment(matrix.path.name)}: "
        f"runtime {options.runtime}.\n"
        "# One task of the job array: SLURM_ARRAY_TASK_ID picks its row of tasks.tsv (stack, partition, image).\n"
        "# Regenerate it after changing the matrix; do not edit by hand.\n"
        f"{LITERAL}" + "\n".join(directives(options, "envcheck-probe", gpus=True)) + "\n"
        "set -u\n"
        f"readonly TABLE={q(str(directory / TABLE))}\n"
        f"readonly RESULTS={q(str(results))}\n"
        f"readonly PROBE_FILES={q(str(directory / PROBE_FILES_DIR))}\n"
        'index="${SLURM_ARRAY_TASK_ID:?envcheck: run this script as a job array (envcheck slurm submit)}"\n'
        'array="${SLURM_ARRAY_JOB_ID:?envcheck: run this script as a job array (envcheck slurm submit)}"\n'
        "stack=''\n"
        "while IFS=$'\\t' read -r i s p img fw py how; do\n"
        '  if [ "$i" = "$index" ]; then\n'
        '    stack="$s" partition="$p" image="$img" framework="$fw" python="$py" probe_files="$how"\n'
        "    break\n"
        "  fi\n"
        'done < "$TABLE"\n'
        'if [ -z "$stack" ]; then\n'
        '  echo "envcheck: task $index is not in $TABLE" >&2\n'
        "  exit 2\n"
        "fi\n"
        'out="$RESULTS/$array/$index"\n'
        'mkdir -p "$out" || exit 2\n'
        'work="$(mktemp -d "${TMPDIR:-/tmp}/envcheck.XXXXXX")" || exit 2\n'
        "trap 'rm -rf \"$work\"' EXIT\n"
        "mounts=()\n"
        'if [ "$probe_files" = mounted ]; then\n'
        f"  mounts=({runtime.mount})\n"
        "fi\n"
        f"quick=({'--quick' if options.quick else ''})\n"
        f"{CDI_GPUS if 'gpus[@]' in runtime.run else ''}"
        "finish() {\n"
        "  {\n"
        "    printf 'stack=%s\\n' \"$stack\"\n"
        "    printf 'image=%s\\n' \"$image\"\n"
        "    printf 'partition=%s\\n' \"${SLURM_JOB_PARTITION:-$partition}\"\n"
        "    printf 'node=%s\\n' \"${SLURMD_NODENAME:-$(hostname -s)}\"\n"
        "    printf 'job=%s\\n' \"${SLURM_JOB_ID:-}\"\n"
        "    printf 'stage=%s\\n' \"$1\"\n"
        "    printf 'exit=%s\\n' \"$2\"\n"
        '  } > "$out/status.tmp" && mv -f "$out/status.tmp" "$out/status"\n'
        '  exit "$2"\n'
        "}\n"
        f'{runtime.pull} > "$out/pull.log" 2>&1\n'
        "code=$?\n"
        'if [ "$code" -ne 0 ]; then\n'
        '  finish pull "$code"\n'
        "fi\n"
        f"{inject}"
        f'{runtime.run} > "$out/probe.out" 2> "$out/probe.err"\n'
        'finish probe "$?"\n'
    )


def merge_script(matrix: Matrix, options: SlurmRenderOptions, directory: Path, results: Path) -> str:
    """The job after every array (--dependency=afterany, set by submit with the arrays' ids as its arguments):
    `envcheck slurm collect`, which adds the tasks' records and writes the table."""
    q = shlex.quote
    command = " ".join(q(word) for word in ENVCHECK_COMMAND)
    return (
        "#!/bin/bash\n"
        f"# Generated by `envcheck slurm render` (envcheck {__version__}) from {_comment(matrix.path.name)}.\n"
        "# Merges what the probe arrays wrote into the table; submit passes the arrays' job ids as arguments.\n"
        f"{LITERAL}" + "\n".join(directives(options, "envcheck-merge", gpus=False)) + "\n"
        "set -u\n"
        f"readonly MATRIX={q(str(matrix.path.absolute()))}\n"
        f"readonly RENDERED={q(str(directory))}\n"
        f"readonly RESULTS={q(str(results))}\n"
        "jobs=()\n"
        'for id in "$@"; do\n'
        '  jobs+=("--job=$id")\n'
        "done\n"
        f'exec {command} slurm collect -m "$MATRIX" -o "$RENDERED" --results "$RESULTS" "${{jobs[@]}}"\n'
    )


def _comment(text: str) -> str:
    """A file name in a # comment: one line of printable characters."""
    return "".join(c if c.isprintable() else "?" for c in text)


def ranges(indices: list[int]) -> str:
    """0,1,2,5 as sbatch --array takes it: 0-2,5."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def render(
    matrix: Matrix, contexts: dict[str, str], images: dict[str, str], options: SlurmRenderOptions
) -> dict[str, str]:
    """The files of the rendered directory, by name (probe/ aside): `contexts` maps built stacks to their content
    hash, `images` every stack to the reference its tasks pull."""
    check(options)
    directory = Path(options.output or DEFAULTS.slurm_dir).absolute()
    results = Path(options.results).absolute() if options.results else directory / "results"
    tasks = tasks_of(matrix, images, options)
    partitions: list[str | None] = list(options.partitions) or [None]
    manifest = {
        "envcheck": __version__,
        "matrix": str(matrix.path.absolute()),
        "matrix_hash": matrix_hash(matrix),
        "runtime": options.runtime,
        "results": str(results),
        "content_hashes": contexts,
        "arrays": [
            {"partition": p, "indices": ranges([t.index for t in tasks if t.partition == p])} for p in partitions
        ],
        "merge_partition": partitions[0],
    }
    return {
        TABLE: "".join(t.row() + "\n" for t in tasks),
        TASK_SCRIPT: task_script(matrix, options, directory, results),
        MERGE_SCRIPT: merge_script(matrix, options, directory, results),
        MANIFEST: json.dumps(manifest, indent=2) + "\n",
    }


def write(files: dict[str, str], directory: Path) -> None:
    """The rendered files and the probe's own, into `directory` (scripts executable)."""
    try:
        (directory / PROBE_FILES_DIR).mkdir(parents=True, exist_ok=True)
        for name, source in sorted(PROBE_FILES.items()):
            shutil.copyfile(source, directory / PROBE_FILES_DIR / name)
        for name, text in files.items():
            path = directory / name
            path.write_text(text, encoding="utf-8")
            path.chmod(0o755 if name.endswith(".sbatch") else 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write {directory}: {exc.strerror or exc}") from None


# -- submit ------------------------------------------------------------------------------------------------------


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
        partition, indices = _get(array, "partition"), _get(array, "indices")
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


# -- Slurm's accounting ---------------------------------------------------------------------------------------------


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


def _indices(text: str) -> list[int] | None:
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
        indices = _indices(task)
        if indices is None:
            continue
        name, by = _state(state)
        code, signal = _exit(exit_code)
        for index in indices:
            states.append(
                TaskState(
                    job=array,
                    index=index,
                    state=name,
                    exit_code=code,
                    signal=signal,
                    node=nodes if NODE.fullmatch(nodes) else None,
                    partition=partition if SLURM_NAME.fullmatch(partition) else None,
                    elapsed=clean(elapsed, 32) or None,
                    submitted=_time(submitted),
                    reason=None if reason in ("", "None") else clean(reason),
                    by=by,
                )
            )
    return states


SCONTROL_KEYS = ("ArrayJobId", "ArrayTaskId", "JobState", "Reason", "ExitCode", "NodeList", "Partition", "RunTime")


def parse_scontrol(text: str) -> list[TaskState]:
    """`scontrol show job --oneliner ID` (what a cluster without accounting still says of jobs it remembers,
    for MinJobAge after they end): one state per array task, as parse_sacct."""
    states = []
    for line in text.splitlines():
        values = dict(re.findall(r"(?:^|\s)([A-Za-z]+)=(\S*)", line))
        array, task, state = values.get("ArrayJobId", ""), values.get("ArrayTaskId", ""), values.get("JobState", "")
        if not JOB_ID.fullmatch(array) or not state:
            continue
        indices = _indices(task)
        if indices is None:
            continue
        code, signal = _exit(values.get("ExitCode", ""))
        nodes, partition = values.get("NodeList", ""), values.get("Partition", "")
        reason = values.get("Reason", "")
        for index in indices:
            states.append(
                TaskState(
                    job=array,
                    index=index,
                    state=state,
                    exit_code=code,
                    signal=signal,
                    node=nodes if NODE.fullmatch(nodes) else None,
                    partition=partition if SLURM_NAME.fullmatch(partition) else None,
                    elapsed=clean(values.get("RunTime", ""), 32) or None,
                    submitted=_time(values.get("SubmitTime")),
                    reason=None if reason in ("", "None") else clean(reason),
                )
            )
    return states


def task_states(jobs: list[str], run: Runner = run_command) -> tuple[dict[tuple[str, int], TaskState], str | None]:
    """What Slurm says of every task of `jobs`: sacct, else (no accounting storage) scontrol. The second value
    says why sacct was not used, if it was not (a task neither knows nor wrote anything for becomes a cell saying
    Slurm knows no such task)."""
    if not jobs:
        return {}, None
    sacct = run(["sacct", "--jobs", ",".join(jobs), "--parsable2", "--noheader", "--format", ",".join(SACCT_FORMAT)])
    if sacct.returncode == 0:
        return {(s.job, s.index): s for s in parse_sacct(sacct.stdout)}, None
    states: dict[tuple[str, int], TaskState] = {}
    failures = []
    for job in jobs:
        shown = run(["scontrol", "show", "job", "--oneliner", job])
        if shown.returncode == 0:
            states.update({(s.job, s.index): s for s in parse_scontrol(shown.stdout)})
        else:
            failures.append(clean(shown.stderr.strip() or f"exit code {shown.returncode}"))
    said = clean(sacct.stderr.strip() or f"exit code {sacct.returncode}")
    note = f"sacct: {said}; read `scontrol show job` instead, which forgets a job MinJobAge after it ends"
    return states, note + (f" (scontrol: {failures[0]})" if failures else "")


# -- collect -----------------------------------------------------------------------------------------------------


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
) -> Result | None:
    """One cell from what a task wrote (`files`: status, probe.out, probe.err, pull.log, slurm.out; None where
    absent) and what Slurm says of it. None while it is still pending (within the limit) or running. Raises
    Refused where its files are another stack's or image's."""
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
        return _from_slurm(result, task, files, state, pending_limit, now)
    code = int(status["exit"])
    stderr = files.get("probe.err") or ""
    if status["stage"] == "pull":
        result.error = f"pulling {clean(image)} failed (exit code {code}): {_last_line(files.get('pull.log'))}"
        result.run = RunInfo(exit_code=code, stderr_tail=(files.get("pull.log") or "")[-TAIL_CHARS:])
        return result
    probe = parse_output(files.get("probe.out") or "")
    result.run = RunInfo(exit_code=code, gpu_requested=True, stderr_tail=stderr[-TAIL_CHARS:])
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
        exit_code=state.exit_code, gpu_requested=True, stderr_tail=(files.get("slurm.out") or "")[-TAIL_CHARS:]
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
    arrays = _get(data, "arrays")
    return [
        a
        for a in (arrays if isinstance(arrays, list) else [])
        if isinstance(_get(a, "job"), str) and JOB_ID.fullmatch(a["job"]) and isinstance(_get(a, "indices"), str)
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
    hashes = manifest.get("content_hashes") if isinstance(manifest.get("content_hashes"), dict) else {}
    table = read_table(directory)
    stacks = {s.name: s for s in matrix.stacks}
    recorded = submitted_jobs(directory)
    given = list(jobs)
    for job in given:
        if not JOB_ID.fullmatch(job):
            raise ConfigError(f"--job {job!r}: expected a Slurm job id (digits), as submit printed it")
    arrays = {a["job"]: _indices(a["indices"]) or [] for a in recorded}
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
                )
            except Refused as exc:
                out.skipped.append(f"task {job}_{index}: {exc}; its cell is left out")
                continue
            if result is None:
                out.running += 1
            else:
                out.results.append(result)
    return out


def _get(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None
