"""`envcheck k8s render` and `envcheck k8s collect`: the matrix as Kubernetes Jobs, one per stack × GPU product,
and their pods' output turned back into records.

render writes Jobs that run the probe image (from the registry, by digest) with one GPU (`nvidia.com/gpu: 1`, the
NVIDIA device plugin's resource) on a node whose GPU Feature Discovery label `nvidia.com/gpu.product` is the
product asked for, with the same least privilege as envcheck's Docker sandbox, no retries, a deadline from the run
timeout, and labels naming the stack and the matrix (so collect finds exactly this matrix's Jobs).

collect reads those Jobs' pods through the official `kubernetes` client (kubeconfig or in-cluster config, as the
client resolves them): the probe's JSON from each pod's log, the node's labels (GPU product, count, driver) as the
host. A pod that failed, timed out, could not pull, or never scheduled becomes a cell saying why. The reading of
one pod (`result_of_pod`) works on the API's JSON (`kubectl get -o json` prints the same), so it is tested on real
probe output without a cluster.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from envcheck import __version__
from envcheck.errors import ConfigError
from envcheck.matrix import Matrix, Stack
from envcheck.pipeline import judge, new_result
from envcheck.probe import PROBE_COMMAND, parse_output
from envcheck.render import BuildContext
from envcheck.results.model import Host, Result, RunInfo, Status

MANAGED_BY = "app.kubernetes.io/managed-by"
STACK_LABEL = "envcheck/stack"
MATRIX_LABEL = "envcheck/matrix-hash"
PRODUCT_LABEL = "envcheck/gpu-product"
HASH_ANNOTATION = "envcheck/content-hash"
GFD_PRODUCT = "nvidia.com/gpu.product"  # GPU Feature Discovery's node labels
GFD_COUNT = "nvidia.com/gpu.count"
GFD_DRIVER = ("nvidia.com/cuda.driver-version.full", "nvidia.com/cuda.driver.major")
GPU_RESOURCE = "nvidia.com/gpu"
LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)$")
PULL_ALLOWANCE = 900  # seconds for pulling a multi-GB image, on top of the probe's own timeout
TAIL_CHARS = 4000


@dataclass(frozen=True)
class K8sOptions:
    gpu_products: tuple[str, ...] = ()  # none: one Job per stack, on any node with a GPU
    runtime_class: str | None = None
    namespace: str | None = None
    run_timeout: float = 600.0
    ttl_seconds: int = 86400
    quick: bool = False


def matrix_hash(matrix: Matrix) -> str:
    """Names this matrix's Jobs: the hash of the matrix file's bytes (16 hex digits, a valid label value)."""
    return hashlib.sha256(matrix.path.read_bytes()).hexdigest()[:16]


def job_name(stack: str, product: str | None) -> str:
    """A DNS-1123 name under 63 characters, unique per stack × product (a hash keeps long ones apart)."""
    base = f"envcheck-{stack}" + (f"-{product}" if product else "")
    slug = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")
    if len(slug) <= 63:
        return slug
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    return f"{slug[:54].rstrip('-')}-{digest}"


def check(options: K8sOptions) -> None:
    for product in options.gpu_products:
        if not LABEL_VALUE.match(product):
            raise ConfigError(
                f"--gpu-product {product!r}: expected a node label value as GPU Feature Discovery writes it, "
                "like NVIDIA-A100-SXM4-80GB (letters, digits, '.', '_' or '-', at most 63)"
            )
    runtime_class = options.runtime_class
    if runtime_class is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", runtime_class):
        raise ConfigError(f"--runtime-class {options.runtime_class!r}: expected a RuntimeClass name, like nvidia")


def job(ctx: BuildContext, image: str, product: str | None, matrix_id: str, options: K8sOptions) -> dict[str, Any]:
    """One Job manifest (the API's JSON shape)."""
    stack = ctx.stack
    labels = {
        "app.kubernetes.io/name": "envcheck",
        MANAGED_BY: "envcheck",
        STACK_LABEL: stack.name,
        MATRIX_LABEL: matrix_id,
    }
    if product:
        labels[PRODUCT_LABEL] = product
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [
            {
                "name": "probe",
                "image": image,
                "command": [*PROBE_COMMAND, "--framework", stack.framework, *(["--quick"] if options.quick else [])],
                "env": [{"name": "HOME", "value": "/tmp"}],
                "resources": {"limits": {GPU_RESOURCE: 1, "memory": "8Gi"}},
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}],
    }
    if product:
        pod_spec["nodeSelector"] = {GFD_PRODUCT: product}
    if options.runtime_class:
        pod_spec["runtimeClassName"] = options.runtime_class
    metadata: dict[str, Any] = {
        "name": job_name(stack.name, product),
        "labels": labels,
        "annotations": {HASH_ANNOTATION: ctx.content_hash, "envcheck/version": __version__},
    }
    if options.namespace:
        metadata["namespace"] = options.namespace
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(options.run_timeout) + PULL_ALLOWANCE,
            "ttlSecondsAfterFinished": options.ttl_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def render_jobs(
    matrix: Matrix, contexts: dict[str, BuildContext], images: dict[str, str], options: K8sOptions
) -> list[dict[str, Any]]:
    """A Job per stack × GPU product (or per stack, with no product given)."""
    check(options)
    matrix_id = matrix_hash(matrix)
    products: list[str | None] = list(options.gpu_products) or [None]
    return [job(contexts[s.name], images[s.name], p, matrix_id, options) for s in matrix.stacks for p in products]


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


def host_of(node_labels: dict[str, str], node_name: str | None) -> Host:
    """The node as a host: labelled by its GPU product, driver and GPUs from GPU Feature Discovery's labels."""
    labels = {k: v for k, v in (node_labels or {}).items() if isinstance(k, str) and isinstance(v, str)}
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


def result_of_pod(
    stack: Stack,
    job_data: dict[str, Any],
    pod: dict[str, Any] | None,
    log: str | None,
    node_labels: dict[str, str] | None,
) -> Result | None:
    """One cell from a Job, its newest pod, that pod's log and its node's labels (API JSON). None while the pod is
    still running (nothing to say yet)."""
    product = _text(job_data, "metadata", "labels", PRODUCT_LABEL)
    node_name = _text(pod, "spec", "nodeName")
    host = host_of(node_labels or {}, node_name) if node_name else Host(label=product or "unscheduled")
    result = new_result(
        stack,
        host,
        Status.RUN_FAILED,
        image=_image(pod) if pod else None,
        content_hash=_text(job_data, "metadata", "annotations", HASH_ANNOTATION),
    )
    phase = _get(pod, "status", "phase")
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
        reason = _get(terminated, "reason") or phase or "unknown"
        result.error = f"the probe printed no JSON (pod {phase}, container {reason}, exit code {result.run.exit_code})"
        return result
    judge(result, probe)
    return result


def _image(pod: dict[str, Any]) -> str | None:
    containers = _get(pod, "spec", "containers")
    first = containers[0] if isinstance(containers, list) and containers else None
    image = _get(first, "image")
    return image if isinstance(image, str) else None


def _timed_out(result: Result, deadline: str) -> Result:
    result.status, result.error = Status.TIMEOUT, deadline
    return result


def _deadline(job_data: dict[str, Any]) -> str | None:
    for condition in _get(job_data, "status", "conditions") or []:
        if _get(condition, "reason") == "DeadlineExceeded" and _get(condition, "status") == "True":
            return f"the job passed its deadline (activeDeadlineSeconds): {_get(condition, 'message') or ''}".strip()
    return None


def _condition(pod: dict[str, Any], kind: str, status: str) -> str | None:
    for condition in _get(pod, "status", "conditions") or []:
        if _get(condition, "type") == kind and _get(condition, "status") == status:
            return f"{_get(condition, 'reason') or kind}: {_get(condition, 'message') or ''}".strip(": ")
    return None


def _container_state(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = _get(pod, "status", "containerStatuses")
    for status in statuses if isinstance(statuses, list) else []:
        if _get(status, "name") == "probe":
            return _get(status, "state") or {}
    return {}


def _waiting(pod: dict[str, Any]) -> str | None:
    waiting = _get(_container_state(pod), "waiting")
    if not isinstance(waiting, dict) or _get(waiting, "reason") in (None, "ContainerCreating", "PodInitializing"):
        return None
    return f"{waiting.get('reason')}: {waiting.get('message') or ''}".strip(": ")


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    terminated = _get(_container_state(pod), "terminated")
    return terminated if isinstance(terminated, dict) else None


def _without_document(log: str) -> str:
    """The log without the probe's JSON line (kept in the record as the probe document itself)."""
    return "\n".join(line for line in log.splitlines() if not line.startswith("{"))


def collect(matrix: Matrix, namespace: str) -> tuple[list[Result], list[str]]:
    """This matrix's Jobs in `namespace`, read through the cluster's API: (results, why some were skipped)."""
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        raise ConfigError(
            "`envcheck k8s collect` needs the official Kubernetes client: pip install 'envcheck[k8s]' (kubernetes)"
        ) from None
    try:
        config.load_kube_config()
    except (ConfigException, OSError, TypeError):
        try:
            config.load_incluster_config()
        except ConfigException as exc:
            raise ConfigError(f"no Kubernetes cluster configured (kubeconfig or in-cluster): {exc}") from None
    api = client.ApiClient()
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    as_json = api.sanitize_for_serialization
    selector = f"{MANAGED_BY}=envcheck,{MATRIX_LABEL}={matrix_hash(matrix)}"
    stacks = {s.name: s for s in matrix.stacks}
    results, skipped = [], []
    nodes: dict[str, dict[str, str]] = {}
    for job_object in batch.list_namespaced_job(namespace, label_selector=selector).items:
        job_data = as_json(job_object)
        name = _get(job_data, "metadata", "name")
        stack = stacks.get(_get(job_data, "metadata", "labels", STACK_LABEL) or "")
        if stack is None:
            skipped.append(f"job {name}: its stack is not in {matrix.path}")
            continue
        pods = [as_json(p) for p in core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items]
        pod = max(pods, key=lambda p: _get(p, "metadata", "creationTimestamp") or "", default=None)
        log, labels = None, None
        node = _get(pod, "spec", "nodeName")
        if node:
            if node not in nodes:
                nodes[node] = (as_json(core.read_node(node)).get("metadata") or {}).get("labels") or {}
            labels = nodes[node]
        if pod is not None and _get(pod, "status", "phase") in ("Succeeded", "Failed", "Running"):
            try:
                log = core.read_namespaced_pod_log(_get(pod, "metadata", "name"), namespace, container="probe")
            except client.ApiException as exc:  # a container that never started has no log: the pod says why
                skipped.append(f"job {name}: no log ({exc.reason})")
        result = result_of_pod(stack, job_data, pod, log, labels)
        if result is None:
            skipped.append(f"job {name}: still running")
        else:
            results.append(result)
    return results, skipped
