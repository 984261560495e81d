"""`envcheck k8s render` and `envcheck k8s collect`: the matrix as Kubernetes Jobs, one per stack × GPU product,
and their pods' output turned back into records.

render writes Jobs that run the probe image (from the registry, by digest; an image stack's image by its own
reference or digest) with one GPU (`nvidia.com/gpu: 1`, the
NVIDIA device plugin's resource) on a node whose GPU Feature Discovery label `nvidia.com/gpu.product` is the
product asked for, with the same least privilege as envcheck's Docker sandbox, no retries, a deadline from the run
timeout, and labels naming the stack and the matrix (so collect finds exactly this matrix's Jobs). Images envcheck
did not render (image and dockerfile stacks) do not carry the probe: its files come from a ConfigMap rendered with
the Jobs, mounted read-only at /opt/envcheck, and run with the image's `python3` (which the container runtime finds
through the image's PATH) or the stack's `python:`. With --gate every Job also gets an initContainer running the
probe's GPU gate (`boot.py --require gpu`), the check a workload's own Job would run before it starts.

collect reads those Jobs' pods through the official `kubernetes` client (kubeconfig or in-cluster config, as the
client resolves them): the probe's JSON from each pod's log, the node's labels (GPU product, count, driver) as the
host. A pod that failed, timed out, could not pull, or never scheduled becomes a cell saying why. The reading of
one pod (`result_of_pod`) works on the API's JSON (`kubectl get -o json` prints the same), so it is tested on real
probe output without a cluster.

The API's answers and the pods' output are untrusted input. Every call has a timeout; a refused or unreadable
listing of the Jobs is one error, while a pod, log or node that cannot be read costs only its own cell (a warning
names it). A record's stack is the one the matrix renders under the Job's name, never only what its labels say,
and the probe's document must agree with that stack (framework, version, Python) and the pod must run that stack's
image: a Job that disagrees is left out with a warning rather than recorded as something it may not be, since a
wrong cell in the table misleads more than a missing one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from typing import Any

from envcheck import __version__
from envcheck.engine import images
from envcheck.errors import ConfigError
from envcheck.inputs.matrix import Matrix, Stack
from envcheck.inputs.options import DEFAULTS, K8sRenderOptions
from envcheck.jobs import first_repeated
from envcheck.jobs.untrusted import clean, disagreement
from envcheck.probe import PROBE_COMMAND, PROBE_FILES, parse_output
from envcheck.render.dockerfile import BuildContext
from envcheck.results.model import Host, Result, RunInfo, Status
from envcheck.runs.pipeline import judge, new_result

MANAGED_BY = "app.kubernetes.io/managed-by"
STACK_LABEL = "envcheck/stack"
MATRIX_LABEL = "envcheck/matrix-hash"
PRODUCT_LABEL = "envcheck/gpu-product"
HASH_ANNOTATION = "envcheck/content-hash"
GFD_PRODUCT = "nvidia.com/gpu.product"  # GPU Feature Discovery's node labels
GFD_COUNT = "nvidia.com/gpu.count"
GFD_DRIVER = ("nvidia.com/cuda.driver-version.full", "nvidia.com/cuda.driver.major")
GPU_RESOURCE = "nvidia.com/gpu"
# Both are matched with fullmatch: a pattern ending in `$` would also accept a trailing newline.
LABEL_VALUE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")  # a label value, at most 63
DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")  # RFC 1123 label (namespaces, Job names), ≤ 63
TAIL_CHARS = 4000
REQUEST_TIMEOUT = (10.0, 60.0)  # seconds to connect and between bytes read, for every API call collect makes
RETRIES = 1  # a dropped connection is tried again once; a server that does not answer costs two timeouts, not four
PROBE_DIR = "/opt/envcheck"  # where the probe's files are, baked in or mounted from the ConfigMap
PROBE_VOLUME = "probe"
GATE = "gpu-gate"  # the initContainer --gate adds
IMAGE_PYTHON = "python3"  # what a user's image runs as Python when its stack names none, found through its PATH


def matrix_hash(matrix: Matrix) -> str:
    """Names this matrix's Jobs: the hash of the matrix file's bytes (16 hex digits, a valid label value)."""
    return hashlib.sha256(matrix.path.read_bytes()).hexdigest()[:16]


def job_name(stack: str, product: str | None) -> str:
    """A DNS-1123 label of at most 63 characters, one per stack × product. The readable part loses case, '.' and
    '_' and cannot say where the stack ends and the product begins (tf-2.15 and tf_2.15, a-b × c and a × b-c), so
    a hash of the exact pair always ends it: names stay apart however the readable parts coincide."""
    digest = hashlib.sha256(json.dumps([stack, product]).encode()).hexdigest()[:10]
    base = f"envcheck-{stack}" + (f"-{product}" if product else "")
    slug = re.sub(r"[^a-z0-9-]+", "-", base.lower())
    return f"{slug[: 62 - len(digest)].rstrip('-')}-{digest}"


def check_namespace(namespace: str | None) -> None:
    """Namespaces are DNS-1123 labels; one that is not would reach the API's URLs and the Jobs' manifests."""
    if namespace is not None and not DNS_LABEL.fullmatch(namespace):
        raise ConfigError(
            f"--namespace {namespace!r}: expected a Kubernetes namespace, a DNS-1123 label: at most 63 lowercase "
            "letters, digits or '-', starting and ending with a letter or digit"
        )


def check(options: K8sRenderOptions) -> None:
    for product in options.gpu_products:
        if not LABEL_VALUE.fullmatch(product):
            raise ConfigError(
                f"--gpu-product {product!r}: expected a node label value as GPU Feature Discovery writes it, "
                "like NVIDIA-A100-SXM4-80GB (letters, digits, '.', '_' or '-', at most 63)"
            )
    twice = first_repeated(options.gpu_products)
    if twice is not None:
        raise ConfigError(f"--gpu-product {twice!r} is given twice: each product makes one Job per stack")
    check_namespace(options.namespace)
    runtime_class = options.runtime_class
    if runtime_class is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", runtime_class):
        raise ConfigError(f"--runtime-class {options.runtime_class!r}: expected a RuntimeClass name, like nvidia")
    # A week (the table's bound) is far beyond any real probe, so a value in milliseconds is refused, and keeps
    # activeDeadlineSeconds, an int64 in the Job API, a plain number.
    if not (math.isfinite(options.run_timeout) and 0 < options.run_timeout <= DEFAULTS.max_seconds):
        raise ConfigError(
            f"--run-timeout {options.run_timeout:g}: a Job's probe may take at most {DEFAULTS.max_seconds:g} "
            "seconds (a week); give seconds, not milliseconds"
        )


def probe_files_name() -> str:
    """The ConfigMap of the probe's files, named by their content: a new probe is a new ConfigMap, so Jobs still
    running keep the files they started with."""
    files = {name: path.read_text(encoding="utf-8") for name, path in sorted(PROBE_FILES.items())}
    return f"envcheck-probe-{hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]}"


def probe_files(matrix_id: str, options: K8sRenderOptions) -> dict[str, Any]:
    """The probe's files as a ConfigMap (about 70 kB of the API's 1 MiB), for Jobs whose image does not carry them."""
    metadata: dict[str, Any] = {
        "name": probe_files_name(),
        "labels": {"app.kubernetes.io/name": "envcheck", MANAGED_BY: "envcheck", MATRIX_LABEL: matrix_id},
        "annotations": {"envcheck/version": __version__},
    }
    if options.namespace:
        metadata["namespace"] = options.namespace
    files = {name: path.read_text(encoding="utf-8") for name, path in sorted(PROBE_FILES.items())}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": files}


def needs_probe_files(matrix: Matrix, options: K8sRenderOptions) -> bool:
    """Some Job mounts the probe's ConfigMap: a stack envcheck did not render, or a gate on every Job."""
    return options.gate or any(s.kind != "rendered" for s in matrix.stacks)


def job(
    stack: Stack,
    content_hash: str | None,
    image: str,
    product: str | None,
    matrix_id: str,
    options: K8sRenderOptions,
) -> dict[str, Any]:
    """One Job manifest (the API's JSON shape)."""
    labels = {
        "app.kubernetes.io/name": "envcheck",
        MANAGED_BY: "envcheck",
        STACK_LABEL: stack.name,
        MATRIX_LABEL: matrix_id,
    }
    if product:
        labels[PRODUCT_LABEL] = product
    rendered = stack.kind == "rendered"  # its image carries the probe; any other gets the ConfigMap's files
    python = PROBE_COMMAND[0] if rendered else stack.interpreter or IMAGE_PYTHON
    files = {"name": PROBE_VOLUME, "mountPath": PROBE_DIR, "readOnly": True}
    tmp = {"name": "tmp", "mountPath": "/tmp"}
    # A rendered image's HOME is root's, on its read-only root; an image people run keeps its own ENV, as in Docker.
    env = [{"name": "HOME", "value": "/tmp"}] if rendered else [{"name": k, "value": v} for k, v in stack.env]
    least = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    probe = {
        "name": "probe",
        "image": image,
        "command": [
            *(PROBE_COMMAND if rendered else [python, f"{PROBE_DIR}/boot.py"]),
            "--framework",
            stack.probe_framework,
            *(["--quick"] if options.quick else []),
        ],
        "env": env,
        "resources": {"limits": {GPU_RESOURCE: 1, "memory": "8Gi"}},
        "securityContext": least,
        "volumeMounts": [tmp] if rendered else [tmp, files],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [{k: v for k, v in probe.items() if v or k != "env"}],
        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}],
    }
    if options.gate:  # its paragraph on stderr becomes the termination message collect reads
        gate = {
            **probe,
            "name": GATE,
            "command": [python, f"{PROBE_DIR}/boot.py", "--require", "gpu", "--framework", stack.probe_framework],
            "volumeMounts": [tmp, files],
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
        pod_spec["initContainers"] = [{k: v for k, v in gate.items() if v or k != "env"}]
    if options.gate or not rendered:
        pod_spec["volumes"].append(
            {"name": PROBE_VOLUME, "configMap": {"name": probe_files_name(), "defaultMode": 0o444}}
        )
    if product:
        pod_spec["nodeSelector"] = {GFD_PRODUCT: product}
    if options.runtime_class:
        pod_spec["runtimeClassName"] = options.runtime_class
    annotations = {"envcheck/version": __version__}
    if content_hash:
        annotations[HASH_ANNOTATION] = content_hash
    metadata: dict[str, Any] = {"name": job_name(stack.name, product), "labels": labels, "annotations": annotations}
    if options.namespace:
        metadata["namespace"] = options.namespace
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": math.ceil(options.run_timeout) + DEFAULTS.pull_allowance,
            "ttlSecondsAfterFinished": options.ttl_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def render_jobs(
    matrix: Matrix, contexts: dict[str, BuildContext], images: dict[str, str], options: K8sRenderOptions
) -> list[dict[str, Any]]:
    """A Job per stack × GPU product (or per stack, with no product given); `contexts` holds the stacks envcheck
    builds (an image stack has none)."""
    check(options)
    matrix_id = matrix_hash(matrix)
    products: list[str | None] = list(options.gpu_products) or [None]
    jobs = [
        job(s, contexts[s.name].content_hash if s.name in contexts else None, images[s.name], p, matrix_id, options)
        for s in matrix.stacks
        for p in products
    ]
    cells: dict[str, str] = {}
    for made in jobs:  # the name is the Job's identity in the cluster and its file name under -o DIR
        labels = made["metadata"]["labels"]
        cell = labels[STACK_LABEL] + (f" × {labels[PRODUCT_LABEL]}" if PRODUCT_LABEL in labels else "")
        other = cells.setdefault(made["metadata"]["name"], cell)
        if other != cell:
            raise ConfigError(
                f"k8s render: {other} and {cell} would both be the Job {made['metadata']['name']}: rename one stack"
            )
    return jobs


# -- collect ------------------------------------------------------------------------------------------------------


def _get(data: Any, *keys: str) -> Any:
    """A nested value of API JSON, None where any level is missing or not a mapping (pods come from any cluster)."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _text(data: Any, *keys: str) -> str | None:
    """A nested string of API JSON, None where it is missing or not a string (it goes into records)."""
    value = _get(data, *keys)
    return value if isinstance(value, str) else None


def _list(data: Any, *keys: str) -> list[Any]:
    """A nested list of API JSON, empty where it is missing or not a list."""
    value = _get(data, *keys)
    return value if isinstance(value, list) else []


def _said(data: Any, key: str) -> str:
    """A string the API (or a pod) wrote, as one clean line for messages and records; empty if not a string."""
    value = _get(data, key)
    return clean(value) if isinstance(value, str) else ""


def host_of(node_labels: dict[str, str], node_name: str | None) -> Host:
    """The node as a host: labelled by its GPU product, driver and GPUs from GPU Feature Discovery's labels."""
    labels = {k: clean(v) for k, v in (node_labels or {}).items() if isinstance(k, str) and isinstance(v, str)}
    node_name = clean(node_name) if node_name else None
    product = labels.get(GFD_PRODUCT)
    driver = labels.get(GFD_DRIVER[0])
    if driver is None and GFD_DRIVER[1] in labels:
        parts = [labels.get(f"nvidia.com/cuda.driver.{p}") for p in ("major", "minor", "rev")]
        driver = ".".join(p for p in parts if p)
    try:
        count = int(labels.get(GFD_COUNT, "1" if product else "0"))
    except ValueError:
        count = 1 if product else 0
    host = Host(
        label=product or node_name or "unscheduled",
        hostname=node_name,
        driver=driver,
        gpus=[product] * min(count, 64) if product else [],
        runtimes=["kubernetes"],
    )
    host.fingerprint = host.decisive_fingerprint()
    return host


class Refused(Exception):
    """A Job or pod that cannot be the cell it claims (another stack's name or image, another framework's document):
    collect leaves the cell out with a warning rather than put in the table a record it cannot vouch for."""


def result_of_pod(
    stack: Stack,
    job_data: dict[str, Any],
    pod: dict[str, Any] | None,
    log: str | None,
    node_labels: dict[str, str] | None,
) -> Result | None:
    """One cell from a Job, its newest pod, that pod's log and its node's labels (API JSON; None: the node could
    not be read). None while the pod is still running (nothing to say yet). Raises Refused where the pod runs
    another stack's image or its probe document is not of `stack`."""
    product = _text(job_data, "metadata", "labels", PRODUCT_LABEL)
    node_name = _text(pod, "spec", "nodeName")
    if not node_name:
        host = Host(label=product or "unscheduled")
    else:
        host = host_of(node_labels or {}, node_name)
        if node_labels is None:  # its labels unknown: the product the Job asked for names the table column
            host.label = product or node_name
    image = _image(pod) if pod else None
    if image is not None and not _runs_image_of(stack, image):
        raise Refused(f"its pod runs {clean(image)}, not an image of stack {stack.name}")
    result = new_result(
        stack,
        host,
        Status.RUN_FAILED,
        image=image,
        content_hash=_text(job_data, "metadata", "annotations", HASH_ANNOTATION),
        digest=image if stack.kind == "image" and image and "@" in image else None,
    )
    phase = _text(pod, "status", "phase")
    deadline = _deadline(job_data)
    if pod is None:
        result.status = Status.TIMEOUT if deadline else Status.HOST_UNREACHABLE
        result.error = deadline or f"job {_get(job_data, 'metadata', 'name')} has no pod (was it deleted?)"
        return result
    if phase == "Pending":
        unschedulable = _condition(pod, "PodScheduled", "False")
        waiting = _waiting(pod)
        if unschedulable:
            result.status = Status.HOST_UNREACHABLE
            result.error = f"never scheduled: {unschedulable}" + (f" (then: {deadline})" if deadline else "")
        elif waiting:
            result.error = f"the container did not start: {waiting}"
        else:
            return None if not deadline else _timed_out(result, deadline)
        return result
    if phase == "Running" and not deadline:
        return None
    gate = _gate_failure(pod)
    if gate:
        result.error = f"the GPU gate (initContainer {GATE}) failed, so the probe did not run: {gate}"
        return result
    probe = parse_output(log or "")
    terminated = _terminated(pod)
    result.run = RunInfo(
        exit_code=_get(terminated, "exitCode") if isinstance(_get(terminated, "exitCode"), int) else None,
        gpu_requested=True,
        stderr_tail=_without_document(log or "")[-TAIL_CHARS:],
    )
    if probe is None:
        if deadline:
            return _timed_out(result, deadline)
        shown = clean(phase) if phase else "unknown"
        reason = _said(terminated, "reason") or shown
        result.error = f"the probe printed no JSON (pod {shown}, container {reason}, exit code {result.run.exit_code})"
        return result
    if image is None:
        raise Refused(f"its pod names no image, so its probe output cannot be vouched for as stack {stack.name}'s")
    contradiction = disagreement(stack, probe)
    if contradiction:
        raise Refused(f"its probe document is not of stack {stack.name}: {contradiction}")
    judge(result, probe)
    return result


def _runs_image_of(stack: Stack, image: str) -> bool:
    """The pod's image is the stack's: render names a built stack's repository after the stack, and an image
    stack's Job runs its own reference (by tag or digest)."""
    if stack.kind == "image":
        return images.repository(image) == images.repository(str(stack.image))
    return _repository_name(image) == stack.name


def _gate_failure(pod: dict[str, Any]) -> str | None:
    """Why the --gate initContainer stopped the pod (its exit code and the paragraph it wrote), or None."""
    for status in _list(pod, "status", "initContainerStatuses"):
        terminated = _get(status, "state", "terminated")
        code = _get(terminated, "exitCode")
        if _get(status, "name") == GATE and isinstance(code, int) and code != 0:
            said = (_said(terminated, "message") or _said(terminated, "reason")).strip()
            return f"exit code {code}: {said or 'no message'}"
    return None


def _repository_name(image: str) -> str:
    """The last path component of an image reference's repository: render names it after the stack
    (REGISTRY/NAME:TAG or REGISTRY/NAME@DIGEST)."""
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def _image(pod: dict[str, Any]) -> str | None:
    containers = _get(pod, "spec", "containers")
    first = containers[0] if isinstance(containers, list) and containers else None
    image = _get(first, "image")
    return image if isinstance(image, str) else None


def _timed_out(result: Result, deadline: str) -> Result:
    result.status, result.error = Status.TIMEOUT, deadline
    return result


def _deadline(job_data: dict[str, Any]) -> str | None:
    for condition in _list(job_data, "status", "conditions"):
        if _get(condition, "reason") == "DeadlineExceeded" and _get(condition, "status") == "True":
            return f"the job passed its deadline (activeDeadlineSeconds): {_said(condition, 'message')}".strip()
    return None


def _condition(pod: dict[str, Any], kind: str, status: str) -> str | None:
    for condition in _list(pod, "status", "conditions"):
        if _get(condition, "type") == kind and _get(condition, "status") == status:
            return f"{_said(condition, 'reason') or kind}: {_said(condition, 'message')}".strip(": ")
    return None


def _container_state(pod: dict[str, Any]) -> dict[str, Any]:
    for status in _list(pod, "status", "containerStatuses"):
        state = _get(status, "state")
        if _get(status, "name") == "probe" and isinstance(state, dict):
            return state
    return {}


def _waiting(pod: dict[str, Any]) -> str | None:
    waiting = _get(_container_state(pod), "waiting")
    if not isinstance(waiting, dict) or _get(waiting, "reason") in (None, "ContainerCreating", "PodInitializing"):
        return None
    return f"{_said(waiting, 'reason')}: {_said(waiting, 'message')}".strip(": ")


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    terminated = _get(_container_state(pod), "terminated")
    return terminated if isinstance(terminated, dict) else None


def _without_document(log: str) -> str:
    """The log without the probe's JSON line (kept in the record as the probe document itself)."""
    return "\n".join(line for line in log.splitlines() if not line.startswith("{"))


class ApiError(Exception):
    """One API call without a usable answer (refused, not JSON, or none in time); the message says which."""


def _connect() -> tuple[Any, Any]:
    """CoreV1Api and BatchV1Api of the cluster the kubeconfig (or the pod's service account) names."""
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        raise ConfigError(
            "`envcheck k8s collect` needs the official Kubernetes client: pip install 'envcheck[k8s]' (kubernetes)"
        ) from None
    configuration = client.Configuration()
    try:
        config.load_kube_config(client_configuration=configuration)
    except (ConfigException, OSError, TypeError):
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise ConfigError(f"no Kubernetes cluster configured (kubeconfig or in-cluster): {exc}") from None
    configuration.retries = RETRIES
    api = client.ApiClient(configuration)
    return client.CoreV1Api(api), client.BatchV1Api(api)


def _answer(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
    """The body of one API call's answer, read raw (the typed models reject odd answers with tracebacks) and
    within REQUEST_TIMEOUT; anything but a 2xx answer in time is an ApiError saying `what` failed and why."""
    import urllib3
    from kubernetes.client import ApiException

    try:
        return call(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs).data
    except ApiException as exc:
        raise ApiError(f"{what}: {_refusal(exc)}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        failure = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    timed_out = (urllib3.exceptions.TimeoutError, TimeoutError)
    if isinstance(failure, timed_out) and not isinstance(failure, urllib3.exceptions.NewConnectionError):
        connect, read = REQUEST_TIMEOUT
        raise ApiError(f"{what}: the API did not answer in time ({connect:g} s to connect, {read:g} s to answer)")
    raise ApiError(f"{what}: the API cannot be reached ({_cause(failure)})")


def _refusal(exc: Any) -> str:
    """HTTP status and reason, with the message of the Status object the API sends along, when it sent one."""
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
    try:
        message = json.loads(body or "").get("message")
    except (ValueError, AttributeError, RecursionError):
        message = None
    said = f": {clean(message)}" if isinstance(message, str) and message else ""
    if not exc.status:  # the client's own failure (TLS), not an answer
        return f"the connection failed ({clean(str(exc.reason or ''))})"
    return f"HTTP {exc.status} {clean(str(exc.reason or ''))}".strip() + said


def _cause(exc: BaseException | None) -> str:
    """The innermost reason of a connection failure, by kind (its text could carry the server's URL)."""
    for _ in range(10):  # urllib3 wraps the socket's error in one or two of its own
        inner = getattr(exc, "reason", None)
        inner = inner if isinstance(inner, BaseException) else exc.__cause__ or exc.__context__ if exc else None
        if inner is None:
            break
        exc = inner
    return type(exc).__name__


def _object(what: str, body: bytes) -> dict[str, Any]:
    """An answer that must be one JSON object (a proxy's sign-in page is not)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(f"{what}: the answer is not JSON (a proxy or sign-in page in between?)") from None
    if not isinstance(value, dict):
        raise ApiError(f"{what}: the answer is not a JSON object")
    return value


def _items(what: str, body: bytes) -> list[dict[str, Any]]:
    """The objects of a list answer; `items: null` is an empty list, as Go's encoder writes one."""
    items = _object(what, body).get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise ApiError(f"{what}: the answer's items are not a list")
    return [item for item in items if isinstance(item, dict)]


def _stack_of_job(matrix: Matrix, job_data: dict[str, Any], rendered: dict[str | None, dict[str, Stack]]) -> Stack:
    """The stack whose Job this is, as the matrix renders it: the one whose job_name (with the Job's GPU product)
    is the Job's name, and which its stack label names too; Refused otherwise. `rendered` keeps each product's
    names, computed once."""
    name = _text(job_data, "metadata", "name")
    labels = _get(job_data, "metadata", "labels")
    product = _get(labels, PRODUCT_LABEL)
    if name is None or not (product is None or isinstance(product, str)):
        raise Refused("its name or GPU product label is missing or not text")
    if product not in rendered:
        rendered[product] = {job_name(s.name, product): s for s in matrix.stacks}
    stack = rendered[product].get(name)
    if stack is None:
        raise Refused(f"{matrix.path} renders no Job of that name (was the matrix edited, or the Job made by hand?)")
    label = _get(labels, STACK_LABEL)
    if label != stack.name:
        raise Refused(f"its name is stack {stack.name}'s Job but its stack label says {clean(str(label))}")
    return stack


def collect(matrix: Matrix, namespace: str) -> tuple[list[Result], list[str]]:
    """This matrix's Jobs in `namespace`, read through the cluster's API: (results, why some were skipped). A
    listing of the Jobs the API refuses is a ConfigError; a Job, pod, log or node that cannot be read or trusted
    costs its own cell, with a warning naming it."""
    check_namespace(namespace)
    core, batch = _connect()
    selector = f"{MANAGED_BY}=envcheck,{MATRIX_LABEL}={matrix_hash(matrix)}"
    what = f"listing the Jobs of namespace {namespace}"
    try:
        jobs = _items(what, _answer(what, batch.list_namespaced_job, namespace, label_selector=selector))
    except ApiError as exc:
        raise ConfigError(f"k8s collect: {exc}") from None
    results, skipped = [], []
    nodes: dict[str, dict[str, str] | None] = {}
    rendered: dict[str | None, dict[str, Stack]] = {}
    for job_data in jobs:
        name = clean(_text(job_data, "metadata", "name") or "(unnamed)")
        try:
            stack = _stack_of_job(matrix, job_data, rendered)
            result = _collect_job(stack, job_data, namespace, core, nodes, skipped)
        except (ApiError, Refused) as exc:
            skipped.append(f"job {name} in namespace {namespace}: {exc}; its cell is left out")
            continue
        if result is None:
            skipped.append(f"job {name}: still running")
        else:
            results.append(result)
    return results, skipped


def _collect_job(
    stack: Stack,
    job_data: dict[str, Any],
    namespace: str,
    core: Any,
    nodes: dict[str, dict[str, str] | None],
    skipped: list[str],
) -> Result | None:
    """One Job's cell: its newest pod (of those the Job controller labelled with its name), that pod's node's
    labels (each node read once; one that cannot be read is warned about and leaves the host named by the Job's
    GPU product) and log (bytes that are not UTF-8 replaced)."""
    name = job_data["metadata"]["name"]  # checked by _stack_of_job: one this matrix renders, a DNS-1123 label
    what = f"listing the pods of job {name}"
    pods = _items(what, _answer(what, core.list_namespaced_pod, namespace, label_selector=f"job-name={name}"))
    pods = [p for p in pods if _get(p, "metadata", "labels", "job-name") == name]
    pod = max(pods, key=lambda p: _text(p, "metadata", "creationTimestamp") or "", default=None)
    node = _text(pod, "spec", "nodeName")
    if node and node not in nodes:
        what = f"reading node {clean(node)}"
        try:
            answer = _object(what, _answer(what, core.read_node, node))
        except ApiError as exc:
            nodes[node] = None
            skipped.append(f"{exc}; the cells of its pods name their host by the GPU product their Job asked for")
        else:
            labels = _get(answer, "metadata", "labels")
            nodes[node] = dict(labels) if isinstance(labels, dict) else {}
    phase = _get(pod, "status", "phase")
    log = None
    if phase in ("Succeeded", "Failed") or (phase == "Running" and _deadline(job_data)):
        pod_name = _text(pod, "metadata", "name")
        if pod_name is None:
            raise Refused("its pod has no name")
        what = f"reading the log of pod {clean(pod_name)}"
        try:
            log = _answer(what, core.read_namespaced_pod_log, pod_name, namespace, container="probe")
        except ApiError as exc:
            if phase != "Failed":
                raise
            # a container that never started has no log: the pod's status says why it failed
            skipped.append(f"job {name}: no log ({exc}); its cell says what the pod's status says")
    text = log.decode("utf-8", "replace") if log is not None else None
    return result_of_pod(stack, job_data, pod, text, nodes.get(node) if node else None)
