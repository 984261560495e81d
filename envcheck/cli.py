"""The `envcheck` command line: parses arguments and calls one function in commands.py per command.

Errors meant for the user are printed as one paragraph and mapped to the exit codes in envcheck.errors;
a traceback means a bug in envcheck.
"""

from __future__ import annotations

import argparse
import math
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from envcheck import __version__, commands, log, options
from envcheck.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EnvcheckError, Terminated
from envcheck.matrix import FRAMEWORKS

MAX_SECONDS = 7 * 24 * 3600.0  # a week: far above any build or probe, and small enough for every clock's arithmetic
DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def positive_seconds(text: str) -> float:
    """A timeout: a plain decimal number of seconds, more than 0 and at most a week (float() would also take
    'inf', 'nan', '1e308' and surrounding whitespace, and a huge value overflows later in int() or time arithmetic)."""
    value = float(text) if DECIMAL.fullmatch(text) else math.nan
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive number of seconds up to {MAX_SECONDS:.0f} (7 days)"
        )
    return value


def positive_int(text: str) -> int:
    """A count such as --jobs: digits only (int() would also take ' 3\n' or '1_0'), at least 1, at most 1024."""
    value = int(text) if text.isascii() and text.isdigit() and len(text) < 6 else 0
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 1024")
    return value


def run_options(args: argparse.Namespace) -> options.Options:
    """The build/run flags a command was given, with their environment fallbacks resolved."""
    return options.Options(
        ca_bundle=options.ca_bundle(args.ca_bundle),
        force=getattr(args, "force", False),
        no_cache=getattr(args, "no_cache", False),
        build_timeout=getattr(args, "build_timeout", 3600.0),
        run_timeout=getattr(args, "run_timeout", 600.0),
        jobs=getattr(args, "jobs", None),
        quick=getattr(args, "quick", False),
        host_label=options.host_label(getattr(args, "host_label", None)),
        package_cache=not getattr(args, "no_package_cache", False),
    )


def placement(args: argparse.Namespace) -> options.Placement:
    return options.Placement(
        on=tuple(args.on or ()),
        hosts_file=Path(args.hosts) if args.hosts else None,
        registry=args.registry,
        build_on=args.build_on,
        image_from=args.image_from,
    )


def output_format(args: argparse.Namespace) -> str:
    return args.format or ("json" if args.json else "text")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": lambda a: commands.list_stacks(a.matrix, a.stacks),
    "lint": lambda a: commands.lint(a.matrix, a.strict),
    "plan": lambda a: commands.plan(
        a.matrix,
        a.stacks,
        a.driver,
        a.compute_capability or [],
        a.gpu or [],
        a.json,
        a.save,
        options.host_label(a.host_label),
    ),
    "render": lambda a: commands.render(a.matrix, a.stack, run_options(a)),
    "build": lambda a: commands.build(a.matrix, a.stacks, run_options(a), a.push, a.registry),
    "run": lambda a: commands.check(
        a.matrix, [a.stack], run_options(a), output_format(a), single=True, placement=placement(a)
    ),
    "matrix": lambda a: commands.check(
        a.matrix, a.only or [], run_options(a), output_format(a), single=False, placement=placement(a)
    ),
    "hosts": lambda a: commands.hosts(a.matrix, a.hosts, a.json),
    "k8s": lambda a: (
        commands.k8s_render(
            a.matrix,
            a.gpu_product or [],
            a.registry,
            a.output,
            a.runtime_class,
            a.namespace,
            a.run_timeout,
            a.image_tag,
            a.quick,
        )
        if a.action == "render"
        else commands.k8s_collect(a.matrix, a.namespace or "default")
    ),
    "ci": lambda a: commands.ci(
        a.system, a.matrix, a.runner or [], a.registry, a.output, a.commit, a.build_timeout, a.run_timeout
    ),
    "doctor": lambda a: commands.doctor(a.script or [], a.full, a.json, a.framework),
    "explain": lambda a: commands.explain(a.log, a.tensorflow, a.torch, a.jax, a.driver, a.gpu or [], a.json),
    "clean": lambda a: commands.clean(a.matrix, a.dry_run, a.package_cache),
    "table": lambda a: commands.table(a.matrix, a.results),
    "results": lambda a: (
        commands.results_export(a.matrix, a.output)
        if a.action == "export"
        else commands.results_import(a.matrix, a.files)
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="envcheck",
        description="Why is TensorFlow not using the GPU? Build, probe and diagnose a matrix of stacks.",
    )
    parser.add_argument("--version", action="version", version=f"envcheck {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-m", "--matrix", default="matrix.yaml", help="matrix file (default: ./matrix.yaml)")
    bundle = argparse.ArgumentParser(add_help=False)
    bundle.add_argument(
        "--ca-bundle",
        default=None,
        metavar="FILE|auto|none",
        help="CA bundle pip uses during builds (behind a TLS-intercepting proxy); kept out of the final image. "
        f"Default: ${options.ENV_CA_BUNDLE}, else auto: pip's configured bundle, if it has one.",
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
        default=3600.0,
        metavar="SECONDS",
        help="stop a build after this long and record it as timeout (default 3600, at most 604800: a week)",
    )
    building.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        default=None,
        metavar="N",
        help="build up to N stacks at once; probes still run one at a time (default: one per CPU of the daemon "
        "that builds, at most 4)",
    )
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument(
        "--run-timeout",
        type=positive_seconds,
        default=600.0,
        metavar="SECONDS",
        help="kill the probe container after this long (default 600, at most 604800: a week)",
    )
    running.add_argument("--quick", action="store_true", help="smaller benchmark, for a fast check")
    running.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    running.add_argument(
        "--format",
        choices=["text", "json", "junit"],
        default=None,
        help="output on stdout: text (default), json (same as --json) or junit (JUnit XML)",
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
    p = sub.add_parser("hosts", parents=[common, hosts_file], help="check every host of 'hosts:' before a long run")
    p.add_argument("--json", action="store_true", help="print what each host's daemon says as JSON")
    p = sub.add_parser("ci", parents=[common], help="write the matrix as a GitHub Actions or GitLab CI pipeline")
    p.add_argument("system", choices=["github", "gitlab"])
    p.add_argument(
        "--runner", action="append", metavar="LABEL", help="a GPU runner label/tag (repeatable; default gpu)"
    )
    p.add_argument(
        "--registry", metavar="HOST:PORT/PATH", help="where images go (default: 'registry:', else GHCR/GitLab's)"
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--commit", action="store_true", help="(github) the table job commits docs/compatibility.*")
    p.add_argument("--build-timeout", type=positive_seconds, default=3600.0, metavar="SECONDS", help="per stack build")
    p.add_argument("--run-timeout", type=positive_seconds, default=600.0, metavar="SECONDS", help="per probe")
    p = sub.add_parser("k8s", parents=[common], help="write the matrix as Kubernetes Jobs, or collect their results")
    p.add_argument("action", choices=["render", "collect"])
    p.add_argument("--gpu-product", action="append", metavar="NAME", help="render: a GFD nvidia.com/gpu.product value")
    p.add_argument("--registry", metavar="HOST:PORT/PATH", help="render: where the images are ('registry:')")
    p.add_argument("-o", "--output", metavar="DIR", help="render: one file per Job in DIR (default: stdout)")
    p.add_argument("--runtime-class", metavar="NAME", help="render: runtimeClassName (e.g. nvidia)")
    p.add_argument("--namespace", metavar="NS", help="the Jobs' namespace (collect: default 'default')")
    p.add_argument("--run-timeout", type=positive_seconds, default=600.0, metavar="SECONDS", help="render: per probe")
    p.add_argument("--image-tag", action="store_true", help="render: images by content-hash tag, not digest")
    p.add_argument("--quick", action="store_true", help="render: the probe's short benchmark")
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
        "doctor", help="why TensorFlow (or PyTorch, JAX) on this host does (not) use the GPU; no Docker needed"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--framework",
        choices=FRAMEWORKS,
        default="tensorflow",
        help="the framework the verdict and exit code are about (default tensorflow); every other framework "
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
    p.add_argument("log", nargs="?", default="-", metavar="FILE|-", help="the log (default: - , standard input)")
    versions = p.add_mutually_exclusive_group()
    versions.add_argument("--tensorflow", metavar="VERSION", help="the TensorFlow version, if the log does not say")
    versions.add_argument("--torch", metavar="VERSION", help="the PyTorch version (the log is PyTorch's)")
    versions.add_argument("--jax", metavar="VERSION", help="the JAX version (the log is JAX's)")
    p.add_argument("--driver", metavar="VERSION", help="the machine's NVIDIA driver version, e.g. 550.54.15")
    p.add_argument("--gpu", action="append", metavar="NAME", help='the machine\'s GPU, e.g. "NVIDIA GeForce RTX 5090"')
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p = sub.add_parser("clean", parents=[common], help="remove outdated envcheck images, containers, contexts")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, with sizes")
    p.add_argument(
        "--package-cache",
        action="store_true",
        help="also empty envcheck's package cache of wheels ($ENVCHECK_PACKAGE_CACHE_DIR, default "
        "~/.cache/envcheck/packages)",
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
        return COMMANDS[args.command](args)
    except EnvcheckError as exc:
        log.info(f"envcheck: error: {exc}")
        return exc.exit_code
    except Terminated:
        log.info("envcheck: terminated; finished results are kept under results/")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        log.info("envcheck: interrupted; finished results are kept under results/")
        return EXIT_INTERRUPTED
