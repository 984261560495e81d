"""The `envcheck` command: list, lint, plan, render, build, run, matrix, doctor, table, results, clean.

Errors meant for the user are printed as one paragraph and mapped to the exit codes in envcheck.errors;
a traceback means a bug in envcheck.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from envcheck import __version__, log
from envcheck.errors import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STACK_FAILED,
    ConfigError,
    EnvcheckError,
)
from envcheck.matrix import Matrix, load_matrix


def resolve_ca_bundle(value: str | None) -> Path | None:
    """--ca-bundle FILE | auto | none; auto takes pip's own bundle (PIP_CERT or `pip config get global.cert`)."""
    value = value if value is not None else os.environ.get("ENVCHECK_CA_BUNDLE", "none")
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
            f"CA bundle {value!r} (from --ca-bundle or ENVCHECK_CA_BUNDLE) is not a readable file; "
            "pass a PEM file, 'auto' (pip's configured bundle) or 'none'."
        )
    return path


def _matrix(args: argparse.Namespace) -> Matrix:
    return load_matrix(args.matrix)


def cmd_list(args: argparse.Namespace) -> int:
    for stack in _matrix(args).select(args.stacks):
        print(stack.name)
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from envcheck.pipeline import paths
    from envcheck.render import render

    matrix = _matrix(args)
    for stack in matrix.select([args.stack]):
        ctx = render(stack, paths(matrix.root)["build"], resolve_ca_bundle(args.ca_bundle))
        log.info(f"wrote {ctx.directory}/ (tag {ctx.tag})")
        sys.stdout.write(ctx.dockerfile.read_text(encoding="utf-8"))
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    from envcheck.build import build
    from envcheck.engine import connect
    from envcheck.pipeline import paths
    from envcheck.render import render

    matrix = _matrix(args)
    stacks = matrix.select(args.stacks)
    ca_bundle = resolve_ca_bundle(args.ca_bundle)
    api = connect()
    failed = 0
    for stack in stacks:
        ctx = render(stack, paths(matrix.root)["build"], ca_bundle)
        outcome = build(api, ctx, force=args.force, timeout=args.build_timeout, no_cache=args.no_cache)
        if not outcome.ok:
            failed += 1
            log.info("\n".join(outcome.log_tail or []))
        print(outcome.image if outcome.ok else f"{stack.name}: build failed (log: {outcome.log_path})")
    return EXIT_STACK_FAILED if failed else EXIT_OK


def _check(args: argparse.Namespace, patterns: list[str]) -> list[dict[str, Any]]:
    from envcheck.pipeline import MatrixRun, Options, paths

    matrix = _matrix(args)
    stacks = matrix.select(patterns)
    options = Options(
        ca_bundle=resolve_ca_bundle(args.ca_bundle),
        force=args.force,
        no_cache=args.no_cache,
        run_timeout=args.run_timeout,
        build_timeout=args.build_timeout,
        probe_args=["--quick"] if args.quick else [],
        jobs=args.jobs,
        host_label=args.host_label or os.environ.get("ENVCHECK_HOST_LABEL"),
    )
    start = time.monotonic()
    results = MatrixRun(matrix, options).run(stacks)
    counts = Counter(r["status"] for r in results)
    reused = sum(bool(r.get("reused")) for r in results)
    log.info(
        f"summary: {len(results)} stacks in {log.format_seconds(time.monotonic() - start)}: "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        + (f" ({reused} reused unchanged)" if reused else "")
    )
    where = paths(matrix.root)
    log.info(
        f"results: {where['results']}/  build logs: {where['build']}/NAME/build.log  "
        f"table: {where['docs'] / 'compatibility.md'}"
    )
    return results


def _exit_code(results: list[dict[str, Any]]) -> int:
    from envcheck.report import RAN

    return EXIT_OK if all(r["status"] in RAN for r in results) else EXIT_STACK_FAILED


def print_result(result: dict[str, Any]) -> None:
    """The human summary of one stack: verdict first, then each cause with its fix."""
    probe = result.get("probe") or {}
    reused = " [reused: image and host unchanged]" if result.get("reused") else ""
    print(f"{result['stack']}: {result['status']}  ({result['image']}){reused}")
    if probe:
        print(
            f"  TensorFlow {probe.get('tensorflow')} on Python {probe.get('python')}, built for "
            f"CUDA {probe.get('build_cuda') or '-'} / cuDNN {probe.get('build_cudnn') or '-'}; "
            f"GPUs seen: {len(probe.get('gpus') or [])}; driver: {probe.get('driver') or 'none'}"
        )
    if result.get("error"):
        print(f"  error: {result['error']}")
    for d in result.get("diagnoses") or []:
        print(f"  [{d['severity']}] {d['code']}: {d['summary']}")
        for line in d.get("evidence") or []:
            print(f"      evidence: {line}")
        print(f"      fix: {d['fix']}")
    for b in result.get("benchmark") or []:
        figure = f"{b['tflops']} TFLOP/s" if b.get("tflops") is not None else f"failed: {b.get('error')}"
        print(f"  matmul {b.get('library', 'tensorflow')} {b['device']} {b['dtype']} n={b['n']}: {figure}")


def _output(args: argparse.Namespace, results: list[dict[str, Any]], single: bool) -> int:
    fmt = args.format or ("json" if args.json else "text")
    if fmt == "junit":
        from envcheck.report import render_junit

        sys.stdout.write(render_junit(results))
    elif fmt == "json":
        print(json.dumps(results[0] if single else results, indent=2, sort_keys=True))
    else:
        for result in results:
            print_result(result)
    return _exit_code(results)


def cmd_run(args: argparse.Namespace) -> int:
    return _output(args, _check(args, [args.stack]), single=True)


def cmd_matrix(args: argparse.Namespace) -> int:
    return _output(args, _check(args, args.only or []), single=False)


def cmd_lint(args: argparse.Namespace) -> int:
    from envcheck.lint import lint

    try:
        matrix = _matrix(args)
    except ConfigError as exc:
        print(exc)
        return exc.exit_code
    findings = lint(matrix, strict=args.strict)
    for finding in findings:
        print(finding)
    errors = sum(f.severity == "error" for f in findings)
    log.info(f"{matrix.path}: {len(matrix.stacks)} stacks, {errors} errors, {len(findings) - errors} warnings")
    return EXIT_CONFIG if errors else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from envcheck.knowledge import Knowledge
    from envcheck.plan import host_from_args, host_from_nvml, plan

    knowledge = Knowledge.load()
    matrix = _matrix(args)
    host = host_from_args(args.driver, args.compute_capability or [], args.gpu or [], knowledge)
    if host is None:
        host, why = host_from_nvml()
        if host is None:
            log.info(
                f"envcheck plan: {why}. Plan for another host with --driver VERSION "
                "[--compute-capability X.Y | --gpu NAME]."
            )
            return EXIT_CONFIG
        if why:
            log.info(f"envcheck plan: {why}; planning for driver {host.driver} only")
    stacks = matrix.select(args.stacks)
    verdicts = plan(stacks, host, knowledge)
    if args.save:
        from envcheck.plan import predicted_records
        from envcheck.report import RECORDS_FILE, append_record

        target = matrix.root / "results" / RECORDS_FILE
        for record in predicted_records(stacks, verdicts, host, args.host_label):
            append_record(target, record)
        log.info(f"saved {len(verdicts)} predicted records to {target} (shown as 🔮 in the table)")
    if args.json:
        print(json.dumps(verdicts, indent=2))
        return EXIT_OK
    gpus = ", ".join(f"{label} ({cc})" if not label.startswith("compute") else label for label, cc in host.gpus)
    print(
        f"Plan for driver {host.driver}"
        + (f" with {gpus}" if gpus else " (no GPU given: compute capability not checked)")
    )
    width = max(len(v["stack"]) for v in verdicts)
    for v in verdicts:
        codes = f" [{', '.join(v['codes'])}]" if v["codes"] else ""
        print(f"  {v['stack']:<{width}}  {v['verdict']:<5}  {v['reason']}{codes}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from envcheck.doctor import doctor, format_report

    with log.step("probing this host"):
        report = doctor(args.script or [], quick=not args.full)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else format_report(report))
    return EXIT_OK if report["uses_gpu"] else EXIT_STACK_FAILED


def cmd_clean(args: argparse.Namespace) -> int:
    from envcheck.clean import remove, stale
    from envcheck.engine import connect

    matrix = _matrix(args)
    api = connect()
    items = stale(api, matrix)
    for item in items:
        print(f"{'would remove' if args.dry_run else 'removing'} {item}")
    total = sum(i.size for i in items) / 1e9
    if args.dry_run:
        log.info(f"{len(items)} items, {total:.2f} GB; run without --dry-run to remove them")
        return EXIT_OK
    errors = remove(api, items)
    for error in errors:
        log.warning(f"not removed: {error}")
    log.info(f"removed {len(items) - len(errors)} items, {total:.2f} GB")
    return EXIT_STACK_FAILED if errors else EXIT_OK


def cmd_table(args: argparse.Namespace) -> int:
    from envcheck.report import RECORDS_FILE, read_records, write_outputs

    root = Path(args.matrix).parent
    sources = [Path(p) for p in args.results] if args.results else [root / "results" / RECORDS_FILE]
    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        raise ConfigError(
            f"no such results file or directory: {', '.join(missing)} (run `envcheck matrix` first, "
            "or pass --results FILE.jsonl|DIR)"
        )
    records, problems = read_records(sources)
    for problem in problems:
        log.warning(problem)
    for path in write_outputs(root / "docs", records):
        print(path)
    log.info(f"{len(records)} records from {len(sources)} source(s) merged")
    return EXIT_OK


def cmd_results(args: argparse.Namespace) -> int:
    from envcheck.report import RECORDS_FILE, append_record, merge, read_records

    own = Path(args.matrix).parent / "results" / RECORDS_FILE
    if args.action == "export":
        records, _ = read_records([own]) if own.exists() else ([], [])
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in merge(records))
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
            log.info(f"exported {len(merge(records))} records to {args.output}")
        else:
            sys.stdout.write(text)
        return EXIT_OK
    if not args.files:
        raise ConfigError("results import needs FILE.jsonl arguments (records exported on another host)")
    records, problems = read_records([Path(f) for f in args.files])
    for problem in problems:
        log.warning(problem)
    existing, _ = read_records([own]) if own.exists() else ([], [])
    seen = {json.dumps(r, sort_keys=True) for r in existing}
    added = 0
    for record in records:
        if json.dumps(record, sort_keys=True) not in seen:
            append_record(own, record)
            added += 1
    log.info(f"imported {added} new records into {own} ({len(records) - added} already there)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="envcheck",
        description="Why is TensorFlow not using the GPU? Build, probe and diagnose a matrix of stacks.",
    )
    parser.add_argument("--version", action="version", version=f"envcheck {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-m", "--matrix", default="matrix.yaml", help="matrix file (default: ./matrix.yaml)")
    building = argparse.ArgumentParser(add_help=False)
    building.add_argument(
        "--ca-bundle",
        default=None,
        metavar="FILE|auto|none",
        help="CA bundle pip uses during builds (behind a TLS-intercepting proxy); kept out of the final image. "
        "Default: $ENVCHECK_CA_BUNDLE or none; 'auto' uses pip's configured bundle.",
    )
    building.add_argument(
        "--force", action="store_true", help="build and probe again even when the image and saved result are up to date"
    )
    building.add_argument("--no-cache", action="store_true", help="build without Docker's layer cache (cold)")
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument(
        "--run-timeout",
        type=float,
        default=600,
        metavar="SECONDS",
        help="kill the probe container after this long (default 600)",
    )
    building.add_argument(
        "--build-timeout",
        type=float,
        default=3600,
        metavar="SECONDS",
        help="stop a build after this long and record it as timeout (default 3600)",
    )
    running.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        metavar="N",
        help="build up to N stacks at once; probes still run one at a time (default 1)",
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
        help="this host's name in the records and table (default: $ENVCHECK_HOST_LABEL or hostname)",
    )

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("list", parents=[common], help="print the stack names")
    p.add_argument("stacks", nargs="*", help="names or shell-style globs")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("render", parents=[common], help="write build/NAME/ and print its Dockerfile")
    p.add_argument("stack")
    p.add_argument("--ca-bundle", default=None, metavar="FILE|auto|none")
    p.set_defaults(func=cmd_render)
    p = sub.add_parser("build", parents=[common, building], help="build stack images")
    p.add_argument("stacks", nargs="*", help="names or shell-style globs (default: all)")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("run", parents=[common, building, running], help="build if needed, probe and diagnose one stack")
    p.add_argument("stack")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("matrix", parents=[common, building, running], help="run every stack and write the table")
    p.add_argument("--only", action="append", metavar="PATTERN", help="only stacks matching (repeatable)")
    p.set_defaults(func=cmd_matrix)
    p = sub.add_parser("lint", parents=[common], help="check matrix.yaml and predict failures from knowledge")
    p.add_argument("--strict", action="store_true", help="predicted failures are errors (exit 2), for CI")
    p.set_defaults(func=cmd_lint)
    p = sub.add_parser("plan", parents=[common], help="predict, per stack, whether a GPU host will work")
    p.add_argument("stacks", nargs="*", help="names or shell-style globs (default: all)")
    p.add_argument("--driver", metavar="VERSION", help="NVIDIA driver version, e.g. 535.54.03 (default: NVML)")
    p.add_argument("--compute-capability", action="append", metavar="X.Y", help="a GPU's compute capability")
    p.add_argument("--gpu", action="append", metavar="NAME", help='a GPU product name, e.g. "NVIDIA A100-SXM4-40GB"')
    p.add_argument("--json", action="store_true", help="print verdicts as JSON")
    p.add_argument("--save", action="store_true", help="add the verdicts to results/ as predicted table cells")
    p.add_argument("--host-label", metavar="LABEL", help="the host's name in the table (default: from the flags)")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("doctor", help="why TensorFlow on this host does (not) use the GPU; no Docker needed")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--script", action="append", metavar="FILE", help="scan Python code for what forces the CPU")
    p.add_argument("--full", action="store_true", help="the full benchmark instead of the quick one")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("clean", parents=[common], help="remove outdated envcheck images, containers, contexts")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, with sizes")
    p.set_defaults(func=cmd_clean)
    p = sub.add_parser("table", parents=[common], help="write docs/compatibility.{md,html,json} from result records")
    p.add_argument(
        "--results",
        nargs="+",
        metavar="FILE_OR_DIR",
        help="records to merge, newest per (stack, host) (default: results/records.jsonl)",
    )
    p.set_defaults(func=cmd_table)
    p = sub.add_parser("results", parents=[common], help="export this host's records or import another host's")
    p.add_argument("action", choices=["export", "import"])
    p.add_argument("files", nargs="*", metavar="FILE.jsonl", help="records to import")
    p.add_argument("-o", "--output", metavar="FILE", help="export to FILE instead of stdout")
    p.set_defaults(func=cmd_results)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EnvcheckError as exc:
        log.info(f"envcheck: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        log.info("envcheck: interrupted; finished results are kept under results/")
        return EXIT_INTERRUPTED
