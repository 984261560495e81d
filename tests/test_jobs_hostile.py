"""Hostile input for the CI pipelines and Kubernetes Jobs (issue 24): a Kubernetes API that refuses, answers
HTML, null or nothing at all, or tells lies about its Jobs; stack, product and runner names that sanitise to the
same name; matrix paths with newlines, GitHub expressions and shell syntax; namespaces, timeouts and matrices
beyond what the engines accept. No cluster and no Docker: `k8s collect` talks to a small kube-apiserver stand-in
(stdlib http.server in a thread) through a kubeconfig, as kubectl would.

Expected values come from the engines' own rules, written out here: DNS-1123 labels (Kubernetes' validation),
GitHub's 256 jobs per matrix and 5 days per self-hosted job, GitLab's 200 jobs per parallel:matrix.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO, run_cli
from envcheck import commands
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import load_matrix
from envcheck.inputs.options import CiOptions, K8sCollectOptions, K8sRenderOptions
from envcheck.jobs import ci, k8s
from envcheck.results import store

# Kubernetes' rule for a DNS-1123 label (k8s.io/apimachinery validation.IsDNS1123Label): namespaces, Job names
DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
INT64_MAX = 2**63 - 1  # activeDeadlineSeconds is an int64 in the Job API
GITHUB_MATRIX_JOBS = 256  # docs.github.com, "Usage limits for self-hosted runners": "Job matrix"
GITHUB_SELF_HOSTED_MINUTES = 5 * 24 * 60  # the same page: "Job execution time", 5 days
GITLAB_MATRIX_JOBS = 200  # GitLab's CI schema: parallel at most 200 (also gitlab-org/gitlab#547976, #438369)
PRODUCT = "NVIDIA-A100-SXM4-80GB"
REGISTRY = "registry.example.com/envcheck"
RECORDED = json.loads((REPO / "tests" / "data" / "probe-jax0.10.2-cuda12-no-gpu-runtime.json").read_text())
NODE_LABELS = {  # GPU Feature Discovery's labels of an A100 node
    "nvidia.com/gpu.product": PRODUCT,
    "nvidia.com/gpu.count": "8",
    "nvidia.com/cuda.driver.major": "550",
    "nvidia.com/cuda.driver.minor": "54",
    "nvidia.com/cuda.driver.rev": "15",
}


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[test]'` brings it (these checks run offline)")
    return found


def write_matrix(directory: Path, names: list[str]) -> Path:
    """A matrix of JAX stacks (the recorded probe document is JAX 0.10.2 on Python 3.11)."""
    directory.mkdir(parents=True, exist_ok=True)
    stacks = "".join(f'  - name: {n}\n    jax: "0.10.2"\n' for n in names)
    path = directory / "matrix.yaml"
    path.write_text(f'defaults:\n  base: debian:bookworm-slim\n  python: "3.11"\nstacks:\n{stacks}')
    return path


def render(matrix: Path, products: list[str]) -> list[dict[str, Any]]:
    """The Jobs `k8s render -o DIR` writes: what `kubectl apply -f DIR` puts into the cluster."""
    out = matrix.parent / "jobs"
    commands.k8s_render(
        K8sRenderOptions(
            matrix=str(matrix), gpu_products=tuple(products), registry=REGISTRY, output=str(out), by_tag=True
        )
    )
    return [yaml.safe_load(f.read_text()) for f in sorted(out.glob("*.yaml"))]


# -- a kube-apiserver stand-in ------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    hang: bool = False  # never answer (until the test ends)


def ok(data: Any) -> Answer:
    return Answer(body=json.dumps(data).encode())


def refusal(code: int, reason: str, message: str) -> Answer:
    """The API's Status object, as kube-apiserver sends with every refusal."""
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason}
    return Answer(status=code, body=json.dumps({**status, "code": code}).encode())


HTML = Answer(body=b"<html><body><h1>Sign in</h1></body></html>", content_type="text/html")
HANG = Answer(hang=True)


@dataclass
class FakeApi:
    """Answers the paths collect reads: Jobs of a namespace, a Job's pods (by label selector), nodes, pod logs."""

    jobs: Answer = field(default_factory=lambda: ok({"kind": "JobList", "items": []}))
    pods: dict[str, Answer] = field(default_factory=dict)  # by job name
    nodes: dict[str, Answer] = field(default_factory=dict)
    logs: dict[str, Answer] = field(default_factory=dict)  # by pod name
    released: threading.Event = field(default_factory=threading.Event)

    def answer(self, url: str) -> Answer:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        missing = refusal(404, "NotFound", f"{parts.path} not found")
        if re.fullmatch(r"/apis/batch/v1/namespaces/[^/]+/jobs", parts.path):
            return self.jobs
        if re.fullmatch(r"/api/v1/namespaces/[^/]+/pods", parts.path):
            job = query.get("labelSelector", [""])[0].removeprefix("job-name=")
            return self.pods.get(job, ok({"kind": "PodList", "items": []}))
        if match := re.fullmatch(r"/api/v1/nodes/([^/]+)", parts.path):
            return self.nodes.get(match[1], missing)
        if match := re.fullmatch(r"/api/v1/namespaces/[^/]+/pods/([^/]+)/log", parts.path):
            return self.logs.get(match[1], missing)
        return missing


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = fake.answer(self.path)
            if answer.hang:
                fake.released.wait()
                return
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
                "users": [{"name": "nobody", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "nobody"}}],
                "current-context": "fake",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # the client reads KUBECONFIG once, when it is imported: point that reading at this server too
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    monkeypatch.setattr(k8s, "REQUEST_TIMEOUT", (2.0, 0.5), raising=False)  # keeps the hanging answers short
    monkeypatch.setattr(k8s, "RETRIES", 0, raising=False)
    yield fake
    fake.released.set()
    server.shutdown()
    server.server_close()


def job_list(jobs: list[dict[str, Any]]) -> Answer:
    return ok({"kind": "JobList", "apiVersion": "batch/v1", "items": jobs})


def image_of(job: dict[str, Any]) -> str:
    return job["spec"]["template"]["spec"]["containers"][0]["image"]


def pod_of(job: dict[str, Any], node: str = "gpu-node-1", image: str | None = None) -> dict[str, Any]:
    """The finished pod the Job controller made for `job`, labelled with its Job's name as the controller does."""
    name = job["metadata"]["name"]
    return {
        "metadata": {
            "name": f"{name}-x7k2p",
            "creationTimestamp": "2026-11-27T10:00:00Z",
            "labels": {"job-name": name, "batch.kubernetes.io/job-name": name},
        },
        "spec": {"nodeName": node, "containers": [{"name": "probe", "image": image or image_of(job)}]},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"name": "probe", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
        },
    }


def probe_log(**changes: Any) -> bytes:
    return (b"I0000 a framework line on stderr\n" + json.dumps({**RECORDED["probe"], **changes}).encode()) + b"\n"


def serve(fake: FakeApi, job: dict[str, Any], node: str = "gpu-node-1", log: bytes | None = None, **pod: Any) -> str:
    """`job` with one finished pod whose log is the recorded probe document; returns the pod's name."""
    made = pod_of(job, node, **pod)
    fake.pods[job["metadata"]["name"]] = ok({"kind": "PodList", "items": [made]})
    fake.logs[made["metadata"]["name"]] = Answer(body=log or probe_log(), content_type="text/plain")
    fake.nodes.setdefault(node, ok({"kind": "Node", "metadata": {"name": node, "labels": NODE_LABELS}}))
    return made["metadata"]["name"]


def collected(matrix: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, str], str]:
    """Runs `k8s collect`: ({stack: host label} of the records it kept, its warnings)."""
    capsys.readouterr()
    commands.k8s_collect(K8sCollectOptions(matrix=str(matrix)))
    out, err = capsys.readouterr()
    records, _ = store.own_records(matrix.parent / "results")
    assert len(records) == len(out.splitlines()), out
    return {r.stack: r.host.label for r in records}, err


# -- 1. collect: refusals, odd answers, silence -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (refusal(403, "Forbidden", 'jobs.batch is forbidden: User "ci" cannot list\x1b[2J\n'), "403 Forbidden"),
        (refusal(401, "Unauthorized", "Unauthorized"), "401"),
        (refusal(500, "InternalError", "etcdserver: request timed out"), "500"),
        (HTML, "not JSON"),
        (Answer(body=b'{"kind": "JobList", "items": ["caf\xe9"]}'), "not JSON"),
        (ok(["a", "list"]), "not a JSON object"),
        (ok({"kind": "JobList", "items": {"a": 1}}), "items"),
        (ok({"kind": "JobList", "items": None}), "no finished envcheck Job"),
        (HANG, "did not answer"),
    ],
    ids=["403", "401", "500", "html", "latin1", "list", "items-mapping", "items-null", "no-answer"],
)
def test_a_listing_the_api_refuses_is_one_clear_error(api: FakeApi, tmp_path: Path, answer: Answer, words: str):
    matrix = write_matrix(tmp_path / "m", ["jax-a"])
    api.jobs = answer
    with pytest.raises(ConfigError) as error:
        commands.k8s_collect(K8sCollectOptions(matrix=str(matrix)))
    message = str(error.value)  # what the command line prints, as one paragraph, with exit code 2
    assert error.value.exit_code == 2 and words in message and "\n" not in message and "\x1b" not in message, message
    assert "namespace default" in message or "no finished" in message, message


def test_problems_of_one_pod_or_node_cost_only_that_cell(
    api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    names = ["jax-ok", "jax-pods-500", "jax-node-404", "jax-node-403", "jax-node-hangs", "jax-latin1", "jax-log-hangs"]
    matrix = write_matrix(tmp_path / "m", names)
    jobs = {j["metadata"]["labels"]["envcheck/stack"]: j for j in render(matrix, [PRODUCT])}
    api.jobs = job_list(list(jobs.values()))
    serve(api, jobs["jax-ok"])
    api.pods[jobs["jax-pods-500"]["metadata"]["name"]] = refusal(500, "InternalError", "etcdserver: leader changed")
    serve(api, jobs["jax-node-404"], node="scaled-away")
    api.nodes["scaled-away"] = refusal(404, "NotFound", 'nodes "scaled-away" not found')
    serve(api, jobs["jax-node-403"], node="forbidden-node")
    api.nodes["forbidden-node"] = refusal(403, "Forbidden", 'nodes "forbidden-node" is forbidden')
    serve(api, jobs["jax-node-hangs"], node="slow-node")
    api.nodes["slow-node"] = HANG
    serve(api, jobs["jax-latin1"], log=b"caf\xe9 \xff\xfe on stderr\n" + probe_log())
    api.logs[serve(api, jobs["jax-log-hangs"])] = HANG

    kept, warnings = collected(matrix, capsys)
    # a node that cannot be read still leaves its pod's record, named by the GPU product the Job asked for
    assert kept == {
        "jax-ok": PRODUCT,
        "jax-node-404": PRODUCT,
        "jax-node-403": PRODUCT,
        "jax-node-hangs": PRODUCT,
        "jax-latin1": PRODUCT,
    }
    for located in (
        jobs["jax-pods-500"]["metadata"]["name"],
        jobs["jax-log-hangs"]["metadata"]["name"],
        "node scaled-away",
        "node forbidden-node",
        "node slow-node",
    ):
        assert located in warnings, (located, warnings)
    assert "500" in warnings and "404" in warnings and "403" in warnings and "Traceback" not in warnings
    records, _ = store.own_records(matrix.parent / "results")
    latin1 = next(r for r in records if r.stack == "jax-latin1")
    assert "caf\ufffd \ufffd\ufffd on stderr" in latin1.run.stderr_tail
    assert latin1.status.value == "cpu-only"  # the document was read despite the bytes before it


# -- 3. collect: the stack comes from the rendering and must agree with the probe's document ---------------------


def test_a_job_whose_labels_or_output_disagree_with_the_rendering_is_refused(
    api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    names = ["jax-good", "jax-relabelled", "jax-other-version", "jax-other-framework", "jax-other-image"]
    matrix = write_matrix(tmp_path / "m", names)
    jobs = {j["metadata"]["labels"]["envcheck/stack"]: j for j in render(matrix, [PRODUCT])}
    relabelled = jobs["jax-relabelled"]
    relabelled["metadata"]["labels"]["envcheck/stack"] = "jax-good"  # claims another stack's cell
    stray = json.loads(json.dumps(jobs["jax-good"]))
    stray["metadata"]["name"] = "envcheck-jax-good-impostor"  # a name this matrix never renders
    api.jobs = job_list([*jobs.values(), stray])
    serve(api, jobs["jax-good"])
    serve(api, relabelled)
    serve(api, stray)
    serve(api, jobs["jax-other-version"], log=probe_log(framework_version="0.4.30"))
    serve(api, jobs["jax-other-framework"], log=probe_log(framework="torch", framework_version="0.10.2"))
    serve(api, jobs["jax-other-image"], image=image_of(jobs["jax-good"]))

    kept, warnings = collected(matrix, capsys)
    assert kept == {"jax-good": PRODUCT}
    for job in (relabelled, stray, *(jobs[n] for n in names[2:])):
        assert job["metadata"]["name"] in warnings, (job["metadata"]["name"], warnings)
    assert "0.4.30" in warnings and "torch" in warnings


# -- 2. Job names: injective, valid, never one file for two Jobs -------------------------------------------------


def test_job_names_are_dns_labels_and_apart_for_names_that_sanitise_alike():
    stacks = ["tf-2.15", "tf-2-15", "tf_2.15", "tf-2--15", "a-b", "a", "x" * 100]
    products = [None, "NVIDIA-A100-SXM4-80GB", "nvidia-a100-sxm4-80gb", "NVIDIA_A100_SXM4_80GB", "c", "b-c"]
    names = {(s, p): k8s.job_name(s, p) for s in stacks for p in products}
    assert len(set(names.values())) == len(names)
    for name in names.values():
        assert len(name) <= 63 and DNS_1123_LABEL.fullmatch(name), name


def test_render_to_a_directory_writes_every_job_and_passes_kubernetes_validate(tmp_path: Path):
    matrix = write_matrix(tmp_path, ["tf-2.15", "tf-2-15", "tf_2.15"])
    products = ["NVIDIA-A100-SXM4-80GB", "nvidia-a100-sxm4-80gb"]
    jobs = render(matrix, products)
    cells = {(j["metadata"]["labels"]["envcheck/stack"], j["metadata"]["labels"]["envcheck/gpu-product"]) for j in jobs}
    assert len(jobs) == 6 and cells == {(s, p) for s in ("tf-2.15", "tf-2-15", "tf_2.15") for p in products}
    files = sorted((tmp_path / "jobs").glob("*.yaml"))
    check = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", *map(str, files)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_two_jobs_that_would_still_share_a_name_are_an_error_before_any_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    matrix = write_matrix(tmp_path, ["jax-a", "jax-b"])
    monkeypatch.setattr(k8s, "job_name", lambda stack, product: "envcheck-same")
    with pytest.raises(ConfigError, match=r"jax-a.*jax-b"):
        render(matrix, [PRODUCT])
    assert not (tmp_path / "jobs").exists() or not list((tmp_path / "jobs").iterdir())


def test_a_gpu_product_given_twice_is_an_error(tmp_path: Path):
    matrix = write_matrix(tmp_path, ["jax-a"])
    with pytest.raises(ConfigError, match="--gpu-product"):
        render(matrix, [PRODUCT, PRODUCT])


# -- 4. names checked exactly, trailing newline included -------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="az09-_.A\n ", max_size=70) | st.sampled_from(["a" * 63, "a" * 64, "ns\n", "-a", "a-"]))
def test_the_namespace_is_a_dns_1123_label_exactly(namespace: str):
    valid = len(namespace) <= 63 and DNS_1123_LABEL.fullmatch(namespace) is not None
    try:
        k8s.check(K8sRenderOptions(namespace=namespace))
    except ConfigError as error:
        assert not valid and "--namespace" in str(error), (namespace, error)
    else:
        assert valid, namespace


@pytest.mark.parametrize("product", ["NVIDIA-A100\n", "A100 80GB", "-A100", "x" * 64])
def test_a_gpu_product_that_is_not_a_label_value_is_refused(product: str):
    with pytest.raises(ConfigError, match="--gpu-product"):
        k8s.check(K8sRenderOptions(gpu_products=(product,)))


@pytest.mark.parametrize("namespace", ["kube_system", "default\n", "Team", "a" * 64])
def test_collect_checks_the_namespace_before_it_asks_any_cluster(tmp_path: Path, namespace: str):
    matrix = write_matrix(tmp_path, ["jax-a"])
    with pytest.raises(ConfigError, match="--namespace"):
        # no kubeconfig needed: refused before one is read
        commands.k8s_collect(K8sCollectOptions(matrix=str(matrix), namespace=namespace))


def test_wrong_names_are_clear_errors_on_the_command_line(tmp_path: Path):
    matrix = write_matrix(tmp_path, ["jax-a"])
    env = {"KUBECONFIG": str(tmp_path / "no-kubeconfig"), "KUBERNETES_SERVICE_HOST": ""}
    for args in (
        ["k8s", "collect", "--namespace", "default\n"],
        ["k8s", "render", "--image-tag", "--registry", REGISTRY, "--gpu-product", f"{PRODUCT}\n"],
    ):
        done = run_cli(*args, "-m", str(matrix), env=env)
        flag = args[-2]
        assert done.returncode == 2 and flag in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


# -- 5. timeouts the jobs can hold --------------------------------------------------------------------------------


def test_timeouts_beyond_what_the_jobs_can_hold_are_clear_errors(tmp_path: Path):
    matrix = write_matrix(tmp_path, ["jax-a"])
    for args, flag in (
        (["k8s", "render", "--image-tag", "--registry", REGISTRY, "--run-timeout", "1e308"], "--run-timeout"),
        (["ci", "github", "--run-timeout", "1e308"], "--run-timeout"),
        (["ci", "gitlab", "--build-timeout", "1e308"], "--build-timeout"),
    ):
        done = run_cli(*args, "-m", str(matrix))
        assert done.returncode == 2 and flag in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def test_the_largest_accepted_timeouts_fit_the_engines(tmp_path: Path):
    matrix = load_matrix(write_matrix(tmp_path, ["jax-a"]))
    week = 7 * 86400.0
    for seconds in (1.0, 600.0, week):
        (job,) = k8s.render_jobs(
            matrix, {"jax-a": _context(matrix)}, {"jax-a": "r/jax-a:x"}, K8sRenderOptions(run_timeout=seconds)
        )
        deadline = job["spec"]["activeDeadlineSeconds"]
        assert isinstance(deadline, int) and seconds <= deadline <= INT64_MAX
    accepted = 0
    for seconds in (600.0, 3 * 86400.0, 4 * 86400.0, 5 * 86400.0, 1e308):
        try:
            workflow = yaml.safe_load(ci.github_workflow(matrix, CiOptions(run_timeout=seconds)))
        except ConfigError as error:
            assert "--run-timeout" in str(error)
            continue
        accepted += 1
        minutes = workflow["jobs"]["probe"]["timeout-minutes"]
        assert seconds / 60 <= minutes <= GITHUB_SELF_HOSTED_MINUTES
    assert accepted >= 3


def _context(matrix: Any) -> Any:
    from envcheck.render.dockerfile import render as render_stack

    return render_stack(matrix.stacks[0], matrix.layout.build)


# -- 6. artifact and record names ---------------------------------------------------------------------------------


def _kept_records(cells: list[tuple[dict[str, str], str]], workspace: Path) -> list[str]:
    """Runs the jobs' own record-keeping shell lines, one cell after another in one workspace (GitLab's table job
    unpacks every probe job's records/ into one), each with its environment; lists what records/ ends up with."""
    (workspace / "results").mkdir(parents=True)
    script = "".join(
        "(" + "".join(f"export {k}={shlex.quote(v)}; " for k, v in env.items()) + f"set -e\n{lines}\n)\n"
        for env, lines in cells
    )
    subprocess.run(["bash", "-ec", script], cwd=workspace, env={"PATH": "/usr/bin:/bin"}, check=True)
    return [p.name for p in (workspace / "records").iterdir() if not p.name.startswith(".")]


def _fill(template: str, cell: dict[str, str]) -> str:
    """A value as GitHub evaluates it for one matrix cell (matrix.stack, matrix.runner)."""
    return re.sub(r"\$\{\{ (matrix\.\w+) \}\}", lambda m: cell[m[1]], template)


def test_artifact_and_record_names_are_apart_for_every_stack_and_runner(tmp_path: Path):
    stacks, runners = ["a-b", "a", "a--b"], ["c", "b-c", "b--c"]
    matrix = load_matrix(write_matrix(tmp_path, stacks))
    options = CiOptions(runners=tuple(runners), matrix="matrix.yaml")
    steps = yaml.safe_load(ci.github_workflow(matrix, options))["jobs"]["probe"]["steps"]
    artifact = next(s for s in steps if "upload-artifact" in s.get("uses", ""))["with"]["name"]
    count = next(s for s in steps if s.get("name") == "Probe")
    keep = next(s for s in steps if s.get("name") == "Keep the record")
    github_lines = f"{count['run'].splitlines()[0]}\n{keep['run']}"  # the count, then (no probe here) the keep
    pipeline = yaml.safe_load(ci.gitlab_pipeline(matrix, options))
    probe = pipeline["envcheck-probe"]
    variables = {k: v["value"] if isinstance(v, dict) else v for k, v in pipeline["variables"].items()}
    gitlab_lines = next(line for line in probe["script"] if "records/.before" in line) + "\n" + probe["after_script"][0]
    cells = [{"matrix.stack": stack, "matrix.runner": runner} for stack in stacks for runner in runners]
    artifacts = {_fill(artifact, cell) for cell in cells}
    github = [({k: _fill(v, c) for k, v in {**count["env"], **keep["env"]}.items()}, github_lines) for c in cells]
    gitlab = [({**variables, "STACK": c["matrix.stack"], "RUNNER": c["matrix.runner"]}, gitlab_lines) for c in cells]
    assert len(artifacts) == len(cells) and all(a.startswith("envcheck-record-") for a in artifacts)  # table: *
    assert len(_kept_records(github, tmp_path / "github")) == len(cells)
    assert len(_kept_records(gitlab, tmp_path / "gitlab")) == len(cells)


@pytest.mark.parametrize("runners", [("gpu", "gpu"), ("a100", "A100")], ids=["twice", "case"])
def test_a_runner_given_twice_is_a_clear_error(tmp_path: Path, runners: tuple[str, str]):
    matrix = write_matrix(tmp_path, ["jax-a"])
    done = run_cli("ci", "github", *[f"--runner={r}" for r in runners], "-m", str(matrix))
    assert done.returncode == 2 and "--runner" in done.stderr and "Traceback" not in done.stderr, done.stderr


# -- 7. hostile matrix paths --------------------------------------------------------------------------------------

HOSTILE_DIRS = ["${{ github.token }}", "$(id)", 'it\'s "quoted"', "with space", "`id` ${HOME} [x]*?"]


def _github_value(raw: str) -> str:
    """What GitHub makes of a string: each ${{ }} is evaluated; here only string literals may appear in one."""
    pieces = re.split(r"(\$\{\{.*?\}\})", raw)
    out = []
    for piece in pieces:
        literal = re.fullmatch(r"\$\{\{\s*'((?:[^']|'')*)'\s*\}\}", piece)
        assert literal or "${{" not in piece, f"an expression other than a literal: {piece!r}"
        out.append(literal[1].replace("''", "'") if literal else piece)
    return "".join(out)


def _github_filter(pattern: str) -> str:
    """A GitHub paths filter as a regex (docs.github.com, "Filter pattern cheat sheet"): `\\` escapes, `*` is any
    characters but '/'; the other pattern characters (? + [ ] !) must come escaped here."""
    regex = ""
    for escaped, char in re.findall(r"\\(.)|(.)", pattern, re.DOTALL):
        assert escaped or char not in "?+[]!\\", f"an unescaped pattern character in {pattern!r}"
        regex += "[^/]*" if char == "*" else re.escape(escaped or char)
    return regex


def _generate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, directory: str, system: str) -> str:
    write_matrix(tmp_path / directory, ["jax-a"])
    monkeypatch.chdir(tmp_path)
    out = tmp_path / f"{system}.yml"
    write = commands.ci_github if system == "github" else commands.ci_gitlab
    write(CiOptions(matrix=f"{directory}/matrix.yaml", output=str(out)))
    return out.read_text()


def test_hostile_matrix_paths_reach_the_pipelines_as_data_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    workflows = tmp_path / "repo" / ".github" / "workflows"
    workflows.mkdir(parents=True)
    gitlab_files = []
    for i, directory in enumerate(HOSTILE_DIRS):
        path = f"{directory}/matrix.yaml"
        text = _generate(tmp_path, monkeypatch, directory, "github")
        (workflows / f"w{i}.yml").write_text(text)
        workflow = yaml.safe_load(text)
        steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
        paths = {_github_value(v) for s in steps for k, v in s.get("env", {}).items() if k in ("MATRIX", "RESULTS")}
        assert paths == {path, f"{directory}/results"}  # handed to the scripts as variables ...
        for step in steps:
            assert directory not in step.get("run", ""), step  # ... never pasted into them
        (pattern,) = workflow["on"]["push"]["paths"]
        assert "${{" not in pattern and re.fullmatch(_github_filter(pattern), path), pattern

        text = _generate(tmp_path, monkeypatch, directory, "gitlab")
        gitlab_files.append(tmp_path / f"gitlab{i}.yml")
        gitlab_files[-1].write_text(text)
        pipeline = yaml.safe_load(text)
        assert pipeline["variables"]["ENVCHECK_MATRIX"] == {"value": path, "expand": False}
        scripts = [line for job in pipeline.values() if isinstance(job, dict) for line in job.get("script", [])]
        assert not any(directory in line for line in scripts)
    (tmp_path / "repo" / ".github" / "actionlint.yaml").write_text("self-hosted-runner:\n  labels: [gpu]\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path / "repo", check=True)
    lint = subprocess.run([tool("actionlint"), "-no-color"], cwd=tmp_path / "repo", capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for schema, files in (
        ("vendor.github-workflows", sorted(workflows.glob("*.yml"))),
        ("vendor.gitlab-ci", gitlab_files),
    ):
        check = subprocess.run(
            [tool("check-jsonschema"), "--builtin-schema", schema, *map(str, files)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("system", ["github", "gitlab"])
@pytest.mark.parametrize("directory", ["new\nline", "tab\there", "nel\u0085here"], ids=["newline", "tab", "nel"])
def test_a_matrix_path_with_control_characters_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, system: str, directory: str
):
    with pytest.raises(ConfigError, match="control character") as error:
        _generate(tmp_path, monkeypatch, directory, system)
    assert "\n" not in str(error.value)


# -- 8. how many jobs a matrix may make ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "stacks", "runners", "limit"),
    [
        ("github", 300, 1, GITHUB_MATRIX_JOBS),
        ("github", 129, 2, GITHUB_MATRIX_JOBS),
        ("gitlab", 300, 1, GITLAB_MATRIX_JOBS),
        ("gitlab", 101, 2, GITLAB_MATRIX_JOBS),
    ],
)
def test_more_probe_jobs_than_one_matrix_may_make_is_a_clear_error(
    tmp_path: Path, system: str, stacks: int, runners: int, limit: int
):
    matrix = load_matrix(write_matrix(tmp_path, [f"s{i}" for i in range(stacks)]))
    render = ci.github_workflow if system == "github" else ci.gitlab_pipeline
    options = CiOptions(runners=tuple(f"gpu{i}" for i in range(runners)))
    with pytest.raises(ConfigError) as error:
        render(matrix, options)
    assert str(limit) in str(error.value) and str(stacks * runners) in str(error.value), error.value
    fitting = load_matrix(write_matrix(tmp_path / "fits", [f"s{i}" for i in range(limit // runners)]))
    render(fitting, options)  # exactly the limit is allowed
