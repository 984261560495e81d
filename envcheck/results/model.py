"""The typed result of checking one stack on one host: what the pipeline makes, `plan` predicts, the store keeps
and every publisher reads.

JSON is its wire format (results/NAME.json, results/records.jsonl, `--json`). `to_dict()` writes the keys the
README documents; `from_dict()` reads records written by other hosts and other envcheck versions, which are
untrusted: a record that does not have the documented shape raises RecordError naming what is wrong, and
keys this version does not know are kept and written back unchanged. The probe's own document (`probe`) stays
a mapping: it is produced inside containers by stdlib-only code and read through typed accessors here and in
`diagnose.Facts`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from envcheck import frameworks  # a stack's "framework" (records without one are TensorFlow's)

SCHEMA = 1  # of a result and of a record line ("schema" and "record_schema"); bump when a key changes meaning
KINDS = ("rendered", "image", "dockerfile")  # a stack's image: envcheck's template, one people run, their Dockerfile
OLDEST = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


def instant(timestamp: str) -> datetime.datetime | None:
    """A record's timestamp as a moment in UTC, so records compare by time, not by spelling: ISO 8601, one without a
    zone taken as UTC (envcheck writes UTC); None when it is not a date and time."""
    if timestamp[-1:] in ("Z", "z"):  # UTC as other tools write it; Python 3.10 reads only +00:00
        timestamp = timestamp[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(timestamp)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError):  # not ISO 8601, or a zone that moves it outside the years 1-9999
        return None


class RecordError(ValueError):
    """A record that cannot be read as a result; the message says which key is wrong."""


class Status(str, Enum):
    """What happened to a stack on a host, or (predicted by `plan`) what will."""

    GPU = "gpu"
    CPU_ONLY = "cpu-only"
    BUILD_FAILED = "build-failed"
    RUN_FAILED = "run-failed"
    TIMEOUT = "timeout"
    HOST_UNREACHABLE = "host-unreachable"  # its host's daemon was down or refused (--on): the stack did not run there
    OK = "ok"
    WARN = "warn"
    FAILS = "fails"

    def __str__(self) -> str:
        return self.value

    @property
    def ran(self) -> bool:
        """The stack built and its probe ran: it met its expectation, whatever the probe found."""
        return self in (Status.GPU, Status.CPU_ONLY)

    @property
    def predicted(self) -> bool:
        return self in (Status.OK, Status.WARN, Status.FAILS)

    @property
    def mark(self) -> str:
        return MARKS[self]


MARKS = {
    Status.GPU: "✅",
    Status.CPU_ONLY: "❌",
    Status.BUILD_FAILED: "💥",
    Status.RUN_FAILED: "💥",
    Status.TIMEOUT: "⏱",
    Status.HOST_UNREACHABLE: "🔌",
    Status.OK: "🔮✅",
    Status.WARN: "🔮⚠️",
    Status.FAILS: "🔮❌",
}


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    PREDICTED = "predicted"

    def __str__(self) -> str:
        return self.value


# -- reading untrusted values ----------------------------------------------------------------------------------


def _text(data: dict[str, Any], key: str, default: str | None = None, where: str = "") -> str | None:
    value = data.get(key, default)
    if value is None or isinstance(value, str):
        return value
    raise RecordError(f"{where}{key} is {type(value).__name__}, not a string")


def _flag(data: dict[str, Any], key: str, where: str = "") -> bool:
    value = data.get(key, False)
    if value is None or isinstance(value, bool):
        return bool(value)
    raise RecordError(f"{where}{key} is {type(value).__name__}, not true/false")


def _number(data: dict[str, Any], key: str, where: str = "") -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecordError(f"{where}{key} is {value!r}, not a finite number")
    return value


def _texts(data: dict[str, Any], key: str, where: str = "") -> list[str]:
    value = data.get(key) or []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise RecordError(f"{where}{key} is not a list of strings")


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise RecordError(f"{what} is {type(value).__name__}, not a mapping")


def _items(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise RecordError(f"{key} is {type(value).__name__}, not a list")
    return [_mapping(item, f"{key}[{i}]") for i, item in enumerate(value)]


def _compact(data: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Drop unset optional keys (None, False, empty) except those always written."""
    return {k: v for k, v in data.items() if k in keep or v not in (None, False, [], {})}


# -- the parts of a result -------------------------------------------------------------------------------------


@dataclass
class Diagnosis:
    """One reason the GPU is (or will be) not used, with the evidence and the fix."""

    code: str
    severity: Severity
    summary: str
    fix: str
    evidence: list[str] = field(default_factory=list)
    framework: str | None = None  # which framework it is about, where one environment has several

    def to_dict(self) -> dict[str, Any]:
        data = {
            "code": self.code,
            "severity": self.severity.value,
            "summary": self.summary,
            "fix": self.fix,
            "evidence": list(self.evidence),
        }
        if self.framework:  # an added key: a one-framework result's record is as it always was
            data["framework"] = self.framework
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "diagnoses: ") -> Diagnosis:
        code = _text(data, "code", where=where)
        if not code:
            raise RecordError(f"{where}a diagnosis has no code")
        severity = _text(data, "severity", "error", where) or "error"
        try:
            level = Severity(severity)
        except ValueError:
            raise RecordError(f"{where}unknown severity {severity!r}") from None
        return cls(
            code,
            level,
            _text(data, "summary", "", where) or "",
            _text(data, "fix", "", where) or "",
            _texts(data, "evidence", where),
            _text(data, "framework", None, where),
        )


@dataclass
class Benchmark:
    """One matmul measurement. precision says how float32 really ran ("tf32": on tensor cores, TF's default
    on Ampere and newer), which decides the peak it is compared with."""

    library: str
    device: str
    dtype: str
    n: int
    tflops: float | None = None
    seconds: float | None = None
    placed_on: str | None = None
    precision: str | None = None
    oom: bool = False
    error: str | None = None
    peak_tflops: float | None = None
    percent_of_peak: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return _compact(data, keep=("library", "device", "dtype", "n", "tflops"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Benchmark:
        where = "benchmark: "
        n = data.get("n")
        if isinstance(n, bool) or not isinstance(n, int):
            raise RecordError(f"{where}n is {n!r}, not an integer")
        return cls(
            library=_text(data, "library", "tensorflow", where) or "tensorflow",
            device=_text(data, "device", "cpu", where) or "cpu",
            dtype=_text(data, "dtype", "float32", where) or "float32",
            n=n,
            tflops=_number(data, "tflops", where),
            seconds=_number(data, "seconds", where),
            placed_on=_text(data, "placed_on", where=where),
            precision=_text(data, "precision", where=where),
            oom=_flag(data, "oom", where),
            error=_text(data, "error", where=where),
            peak_tflops=_number(data, "peak_tflops", where),
            percent_of_peak=_number(data, "percent_of_peak", where),
        )


@dataclass
class BuildInfo:
    ok: bool
    cached: bool = False
    seconds: float = 0.0
    log: str | None = None
    error: str | None = None
    log_tail: list[str] = field(default_factory=list)
    timed_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "cached": self.cached,
            "seconds": round(self.seconds, 1),
            "log": self.log,
            "error": self.error,
            "log_tail": list(self.log_tail),
            "timed_out": self.timed_out,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildInfo:
        where = "build: "
        return cls(
            ok=_flag(data, "ok", where),
            cached=_flag(data, "cached", where),
            seconds=_number(data, "seconds", where) or 0.0,
            log=_text(data, "log", where=where),
            error=_text(data, "error", where=where),
            log_tail=_texts(data, "log_tail", where),
            timed_out=_flag(data, "timed_out", where),
        )


@dataclass
class RunInfo:
    exit_code: int | None = None
    gpu_requested: bool = True
    gpu_refusal: str | None = None
    timed_out: bool = False
    error: str | None = None
    seconds: float = 0.0
    stderr_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "gpu_requested": self.gpu_requested,
            "gpu_refusal": self.gpu_refusal,
            "timed_out": self.timed_out,
            "error": self.error,
            "seconds": round(self.seconds, 1),
            "stderr_tail": self.stderr_tail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        where = "run: "
        code = _number(data, "exit_code", where)
        return cls(
            exit_code=int(code) if code is not None else None,
            gpu_requested=_flag(data, "gpu_requested", where),
            gpu_refusal=_text(data, "gpu_refusal", where=where),
            timed_out=_flag(data, "timed_out", where),
            error=_text(data, "error", where=where),
            seconds=_number(data, "seconds", where) or 0.0,
            stderr_tail=_text(data, "stderr_tail", "", where) or "",
        )


@dataclass
class Host:
    """The machine a result was measured on (or, predicted=True, the one `plan` was asked about)."""

    label: str
    hostname: str | None = None
    docker_version: str | None = None
    runtimes: list[str] = field(default_factory=list)
    nvidia_runtime: bool | None = None
    cdi_devices: list[str] = field(default_factory=list)
    kernel: str | None = None
    driver: str | None = None
    cuda_driver: str | None = None
    gpus: list[str] = field(default_factory=list)
    fingerprint: str | None = None
    predicted: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        if not self.predicted:
            del data["predicted"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Host:
        where = "host: "
        label = _text(data, "label", where=where) or _text(data, "hostname", where=where) or "unknown host"
        nvidia = data.get("nvidia_runtime")
        return cls(
            label=label,
            hostname=_text(data, "hostname", where=where),
            docker_version=_text(data, "docker_version", where=where),
            runtimes=_texts(data, "runtimes", where),
            nvidia_runtime=nvidia if isinstance(nvidia, bool) else None,
            cdi_devices=_texts(data, "cdi_devices", where),
            kernel=_text(data, "kernel", where=where),
            driver=_text(data, "driver", where=where),
            cuda_driver=_text(data, "cuda_driver", where=where),
            gpus=_texts(data, "gpus", where),
            fingerprint=_text(data, "fingerprint", where=where),
            predicted=_flag(data, "predicted", where),
        )

    def decisive_fingerprint(self) -> str:
        """A hash of what decides a result on this host (driver, GPUs, Docker's GPU runtimes and CDI devices,
        kernel) and nothing else, so a renamed host or a Docker upgrade keeps its saved results reusable."""
        decisive = {k: getattr(self, k) for k in ("driver", "gpus", "runtimes", "cdi_devices", "kernel")}
        return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def title(self) -> str:
        return f"{self.label}: {', '.join(sorted(set(self.gpus))) or 'no GPU'}, driver {self.driver or 'none'}"


# -- the result ------------------------------------------------------------------------------------------------

KNOWN_KEYS = {
    "schema",
    "record_schema",
    "stack",
    "image",
    "content_hash",
    "definition",
    "envcheck",
    "timestamp",
    "host",
    "status",
    "error",
    "predicted",
    "probe",
    "diagnoses",
    "benchmark",
    "build",
    "run",
    "reused",
    "predicted_only",
    "reason",
    "digest",
}


@dataclass
class Result:
    """One stack on one host: measured (status gpu … timeout) or predicted by `plan` (ok, warn, fails)."""

    stack: str
    status: Status
    timestamp: str
    host: Host
    definition: dict[str, Any] = field(default_factory=dict)
    image: str | None = None
    content_hash: str | None = None
    # REGISTRY/NAME@sha256:… the host pulled (--on with a registry); an image stack's REPO@sha256:…, or the image id
    # of an image only its daemon has
    digest: str | None = None
    envcheck: str | None = None
    error: str | None = None
    predicted: list[dict[str, Any]] = field(default_factory=list)  # lint's findings, before building
    probe: dict[str, Any] | None = None
    diagnoses: list[Diagnosis] = field(default_factory=list)
    benchmark: list[Benchmark] = field(default_factory=list)
    build: BuildInfo | None = None
    run: RunInfo | None = None
    reused: bool = False
    predicted_only: bool = False
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys of other envcheck versions, kept as they were

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            **self.extra,
            "schema": SCHEMA,
            "stack": self.stack,
            "image": self.image,
            "content_hash": self.content_hash,
            "definition": self.definition,
            "envcheck": self.envcheck,
            "timestamp": self.timestamp,
            "host": self.host.to_dict(),
            "status": self.status.value,
            "error": self.error,
            "predicted": self.predicted,
            "probe": self.probe,
            "diagnoses": [d.to_dict() for d in self.diagnoses],
            "benchmark": [b.to_dict() for b in self.benchmark],
        }
        if self.build is not None:
            data["build"] = self.build.to_dict()
        if self.run is not None:
            data["run"] = self.run.to_dict()
        if self.reused:
            data["reused"] = True
        if self.digest:
            data["digest"] = self.digest
        if self.predicted_only:
            data.update(predicted_only=True, reason=self.reason)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Result:
        """A result from a record of any host or version; RecordError says what makes it unreadable."""
        data = _mapping(data, "the record")
        version = data.get("record_schema", data.get("schema", SCHEMA))
        if isinstance(version, bool) or not isinstance(version, int):
            raise RecordError(f"record_schema is {version!r}, not a number")
        if version > SCHEMA:
            raise RecordError(f"record_schema {version} is newer than this envcheck reads ({SCHEMA}); upgrade envcheck")
        stack = data.get("stack")
        if not isinstance(stack, str) or not stack.strip():
            raise RecordError(f"stack is {stack!r}, not a stack name")
        status = data.get("status")
        try:
            state = Status(status)
        except ValueError:
            raise RecordError(f"unknown status {status!r}") from None
        probe = data.get("probe")
        if probe is not None:
            _mapping(probe, "probe")
        predicted = data.get("predicted") or []
        if not isinstance(predicted, list):
            raise RecordError("predicted is not a list")
        return cls(
            stack=stack,
            status=state,
            timestamp=_text(data, "timestamp", "") or "",
            host=Host.from_dict(_mapping(data.get("host") or {}, "host")),
            definition=_mapping(data.get("definition") or {}, "definition"),
            image=_text(data, "image"),
            content_hash=_text(data, "content_hash"),
            digest=_text(data, "digest"),
            envcheck=_text(data, "envcheck"),
            error=_text(data, "error"),
            predicted=[_mapping(p, "predicted[]") for p in predicted],
            probe=probe,
            diagnoses=[Diagnosis.from_dict(d) for d in _items(data, "diagnoses")],
            benchmark=[Benchmark.from_dict(b) for b in _items(data, "benchmark")],
            build=BuildInfo.from_dict(_mapping(data["build"], "build")) if data.get("build") is not None else None,
            run=RunInfo.from_dict(_mapping(data["run"], "run")) if data.get("run") is not None else None,
            reused=_flag(data, "reused"),
            predicted_only=_flag(data, "predicted_only"),
            reason=_text(data, "reason"),
            extra={k: v for k, v in data.items() if k not in KNOWN_KEYS},
        )

    # -- what the probe saw, read defensively (probe documents come from any image and any version) --

    def _probe(self, key: str) -> Any:
        return (self.probe or {}).get(key)

    def _probe_text(self, key: str) -> str | None:
        value = self._probe(key)
        return value if isinstance(value, str) else None

    @property
    def kind(self) -> str:
        """How the stack's image came to be: rendered (from envcheck's template), image (one people already run,
        probed unchanged) or dockerfile (the user's own, built by envcheck), as its definition says; records of
        before issue 26 are rendered."""
        kind = self.definition.get("kind")
        if kind in KINDS:
            return str(kind)
        return next((k for k in KINDS[1:] if isinstance(self.definition.get(k), str)), KINDS[0])

    @property
    def frameworks_found(self) -> list[tuple[str, str | None]]:
        """Every framework the probe found in the image, (matrix key, version), in the probe's order: an image
        people already run may hold several."""
        found = self._probe("frameworks_found")
        pairs = []
        for item in found if isinstance(found, list) else []:
            name, version = (item.get("name"), item.get("version")) if isinstance(item, dict) else (None, None)
            if isinstance(name, str) and name:
                pairs.append((name, version if isinstance(version, str) else None))
        return pairs

    @property
    def framework(self) -> str:
        """tensorflow, torch or jax: what the probe ran, else what the stack named (records before issue 11 are
        TensorFlow's)."""
        for name in (self._probe("framework"), self.definition.get("framework")):
            if fw := frameworks.find(name):
                return fw.name
        named = (fw.name for fw in frameworks.FRAMEWORKS if isinstance(self.definition.get(fw.name), str))
        return next(named, frameworks.DEFAULT.name)

    @property
    def framework_name(self) -> str:
        """The framework's display name, as every output spells it."""
        return frameworks.framework(self.framework).display_name

    @property
    def framework_version(self) -> str | None:
        """The framework's version as the probe imported it, else as the stack asked for it."""
        version = (
            self._probe_text("framework_version")
            or (self._probe_text("tensorflow") if self.framework == "tensorflow" else None)
            or self.definition.get(self.framework)
        )
        return version if isinstance(version, str) else None

    @property
    def tensorflow(self) -> str | None:
        """The TensorFlow version of a TensorFlow stack (None for PyTorch and JAX ones)."""
        return self.framework_version if self.framework == "tensorflow" else None

    @property
    def python(self) -> str | None:
        return self._probe_text("python")

    @property
    def build_cuda(self) -> str | None:
        return self._probe_text("build_cuda")

    @property
    def build_cudnn(self) -> str | None:
        return self._probe_text("build_cudnn")

    @property
    def variant(self) -> str | None:
        variant = self.definition.get("variant")
        return variant if isinstance(variant, str) else None

    @property
    def gpu_names(self) -> list[str]:
        """The GPUs the framework listed, by product name where it gave one."""
        gpus = self._probe("gpus")
        names = []
        for gpu in gpus if isinstance(gpus, list) else []:
            if isinstance(gpu, dict):
                name = gpu.get("device_name") or gpu.get("name")
                names.append(name if isinstance(name, str) else "GPU")
        return names

    @property
    def probe_driver(self) -> str | None:
        """The driver as seen inside the container (None when it saw none)."""
        return self._probe_text("driver")

    @property
    def driver(self) -> str | None:
        return self.probe_driver or self.host.driver

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnoses]

    def best_tflops(self, device: str) -> float | None:
        """The best matmul figure of the stack's framework on a device ("cpu" or "gpu"), if any ran."""
        figures = [b.tflops for b in self.benchmark if b.device == device and b.tflops and b.library == self.framework]
        return max(figures) if figures else None

    @property
    def date(self) -> str:
        return self.timestamp[:10]

    @property
    def moment(self) -> datetime.datetime:
        """When it was measured, for ordering: a timestamp that is not a date and time counts as the oldest."""
        return instant(self.timestamp) or OLDEST
