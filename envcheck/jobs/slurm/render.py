"""`envcheck slurm render`: the flags checked, the matrix as rows of tasks.tsv, the task and merge scripts and
jobs.json, written with the probe's files into the directory the compute nodes read (its layout: the package's
docstring)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

from envcheck import __version__
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import Matrix
from envcheck.inputs.options import DEFAULTS, SlurmRenderOptions
from envcheck.jobs import first_repeated
from envcheck.jobs.k8s import IMAGE_PYTHON, matrix_hash
from envcheck.jobs.slurm.layout import MANIFEST, MERGE_SCRIPT, PROBE_FILES_DIR, SLURM_NAME, TABLE, TASK_SCRIPT, Task
from envcheck.jobs.slurm.runtimes import CDI_GPUS, RUNTIMES
from envcheck.probe import PROBE_COMMAND, PROBE_FILES

# sbatch --time: "minutes", "minutes:seconds", "hours:minutes:seconds", "days-hours", "days-hours:minutes",
# "days-hours:minutes:seconds" (sbatch(1)).
TIME = re.compile(r"[0-9]{1,6}(?::[0-9]{1,2}){0,2}|[0-9]{1,4}-[0-9]{1,2}(?::[0-9]{1,2}){0,2}")
# --gres: name[[:type]:count] (sbatch(1)); "none" asks for no generic resource (a CPU partition, a test cluster).
GRES = re.compile(r"none|[a-z][a-z0-9_]{0,31}(?::[A-Za-z0-9_.-]{1,64})?(?::[0-9]{1,4})?")
ENVCHECK_COMMAND: tuple[str, ...] = ("envcheck",)  # how the merge job runs envcheck (tests run this checkout's)
# The paths assigned below are single-quoted on purpose: a '$' or '`' in them is part of the name, not an expansion
# (shellcheck's SC2016 would say otherwise for such a path).
LITERAL = "# shellcheck disable=SC2016\n"


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
        f"{gpu_request(options) if 'gpus[@]' in runtime.run else ''}"
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
        # braces: a pull of several commands (a && b) logs all of them, not only the last
        f'{{ {runtime.pull}; }} > "$out/pull.log" 2>&1\n'
        "code=$?\n"
        'if [ "$code" -ne 0 ]; then\n'
        '  finish pull "$code"\n'
        "fi\n"
        f"{inject}"
        f'{runtime.run} > "$out/probe.out" 2> "$out/probe.err"\n'
        'finish probe "$?"\n'
    )


def asks_for_gpus(options: SlurmRenderOptions) -> bool:
    """Whether a task's job asks Slurm for GPUs (not with `--gres none`: a CPU partition, a test cluster)."""
    return not (options.gres == "none" and options.gpus_per_task is None)


def gpu_request(options: SlurmRenderOptions) -> str:
    """The CDI devices a Podman task asks for: the job's, and none where it asks Slurm for none (there,
    `nvidia.com/gpu=all` would fail as an unresolvable CDI device)."""
    return CDI_GPUS if asks_for_gpus(options) else "gpus=()  # --gres none: the job asked Slurm for no GPU\n"


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
        "gpus": asks_for_gpus(options),
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
