"""Every default of envcheck, in one table, and each command's options as one typed object.

DEFAULTS is the table: argparse's defaults and help texts (cli.py), the options classes' field defaults below and
the engine's fallbacks all read it, so each value is written once (modelled on cibuildwheel's options.py: typed
options from one defaults table). cli.py turns a command's parsed arguments into its options object; commands.py
takes that object. Flags that switch something on (--force, --json, ...) are off unless given and are not in the
table; None means "not given" where the command then decides (e.g. --jobs: per the building daemon's CPUs).

Environment fallbacks are resolved here and only here: ENVCHECK_CA_BUNDLE (and pip's PIP_CERT) for --ca-bundle,
ENVCHECK_HOST_LABEL for --host-label, ENVCHECK_PACKAGE_CACHE_DIR/_SIZE/_PORT and XDG_CACHE_HOME for the package
cache. DOCKER_HOST stays the docker SDK's own (engine/client.py); the probe and the mirror are processes of their
own and read the environment their parent hands them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from envcheck import frameworks
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import AUTO

ENV_CA_BUNDLE = "ENVCHECK_CA_BUNDLE"
ENV_HOST_LABEL = "ENVCHECK_HOST_LABEL"
ENV_PACKAGE_CACHE_DIR = "ENVCHECK_PACKAGE_CACHE_DIR"
ENV_PACKAGE_CACHE_SIZE = "ENVCHECK_PACKAGE_CACHE_SIZE"
ENV_PACKAGE_CACHE_PORT = "ENVCHECK_PACKAGE_CACHE_PORT"
ENV_CACHE_HOME = "XDG_CACHE_HOME"


@dataclass(frozen=True)
class Defaults:
    """The defaults table: each default of envcheck once, with why it is that value."""

    matrix: str = "matrix.yaml"  # the file a checkout keeps beside the results/, build/ and docs/ it writes
    build_timeout: float = 3600.0  # an hour: ample for a cold build of gigabytes of CUDA wheels; a hung one stops
    run_timeout: float = 600.0  # ten minutes: ample for the full benchmark; a hung GPU init must not hold the matrix
    max_seconds: float = 604800.0  # a week: beyond any build or probe, small enough for every clock's arithmetic
    jobs: int | None = None  # builds at once; None: one per CPU of the daemon that builds, at most jobs_cap
    jobs_cap: int = 4  # each build writes gigabytes: more at once than this only contend for the disk
    max_jobs: int = 1024  # the largest --jobs taken: far above any daemon's useful parallelism, so a typo is refused
    pull_allowance: int = 900  # seconds a CI or Kubernetes probe job may pull a multi-GB image, on top of run_timeout
    stale_stage_age: float = build_timeout  # clean: a CA-bundle stage younger than a build may be one running now
    ca_bundle: str = "auto"  # pip's own configured bundle, if any: builds behind a TLS-intercepting proxy need no flag
    cache_home: str = "~/.cache"  # the XDG Base Directory default of $XDG_CACHE_HOME
    package_cache_dir: str = "envcheck/packages"  # in the user's cache home: every checkout shares one wheel cache
    package_cache_size_gb: float = 25.0  # the default matrix's wheels take about 20 GB
    package_cache_disk_share: float = 0.25  # at most this share of its disk's free space: the builds need the rest
    package_cache_min_gb: float = 1.0  # below this a cache is not worth running
    package_cache_port: int = 3141  # devpi-server's default port, by convention a local PyPI mirror's
    namespace: str = "default"  # k8s collect: Kubernetes' own default, where `kubectl apply` puts render's Jobs
    runners: tuple[str, ...] = ("gpu",)  # ci: one self-hosted runner labelled for what it has; --runner names others
    job_ttl_seconds: int = 86400  # k8s: finished Jobs stay a day for `k8s collect`, then the cluster removes them
    slurm_dir: str = "slurm"  # slurm render -o: scripts, tasks table and results, on the file system nodes share
    slurm_runtime: str = "apptainer"  # the container runtime most HPC sites offer (formerly Singularity)
    slurm_gres: str = "gpu:1"  # one GPU per task, the GRES name Slurm's gres.conf gives NVIDIA GPUs
    slurm_time: str = "0:30:00"  # a task: the 10-minute probe, 15 minutes to pull multi-GB images, 5 to spare
    slurm_merge_time: str = "0:15:00"  # the merge job reads files and writes the table
    slurm_pending_limit: float = 86400.0  # collect: a task pending a day is one the partition will not run
    framework: str = frameworks.DEFAULT.name  # doctor: envcheck began as "why is TensorFlow not using the GPU?"
    output: str = "text"  # run and matrix: for people; --json and --format junit are asked for by machines
    log: str = "-"  # explain: standard input, where a piped or pasted log comes from
    probe_framework: str = AUTO  # probe IMAGE: an image people already run may hold any framework, or several
    preflight: str = "envcheck-preflight"  # preflight -o: the name the preflight's own usage line gives it


DEFAULTS = Defaults()


@dataclass(frozen=True, kw_only=True)
class Options:
    """How stacks are built and probed: what build, run and matrix hand the engine (pipeline.py, fleet.py)."""

    ca_bundle: Path | None = None  # resolved from --ca-bundle (ca_bundle below): the file pip trusts in builds
    force: bool = False  # build and probe again even when up to date (the layer cache still applies)
    no_cache: bool = False  # build without Docker's layer cache
    build_timeout: float = DEFAULTS.build_timeout
    run_timeout: float = DEFAULTS.run_timeout
    jobs: int | None = DEFAULTS.jobs  # probes run one at a time whatever this is
    quick: bool = False  # the probe's short benchmark
    host_label: str | None = None
    package_cache: bool = True  # serve pip in builds from envcheck's package cache (package_cache/cache.py)

    @property
    def probe_args(self) -> list[str]:
        return ["--quick"] if self.quick else []


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where stacks run: --on HOST… (or all) of the matrix file's `hosts:` or --hosts FILE, the registry that
    carries images there, and --build-on HOST (default: the daemon envcheck uses without --on)."""

    on: tuple[str, ...] = ()
    hosts_file: Path | None = None
    registry: str | None = None
    build_on: str | None = None
    image_from: str | None = None  # run/matrix: pull REGISTRY/NAME:<content hash> instead of building


# -- one options object per command (stacks: names or shell-style globs; none: every stack) -----------------------


@dataclass(frozen=True, kw_only=True)
class ListOptions:
    matrix: str = DEFAULTS.matrix
    stacks: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LintOptions:
    matrix: str = DEFAULTS.matrix
    strict: bool = False  # predicted failures are errors (exit 2)


@dataclass(frozen=True, kw_only=True)
class PlanOptions:
    """The host to plan for (none given: this host, through NVML) and whether to save the verdicts."""

    matrix: str = DEFAULTS.matrix
    stacks: tuple[str, ...] = ()
    driver: str | None = None
    compute_capabilities: tuple[str, ...] = ()
    gpus: tuple[str, ...] = ()
    as_json: bool = False
    save: bool = False
    host_label: str | None = None


@dataclass(frozen=True, kw_only=True)
class PickOptions:
    """The framework to pick a release of, and the host (none given: this host through NVML, this Python)."""

    framework: str
    driver: str | None = None
    compute_capabilities: tuple[str, ...] = ()
    gpus: tuple[str, ...] = ()
    python: str | None = None
    as_json: bool = False


@dataclass(frozen=True, kw_only=True)
class RenderOptions:
    stack: str
    matrix: str = DEFAULTS.matrix
    ca_bundle: Path | None = None


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    """build; with push, each image goes to the registry (registry, else the matrix file's) by content hash."""

    matrix: str = DEFAULTS.matrix
    stacks: tuple[str, ...] = ()
    engine: Options = field(default_factory=Options)
    push: bool = False
    registry: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """run (one stack: single, one JSON object) and matrix (every stack, or those of --only)."""

    matrix: str = DEFAULTS.matrix
    stacks: tuple[str, ...] = ()
    single: bool = False
    output: str = DEFAULTS.output  # text, json or junit
    engine: Options = field(default_factory=Options)
    placement: Placement = field(default_factory=Placement)


@dataclass(frozen=True, kw_only=True)
class ProbeOptions:
    """probe IMAGE...: images named on the command line, probed unchanged (no matrix, nothing built or saved)."""

    images: tuple[str, ...] = ()
    probe_framework: str = DEFAULTS.probe_framework  # a framework's name, or auto: the first the image's Python has
    python: str | None = None  # the image's interpreter; None: found as a user's `python` would be
    output: str = DEFAULTS.output  # text, json or junit
    engine: Options = field(default_factory=Options)  # run_timeout, quick and host_label apply


@dataclass(frozen=True, kw_only=True)
class PreflightOptions:
    output: str | None = None  # the file (or a directory for it); None: ./envcheck-preflight (DEFAULTS.preflight)


@dataclass(frozen=True, kw_only=True)
class HostsOptions:
    matrix: str = DEFAULTS.matrix
    hosts_file: str | None = None  # instead of the matrix file's hosts:
    as_json: bool = False


@dataclass(frozen=True, kw_only=True)
class K8sRenderOptions:
    """k8s render: a Job per stack × GPU product (none: per stack, on any node with a GPU)."""

    matrix: str = DEFAULTS.matrix
    gpu_products: tuple[str, ...] = ()
    registry: str | None = None  # else the matrix file's
    output: str | None = None  # a directory of one file per Job; None: stdout
    runtime_class: str | None = None
    namespace: str | None = None  # None: the Jobs name none, so `kubectl apply` puts them in its current one
    run_timeout: float = DEFAULTS.run_timeout
    by_tag: bool = False  # images by content-hash tag, not by digest (which asks the registry)
    quick: bool = False
    ttl_seconds: int = DEFAULTS.job_ttl_seconds
    gate: bool = False  # an initContainer on every Job runs the probe's GPU gate (boot.py --require gpu) first


@dataclass(frozen=True, kw_only=True)
class K8sCollectOptions:
    matrix: str = DEFAULTS.matrix
    namespace: str = DEFAULTS.namespace


@dataclass(frozen=True, kw_only=True)
class SlurmRenderOptions:
    """slurm render: a job array per partition (none: the cluster's default), one task per stack, and the merge
    job; GPUs by --gres (default gpu:1) or --gpus-per-task."""

    matrix: str = DEFAULTS.matrix
    partitions: tuple[str, ...] = ()
    gres: str | None = None  # None: DEFAULTS.slurm_gres, unless gpus_per_task is given
    gpus_per_task: int | None = None
    runtime: str = DEFAULTS.slurm_runtime
    account: str | None = None
    time: str = DEFAULTS.slurm_time
    output: str | None = None  # the directory; None: DEFAULTS.slurm_dir
    results: str | None = None  # where tasks write; None: OUTPUT/results
    registry: str | None = None  # else the matrix file's
    by_tag: bool = False  # images by content-hash tag, not by digest (which asks the registry)
    quick: bool = False


@dataclass(frozen=True, kw_only=True)
class SlurmSubmitOptions:
    directory: str = DEFAULTS.slurm_dir
    dry_run: bool = False
    wait: bool = False


@dataclass(frozen=True, kw_only=True)
class SlurmCollectOptions:
    matrix: str = DEFAULTS.matrix
    directory: str = DEFAULTS.slurm_dir
    jobs: tuple[str, ...] = ()  # array job ids; none: those submit recorded
    results: str | None = None  # None: where render told the tasks to write
    pending_limit: float = DEFAULTS.slurm_pending_limit


@dataclass(frozen=True, kw_only=True)
class CiOptions:
    """ci github and ci gitlab: GPU runner labels, the registry (None: GHCR or GitLab's own), the matrix file as the
    repository names it, timeouts, and whether the table job commits the table."""

    matrix: str = DEFAULTS.matrix
    runners: tuple[str, ...] = DEFAULTS.runners
    registry: str | None = None
    output: str | None = None  # a file; None: stdout
    commit: bool = False
    build_timeout: float = DEFAULTS.build_timeout
    run_timeout: float = DEFAULTS.run_timeout

    @property
    def results_path(self) -> str:
        """results/ beside the matrix file, as envcheck puts it (handed to scripts in a variable, never pasted)."""
        return str(Path(self.matrix).parent / "results")


@dataclass(frozen=True, kw_only=True)
class DoctorOptions:
    scripts: tuple[str, ...] = ()  # files or directories to scan for code that forces the CPU
    full: bool = False  # the full benchmark instead of the quick one
    as_json: bool = False
    framework: str = DEFAULTS.framework  # the verdict and exit code are about it; the others are reported too


# Checked whole (a trailing newline or junk is no version); PyPI's pre-releases and PyTorch's +cu121 are versions.
VERSION_FLAG = re.compile(
    r"[0-9]{1,4}(?:\.[0-9]{1,4}){0,3}(?:(?:a|b|rc)[0-9]+)?(?:\.post[0-9]+)?(?:\.dev[0-9]+)?(?:\+[a-z0-9.]+)?"
)
# As plan's --driver, within NVIDIA's numbering: a 3-digit branch (R384 ... R580) and up to two parts of 1-3 digits.
DRIVER_FLAG = re.compile(r"[1-9][0-9]{2}(?:\.[0-9]{1,3}){0,2}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ExplainOptions:
    """What the user tells about the machine besides the log (each wins over what the log says), the log and how to
    print the explanation. Positional in this order, as explain's callers build it."""

    framework: str | None = None
    version: str | None = None
    driver: str | None = None
    gpus: tuple[str, ...] = ()
    source: str = DEFAULTS.log  # a file, or - for standard input
    as_json: bool = False

    def __post_init__(self) -> None:
        """Flags are checked before the log is read, the way plan checks its own: a value is used whole or refused."""
        if self.version is not None and not VERSION_FLAG.fullmatch(self.version):
            raise ConfigError(
                f"--{self.framework or 'tensorflow'} {self.version!r} is not a version number (e.g. 2.15.1, "
                "2.16.0rc0, 2.5.1+cu121)"
            )
        if self.driver is not None and not DRIVER_FLAG.fullmatch(self.driver):
            raise ConfigError(
                f"--driver {self.driver!r} is not an NVIDIA driver version (expected a 3-digit branch and up to two "
                "parts of up to 3 digits, e.g. 550.54.15 or 535.54.03)"
            )
        for name in self.gpus:
            if not name.strip() or CONTROL.search(name):
                raise ConfigError(f'--gpu {name!r} is not a GPU name (e.g. "NVIDIA GeForce RTX 5090")')


@dataclass(frozen=True, kw_only=True)
class CleanOptions:
    matrix: str = DEFAULTS.matrix
    dry_run: bool = False
    package_cache: bool = False  # also empty the package cache (needs no Docker)


@dataclass(frozen=True, kw_only=True)
class TableOptions:
    matrix: str = DEFAULTS.matrix
    results: tuple[str, ...] = ()  # record files or directories; none: results/records.jsonl beside the matrix


@dataclass(frozen=True, kw_only=True)
class ResultsExportOptions:
    matrix: str = DEFAULTS.matrix
    output: str | None = None  # a file; None: stdout


@dataclass(frozen=True, kw_only=True)
class ResultsImportOptions:
    matrix: str = DEFAULTS.matrix
    files: tuple[str, ...] = ()  # records exported on another host


# -- environment fallbacks -----------------------------------------------------------------------------------------


def ca_bundle(value: str | None) -> Path | None:
    """--ca-bundle FILE | auto | none (default $ENVCHECK_CA_BUNDLE, else auto); auto takes pip's own bundle
    (PIP_CERT or `pip config get global.cert`) and is a no-op where pip has none, so builds behind a
    TLS-intercepting proxy work without a flag."""
    value = value if value is not None else os.environ.get(ENV_CA_BUNDLE, DEFAULTS.ca_bundle)
    if value in ("", "none"):
        return None
    if value == "auto":
        value = os.environ.get("PIP_CERT", "")
        if not value:
            found = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", "global.cert"],
                capture_output=True,
                text=True,
                check=False,
            )
            value = found.stdout.strip()
        if not value:
            return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"CA bundle {value!r} (from --ca-bundle or {ENV_CA_BUNDLE}) is not a readable file; "
            "pass a PEM file, 'auto' (pip's configured bundle) or 'none'."
        )
    return path


def host_label(value: str | None) -> str | None:
    """--host-label, else $ENVCHECK_HOST_LABEL, else None (each command then names the host its own way)."""
    return value or os.environ.get(ENV_HOST_LABEL) or None


def package_cache_dir() -> Path:
    """$ENVCHECK_PACKAGE_CACHE_DIR, else envcheck/packages in the user's cache directory ($XDG_CACHE_HOME)."""
    given = os.environ.get(ENV_PACKAGE_CACHE_DIR)
    if given:
        return Path(given).expanduser().absolute()
    home = os.environ.get(ENV_CACHE_HOME) or DEFAULTS.cache_home
    return (Path(home).expanduser() / DEFAULTS.package_cache_dir).absolute()


def package_cache_size_gb() -> float | None:
    """$ENVCHECK_PACKAGE_CACHE_SIZE in GB; None when unset (the cap then follows the disk: package_cache/cache.py)."""
    text = os.environ.get(ENV_PACKAGE_CACHE_SIZE, "")
    if not text:
        return None
    try:
        gigabytes = float(text)
    except ValueError:
        gigabytes = -1.0
    if not 0 < gigabytes < 1e6:
        raise ConfigError(
            f"{ENV_PACKAGE_CACHE_SIZE}={text!r} is not a positive number of gigabytes (default "
            f"{DEFAULTS.package_cache_size_gb:g}, or less on a fuller disk)"
        )
    return gigabytes


def package_cache_port() -> int:
    """$ENVCHECK_PACKAGE_CACHE_PORT, else the table's: the port the package cache listens on."""
    text = os.environ.get(ENV_PACKAGE_CACHE_PORT) or str(DEFAULTS.package_cache_port)
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(
            f"{ENV_PACKAGE_CACHE_PORT}={text!r} is not a TCP port (1-65535; default {DEFAULTS.package_cache_port})"
        )
    return int(text)
