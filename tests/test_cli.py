"""The CLI as a user meets it: clear one-paragraph errors and the documented exit codes."""

from __future__ import annotations

from pathlib import Path

from conftest import REPO, run_cli


def test_list_prints_stack_names():
    done = run_cli("list", "-m", str(REPO / "matrix.yaml"))
    assert done.returncode == 0
    assert done.stdout.split() == [
        "tf-2.15-cuda12",
        "tf-2.17-cuda12",
        "tf-2.19-cuda12",
        "tf-2.15-cpu",
        "torch-2.9-pypi",  # the default matrix's PyTorch and JAX stacks (issue 11)
        "jax-0.10-cu12",
    ]


def test_bad_matrix_exits_2_with_every_error(tmp_path: Path):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text("stacks:\n  - name: a\n    tensorflow: '2.15.1'\n    variant: gpu\n    python: 3\n")
    for command in (["list"], ["run", "a"], ["matrix"], ["build"]):
        done = run_cli(*command, "-m", str(matrix))
        assert done.returncode == 2, command
        assert f"{matrix}:4:14: error: bad variant 'gpu'" in done.stderr
        assert f"{matrix}:5:13: error: bad python '3'" in done.stderr
        assert "Traceback" not in done.stderr


def test_missing_matrix_and_unknown_stack_exit_2(tmp_path: Path):
    done = run_cli("list", "-m", str(tmp_path / "none.yaml"))
    assert done.returncode == 2 and "matrix file not found" in done.stderr
    done = run_cli("render", "no-such-stack", "-m", str(REPO / "matrix.yaml"))
    assert done.returncode == 2 and "no stack matches 'no-such-stack'" in done.stderr


def test_unreadable_ca_bundle_exits_2(tmp_path: Path):
    done = run_cli("render", "tf-2.15-cpu", "-m", str(REPO / "matrix.yaml"), "--ca-bundle", str(tmp_path / "x.pem"))
    assert done.returncode == 2 and "is not a readable file" in done.stderr


def test_render_writes_the_context_next_to_the_matrix(tmp_path: Path):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text((REPO / "matrix.yaml").read_text())
    done = run_cli("render", "tf-2.15-cpu", "-m", str(matrix))
    assert done.returncode == 0, done.stderr
    assert "tensorflow-cpu==2.15.1 nvidia-ml-py" in done.stdout
    assert (tmp_path / "build" / "tf-2.15-cpu" / "Dockerfile").read_text() == done.stdout
    assert (tmp_path / "build" / "tf-2.15-cpu" / "probe.py").is_file()


def test_unreachable_daemon_exits_3(tmp_path: Path):
    done = run_cli(
        "run", "tf-2.15-cpu", "-m", str(REPO / "matrix.yaml"), env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    )
    assert done.returncode == 3
    assert "Cannot reach the Docker daemon at unix://" in done.stderr and "Start it" in done.stderr
    assert "Traceback" not in done.stderr


def test_nonsense_numbers_are_refused_before_anything_runs(tmp_path: Path):
    for flags in (["--jobs", "0"], ["--build-timeout", "nan"], ["--build-timeout", "-5"], ["--run-timeout", "inf"]):
        done = run_cli("matrix", "-m", str(REPO / "matrix.yaml"), *flags, env={"DOCKER_HOST": f"unix://{tmp_path}/x"})
        assert done.returncode == 2, flags
        assert "is not a" in done.stderr and "Traceback" not in done.stderr


def test_build_takes_jobs_like_matrix():
    for command in ("build", "matrix", "run"):
        assert "--jobs N" in run_cli(command, "--help").stdout, command
