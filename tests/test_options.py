"""options.DEFAULTS is the single source of envcheck's defaults, and options.py the only reader of its environment
fallbacks: argparse's defaults, each command's options object and the engine all agree with the table."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
from pathlib import Path

import pytest

from conftest import REPO
from envcheck import cli
from envcheck.errors import ConfigError
from envcheck.inputs import options
from envcheck.inputs.options import DEFAULTS
from envcheck.jobs import k8s
from envcheck.package_cache import cache as package_cache

TABLE = {f.name: getattr(DEFAULTS, f.name) for f in dataclasses.fields(DEFAULTS)}
# An options field named otherwise than its table entry (the entry is named as the command line's argument).
ALIASES = {
    "source": "log",
    "ttl_seconds": "job_ttl_seconds",
    "runtime": "slurm_runtime",
    "time": "slurm_time",
    "directory": "slurm_dir",
    "pending_limit": "slurm_pending_limit",
}
# The smallest command line of each command, and the options object it must make: the class's own defaults.
BARE = {
    "list": (["list"], options.ListOptions()),
    "lint": (["lint"], options.LintOptions()),
    "plan": (["plan"], options.PlanOptions()),
    "pick": (["pick", "torch"], options.PickOptions(framework="torch")),
    "render": (["render", "a"], options.RenderOptions(stack="a")),
    "build": (["build"], options.BuildOptions()),
    "run": (["run", "a"], options.RunOptions(stacks=("a",), single=True)),
    "matrix": (["matrix"], options.RunOptions()),
    "hosts": (["hosts"], options.HostsOptions()),
    "k8s render": (["k8s", "render"], options.K8sRenderOptions()),
    "k8s collect": (["k8s", "collect"], options.K8sCollectOptions()),
    "slurm render": (["slurm", "render"], options.SlurmRenderOptions()),
    "slurm submit": (["slurm", "submit"], options.SlurmSubmitOptions()),
    "slurm collect": (["slurm", "collect"], options.SlurmCollectOptions()),
    "ci github": (["ci", "github"], options.CiOptions()),
    "ci gitlab": (["ci", "gitlab"], options.CiOptions()),
    "doctor": (["doctor"], options.DoctorOptions()),
    "explain": (["explain"], options.ExplainOptions()),
    "clean": (["clean"], options.CleanOptions()),
    "table": (["table"], options.TableOptions()),
    "results export": (["results", "export"], options.ResultsExportOptions()),
    "results import": (["results", "import"], options.ResultsImportOptions()),
    "probe": (["probe", "python:3.11"], options.ProbeOptions(images=("python:3.11",))),
    "preflight": (["preflight"], options.PreflightOptions()),
}
# Who may read os.environ besides options.py, and why: terminal width; the probe, which runs in the stack's
# container with its own environment; the mirror, a process of its own reading what package_cache hands it.
ENVIRONMENT_READERS = {"log.py", "package_cache/mirror.py"}


@pytest.fixture
def no_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment that sets no fallback: pip has no CA bundle configured, no ENVCHECK_* variable is set."""
    for name in (options.ENV_CA_BUNDLE, options.ENV_HOST_LABEL, "PIP_CERT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # pip reads no configuration file


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_argparse_defaults_are_the_tables():
    """Every argument's default is the table's entry of its name, or None/False: "not given" (the options builder
    then resolves a fallback or the command decides) and switches that are off."""
    seen = set()
    for command, parser in subcommands().items():
        for action in parser._actions:
            if action.dest in ("help", "version") or action.default in (None, False):
                continue
            assert action.dest in TABLE, (
                f"{command} {action.option_strings}: default {action.default!r} not from the table"
            )
            assert action.default == TABLE[action.dest], (command, action.dest)
            seen.add(action.dest)
    assert seen == {"matrix", "build_timeout", "run_timeout", "framework", "log", "probe_framework"}


def test_help_texts_show_the_tables_values():
    text = " ".join(subcommands()["run"].format_help().split())
    for shown in (
        f"matrix file (default: ./{DEFAULTS.matrix})",
        f"(default {DEFAULTS.build_timeout:g}, at most {DEFAULTS.max_seconds:g}: a week)",
        f"(default {DEFAULTS.run_timeout:g}, at most {DEFAULTS.max_seconds:g}: a week)",
        f"at most {DEFAULTS.jobs_cap})",
        f"else {DEFAULTS.ca_bundle}: pip's configured bundle",
    ):
        assert shown in text, shown


def test_every_options_fields_default_is_the_tables():
    """A field default that is a value (not None, empty or a switch) is the table's entry of its name."""
    classes = [
        c
        for c in vars(options).values()
        if dataclasses.is_dataclass(c) and isinstance(c, type) and c is not options.Defaults
    ]
    assert len(classes) >= 18
    checked = 0
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.default is dataclasses.MISSING or isinstance(f.default, bool) or f.default in (None, ()):
                continue
            name = ALIASES.get(f.name, f.name)
            assert name in TABLE and f.default == TABLE[name], (cls.__name__, f.name, f.default)
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("command", BARE)
def test_a_bare_command_line_makes_the_options_classes_defaults(command: str, no_fallbacks: None):
    argv, expected = BARE[command]
    args = cli.build_parser().parse_args(argv)
    entry = cli.command_of(args)
    assert entry is cli.COMMANDS[command]
    assert entry.options(args) == expected


def test_every_command_has_a_bare_case():
    assert set(BARE) == set(cli.COMMANDS)


def test_the_week_bound_and_the_pull_allowance_are_the_tables(tmp_path: Path):
    week = DEFAULTS.max_seconds
    assert cli.positive_seconds(f"{week:g}") == week
    with pytest.raises(argparse.ArgumentTypeError, match=f"{week:g}"):
        cli.positive_seconds(f"{week + 1:g}")
    k8s.check(options.K8sRenderOptions(run_timeout=week))
    with pytest.raises(ConfigError, match=f"at most {week:g} seconds"):
        k8s.check(options.K8sRenderOptions(run_timeout=week + 1))
    assert cli.positive_int(str(DEFAULTS.max_jobs)) == DEFAULTS.max_jobs
    with pytest.raises(argparse.ArgumentTypeError):
        cli.positive_int(str(DEFAULTS.max_jobs + 1))


# -- environment fallbacks: read through options, and only there -----------------------------------------------


def test_host_label_and_ca_bundle_fall_back_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_fallbacks: None
):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv(options.ENV_HOST_LABEL, "gpu-box")
    monkeypatch.setenv(options.ENV_CA_BUNDLE, str(bundle))
    parse = cli.build_parser().parse_args
    run = cli.run_options(parse(["run", "a"]))
    assert (run.engine.host_label, run.engine.ca_bundle) == ("gpu-box", bundle)
    assert cli.plan_options(parse(["plan"])).host_label == "gpu-box"
    assert cli.render_options(parse(["render", "a"])).ca_bundle == bundle
    flags = cli.run_options(parse(["run", "a", "--host-label", "other", "--ca-bundle", "none"]))
    assert (flags.engine.host_label, flags.engine.ca_bundle) == ("other", None)  # a flag wins over its variable
    monkeypatch.setenv(options.ENV_CA_BUNDLE, str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=options.ENV_CA_BUNDLE):
        cli.build_options(parse(["build"]))


def test_the_package_cache_asks_options_for_its_place_size_and_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(options.ENV_PACKAGE_CACHE_DIR, raising=False)
    monkeypatch.delenv(options.ENV_PACKAGE_CACHE_SIZE, raising=False)
    monkeypatch.delenv(options.ENV_PACKAGE_CACHE_PORT, raising=False)
    monkeypatch.setenv(options.ENV_CACHE_HOME, str(tmp_path / "xdg"))
    assert package_cache.directory() == tmp_path / "xdg" / DEFAULTS.package_cache_dir
    assert options.package_cache_port() == DEFAULTS.package_cache_port
    assert options.package_cache_size_gb() is None
    assert package_cache.size_cap(tmp_path) <= DEFAULTS.package_cache_size_gb * 1e9
    monkeypatch.setenv(options.ENV_PACKAGE_CACHE_DIR, str(tmp_path / "here"))
    monkeypatch.setenv(options.ENV_PACKAGE_CACHE_SIZE, "3")
    monkeypatch.setenv(options.ENV_PACKAGE_CACHE_PORT, "4000")
    assert package_cache.directory() == tmp_path / "here"
    assert package_cache.size_cap() == 3_000_000_000
    assert options.package_cache_port() == 4000


def environment_reads(path: Path) -> list[int]:
    """Lines of `path` that read os.environ or os.getenv; handing the whole environment on to a child process
    (`{**os.environ, ...}`) is not a read."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    handed_on = {
        id(v)
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for k, v in zip(node.keys, node.values, strict=True)
        if k is None
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
        and node.attr in ("environ", "environb", "getenv", "getenvb")
        and id(node) not in handed_on
    ]


def test_only_options_reads_the_environment():
    package = REPO / "envcheck"
    readers = {
        str(path.relative_to(package)): lines
        for path in sorted(package.rglob("*.py"))
        if (lines := environment_reads(path)) and path.parent.name != "probe"
    }
    assert "inputs/options.py" in readers
    assert set(readers) - {"inputs/options.py"} <= ENVIRONMENT_READERS, readers
