"""The probe's facts as the rules read them: a probe document (of any version, from any image: untrusted) typed key by
key, what Docker said, what `doctor --script` found, and what follows from them with the knowledge data (the build,
the driver's support, the GPU code, the log's evidence). The rules in diagnose.py read only this view.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from envcheck import frameworks
from envcheck.diagnosis.imports import typed_failure
from envcheck.diagnosis.logread import Known, Reading, read_log
from envcheck.frameworks import Framework
from envcheck.knowledge import GpuCode, Knowledge, TFBuild, Version
from envcheck.knowledge import rules as knowledge_rules
from envcheck.knowledge.facts import Build
from envcheck.knowledge.rules import Check, DriverSupport
from envcheck.results.model import Benchmark, RecordError

_version = Version.lenient


# The probe keys the rules read, by the type they must have: a probe of another version, or an odd image, may
# print anything, and a value of the wrong type is dropped rather than allowed to crash a rule.
TEXT_KEYS = (
    "framework",
    "framework_version",
    "framework_error",
    "tensorflow",
    "tensorflow_error",
    "python",
    "build_cuda",
    "build_cudnn",
    "driver",
)
FLAG_KEYS = ("is_cuda_build", "tf32_enabled")
MAPPING_KEYS = ("env", "nvml", "cuda_libs", "placement", "build_info", "gpu_code")
TEXT_LIST_KEYS = ("compute_capabilities", "device_nodes", "log", "tf_log")
RECORD_LIST_KEYS = ("gpus", "benchmark")


def _items(value: Any, kind: type) -> list[Any]:
    return [v for v in value if isinstance(v, kind)] if isinstance(value, list) else []


def _texts(value: Any) -> dict[str, str]:
    return {k: v for k, v in value.items() if isinstance(v, str)} if isinstance(value, dict) else {}


def _located(found: Any) -> dict[str, str] | None:
    """A library the probe found: its text fields, when it names a path."""
    return _texts(found) if isinstance(found, dict) and isinstance(found.get("path"), str) else None


def typed_probe(probe: Any) -> dict[str, Any]:
    """The probe's JSON with every key the rules read in its expected type (nested ones too)."""
    probe = dict(probe) if isinstance(probe, dict) else {}
    for keys, kind in ((TEXT_KEYS, str), (FLAG_KEYS, bool), (MAPPING_KEYS, dict)):
        for key in keys:
            if not isinstance(probe.get(key), kind):
                probe.pop(key, None)
    for keys, kind in ((TEXT_LIST_KEYS, str), (RECORD_LIST_KEYS, dict)):
        for key in keys:
            probe[key] = _items(probe.get(key), kind)
    probe["env"] = _texts(probe.get("env"))
    nvml = dict(probe.get("nvml") or {})
    nvml["gpus"] = _items(nvml.get("gpus"), dict)
    if not isinstance(nvml.get("error"), (str, type(None))):
        nvml["error"] = str(nvml["error"])
    probe["nvml"] = nvml
    libs = dict(probe.get("cuda_libs") or {})
    found = libs.get("libraries") if isinstance(libs.get("libraries"), dict) else {}
    libs["libraries"] = {
        name: {
            "found": _located(entry.get("found")),
            "unreachable_on_disk": _items(entry.get("unreachable_on_disk"), str),
        }
        for name, entry in found.items()
        if isinstance(entry, dict)
    }
    libs["runtime_versions"] = _texts(libs.get("runtime_versions"))
    probe["cuda_libs"] = libs
    if (failure := typed_failure(probe.pop("import_failure", None))) is not None:
        probe["import_failure"] = failure
    return probe


# A framework's own keys in the probe's document (probe.py's framework_facts, what its adapter adds, and the
# TensorFlow keys of probe schema 1); the rest belong to the container.
PER_FRAMEWORK = frozenset(
    {
        "framework", "framework_version", "framework_error", "is_cuda_build", "build_cuda", "build_cudnn",
        "compute_capabilities", "build_info", "gpus", "log", "tf32_enabled", "placement", "cuda_libs", "gpu_code",
        "benchmark", "tensorflow", "tensorflow_error", "tf_log", "import_failure",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Facts:
    """Everything a rule may read: the probe's JSON, what Docker said, and what `doctor --script` found."""

    probe: dict[str, Any]
    gpu_refusal: str | None = None
    in_container: bool = True
    docker: dict[str, Any] | None = None  # doctor: the host's Docker daemon, when reachable
    script_findings: tuple[dict[str, Any], ...] = ()
    log_reading: Reading | None = None  # explain: a user's log, already read (then nothing was probed)

    def __post_init__(self) -> None:
        object.__setattr__(self, "probe", typed_probe(self.probe))

    @property
    def from_log(self) -> bool:
        """Only a log was read: what it does not mention is unknown, so no rule concludes from absence."""
        return self.log_reading is not None

    @property
    def gpu_count(self) -> int | None:
        """How many GPUs NVML lists (None where NVML did not run)."""
        return len(self.nvml.get("gpus") or []) if self.nvml.get("available") else None

    @property
    def env(self) -> dict[str, str]:
        return self.probe.get("env") or {}

    @property
    def nvml(self) -> dict[str, Any]:
        return self.probe.get("nvml") or {}

    @property
    def libraries(self) -> dict[str, Any]:
        return (self.probe.get("cuda_libs") or {}).get("libraries") or {}

    @property
    def runtime_versions(self) -> dict[str, str]:
        return (self.probe.get("cuda_libs") or {}).get("runtime_versions") or {}

    @property
    def cuda_build(self) -> bool:
        return self.probe.get("is_cuda_build") is True

    @cached_property
    def knowledge(self) -> Knowledge:
        return Knowledge.load()

    @property
    def fw(self) -> Framework:
        """The framework probed (a record of probe schema 1 is TensorFlow's): its wording for every rule."""
        return frameworks.find(self.probe.get("framework")) or frameworks.DEFAULT

    @property
    def framework(self) -> str:
        return self.fw.name

    @property
    def parts(self) -> list[Facts]:
        """These facts once per framework the probe read in one environment (probe.py's other_frameworks: a stack of
        several frameworks, or an image that has several), the primary first: each with the container's own keys
        and that framework's."""
        others = self.probe.get("other_frameworks")
        parts = [self]
        shared = {k: v for k, v in self.probe.items() if k not in PER_FRAMEWORK and k != "other_frameworks"}
        for other in others if isinstance(others, list) else []:
            if isinstance(other, dict) and frameworks.find(other.get("framework")):
                own = {k: v for k, v in other.items() if k in PER_FRAMEWORK}
                parts.append(dataclasses.replace(self, probe={**shared, **own}))
        return parts

    @property
    def none_found(self) -> bool:
        """Probed with --framework auto, and this Python has none of the frameworks."""
        found = self.probe.get("frameworks_found")
        return isinstance(found, list) and not found and not self.probe.get("framework")

    @property
    def name(self) -> str:
        return self.fw.display_name

    @property
    def version(self) -> str | None:
        return self.probe.get("framework_version") or self.probe.get("tensorflow")

    @property
    def log(self) -> list[str]:
        return self.probe["log"] or self.probe["tf_log"]

    @cached_property
    def build(self) -> Build | None:
        """What the knowledge data says of this release (its default GPU variant: JAX's cuda12 or cuda13 as the
        plugin found, PyTorch's PyPI wheel)."""
        if not self.version:
            return None
        major = str(self.probe.get("build_cuda") or "12").split(".")[0]
        return self.fw.build(self.knowledge, self.version, self.fw.gpu_variant(major))

    @property
    def tf(self) -> TFBuild | None:
        return self.build if isinstance(self.build, TFBuild) else None

    @cached_property
    def code(self) -> GpuCode | None:
        """The GPU code of this build: read from its binaries by the probe, else the knowledge data's for the
        release, else what TensorFlow's build info lists."""
        read = self.probe.get("gpu_code")
        if isinstance(read, dict) and isinstance(read.get("sass"), list) and isinstance(read.get("ptx"), dict):
            sass = [v for v in map(_version, read["sass"]) if v is not None]
            ptx = {v: _version(isa) for arch, isa in read["ptx"].items() if (v := _version(arch)) is not None}
            if sass or ptx:
                return GpuCode(tuple(sorted(set(sass))), ptx)
        if self.build and self.build.code and not self.build.unavailable:
            return self.build.code
        entries = [e for e in self.probe.get("compute_capabilities") or [] if isinstance(e, str)]
        return self.fw.code_from_build_info(entries)

    @property
    def gpu_name(self) -> str | None:
        """The first GPU's product name, from the framework or NVML."""
        names = [g.get("device_name") for g in self.probe.get("gpus") or [] if isinstance(g, dict)]
        names += [g.get("name") for g in self.nvml.get("gpus") or [] if isinstance(g, dict)]
        return next((n for n in names if isinstance(n, str) and n), None)

    @property
    def gpu_capability(self) -> Version | None:
        """The first GPU's compute capability, as the framework or NVML reports it (or known from its name)."""
        ccs = [g.get("compute_capability") for g in self.probe.get("gpus") or [] if isinstance(g, dict)]
        ccs += [g.get("compute_capability") for g in self.nvml.get("gpus") or [] if isinstance(g, dict)]
        found = next((v for v in map(_version, ccs) if v is not None), None)
        name = self.gpu_name
        return found or (self.knowledge.gpu_compute_capability(name) if name else None)

    @cached_property
    def driver_support(self) -> DriverSupport | None:
        """How the driver seen here runs the CUDA this build needs (None when either is unknown)."""
        build, driver = _version(self.probe.get("build_cuda")), _version(self.probe.get("driver"))
        return knowledge_rules.driver_support(build, driver, self.knowledge) if build and driver else None

    @cached_property
    def gpu_checks(self) -> list[tuple[str, Version, Check]]:
        """What the knowledge says of each GPU NVML lists with this build's GPU code."""
        code = self.code
        if not self.cuda_build or code is None or (not code.sass and not code.ptx):
            return []  # a CPU-only build has no GPU code to judge
        release = self.build.label if self.build else f"{self.name} {self.version}"
        found = []
        for gpu in self.nvml.get("gpus") or []:
            cc = _version(gpu.get("compute_capability"))
            if cc is None:
                continue
            name = gpu.get("name") or f"GPU {gpu.get('index')}"
            version = (self.framework, str(self.version or ""))
            check = knowledge_rules.gpu_check(code, release, name, cc, self.driver_support, self.knowledge, version)
            if check:
                found.append((name, cc, check))
        return found

    @cached_property
    def benchmark(self) -> list[Benchmark]:
        """The probe's matmul figures, typed, with how float32 really ran (TF32 on tensor cores by default on
        Ampere and newer) and the percentage of the card's datasheet peak for that precision."""
        entries = []
        for raw in self.probe.get("benchmark") or []:
            try:
                entries.append(Benchmark.from_dict(raw))
            except RecordError:
                continue  # an entry of another shape (an odd probe) has no figure to show
        peak = self.knowledge.gpu_peak(self.gpu_name) if self.gpu_name else None
        tf32 = knowledge_rules.uses_tf32(self.gpu_capability, self.probe.get("tf32_enabled"), self.knowledge)
        for entry in entries:
            if entry.device != "gpu":
                continue
            if entry.dtype == "float32":
                entry.precision = "tf32" if tf32 else "float32"
            figure = peak.tflops.get(entry.precision or entry.dtype) if peak else None
            if entry.tflops and figure:
                entry.peak_tflops = figure
                entry.percent_of_peak = round(100 * entry.tflops / figure, 1)
        return entries

    @cached_property
    def log_codes(self) -> dict[str, list[str]]:
        """The framework's log lines by the diagnosis code they are evidence for, read with what the probe found
        (the release, the libraries on disk, how many GPUs NVML lists) to tell causes apart."""
        if self.log_reading is not None:
            return self.log_reading.codes
        on_disk: dict[str, set[int]] = {}
        for name, entry in self.libraries.items():
            paths = [entry["found"]["path"]] if entry.get("found") else []
            for path in [*paths, *entry.get("unreachable_on_disk", [])]:
                major = soname_major(path)
                if major is not None:
                    on_disk.setdefault(name, set()).add(major)
        known = Known(self.framework, self.version, self.build, on_disk, self.gpu_count)
        return read_log(self.log, self.knowledge, known, label="log line").codes


def soname_major(path: str) -> int | None:
    """The major version a library's file name carries (libcudart.so.12.4.127 → 12), or None."""
    tail = path.rsplit(".so.", 1)
    return int(tail[1].split(".")[0]) if len(tail) == 2 and tail[1].split(".")[0].isdigit() else None
