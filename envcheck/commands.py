"""One function per `envcheck` command: what the command does, given its options object (options.py); cli.py only
parses the command line into that object.

Each returns the exit code (envcheck.errors); errors meant for the user are raised as EnvcheckError.
Machine-readable output goes to stdout, progress for people to stderr (envcheck.log).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from envcheck import log
from envcheck.errors import EXIT_CONFIG, EXIT_OK, EXIT_STACK_FAILED, ConfigError, EnvcheckError
from envcheck.inputs.hosts import HostSpec
from envcheck.inputs.matrix import Layout, Matrix, load_matrix
from envcheck.inputs.options import (
    DEFAULTS,
    BuildOptions,
    CiOptions,
    CleanOptions,
    DoctorOptions,
    ExplainOptions,
    HostsOptions,
    K8sCollectOptions,
    K8sRenderOptions,
    LintOptions,
    ListOptions,
    PickOptions,
    PlanOptions,
    PreflightOptions,
    ProbeOptions,
    RenderOptions,
    ResultsExportOptions,
    ResultsImportOptions,
    RunOptions,
    SlurmCollectOptions,
    SlurmRenderOptions,
    SlurmSubmitOptions,
    TableOptions,
)
from envcheck.results.model import Result

if TYPE_CHECKING:
    from envcheck.render.dockerfile import BuildContext


def list_stacks(options: ListOptions) -> int:
    for stack in load_matrix(options.matrix).select(options.stacks):
        print(stack.name)
    return EXIT_OK


def lint(options: LintOptions) -> int:
    from envcheck.diagnosis.lint import lint as lint_matrix

    try:
        matrix = load_matrix(options.matrix)
    except ConfigError as exc:
        print(exc)
        return exc.exit_code
    findings = lint_matrix(matrix, strict=options.strict)
    for finding in findings:
        print(finding)
    errors = sum(f.severity == "error" for f in findings)
    log.info(f"{matrix.path}: {len(matrix.stacks)} stacks, {errors} errors, {len(findings) - errors} warnings")
    return EXIT_CONFIG if errors else EXIT_OK


def plan(options: PlanOptions) -> int:
    from envcheck.diagnosis.plan import host_from_args, host_from_nvml, plan, predicted_results, saved_probes
    from envcheck.knowledge import Knowledge
    from envcheck.results import store

    knowledge = Knowledge.load()
    matrix = load_matrix(options.matrix)
    host = host_from_args(options.driver, list(options.compute_capabilities), list(options.gpus), knowledge)
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
    stacks = matrix.select(options.stacks)
    verdicts = plan(stacks, host, knowledge, saved_probes(matrix.layout.results, stacks))
    if options.save:
        results_dir = matrix.layout.results
        with store.lock(results_dir):
            store.append(store.records_file(results_dir), predicted_results(stacks, verdicts, host, options.host_label))
        log.info(
            f"saved {len(verdicts)} predicted records to {store.records_file(results_dir)} (shown as 🔮 in the table)"
        )
    if options.as_json:
        print(json.dumps([v.as_dict() for v in verdicts], indent=2))
        return EXIT_OK
    listed = ", ".join(f"{label} ({cc})" if not label.startswith("compute") else label for label, cc in host.gpus)
    print(
        f"Plan for driver {host.driver}"
        + (f" with {listed}" if listed else " (no GPU given: compute capability not checked)")
    )
    width = max(len(v.stack) for v in verdicts)
    for v in verdicts:
        codes = f" [{', '.join(v.codes)}]" if v.codes else ""
        print(f"  {v.stack:<{width}}  {v.status.value:<5}  {v.reason}{codes}")
    return EXIT_OK


def pick(options: PickOptions) -> int:
    from envcheck import frameworks
    from envcheck.diagnosis.pick import format_text, pick_host, this_python
    from envcheck.diagnosis.pick import pick as pick_release
    from envcheck.knowledge import Knowledge

    knowledge = Knowledge.load()
    host = pick_host(options, knowledge)
    found = pick_release(frameworks.framework(options.framework), host, options.python or this_python(), knowledge)
    print(json.dumps(found.to_dict(), indent=2) if options.as_json else format_text(found))
    return EXIT_OK if found.chosen else EXIT_STACK_FAILED


def render(options: RenderOptions) -> int:
    from envcheck.render.dockerfile import render as render_stack

    matrix = load_matrix(options.matrix)
    for stack in matrix.select([options.stack]):
        ctx = render_stack(stack, matrix.layout.build, options.ca_bundle)
        if stack.kind == "dockerfile":  # the user's own files: shown, never written
            log.info(f"stack {stack.name} builds {ctx.dockerfile} as written, context {ctx.directory}/ (tag {ctx.tag})")
        else:
            log.info(f"wrote {ctx.directory}/ (tag {ctx.tag})")
        sys.stdout.write(ctx.dockerfile.read_text(encoding="utf-8"))
    return EXIT_OK


def build(options: BuildOptions) -> int:
    """Build; with --push, push each image to the registry (--registry or the matrix file's) as
    REGISTRY/NAME:<content hash> and print it by digest (what a CI build job hands the probe jobs)."""
    from envcheck.engine.registry import RegistryError
    from envcheck.engine.registry import push as push_image
    from envcheck.inputs.hosts import fleet_of
    from envcheck.runs.pipeline import MatrixRun

    matrix = load_matrix(options.matrix)
    stacks = matrix.select(options.stacks)  # an unknown stack is a config error, also where Docker is unavailable
    target = fleet_of(matrix.fleet, matrix.path, None, options.registry)[0].registry if options.push else None
    if options.push and not target:
        raise ConfigError(f"--push: no registry; add 'registry: HOST:PORT/PATH' to {matrix.path} or pass --registry")
    failed = 0
    run = MatrixRun(matrix, options.engine)
    for ctx, outcome in run.build_only(stacks):
        if isinstance(outcome, str) or not outcome.ok:
            failed += 1
            error = outcome if isinstance(outcome, str) else f"build failed (log: {outcome.log})"
            print(f"{ctx.stack.name}: {error}")
        elif target:
            try:
                print(push_image(run.api, target, ctx, lambda text, name=ctx.stack.name: log.info(f"[{name}] {text}")))
            except RegistryError as exc:
                failed += 1
                print(f"{ctx.stack.name}: {exc}")
        else:
            print(ctx.tag)
    return EXIT_STACK_FAILED if failed else EXIT_OK


def run_stacks(options: RunOptions) -> int:
    """`run` (one stack, single) and `matrix`: build, probe, diagnose, save; print text, JSON or JUnit.
    With --on, on each host named (fleet.py), the images carried by the registry."""
    from envcheck.inputs.hosts import fleet_of
    from envcheck.runs.pipeline import MatrixRun

    matrix = load_matrix(options.matrix)
    stacks = matrix.select(options.stacks)
    placement, engine = options.placement, options.engine
    fleet, source = fleet_of(matrix.fleet, matrix.path, placement.hosts_file, placement.registry)
    if placement.image_from is not None:
        fleet_of(fleet, matrix.path, None, placement.image_from)  # checked like --registry
    build_host = fleet.select([placement.build_on], source, "--build-on")[0] if placement.build_on else None
    start = time.monotonic()
    if placement.on:
        from envcheck.runs.fleet import FleetRun

        if placement.image_from:
            raise ConfigError("--image-from probes on this host's daemon; with --on, the registry carries images")
        if engine.host_label:
            raise ConfigError(
                "--host-label names the host of a run without --on; with --on each host's label is its name"
            )
        hosts = fleet.select(list(placement.on), source)
        results = FleetRun(matrix, engine, hosts, fleet.registry, build_host).run(stacks)
    else:
        results = MatrixRun(matrix, engine, build_host, placement.image_from).run(stacks)
    counts = Counter(str(r.status) for r in results)
    reused = sum(r.reused for r in results)
    log.info(
        f"summary: {len(results)} stacks in {log.format_seconds(time.monotonic() - start)}: "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        + (f" ({reused} reused unchanged)" if reused else "")
    )
    layout = matrix.layout
    log.info(
        f"results: {layout.results}/  build logs: {layout.build}/NAME/build.log  "
        f"table: {layout.docs / 'compatibility.md'}"
    )
    print_results(results, options.output, options.single)
    return EXIT_OK if all(r.status.ran for r in results) else EXIT_STACK_FAILED


def probe_images(options: ProbeOptions) -> int:
    """`envcheck probe IMAGE...`: images people already run, probed unchanged, no matrix; exit codes as `run`."""
    from envcheck.results.publish import format_probe
    from envcheck.runs.pipeline import probe_images as probe

    results = probe(options)
    if options.output == "text":
        print(format_probe(results))
    else:
        print_results(results, options.output, len(results) == 1)
    return EXIT_OK if all(r.status.ran for r in results) else EXIT_STACK_FAILED


def preflight(options: PreflightOptions) -> int:
    """`envcheck preflight`: the probe as one file to copy into any image, a GPU check for its start."""
    from envcheck.probe import write_preflight

    written = options.output or DEFAULTS.preflight
    path = Path(written)
    if path.is_dir() or written.endswith("/"):  # DIR/ names a directory, made if it is not there yet
        path = path / DEFAULTS.preflight
    try:
        if written.endswith("/"):
            path.parent.mkdir(parents=True, exist_ok=True)
        write_preflight(path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(path)
    log.info(
        f"copy it into an image and run `python3 {path.name} --require gpu` before the workload: exit 0 when the "
        "framework computes on a GPU, 1 (with the reason) when it does not, 2 on a bad argument, 3 where the "
        "image's Python is too old for the probe"
    )
    return EXIT_OK


def print_results(results: list[Result], output: str, single: bool) -> None:
    if output == "junit":
        from envcheck.results.junit import render_junit

        sys.stdout.write(render_junit(results))
    elif output == "json":
        from envcheck.results.publish import result_json

        data = [result_json(r) for r in results]  # one object for `run` of one stack; an array for several
        print(json.dumps(data[0] if single and len(data) == 1 else data, indent=2, sort_keys=True))
    else:
        from envcheck.results.publish import format_text

        with_host = len({r.host.label for r in results}) > 1
        for result in results:
            print(format_text(result, with_host))


def doctor(options: DoctorOptions) -> int:
    from envcheck.diagnosis.doctor import doctor as check_host
    from envcheck.diagnosis.doctor import format_text

    with log.step("probing this host"):
        found = check_host(list(options.scripts), quick=not options.full, framework=options.framework)
    print(json.dumps(found.to_dict(), indent=2, sort_keys=True) if options.as_json else format_text(found))
    return EXIT_OK if found.uses_gpu else EXIT_STACK_FAILED


def explain(options: ExplainOptions) -> int:
    from envcheck.diagnosis.explain import explain as explain_log
    from envcheck.diagnosis.explain import format_text, lines_of

    source = options.source
    if source == "-":
        found = explain_log(lines_of(sys.stdin.buffer), options, "-")
    else:
        path = Path(source)
        if path.is_dir():
            raise ConfigError(f"{source} is a directory; give the log file (or - to read standard input)")
        try:
            with path.open("rb") as stream:
                found = explain_log(lines_of(stream), options, source)
        except OSError as exc:
            raise ConfigError(f"cannot read the log {source}: {exc.strerror or exc}") from None
    print(json.dumps(found.to_dict(), indent=2, sort_keys=True) if options.as_json else format_text(found))
    return EXIT_STACK_FAILED if found.errors else EXIT_OK


def clean(options: CleanOptions) -> int:
    from envcheck.engine.clean import remove, stale
    from envcheck.engine.client import connect
    from envcheck.package_cache import cache as package_cache

    matrix = load_matrix(options.matrix)
    dry_run = options.dry_run
    if options.package_cache:  # needs no Docker: the cache is a directory of this host
        where = package_cache.directory()
        held = package_cache.usage(where) if dry_run else package_cache.clear(where)
        verb = "would free" if dry_run else "freed"
        log.info(f"package cache {where}: {verb} {held.files} files, {held.bytes / 1e9:.2f} GB")
    api = connect()
    items, kept = stale(api, matrix)
    for item in items:
        print(f"{'would remove' if dry_run else 'removing'} {item}")
    for line in kept.lines():
        log.info(line)
    total = sum(i.size for i in items) / 1e9
    if dry_run:
        log.info(f"{len(items)} items, {total:.2f} GB; run without --dry-run to remove them")
        return EXIT_OK
    errors = remove(api, items)
    for error in errors:
        log.warning(f"not removed: {error}")
    log.info(f"removed {len(items) - len(errors)} items, {total:.2f} GB")
    return EXIT_STACK_FAILED if errors else EXIT_OK


def table(options: TableOptions) -> int:
    from envcheck.results import publish, store

    layout = Layout.of(options.matrix)
    paths = [Path(p) for p in options.results] if options.results else [store.records_file(layout.results)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(
            f"no such results file or directory: {', '.join(missing)} (run `envcheck matrix` first, "
            "or pass --results FILE.jsonl|DIR)"
        )
    results, problems = store.read(paths)
    for problem in problems:
        log.warning(problem)
    if not results:
        raise ConfigError(
            f"no valid result records in {', '.join(map(str, paths))}; the published table in {layout.docs} is "
            "left as it was (run `envcheck matrix`, or pass other --results)"
        )
    with store.lock(layout.results):
        written = publish.write_outputs(layout.docs, results)
    for path in written:
        print(path)
    log.info(f"{len(results)} records from {len(paths)} source(s) merged")
    return EXIT_OK


def results_export(options: ResultsExportOptions) -> int:
    from envcheck.results import store

    output = options.output
    results, _ = store.own_records(Layout.of(options.matrix).results)
    merged = store.merge(results)
    text = "".join(store.record_line(r) for r in merged)
    if output:
        if Path(output).is_dir():
            raise ConfigError(
                f"results export: {output} is a directory; give -o a file name, e.g. {Path(output) / 'records.jsonl'}"
            )
        try:
            store.write_atomic(Path(output), text)
        except OSError as exc:
            raise ConfigError(f"results export: cannot write {output}: {exc.strerror or exc}") from None
        log.info(f"exported {len(merged)} records to {output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def results_import(options: ResultsImportOptions) -> int:
    from envcheck.results import store

    files = options.files
    if not files:
        raise ConfigError("results import needs FILE.jsonl arguments (records exported on another host)")
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise ConfigError(f"no such results file or directory: {', '.join(missing)}; nothing was imported")
    results, problems = store.read([Path(f) for f in files])
    for problem in problems:
        log.warning(problem)
    target = Layout.of(options.matrix).results
    added = store.import_records(target, results)
    log.info(f"imported {added} new records into {store.records_file(target)} ({len(results) - added} already there)")
    return EXIT_OK


def hosts(options: HostsOptions) -> int:
    """`envcheck hosts`: every host of 'hosts:' asked at once what its daemon is and has — a preflight before a long
    run. Exit 0 when all answer, 1 when some do not."""
    import concurrent.futures

    from envcheck.inputs.hosts import fleet_of, load_hosts_file

    if options.hosts_file:
        fleet, source = load_hosts_file(Path(options.hosts_file)), options.hosts_file
    else:
        matrix = load_matrix(options.matrix)
        fleet, source = fleet_of(matrix.fleet, matrix.path, None, None)
    if not fleet.hosts:
        raise ConfigError(f"{source} names no hosts: add a 'hosts:' list (README, 'Many hosts') or use --hosts FILE")
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(fleet.hosts)) as pool:
        found = list(pool.map(_host_report, fleet.hosts))
    if options.as_json:
        print(json.dumps({"source": source, "registry": fleet.registry, "hosts": found}, indent=2, sort_keys=True))
    else:
        print(f"{len(found)} hosts in {source}" + (f"; registry {fleet.registry}" if fleet.registry else ""))
        for host in found:
            if not host["reachable"]:
                print(f"  {host['name']:<16} UNREACHABLE  {host['error']}")
                continue
            gpus = ", ".join(host["gpus"]) or "none seen"
            runtime = "NVIDIA runtime" if host["nvidia_runtime"] else "no NVIDIA runtime"
            cdi = f", {len(host['cdi_devices'])} CDI devices" if host["cdi_devices"] else ""
            print(
                f"  {host['name']:<16} Docker {host['docker_version']}, {runtime}{cdi}; GPUs: {gpus}"
                + (f"; driver {host['driver']}" if host["driver"] else "")
                + f"  ({host['endpoint']})"
            )
    return EXIT_OK if all(h["reachable"] for h in found) else EXIT_STACK_FAILED


def _host_report(spec: HostSpec) -> dict[str, object]:
    """What one host's daemon says: reachable, Docker version, runtimes, CDI devices, GPUs (this machine's NVML for
    a daemon on this machine; elsewhere the GPUs its CDI devices name), or why it cannot be reached."""
    from envcheck.engine.client import connect, describe_host, docker_errors
    from envcheck.inputs.hosts import scrub

    report: dict[str, object] = {"name": spec.name, "endpoint": spec.endpoint, "reachable": False, "error": None}
    try:
        api = connect(timeout=30, spec=spec)
        host = describe_host(api, spec.name)
    except EnvcheckError as exc:
        report["error"] = scrub(str(exc), spec.docker)  # a context's settings may hold a URL with its password
        return report
    except docker_errors() as exc:
        report["error"] = f"the daemon answered but failed to describe itself: {scrub(str(exc), spec.docker)}"
        return report
    cdi_gpus = [d for d in host.cdi_devices if d.startswith("nvidia.com/gpu=") and not d.endswith("=all")]
    report.update(
        reachable=True,
        docker_version=host.docker_version,
        runtimes=host.runtimes,
        nvidia_runtime=host.nvidia_runtime,
        cdi_devices=host.cdi_devices,
        gpus=host.gpus or cdi_gpus,
        driver=host.driver,
        kernel=host.kernel,
    )
    return report


def ci_github(options: CiOptions) -> int:
    """`envcheck ci github`: the GitHub Actions workflow for this matrix, to stdout or -o FILE."""
    from envcheck.jobs.ci import github_workflow

    return _ci(options, github_workflow)


def ci_gitlab(options: CiOptions) -> int:
    """`envcheck ci gitlab`: the GitLab CI pipeline for this matrix, to stdout or -o FILE."""
    from envcheck.jobs.ci import gitlab_pipeline

    return _ci(options, gitlab_pipeline)


def _ci(options: CiOptions, write: Callable[[Matrix, CiOptions], str]) -> int:
    import dataclasses
    import os

    from envcheck.inputs.hosts import fleet_of

    matrix = load_matrix(options.matrix)
    if options.registry is not None:
        fleet_of(matrix.fleet, matrix.path, None, options.registry)  # checked like --registry elsewhere
    relative = os.path.relpath(matrix.path)  # the pipeline names the matrix file as the repository does
    options = dataclasses.replace(options, matrix=relative if not relative.startswith("..") else str(matrix.path))
    return _write(write(matrix, options), options.output)


def _write(text: str, output: str | None) -> int:
    if output is None:
        sys.stdout.write(text)
        return EXIT_OK
    path = Path(output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror or exc}") from None
    log.info(f"wrote {output}")
    return EXIT_OK


def _pushed_images(
    matrix: Matrix, registry: str | None, by_tag: bool, command: str
) -> tuple[dict[str, BuildContext], dict[str, str]]:
    """Each stack's image as a cluster pulls it: a built stack's REGISTRY/NAME:<content hash> (by its digest in the
    registry, asked through the Docker daemon with its credentials, unless by_tag) and an image stack's own
    reference (resolved to its digest the same way)."""
    from envcheck.inputs.hosts import fleet_of
    from envcheck.render.dockerfile import render as render_stack

    built = [s for s in matrix.stacks if s.kind != "image"]
    target = fleet_of(matrix.fleet, matrix.path, None, registry)[0].registry
    if not target and built:
        raise ConfigError(f"{command}: no registry; add 'registry: HOST:PORT/PATH' to {matrix.path} or --registry")
    contexts = {s.name: render_stack(s, matrix.layout.build) for s in built}
    images = {n: f"{target}/{n}:{ctx.content_hash}" for n, ctx in contexts.items()}
    images.update({s.name: str(s.image) for s in matrix.stacks if s.kind == "image"})
    if by_tag:
        return contexts, images
    from envcheck.engine.client import connect
    from envcheck.engine.images import by_digest
    from envcheck.engine.registry import pushed_digest

    api = connect()
    digests = {n: pushed_digest(api, str(target), ctx) for n, ctx in contexts.items()}
    missing = [n for n, d in digests.items() if d is None]
    if missing:
        raise ConfigError(
            f"{command}: {target} does not have {', '.join(missing)} as this checkout defines them: push them "
            f"first (envcheck build --push --registry {target}), or reference them by tag with --image-tag"
        )
    images.update({n: str(d) for n, d in digests.items()})
    for stack in (s for s in matrix.stacks if s.kind == "image"):
        try:
            images[stack.name] = by_digest(api, str(stack.image))
        except EnvcheckError as exc:
            raise ConfigError(
                f"{command}: stack {stack.name}: {exc}; or reference it by tag with --image-tag"
            ) from None
    return contexts, images


def k8s_render(options: K8sRenderOptions) -> int:
    """`envcheck k8s render`: a Job per stack × GPU product, images from the registry by digest (asked through the
    Docker daemon, with its credentials) or, with --image-tag, by their content-hash tag; an image stack's image by
    its own reference, resolved to its digest the same way. The probe's files go first, as a ConfigMap, when a Job
    mounts them."""
    from envcheck.jobs import dump_yaml, dump_yaml_all
    from envcheck.jobs.k8s import check, matrix_hash, needs_probe_files, probe_files, render_jobs

    matrix = load_matrix(options.matrix)
    check(options)
    contexts, images = _pushed_images(matrix, options.registry, options.by_tag, "k8s render")
    jobs = render_jobs(matrix, contexts, images, options)
    documents = [probe_files(matrix_hash(matrix), options), *jobs] if needs_probe_files(matrix, options) else jobs
    if options.output is None:
        sys.stdout.write(dump_yaml_all(documents))
        return EXIT_OK
    directory = Path(options.output)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for document in documents:
            (directory / f"{document['metadata']['name']}.yaml").write_text(dump_yaml(document))
    except OSError as exc:
        raise ConfigError(f"cannot write {options.output}: {exc.strerror or exc}") from None
    extra = " and the probe's files (a ConfigMap)" if len(documents) > len(jobs) else ""
    log.info(f"wrote {len(jobs)} Jobs{extra} to {directory}/ (kubectl apply -f {directory}/)")
    return EXIT_OK


def k8s_collect(options: K8sCollectOptions) -> int:
    """`envcheck k8s collect`: this matrix's Jobs' pods as records, merged into the table."""
    from envcheck.jobs.k8s import collect
    from envcheck.results import publish, store

    matrix = load_matrix(options.matrix)
    namespace = options.namespace
    results, skipped = collect(matrix, namespace)
    for line in skipped:
        log.warning(line)
    if not results:
        raise ConfigError(f"k8s collect: no finished envcheck Job of {matrix.path} in namespace {namespace}")
    added = store.import_records(matrix.layout.results, results)
    with store.lock(matrix.layout.results):
        publish.refresh(matrix.layout.results, matrix.layout.docs)
    for result in results:
        print(f"{result.stack} @ {result.host.label}: {result.status}" + (f" ({result.error})" if result.error else ""))
    log.info(f"{len(results)} Jobs read, {added} new records; table: {matrix.layout.docs / 'compatibility.md'}")
    return EXIT_OK if all(r.status.ran for r in results) else EXIT_STACK_FAILED


def slurm_render(options: SlurmRenderOptions) -> int:
    """`envcheck slurm render`: the directory of sbatch scripts, tasks table and probe files (see jobs/slurm/),
    images resolved as k8s render resolves them."""
    from envcheck.jobs.slurm import layout, render

    matrix = load_matrix(options.matrix)
    render.check(options)
    contexts, images = _pushed_images(matrix, options.registry, options.by_tag, "slurm render")
    hashes = {name: context.content_hash for name, context in contexts.items()}
    files = render.render(matrix, hashes, images, options)
    directory = Path(options.output or DEFAULTS.slurm_dir)
    render.write(files, directory)
    tasks = files[layout.TABLE].count("\n")
    log.info(
        f"wrote {tasks} tasks ({len(matrix.stacks)} stacks × {max(1, len(options.partitions))} partitions) and the "
        f"merge job to {directory}/ (envcheck slurm submit -o {directory})"
    )
    return EXIT_OK


def slurm_submit(options: SlurmSubmitOptions) -> int:
    """`envcheck slurm submit`: sbatch on the rendered scripts (one array per partition, then the merge job), job
    ids printed; --dry-run prints the commands instead; --wait waits, and Ctrl-C or SIGTERM cancels the jobs."""
    from envcheck.jobs.slurm import submit

    directory = Path(options.directory)
    if options.dry_run:
        for line in submit.dry_run(directory):
            print(line)
        return EXIT_OK
    submitted = submit.submit(directory)
    ids = [a["job"] for a in submitted["arrays"]]
    for array in submitted["arrays"]:
        print(f"{array['job']}\tarray {array['indices']}" + (f" on {array['partition']}" if array["partition"] else ""))
    print(f"{submitted['merge']}\tmerge (afterany:{':'.join(ids)})")
    if not options.wait:
        log.info(f"follow with squeue -j {','.join(ids)}; the merge job writes the table, or: envcheck slurm collect")
        return EXIT_OK
    everything = [*ids, submitted["merge"]]
    try:
        submit.wait(everything)
    except KeyboardInterrupt:  # Terminated (SIGTERM) too
        done = submit.cancel(everything)
        log.info(f"cancelled jobs {' '.join(everything)}" + ("" if done.returncode == 0 else f": {done.stderr}"))
        raise
    log.info("every job ended; the merge job wrote the table (or run: envcheck slurm collect)")
    return EXIT_OK


def slurm_collect(options: SlurmCollectOptions) -> int:
    """`envcheck slurm collect`: what the tasks wrote, and Slurm's accounting for those that wrote nothing, as
    records merged into the table."""
    from envcheck.jobs.slurm.collect import collect
    from envcheck.results import publish, store

    matrix = load_matrix(options.matrix)
    collected = collect(
        matrix,
        Path(options.directory),
        options.jobs,
        Path(options.results) if options.results else None,
        options.pending_limit,
    )
    for line in collected.skipped:
        log.warning(line)
    results = collected.results
    if not results:
        raise ConfigError(
            f"slurm collect: no task of {options.directory} has ended yet ({collected.running} pending or running)"
        )
    added = store.import_records(matrix.layout.results, results)
    with store.lock(matrix.layout.results):
        publish.refresh(matrix.layout.results, matrix.layout.docs)
    for result in results:
        print(f"{result.stack} @ {result.host.label}: {result.status}" + (f" ({result.error})" if result.error else ""))
    if collected.running:
        log.info(f"{collected.running} tasks are still pending or running: collect again later")
    log.info(f"{len(results)} tasks read, {added} new records; table: {matrix.layout.docs / 'compatibility.md'}")
    return EXIT_OK if all(r.status.ran for r in results) else EXIT_STACK_FAILED
