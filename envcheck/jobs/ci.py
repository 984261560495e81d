"""`envcheck ci github` and `envcheck ci gitlab`: the matrix as a CI pipeline of three stages, written from
matrix.yaml, never copied by hand.

1. build: build every stack's image once and push it (`envcheck build --push`) as REGISTRY/NAME:<content hash>;
2. probe: one job per stack × GPU runner label, on that runner: `envcheck run STACK --image-from REGISTRY
   --host-label LABEL --format junit`, which pulls the image the build pushed (the content hash is computed from
   the same checkout) and leaves its record (JSONL) and a JUnit file as artifacts, whatever the outcome;
3. table: every record merged by `envcheck table --results` into docs/compatibility.{md,html,json}.

An image stack (an image people already run) is not built: the build job leaves it out, and its probe job's `envcheck
run STACK` pulls the image by its own reference, on the runner, with the runner's Docker credentials (`--image-from`
applies only to the stacks envcheck builds, so one probe command serves every stack).

The registry credentials come from the CI system's own secrets (GitHub's GITHUB_TOKEN for GHCR, GitLab's
CI_REGISTRY_* variables), handed to `docker login` on standard input, never echoed; matrix values reach shell
commands only through environment variables, never pasted into the script text. So does the matrix file's path:
GitHub evaluates `${{ }}` in every value, so a `${{` in it is written as the expression of the literal '${{', and
GitLab's variable holding it is not expanded; a path with control characters is refused.

Names are injective: an artifact and a record file per stack × runner, joined by '@', which neither a stack name
nor a runner label can contain. What the engines refuse at run time is refused here: more probe jobs than one
matrix may make, timeouts beyond a job's limit, a runner given twice.
"""

from __future__ import annotations

import functools
import math
import re
import shlex
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from envcheck import __version__
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import Matrix
from envcheck.inputs.options import DEFAULTS, CiOptions
from envcheck.jobs import dump_yaml

RUNNER_LABEL = "a label of letters, digits, '.', '_' or '-' (a self-hosted runner's label or GitLab runner tag)"
CELL = "@"  # joins stack and runner in artifact and file names: in neither a stack name nor a runner label
# docs.github.com, "Usage limits for self-hosted runners" (and workflow syntax, jobs.<job_id>.strategy.matrix):
# "A job matrix can generate a maximum of 256 jobs per workflow run"; "Each job in a workflow can run for up to
# 5 days of execution time". GitHub-hosted runners (the build job's ubuntu-latest) stop a job at 6 hours.
GITHUB_MATRIX_JOBS = 256
SELF_HOSTED_MINUTES = 5 * 24 * 60
HOSTED_MINUTES = 360
# GitLab: parallel:matrix creates at most 200 jobs (GitLab's own CI schema, ci.json as check-jsonschema vendors it:
# `parallel` at most 200, `matrix` maxItems 200; gitlab-org/gitlab#547976 asks to make the 200 configurable).
GITLAB_MATRIX_JOBS = 200


@functools.cache
def pinned() -> dict[str, dict[str, str]]:
    """actions.yaml: each action's repository, commit and the release that commit is (read once)."""
    return yaml.safe_load((Path(__file__).with_name("actions.yaml")).read_text(encoding="utf-8"))["actions"]


def actions() -> dict[str, str]:
    """uses: strings pinned by commit."""
    return {name: f"{a['uses']}@{a['sha']}" for name, a in pinned().items()}


def check(matrix: Matrix, options: CiOptions, limit: int, system: str) -> None:
    """Everything the pipeline would paste or the engine would refuse, refused before a file is written."""
    seen: dict[str, str] = {}
    for label in options.runners:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", label):
            raise ConfigError(f"--runner {label!r}: expected {RUNNER_LABEL}")
        if label.lower() in seen:  # GitHub's runner labels are not case-sensitive
            raise ConfigError(
                f"--runner {label!r} is given twice ({seen[label.lower()]!r}): one probe job per stack and runner"
            )
        seen[label.lower()] = label
    for text in (options.matrix, matrix.path.name):
        odd = next(
            (c for c in text if unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")), None
        )
        if odd is not None:
            raise ConfigError(
                f"the matrix path {text!r} has a control character or invisible format character "
                f"(U+{ord(odd):04X}); CI files name it literally: rename the directory or the file"
            )
    jobs = len(matrix.stacks) * len(options.runners)
    if jobs > limit:
        raise ConfigError(
            f"{len(matrix.stacks)} stacks × {len(options.runners)} runners make {jobs} probe jobs; {system} allows at "
            f"most {limit} jobs in one matrix: split the matrix file, or probe fewer stacks or runners per pipeline"
        )
    if not (math.isfinite(options.build_timeout) and 0 < options.build_timeout <= HOSTED_MINUTES * 60):
        raise ConfigError(
            f"--build-timeout {options.build_timeout:g}: the build job stops after {HOSTED_MINUTES} minutes (GitHub's "
            f"limit for a hosted runner's job), so one stack's build may take at most {HOSTED_MINUTES * 60} seconds"
        )
    positive = math.isfinite(options.run_timeout) and options.run_timeout > 0
    if not positive or probe_minutes(options) > SELF_HOSTED_MINUTES:
        raise ConfigError(
            f"--run-timeout {options.run_timeout:g}: the probe job (the probe, {DEFAULTS.pull_allowance} s to pull, "
            f"5 minutes to spare) may run at most {SELF_HOSTED_MINUTES} minutes, GitHub's 5-day limit for a "
            "self-hosted runner's job, which envcheck keeps for GitLab too"
        )


def header(matrix: Matrix, command: str) -> str:
    return (
        f"# Generated by `{command}` (envcheck {__version__}) from {matrix.path.name}: {len(matrix.stacks)} stacks.\n"
        "# Regenerate it after changing the matrix; do not edit by hand.\n"
    )


def minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


def probe_minutes(options: CiOptions) -> int:
    """A probe job's timeout: the probe's, the pull's and 5 minutes to spare."""
    return minutes(options.run_timeout + DEFAULTS.pull_allowance) + 5


def build_minutes(matrix: Matrix, options: CiOptions) -> int:
    """Builds run one after another; GitHub's hosted runners allow at most 360 minutes."""
    return min(HOSTED_MINUTES, minutes(options.build_timeout * len(matrix.stacks)) + 10)


def whole_seconds(value: float) -> str:
    """A timeout as the envcheck command line takes it: whole seconds, never rounded down to 0."""
    return str(math.ceil(value))


# The record a probe job leaves is the lines its run appended to results/records.jsonl (a checkout may carry older
# ones): count before, keep what came after. `results` names the variable that holds results/ (never its value).
def count_records(results: str) -> str:
    file = f'"${results}/records.jsonl"'
    return f'mkdir -p "${results}" records && touch {file} && wc -l < {file} > records/.before'


def keep_record(results: str) -> str:
    return (
        f'tail -n +"$(( $(cat records/.before) + 1 ))" "${results}/records.jsonl" > "records/$STACK{CELL}$RUNNER.jsonl"'
        " && rm -f records/.before"
    )


def github_literal(text: str) -> str:
    """`text` as a GitHub workflow value: GitHub evaluates each `${{ }}` in it, so every `${{` becomes the
    expression of the string literal '${{', which evaluates to exactly those characters."""
    return text.replace("${{", "${{ '${{' }}")


def github_path_pattern(path: str) -> str:
    """`path` as an on.push.paths filter: its pattern characters (* ? + [ ] ! and the escaping backslash)
    escaped, and each `${{` written `$*{` (no expression may appear in `on:`; `*` stands for the `{`, so the filter
    may also match a few odd sibling paths, which only starts a run more often)."""
    return re.sub(r"([\\*?+\[\]!])", r"\\\1", path).replace("${{", "$*{")


# -- GitHub Actions ---------------------------------------------------------------------------------------------


def github_workflow(matrix: Matrix, options: CiOptions) -> str:
    check(matrix, options, GITHUB_MATRIX_JOBS, "GitHub Actions")
    pins = actions()
    stacks = [s.name for s in matrix.stacks]
    m = github_literal(options.matrix)
    results = github_literal(options.results_path)
    registry = options.registry or matrix.fleet.registry
    set_registry = (
        {
            "name": "Registry",
            "run": 'echo "REGISTRY=$REGISTRY_GIVEN" >> "$GITHUB_ENV"',
            "env": {"REGISTRY_GIVEN": github_literal(registry)},
        }
        if registry
        else {
            "name": "Registry (GHCR of this repository's owner)",
            "run": 'echo "REGISTRY=ghcr.io/${OWNER,,}/envcheck" >> "$GITHUB_ENV"',
            "env": {"OWNER": "${{ github.repository_owner }}"},
        }
    )
    host = (registry or "ghcr.io").split("/", 1)[0]
    if host == "ghcr.io":
        login = {
            "name": "Log in to the registry",
            "uses": pins["docker-login"],
            "with": {
                "registry": "ghcr.io",
                "username": "${{ github.actor }}",
                "password": "${{ secrets.GITHUB_TOKEN }}",
            },
        }
    else:
        login = {
            "name": "Log in to the registry",
            "uses": pins["docker-login"],
            "with": {
                "registry": github_literal(host),
                "username": "${{ secrets.ENVCHECK_REGISTRY_USERNAME }}",
                "password": "${{ secrets.ENVCHECK_REGISTRY_PASSWORD }}",
            },
        }
    install = [
        {"uses": pins["checkout"], "with": {"persist-credentials": False}},
        {"uses": pins["setup-python"], "with": {"python-version": "3.11"}},
        {"name": "Install envcheck", "run": "python -m pip install ."},
    ]
    build = {
        "name": "Build and push every stack's image",
        "runs-on": "ubuntu-latest",
        "timeout-minutes": build_minutes(matrix, options),
        "permissions": {"contents": "read", "packages": "write"},
        "steps": [
            *install,
            set_registry,
            login,
            {
                "name": "Build and push",
                "run": 'envcheck build -m "$MATRIX" --push --registry "$REGISTRY" --build-timeout "$BUILD_TIMEOUT"',
                "env": {"MATRIX": m, "BUILD_TIMEOUT": whole_seconds(options.build_timeout)},
            },
        ],
    }
    artifact = f"envcheck-record-${{{{ matrix.stack }}}}{CELL}${{{{ matrix.runner }}}}"
    probe = {
        "name": "Probe ${{ matrix.stack }} on ${{ matrix.runner }}",
        "needs": "build",
        "runs-on": ["self-hosted", "linux", "${{ matrix.runner }}"],
        "timeout-minutes": probe_minutes(options),
        "permissions": {"contents": "read", "packages": "read"},
        "strategy": {"fail-fast": False, "matrix": {"stack": stacks, "runner": list(options.runners)}},
        "steps": [
            *install,
            set_registry,
            login,
            {
                "name": "Probe",
                "run": (
                    f"{count_records('RESULTS')}\n"
                    'envcheck run "$STACK" -m "$MATRIX" --image-from "$REGISTRY" --host-label "$RUNNER" '
                    f'--run-timeout "$RUN_TIMEOUT" --format junit > "junit-$STACK{CELL}$RUNNER.xml"\n'
                ),
                "env": {
                    "STACK": "${{ matrix.stack }}",
                    "RUNNER": "${{ matrix.runner }}",
                    "MATRIX": m,
                    "RESULTS": results,
                    "RUN_TIMEOUT": whole_seconds(options.run_timeout),
                },
            },
            {
                "name": "Keep the record",
                "if": "always()",
                "run": keep_record("RESULTS"),
                "env": {"STACK": "${{ matrix.stack }}", "RUNNER": "${{ matrix.runner }}", "RESULTS": results},
            },
            {
                "name": "Upload the record and JUnit file",
                "if": "always()",
                "uses": pins["upload-artifact"],
                "with": {"name": artifact, "path": "records/\njunit-*.xml\n", "if-no-files-found": "warn"},
            },
        ],
    }
    table_steps: list[dict[str, Any]] = [
        *install,
        {"uses": pins["download-artifact"], "with": {"pattern": "envcheck-record-*", "path": "records"}},
        {"name": "Merge the records", "run": 'envcheck table -m "$MATRIX" --results records', "env": {"MATRIX": m}},
        {
            "name": "Upload the table",
            "uses": pins["upload-artifact"],
            "with": {"name": "envcheck-compatibility", "path": "docs/compatibility.*"},
        },
    ]
    if options.commit:
        table_steps[0] = {"uses": pins["checkout"]}  # keeps the token for the push below
        table_steps.append(
            {
                "name": "Commit the table",
                "run": (
                    'git config user.name "envcheck"\n'
                    'git config user.email "envcheck@users.noreply.github.com"\n'
                    "git add docs/compatibility.md docs/compatibility.html docs/compatibility.json\n"
                    'git diff --cached --quiet || git commit -m "envcheck: compatibility table"\n'
                    "git push\n"
                ),
            }
        )
    table = {
        "name": "Merge the records into the table",
        "needs": "probe",
        "if": "always()",
        "runs-on": "ubuntu-latest",
        "timeout-minutes": 15,
        "permissions": {"contents": "write" if options.commit else "read"},
        "steps": table_steps,
    }
    workflow = {
        "name": "envcheck matrix",
        "on": {"workflow_dispatch": {}, "push": {"paths": [github_path_pattern(options.matrix)]}},
        "permissions": {},
        "jobs": {"build": build, "probe": probe, "table": table},
    }
    return header(matrix, "envcheck ci github") + _pins_comment() + dump_yaml(workflow)


def _pins_comment() -> str:
    listed = ", ".join(f"{a['uses']} {a['version']}" for a in pinned().values())
    return f"# Actions pinned by commit: {listed}.\n"


# -- GitLab CI ----------------------------------------------------------------------------------------------------


def gitlab_pipeline(matrix: Matrix, options: CiOptions, build_tag: str = "docker") -> str:
    check(matrix, options, GITLAB_MATRIX_JOBS, "GitLab CI")
    stacks = [s.name for s in matrix.stacks]
    registry = options.registry or matrix.fleet.registry
    login = 'printf "%s" "$CI_REGISTRY_PASSWORD" | docker login -u "$CI_REGISTRY_USER" --password-stdin "$CI_REGISTRY"'
    if registry:
        login = (
            'printf "%s" "$ENVCHECK_REGISTRY_PASSWORD" | docker login -u "$ENVCHECK_REGISTRY_USER" --password-stdin '
            f"{shlex.quote(registry.split('/', 1)[0])}"
        )
    install = "python3 -m pip install ."
    pipeline = {
        "stages": ["build", "probe", "table"],
        "variables": {  # paths as data: GitLab would otherwise expand $NAME in them
            "ENVCHECK_MATRIX": {"value": options.matrix, "expand": False},
            "ENVCHECK_RESULTS": {"value": options.results_path, "expand": False},
            "ENVCHECK_REGISTRY": registry or "$CI_REGISTRY_IMAGE/envcheck",
        },
        "envcheck-build": {
            "stage": "build",
            "tags": [build_tag],
            "timeout": f"{build_minutes(matrix, options)} minutes",
            "script": [
                install,
                login,
                'envcheck build -m "$ENVCHECK_MATRIX" --push --registry "$ENVCHECK_REGISTRY" '
                f"--build-timeout {whole_seconds(options.build_timeout)}",
            ],
        },
        "envcheck-probe": {
            "stage": "probe",
            "needs": ["envcheck-build"],
            "tags": ["$RUNNER"],
            "timeout": f"{probe_minutes(options)} minutes",
            "parallel": {"matrix": [{"STACK": stacks, "RUNNER": list(options.runners)}]},
            "script": [
                install,
                login,
                count_records("ENVCHECK_RESULTS"),
                'envcheck run "$STACK" -m "$ENVCHECK_MATRIX" --image-from "$ENVCHECK_REGISTRY" --host-label "$RUNNER" '
                f'--run-timeout {whole_seconds(options.run_timeout)} --format junit > "junit-$STACK{CELL}$RUNNER.xml"',
            ],
            "after_script": [keep_record("ENVCHECK_RESULTS")],
            "artifacts": {
                "when": "always",
                "paths": ["records/"],
                "reports": {"junit": "junit-*.xml"},
                "expire_in": "30 days",
            },
        },
        "envcheck-table": {
            "stage": "table",
            "needs": [{"job": "envcheck-probe", "artifacts": True}],
            "when": "always",
            "tags": [build_tag],
            "script": [install, 'envcheck table -m "$ENVCHECK_MATRIX" --results records'],
            "artifacts": {
                "when": "always",
                "paths": ["docs/compatibility.md", "docs/compatibility.html", "docs/compatibility.json"],
            },
        },
    }
    return header(matrix, "envcheck ci gitlab") + dump_yaml(pipeline)
