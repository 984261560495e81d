"""The `envcheck` command line: parses arguments into each command's options object (options.py) and calls the
command's function in commands.py with it; argparse's defaults and help texts come from options.DEFAULTS.

Errors meant for the user are printed as one paragraph and mapped to the exit codes in envcheck.errors;
a traceback means a bug in envcheck.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NoReturn, TypeVar

from envcheck import __version__, commands, frameworks, log
from envcheck.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EnvcheckError, Terminated
from envcheck.inputs import options
from envcheck.inputs.hosts import scrub
from envcheck.inputs.matrix import INTERPRETER_RE, REFERENCE_RE
from envcheck.inputs.options import DEFAULTS

DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
WEEK = f"at most {DEFAULTS.max_seconds:g}: a week"


def positive_seconds(text: str) -> float:
    """A timeout: a plain decimal number of seconds, more than 0 and at most a week (float() would also take
    'inf', 'nan', '1e308' and surrounding whitespace, and a huge value overflows later in int() or time arithmetic)."""
    value = float(text) if DECIMAL.fullmatch(text) else math.nan
    if not 0 < value <= DEFAULTS.max_seconds:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive number of seconds up to {DEFAULTS.max_seconds:g} (7 days)"
        )
    return value


def positive_int(text: str) -> int:
    """A count such as --jobs: digits only (int() would also take ' 3\n' or '1_0'), at least 1, at most max_jobs."""
    value = int(text) if text.isascii() and text.isdigit() and len(text) < 6 else 0
    if not 1 <= value <= DEFAULTS.max_jobs:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {DEFAULTS.max_jobs}")
    return value


def image_reference(text: str) -> str:
    """An image as `docker run` names it (REPOSITORY[:TAG][@sha256:DIGEST], as an `image:` stack takes it); refused
    whole otherwise, and shown without what comes before an '@' that is no digest (a pasted user:password@host
    would be credentials)."""
    if REFERENCE_RE.match(text):
        return text
    shown = scrub(text)
    shown = "…@" + shown.rsplit("@", 1)[1] if "@" in shown else shown
    raise argparse.ArgumentTypeError(
        f"{shown[:200]!r} is not an image reference (expected REPOSITORY[:TAG][@sha256:DIGEST], as `docker run` takes)"
    )


def interpreter_path(text: str) -> str:
    """--python: an absolute path in the image, as a stack's `python:` takes it (it becomes the entrypoint)."""
    if INTERPRETER_RE.match(text):
        return text
    raise argparse.ArgumentTypeError(f"{text[:200]!r} is not an absolute path such as /opt/venv/bin/python")


def probe_frameworks(text: str) -> str:
    """probe's --framework: one framework, auto, or several joined by commas (probed in one process, the first as
    the primary, as a program that imports them all would)."""
    names = text.split(",")
    if text == DEFAULTS.probe_framework or (
        all(n in frameworks.NAMES for n in names) and len(set(names)) == len(names)
    ):
        return text
    raise argparse.ArgumentTypeError(
        f"{text[:200]!r}: expected {', '.join(frameworks.NAMES)}, {DEFAULTS.probe_framework}, or several joined by "
        "commas (torch,jax)"
    )


# -- parsed arguments → each command's options object ---------------------------------------------------------------


def engine_options(args: argparse.Namespace) -> options.Options:
    """The build/run flags a command was given (those it does not take keep the table's defaults), with their
    environment fallbacks resolved."""
    given = ("force", "no_cache", "build_timeout", "run_timeout", "jobs", "quick")
    return options.Options(
        ca_bundle=options.ca_bundle(args.ca_bundle),
        host_label=options.host_label(getattr(args, "host_label", None)),
        package_cache=not args.no_package_cache,
        **{name: getattr(args, name) for name in given if hasattr(args, name)},
    )


def list_options(args: argparse.Namespace) -> options.ListOptions:
    return options.ListOptions(matrix=args.matrix, stacks=tuple(args.stacks))


def lint_options(args: argparse.Namespace) -> options.LintOptions:
    return options.LintOptions(matrix=args.matrix, strict=args.strict)


def plan_options(args: argparse.Namespace) -> options.PlanOptions:
    return options.PlanOptions(
        matrix=args.matrix,
        stacks=tuple(args.stacks),
        driver=args.driver,
        compute_capabilities=tuple(args.compute_capability or ()),
        gpus=tuple(args.gpu or ()),
        as_json=args.json,
        save=args.save,
        host_label=options.host_label(args.host_label),
    )


def pick_options(args: argparse.Namespace) -> options.PickOptions:
    return options.PickOptions(
        framework=args.framework,
        driver=args.driver,
        compute_capabilities=tuple(args.compute_capability or ()),
        gpus=tuple(args.gpu or ()),
        python=args.python,
        as_json=args.json,
    )


def render_options(args: argparse.Namespace) -> options.RenderOptions:
    return options.RenderOptions(matrix=args.matrix, stack=args.stack, ca_bundle=options.ca_bundle(args.ca_bundle))


def build_options(args: argparse.Namespace) -> options.BuildOptions:
    return options.BuildOptions(
        matrix=args.matrix,
        stacks=tuple(args.stacks),
        engine=engine_options(args),
        push=args.push,
        registry=args.registry,
    )


def run_options(args: argparse.Namespace) -> options.RunOptions:
    """`run NAME` (one stack, printed as one JSON object) and `matrix [--only PATTERN...]`."""
    single = args.command == "run"
    return options.RunOptions(
        matrix=args.matrix,
        stacks=(args.stack,) if single else tuple(args.only or ()),
        single=single,
        output=args.format or ("json" if args.json else DEFAULTS.output),
        engine=engine_options(args),
        placement=options.Placement(
            on=tuple(args.on or ()),
            hosts_file=Path(args.hosts) if args.hosts else None,
            registry=args.registry,
            build_on=args.build_on,
            image_from=args.image_from,
        ),
    )


def probe_options(args: argparse.Namespace) -> options.ProbeOptions:
    return options.ProbeOptions(
        images=tuple(args.images),
        probe_framework=args.probe_framework,
        python=args.python,
        output=args.format or ("json" if args.json else DEFAULTS.output),
        engine=options.Options(
            run_timeout=args.run_timeout, quick=args.quick, host_label=options.host_label(args.host_label)
        ),
    )


def preflight_options(args: argparse.Namespace) -> options.PreflightOptions:
    return options.PreflightOptions(output=args.output)


def hosts_options(args: argparse.Namespace) -> options.HostsOptions:
    return options.HostsOptions(matrix=args.matrix, hosts_file=args.hosts, as_json=args.json)


def k8s_render_options(args: argparse.Namespace) -> options.K8sRenderOptions:
    return options.K8sRenderOptions(
        matrix=args.matrix,
        gpu_products=tuple(args.gpu_product or ()),
        registry=args.registry,
        output=args.output,
        runtime_class=args.runtime_class,
        namespace=args.namespace,
        run_timeout=args.run_timeout,
        by_tag=args.image_tag,
        quick=args.quick,
        gate=args.gate,
    )


def k8s_collect_options(args: argparse.Namespace) -> options.K8sCollectOptions:
    return options.K8sCollectOptions(matrix=args.matrix, namespace=args.namespace or DEFAULTS.namespace)


def slurm_render_options(args: argparse.Namespace) -> options.SlurmRenderOptions:
    return options.SlurmRenderOptions(
        matrix=args.matrix,
        partitions=tuple(args.partition or ()),
        gres=args.gres,
        gpus_per_task=args.gpus_per_task,
        runtime=args.runtime or DEFAULTS.slurm_runtime,
        account=args.account,
        time=args.time or DEFAULTS.slurm_time,
        output=args.output,
        results=args.results,
        registry=args.registry,
        by_tag=args.image_tag,
        quick=args.quick,
    )


def slurm_submit_options(args: argparse.Namespace) -> options.SlurmSubmitOptions:
    return options.SlurmSubmitOptions(directory=args.output or DEFAULTS.slurm_dir, dry_run=args.dry_run, wait=args.wait)


def slurm_collect_options(args: argparse.Namespace) -> options.SlurmCollectOptions:
    return options.SlurmCollectOptions(
        matrix=args.matrix,
        directory=args.output or DEFAULTS.slurm_dir,
        jobs=tuple(args.job or ()),
        results=args.results,
        pending_limit=args.pending_limit or DEFAULTS.slurm_pending_limit,
    )


def ci_options(args: argparse.Namespace) -> options.CiOptions:
    return options.CiOptions(
        matrix=args.matrix,
        runners=tuple(args.runner or DEFAULTS.runners),
        registry=args.registry,
        output=args.output,
        commit=args.commit,
        build_timeout=args.build_timeout,
        run_timeout=args.run_timeout,
    )


def doctor_options(args: argparse.Namespace) -> options.DoctorOptions:
    return options.DoctorOptions(
        scripts=tuple(args.script or ()), full=args.full, as_json=args.json, framework=args.framework
    )


def explain_options(args: argparse.Namespace) -> options.ExplainOptions:
    """At most one framework's version flag (--tensorflow, --torch, --jax: argparse keeps them exclusive) names the
    framework."""
    framework, version = next(
        ((name, getattr(args, name)) for name in frameworks.NAMES if getattr(args, name) is not None), (None, None)
    )
    return options.ExplainOptions(  # checks each flag (ConfigError)
        framework, version, args.driver, tuple(args.gpu or ()), source=args.log, as_json=args.json
    )


def clean_options(args: argparse.Namespace) -> options.CleanOptions:
    return options.CleanOptions(matrix=args.matrix, dry_run=args.dry_run, package_cache=args.package_cache)


def table_options(args: argparse.Namespace) -> options.TableOptions:
    return options.TableOptions(matrix=args.matrix, results=tuple(args.results or ()))


def results_export_options(args: argparse.Namespace) -> options.ResultsExportOptions:
    return options.ResultsExportOptions(matrix=args.matrix, output=args.output)


def results_import_options(args: argparse.Namespace) -> options.ResultsImportOptions:
    return options.ResultsImportOptions(matrix=args.matrix, files=tuple(args.files))


OptionsT = TypeVar("OptionsT")


@dataclass(frozen=True)
class Command(Generic[OptionsT]):
    """A command: how its options object is built from the parsed arguments, and the function that runs it."""

    options: Callable[[argparse.Namespace], OptionsT]
    run: Callable[[OptionsT], int]


# Keyed by command, or by command and the word after it where that picks other options or work.
COMMANDS: dict[str, Command[Any]] = {
    "list": Command(list_options, commands.list_stacks),
    "lint": Command(lint_options, commands.lint),
    "plan": Command(plan_options, commands.plan),
    "pick": Command(pick_options, commands.pick),
    "render": Command(render_options, commands.render),
    "build": Command(build_options, commands.build),
    "run": Command(run_options, commands.run_stacks),
    "matrix": Command(run_options, commands.run_stacks),
    "probe": Command(probe_options, commands.probe_images),
    "preflight": Command(preflight_options, commands.preflight),
    "hosts": Command(hosts_options, commands.hosts),
    "k8s render": Command(k8s_render_options, commands.k8s_render),
    "k8s collect": Command(k8s_collect_options, commands.k8s_collect),
    "slurm render": Command(slurm_render_options, commands.slurm_render),
    "slurm submit": Command(slurm_submit_options, commands.slurm_submit),
    "slurm collect": Command(slurm_collect_options, commands.slurm_collect),
    "ci github": Command(ci_options, commands.ci_github),
    "ci gitlab": Command(ci_options, commands.ci_gitlab),
    "doctor": Command(doctor_options, commands.doctor),
    "explain": Command(explain_options, commands.explain),
    "clean": Command(clean_options, commands.clean),
    "table": Command(table_options, commands.table),
    "results export": Command(results_export_options, commands.results_export),
    "results import": Command(results_import_options, commands.results_import),
}


def command_of(args: argparse.Namespace) -> Command[Any]:
    """The entry of `k8s render|collect`, `slurm render|submit|collect`, `results export|import` and
    `ci github|gitlab` by both words."""
    word = getattr(args, "action", None) or getattr(args, "system", None)
    return COMMANDS[f"{args.command} {word}" if word else args.command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="envcheck",
        description="Why is TensorFlow not using the GPU? Build, probe and diagnose a matrix of stacks.",
    )
    parser.add_argument("--version", action="version", version=f"envcheck {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-m", "--matrix", default=DEFAULTS.matrix, help=f"matrix file (default: ./{DEFAULTS.matrix})")
    bundle = argparse.ArgumentParser(add_help=False)
    bundle.add_argument(
        "--ca-bundle",
        default=None,
        metavar="FILE|auto|none",
        help="CA bundle pip uses during builds (behind a TLS-intercepting proxy); kept out of the final image. "
        f"Default: ${options.ENV_CA_BUNDLE}, else {DEFAULTS.ca_bundle}: pip's configured bundle, if it has one.",
    )
    building = argparse.ArgumentParser(add_help=False, parents=[bundle])
    building.add_argument(
        "--force", action="store_true", help="build and probe again even when the image and saved result are up to date"
    )
    building.add_argument("--no-cache", action="store_true", help="build without Docker's layer cache (cold)")
    building.add_argument(
        "--no-package-cache",
        action="store_true",
        help="builds fetch from the index themselves (with the CA bundle) instead of through envcheck's package "
        "cache of wheels, which otherwise runs on the Docker bridge for the length of the builds",
    )
    building.add_argument(
        "--build-timeout",
        type=positive_seconds,
        default=DEFAULTS.build_timeout,
        metavar="SECONDS",
        help=f"stop a build after this long and record it as timeout (default {DEFAULTS.build_timeout:g}, {WEEK})",
    )
    building.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        default=DEFAULTS.jobs,
        metavar="N",
        help="build up to N stacks at once; probes still run one at a time (default: one per CPU of the daemon "
        f"that builds, at most {DEFAULTS.jobs_cap})",
    )
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument(
        "--run-timeout",
        type=positive_seconds,
        default=DEFAULTS.run_timeout,
        metavar="SECONDS",
        help=f"kill the probe container after this long (default {DEFAULTS.run_timeout:g}, {WEEK})",
    )
    running.add_argument("--quick", action="store_true", help="smaller benchmark, for a fast check")
    running.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    running.add_argument(
        "--format",
        choices=["text", "json", "junit"],
        default=None,
        help=f"output on stdout: text, json (same as --json) or junit (JUnit XML); default {DEFAULTS.output}",
    )
    running.add_argument(
        "--host-label",
        metavar="LABEL",
        default=None,
        help=f"this host's name in the records and table (default: ${options.ENV_HOST_LABEL} or hostname)",
    )

    hosts_file = argparse.ArgumentParser(add_help=False)
    hosts_file.add_argument(
        "--hosts", metavar="FILE", help="a file with 'hosts:' (and 'registry:') instead of the matrix file's"
    )
    fleet = argparse.ArgumentParser(add_help=False, parents=[hosts_file])
    fleet.add_argument(
        "--on",
        nargs="+",
        action="extend",
        metavar="HOST",
        help="probe on these hosts (names under 'hosts:'), or 'all', at the same time; images go by the registry",
    )
    fleet.add_argument("--registry", metavar="HOST:PORT/PATH", help="push images there for --on (over 'registry:')")
    fleet.add_argument("--build-on", metavar="HOST", help="build on this host of 'hosts:' (default: the local daemon)")
    fleet.add_argument(
        "--image-from",
        metavar="REGISTRY",
        help="do not build: pull REGISTRY/NAME:<content hash> (pushed by `envcheck build --push`) and probe it",
    )

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("list", parents=[common], help="print the stack names")
    p.add_argument("stacks", nargs="*", help="names or shell-style globs")
    p = sub.add_parser("render", parents=[common, bundle], help="write build/NAME/ and print its Dockerfile")
    p.add_argument("stack")
    p = sub.add_parser("build", parents=[common, building], help="build stack images")
    p.add_argument("stacks", nargs="*", help="names or shell-style globs (default: all)")
    p.add_argument(
        "--push", action="store_true", help="push each image as REGISTRY/NAME:<content hash>, print its digest"
    )
    p.add_argument(
        "--registry", metavar="HOST:PORT/PATH", help="where --push pushes (default: the matrix's 'registry:')"
    )
    p = sub.add_parser(
        "run", parents=[common, building, running, fleet], help="build if needed, probe and diagnose one stack"
    )
    p.add_argument("stack")
    p = sub.add_parser("matrix", parents=[common, building, running, fleet], help="run every stack and write the table")
    p.add_argument("--only", action="append", metavar="PATTERN", help="only stacks matching (repeatable)")
    p = sub.add_parser(
        "probe",
        parents=[running],
        help="probe images people already run, unchanged: no matrix, nothing built",
        description="Pulls each image unless it is here, puts envcheck's probe into a container of it at run time "
        "(never into the image), runs it with the image's own Python and GPUs requested, and diagnoses why the "
        "framework does (not) use the GPU. Exit code 0 when every image's probe ran, 1 when one did not, 3 without "
        "Docker.",
    )
    p.add_argument(
        "images",
        nargs="+",
        type=image_reference,
        metavar="IMAGE",
        help="e.g. pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
    )
    p.add_argument(
        "--framework",
        dest="probe_framework",
        type=probe_frameworks,
        default=DEFAULTS.probe_framework,
        metavar="|".join((*frameworks.NAMES, DEFAULTS.probe_framework)),
        help=f"the framework to probe, or several joined by commas, imported in one process (default "
        f"{DEFAULTS.probe_framework}: every one the image's Python has, each by a probe of its own)",
    )
    p.add_argument(
        "--python",
        type=interpreter_path,
        metavar="PATH",
        help="the image's interpreter (default: its PATH's python3 or python, as `python` in the image finds it)",
    )
    p = sub.add_parser(
        "preflight",
        help="write envcheck-preflight: one file to copy into any image, a GPU check for its start",
        description="Writes the probe as one executable file (a zipapp any Python 2.7+ starts). In an image, "
        "`python3 envcheck-preflight --require gpu` exits 0 only when the framework really computes on a GPU, else "
        "1 with the reason by envcheck's diagnosis code, 2 on a bad argument, 3 where the image's Python is too old "
        "for the probe; without --require it prints the probe's JSON.",
    )
    p.add_argument(
        "-o", "--output", metavar="FILE", help=f"where (a file or directory; default ./{DEFAULTS.preflight})"
    )
    p = sub.add_parser("hosts", parents=[common, hosts_file], help="check every host of 'hosts:' before a long run")
    p.add_argument("--json", action="store_true", help="print what each host's daemon says as JSON")
    p = sub.add_parser("ci", parents=[common], help="write the matrix as a GitHub Actions or GitLab CI pipeline")
    p.add_argument("system", choices=["github", "gitlab"])
    p.add_argument(
        "--runner",
        action="append",
        metavar="LABEL",
        help=f"a GPU runner label/tag (repeatable; default {' '.join(DEFAULTS.runners)})",
    )
    p.add_argument(
        "--registry", metavar="HOST:PORT/PATH", help="where images go (default: 'registry:', else GHCR/GitLab's)"
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--commit", action="store_true", help="(github) the table job commits docs/compatibility.*")
    seconds = {"type": positive_seconds, "metavar": "SECONDS"}
    p.add_argument("--build-timeout", default=DEFAULTS.build_timeout, help="per stack build", **seconds)
    p.add_argument("--run-timeout", default=DEFAULTS.run_timeout, help="per probe", **seconds)
    p = sub.add_parser("k8s", parents=[common], help="write the matrix as Kubernetes Jobs, or collect their results")
    p.add_argument("action", choices=["render", "collect"])
    p.add_argument("--gpu-product", action="append", metavar="NAME", help="render: a GFD nvidia.com/gpu.product value")
    p.add_argument("--registry", metavar="HOST:PORT/PATH", help="render: where the images are ('registry:')")
    p.add_argument("-o", "--output", metavar="DIR", help="render: one file per Job in DIR (default: stdout)")
    p.add_argument("--runtime-class", metavar="NAME", help="render: runtimeClassName (e.g. nvidia)")
    p.add_argument("--namespace", metavar="NS", help=f"the Jobs' namespace (collect: default {DEFAULTS.namespace!r})")
    p.add_argument("--run-timeout", default=DEFAULTS.run_timeout, help="render: per probe", **seconds)
    p.add_argument("--image-tag", action="store_true", help="render: images by content-hash tag, not digest")
    p.add_argument("--quick", action="store_true", help="render: the probe's short benchmark")
    p.add_argument(
        "--gate",
        action="store_true",
        help="render: every Job first runs the probe's GPU gate (boot.py --require gpu) as an initContainer",
    )
    p = sub.add_parser(
        "slurm",
        parents=[common],
        help="write the matrix as Slurm job arrays, submit them, or collect what their tasks wrote",
        description="render writes a directory of sbatch scripts (one job array per partition, one task per "
        "stack, and a merge job) for a shared file system; submit runs sbatch on them; collect turns what the tasks "
        "wrote (and sacct, for tasks that wrote nothing) into records and the table.",
    )
    p.add_argument("action", choices=["render", "submit", "collect"])
    p.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help=f"the rendered directory (default ./{DEFAULTS.slurm_dir}), on storage the nodes share",
    )
    p.add_argument("--partition", action="append", metavar="P", help="render: a partition (repeatable)")
    gpus = p.add_mutually_exclusive_group()
    gpus.add_argument("--gres", metavar="SPEC", help=f"render: GPUs per task as GRES (default {DEFAULTS.slurm_gres})")
    gpus.add_argument("--gpus-per-task", type=positive_int, metavar="N", help="render: GPUs per task (not --gres)")
    p.add_argument(
        "--runtime",
        choices=["apptainer", "podman", "enroot", "charliecloud"],
        help=f"render: the container runtime on the nodes (default {DEFAULTS.slurm_runtime})",
    )
    p.add_argument("--account", metavar="A", help="render: the Slurm account to charge")
    p.add_argument("--time", metavar="T", help=f"render: a task's time limit (default {DEFAULTS.slurm_time})")
    p.add_argument("--registry", metavar="HOST:PORT/PATH", help="render: where the images are ('registry:')")
    p.add_argument("--image-tag", action="store_true", help="render: images by content-hash tag, not digest")
    p.add_argument("--quick", action="store_true", help="render: the probe's short benchmark")
    p.add_argument("--results", metavar="DIR", help="where tasks write (default DIR/results)")
    p.add_argument("--dry-run", action="store_true", help="submit: print the sbatch commands, run none")
    p.add_argument("--wait", action="store_true", help="submit: wait for the jobs; Ctrl-C cancels them (scancel)")
    p.add_argument("--job", action="append", metavar="ID", help="collect: an array's job id (default: submit's)")
    p.add_argument(
        "--pending-limit",
        type=positive_seconds,
        metavar="SECONDS",
        help=f"collect: a task pending longer is a cell saying so (default {DEFAULTS.slurm_pending_limit:g})",
    )
    p = sub.add_parser("lint", parents=[common], help="check matrix.yaml and predict failures from knowledge")
    p.add_argument("--strict", action="store_true", help="predicted failures are errors (exit 2), for CI")
    p = sub.add_parser("plan", parents=[common], help="predict, per stack, whether a GPU host will work")
    p.add_argument("stacks", nargs="*", help="names or shell-style globs (default: all)")
    p.add_argument("--driver", metavar="VERSION", help="NVIDIA driver version, e.g. 535.54.03 (default: NVML)")
    p.add_argument("--compute-capability", action="append", metavar="X.Y", help="a GPU's compute capability")
    p.add_argument("--gpu", action="append", metavar="NAME", help='a GPU product name, e.g. "NVIDIA A100-SXM4-40GB"')
    p.add_argument("--json", action="store_true", help="print verdicts as JSON")
    p.add_argument("--save", action="store_true", help="add the verdicts to results/ as predicted table cells")
    p.add_argument(
        "--host-label",
        metavar="LABEL",
        help=f"the host's name in the table (default: ${options.ENV_HOST_LABEL}, else from the flags)",
    )
    p = sub.add_parser(
        "pick",
        help="the newest release of a framework that will use this GPU with this driver, and how to install it",
        description="Names the newest release of FRAMEWORK that will use the GPU with this driver and Python (by the "
        "same knowledge as plan: Python wheels, the driver's CUDA, the GPU's architecture), the exact install command, "
        "and why each newer release does not work here. Defaults: this host through NVML, this Python. Exit code 0 "
        "when one works, 1 when none does, 2 on a bad argument or no driver to plan for.",
    )
    p.add_argument("framework", choices=frameworks.NAMES)
    p.add_argument("--driver", metavar="VERSION", help="NVIDIA driver version, e.g. 535.54.03 (default: NVML)")
    gpu = p.add_mutually_exclusive_group()
    gpu.add_argument("--gpu", action="append", metavar="NAME", help='a GPU product name, e.g. "Tesla P100-PCIE-16GB"')
    gpu.add_argument("--compute-capability", action="append", metavar="X.Y", help="a GPU's compute capability")
    p.add_argument("--python", metavar="X.Y", help="the Python the framework is for (default: this one)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p = sub.add_parser(
        "doctor", help="why TensorFlow (or PyTorch, JAX) on this host does (not) use the GPU; no Docker needed"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--framework",
        choices=frameworks.NAMES,
        default=DEFAULTS.framework,
        help=f"the framework the verdict and exit code are about (default {DEFAULTS.framework}); every other framework "
        "this Python has is reported too",
    )
    p.add_argument("--script", action="append", metavar="FILE", help="scan Python code for what forces the CPU")
    p.add_argument("--full", action="store_true", help="the full benchmark instead of the quick one")
    p = sub.add_parser(
        "explain",
        help="why the GPU is not used, from a log a GPU machine printed (a file, or - for stdin); no Docker needed",
        description="Reads a log (TensorFlow, PyTorch, JAX, XLA, cuDNN or Docker lines, with whatever else was "
        "pasted: nvidia-smi, pip or conda lists, an issue report), classifies every line against envcheck's "
        "knowledge and prints the verdict, each cause with the lines that prove it, and the fix. Exit code 0 when "
        "no cause at error level is found, 1 when one is, 2 when the log cannot be read.",
    )
    p.add_argument(
        "log", nargs="?", default=DEFAULTS.log, metavar="FILE|-", help="the log (default: - , standard input)"
    )
    versions = p.add_mutually_exclusive_group()
    for fw in frameworks.FRAMEWORKS:  # --tensorflow, --torch, --jax: one flag per framework of the registry
        said = ", if the log does not say" if fw is frameworks.DEFAULT else f" (the log is {fw.display_name}'s)"
        versions.add_argument(f"--{fw.name}", metavar="VERSION", help=f"the {fw.display_name} version{said}")
    p.add_argument("--driver", metavar="VERSION", help="the machine's NVIDIA driver version, e.g. 550.54.15")
    p.add_argument("--gpu", action="append", metavar="NAME", help='the machine\'s GPU, e.g. "NVIDIA GeForce RTX 5090"')
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p = sub.add_parser("clean", parents=[common], help="remove outdated envcheck images, containers, contexts")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, with sizes")
    p.add_argument(
        "--package-cache",
        action="store_true",
        help=f"also empty envcheck's package cache of wheels (${options.ENV_PACKAGE_CACHE_DIR}, default "
        f"{DEFAULTS.cache_home}/{DEFAULTS.package_cache_dir})",
    )
    p = sub.add_parser("table", parents=[common], help="write docs/compatibility.{md,html,json} from result records")
    p.add_argument(
        "--results",
        nargs="+",
        metavar="FILE_OR_DIR",
        help="records to merge, newest per (stack, host) (default: results/records.jsonl)",
    )
    p = sub.add_parser("results", parents=[common], help="export this host's records or import another host's")
    p.add_argument("action", choices=["export", "import"])
    p.add_argument("files", nargs="*", metavar="FILE.jsonl", help="records to import")
    p.add_argument("-o", "--output", metavar="FILE", help="export to FILE instead of stdout")
    return parser


def terminate(signum: int, frame: object) -> NoReturn:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, terminate)
    try:
        command = command_of(args)
        return command.run(command.options(args))
    except EnvcheckError as exc:
        log.info(f"envcheck: error: {exc}")
        return exc.exit_code
    except Terminated:
        log.info("envcheck: terminated; finished results are kept under results/")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        log.info("envcheck: interrupted; finished results are kept under results/")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader left (`| head`): what it took was printed; no traceback for the rest
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
