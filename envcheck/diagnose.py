"""Why the GPU is not used: small rules, one per cause, each reading probe facts and what Docker said.

A rule returns a Diagnosis or None. Rules run in registration order, which puts root causes (no GPU runtime,
no framework, a CPU-only package, no driver) before their consequences. The facts are the probe's for any
framework (TensorFlow, PyTorch, JAX; probe documents of schema 1 are TensorFlow's). Codes are a public, stable
vocabulary; adding a cause is adding one rule here and its test. What the knowledge implies (supported Pythons, how a
driver runs a CUDA runtime, whether a GPU has native kernels or PTX the driver can compile, cuDNN compatibility)
comes from knowledge.rules, the same conclusions lint and plan draw. The framework's own log lines, read by
envcheck.logread against the known messages in the knowledge data, are evidence for the rule whose code they support;
`envcheck explain` runs the same rules on a user's log alone (Facts.log_reading), where only evidence counts: a fact
the log does not mention is unknown, not absent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from envcheck import frameworks
from envcheck.frameworks import Framework
from envcheck.knowledge import GpuCode, Knowledge, TFBuild, Version
from envcheck.knowledge import rules as knowledge_rules
from envcheck.knowledge.facts import Build
from envcheck.knowledge.rules import Check, DriverSupport, Level
from envcheck.logread import Known, Reading, hides_all_gpus, read_log
from envcheck.results.model import Benchmark, Diagnosis, RecordError, Severity
from envcheck.scan import HIDING_VALUES, where

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


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
    return probe


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
                major = _soname_major(path)
                if major is not None:
                    on_disk.setdefault(name, set()).add(major)
        known = Known(self.framework, self.version, self.build, on_disk, self.gpu_count)
        return read_log(self.log, self.knowledge, known, label="log line").codes


Rule = Callable[[Facts], "Diagnosis | None"]
RULES: list[Rule] = []


def rule(func: Rule) -> Rule:
    RULES.append(func)
    return func


@rule
def no_gpu_runtime(f: Facts) -> Diagnosis | None:
    if f.gpu_refusal:
        return Diagnosis(
            "no-gpu-runtime",
            ERROR,
            "Docker could not give the container a GPU: the host has no NVIDIA Container Toolkit (or no GPU runtime).",
            "Install the NVIDIA Container Toolkit on the host, run `sudo nvidia-ctk runtime configure "
            "--runtime=docker` and restart the Docker daemon; then `docker run --gpus all` works.",
            [f"docker: {f.gpu_refusal[:300]}"],
        )
    docker = f.docker or {}
    if docker.get("reachable") and not docker.get("nvidia_runtime") and not docker.get("cdi_devices"):
        return Diagnosis(
            "no-gpu-runtime",
            WARNING,
            "The Docker daemon here has no NVIDIA runtime and no CDI GPU devices: containers cannot get GPUs.",
            "Install the NVIDIA Container Toolkit and run `sudo nvidia-ctk runtime configure --runtime=docker`, "
            "then restart Docker.",
            [f"docker runtimes: {', '.join(docker.get('runtimes') or []) or 'none'}; CDI devices: none"],
        )
    return None


@rule
def framework_missing(f: Facts) -> Diagnosis | None:
    """TensorFlow keeps its code of probe schema 1 (tensorflow-missing); PyTorch and JAX get framework-missing."""
    if f.version or f.from_log:
        return None
    error = f.probe.get("framework_error") or f.probe.get("tensorflow_error")
    return Diagnosis(
        f.fw.missing_code,
        ERROR,
        f"{f.name} cannot be imported.",
        f"Install it in this Python: {f.fw.install_command()} {f.fw.install_note}, or fix the import error shown.",
        [str(error or f"{f.framework} not importable")],
    )


@rule
def python_unsupported(f: Facts) -> Diagnosis | None:
    python = f.probe.get("python")
    build = f.build
    if not build or not isinstance(python, str) or not _version(python):
        return None
    if not knowledge_rules.python_support(str(f.version), python, None, build):
        return None
    return Diagnosis(
        "python-unsupported",
        WARNING,
        f"{build.label} is tested with Python {build.python_range()}, not {python}.",
        f"Use Python {build.python[1]} (or another in {build.python_range()}), or a {f.name} release that supports "
        f"Python {python}.",
        [f"python {python}, {f.framework} {f.version}"],
    )


@rule
def cpu_only_build(f: Facts) -> Diagnosis | None:
    logged = f.log_codes.get("cpu-only-build", [])
    if f.probe.get("is_cuda_build") is not False and not logged:
        return None
    probed = (
        [f"{f.fw.cpu_only_evidence}; build info: {f.probe.get('build_info')}"]
        if f.probe.get("is_cuda_build") is False
        else []
    )
    return Diagnosis(
        "cpu-only-build",
        ERROR,
        f"This {f.name}{' ' + f.version if f.version else ''} is a CPU-only build ({f.fw.cpu_only_what}).",
        f"Install the GPU-capable package instead: {f.fw.cpu_only_fix}.",
        [*probed, *logged],
    )


@rule
def no_driver(f: Facts) -> Diagnosis | None:
    error = str(f.nvml.get("error") or "")
    if f.from_log:
        logged = f.log_codes.get("no-driver", [])
        return _no_driver("on the machine that wrote this log", logged) if logged else None
    if f.gpu_refusal or f.probe.get("gpus") or f.nvml.get("available") or "mismatch" in error.lower():
        return None
    if f.nvml.get("proc_version"):
        return None  # the kernel driver is loaded; NVML's bindings are what is missing
    where = "inside the container" if f.in_container else "on this host"
    return _no_driver(
        where,
        [
            f"NVML: {error or 'not available'}",
            "device nodes: " + (", ".join(f.probe.get("device_nodes") or []) or "no /dev/nvidia*"),
            *f.log_codes.get("no-driver", []),
        ],
    )


def _no_driver(where: str, evidence: list[str]) -> Diagnosis:
    return Diagnosis(
        "no-driver",
        ERROR,
        f"No NVIDIA driver is reachable {where}: NVML cannot start and no GPU is visible.",
        "Install the NVIDIA driver on the host (check with `nvidia-smi`); for containers also request GPUs "
        "(`--gpus all`) with the NVIDIA Container Toolkit installed.",
        evidence,
    )


@rule
def driver_library_mismatch(f: Facts) -> Diagnosis | None:
    error = str(f.nvml.get("error") or "")
    evidence = [f"NVML: {error}"] if "mismatch" in error.lower() else []
    evidence += f.log_codes.get("driver-library-mismatch", [])
    if not evidence:
        return None
    return Diagnosis(
        "driver-library-mismatch",
        ERROR,
        "The NVIDIA user-space driver and the loaded kernel module have different versions.",
        "Reboot the host (or reload the nvidia kernel modules) after a driver upgrade.",
        evidence,
    )


@rule
def gpus_hidden(f: Facts) -> Diagnosis | None:
    """Hidden: an empty/-1/none value, a first entry CUDA cannot parse, or only indices NVML does not list."""
    hidden = [
        f"{name}={f.env[name]!r}"
        for name in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
        if name in f.env and f.env[name].strip().lower() in HIDING_VALUES
    ]
    cuda = f.env.get("CUDA_VISIBLE_DEVICES")
    if cuda is not None and not hidden and hides_all_gpus(cuda.strip(), f.gpu_count):
        count = f"of the {f.gpu_count} NVML lists" if f.gpu_count is not None else "CUDA can use"
        hidden.append(f"CUDA_VISIBLE_DEVICES={cuda!r} names no GPU {count}")
    hidden += [e for e in f.log_codes.get("gpus-hidden", []) if e not in hidden]
    if not hidden:
        return None
    return Diagnosis(
        "gpus-hidden",
        ERROR,
        "GPUs are hidden from CUDA by an environment variable.",
        "Unset it (or list the GPU indices to use, e.g. CUDA_VISIBLE_DEVICES=0) in the image, the job script or "
        "the container's environment.",
        hidden,
    )


@rule
def driver_too_old(f: Facts) -> Diagnosis | None:
    build = f.probe.get("build_cuda")
    support = f.driver_support
    evidence = list(f.log_codes.get("driver-too-old", []))
    evidence += [check.message for _, _, check in f.gpu_checks if check.code == "driver-too-old"]
    severity = ERROR if evidence else WARNING
    if support and support.level > Level.OK:
        severity = ERROR if support.level == Level.FAILS or evidence else WARNING
        evidence.insert(0, support.evidence())
    if not evidence:
        return None
    cuda = f"CUDA {build}" if build else "CUDA"  # a log may not say which
    summary = (
        f"The NVIDIA driver is too old for the {cuda} this {f.name} was built with."
        if severity == ERROR
        else f"The NVIDIA driver is older than {cuda} needs; it runs only through minor-version "
        "compatibility (no PTX JIT of newer code)."
    )
    built = _version(build)
    minimum = support.minimum if support else (f.knowledge.min_driver(built) if built else None)
    return Diagnosis(
        "driver-too-old",
        severity,
        summary,
        f"Upgrade the host's driver to {minimum or 'a newer one'} or newer, or use an older {f.name}/CUDA stack "
        f"(`envcheck plan --driver {f.probe.get('driver') or 'VERSION'}` lists which).",
        evidence,
    )


def _missing_libraries(f: Facts) -> tuple[list[str], list[str]]:
    """Required CUDA libraries (the driver's libcuda aside) that the loader cannot find: (nowhere, on disk)."""
    nowhere, on_disk = [], []
    for name in f.knowledge.required_libraries_for(f.framework):
        entry = f.libraries.get(name)
        if name == "cuda" or entry is None or entry.get("found"):
            continue
        (on_disk if entry.get("unreachable_on_disk") else nowhere).append(name)
    return nowhere, on_disk


@rule
def cuda_libs_missing(f: Facts) -> Diagnosis | None:
    nowhere = _missing_libraries(f)[0] if f.cuda_build and f.libraries else []
    logged = f.log_codes.get("cuda-libs-missing", [])
    if not nowhere and not logged:
        return None
    install = f.fw.install_command(f.version) + f.fw.with_libraries_note
    cuda, cudnn = f.probe.get("build_cuda"), f.probe.get("build_cudnn")  # a log may not say them
    image = f"CUDA{f' {cuda}' if cuda else ''} + cuDNN{f' {cudnn}' if cudnn else ''}"
    return Diagnosis(
        "cuda-libs-missing",
        ERROR,
        f"CUDA libraries {f.name} needs are not installed"
        + (f": {', '.join(nowhere)}." if nowhere else " (the log names the ones that failed to load)."),
        f"Install {f.name} with its CUDA libraries ({install}), or use a {image} base image "
        "(nvidia/cuda:*-cudnn*-runtime).",
        [f"lib{name}: not found on the loader path nor on disk" for name in nowhere] + logged,
    )


@rule
def cuda_libs_not_on_path(f: Facts) -> Diagnosis | None:
    on_disk = _missing_libraries(f)[1] if f.cuda_build and f.libraries else []
    logged = f.log_codes.get("cuda-libs-not-on-path", [])
    if not on_disk and not logged:
        return None
    dirs = sorted({path.rsplit("/", 1)[0] for name in on_disk for path in f.libraries[name]["unreachable_on_disk"]})
    where = (
        f"export LD_LIBRARY_PATH={':'.join(dirs)}:$LD_LIBRARY_PATH"
        if dirs
        else "pip's NVIDIA packages: site-packages/nvidia/*/lib; a CUDA toolkit: its lib64"
        + "".join(f", and {sub} for lib{lib}" for lib, sub in f.knowledge.off_loader_path.items())
    )
    return Diagnosis(
        "cuda-libs-not-on-path",
        ERROR,
        "CUDA libraries are installed but the loader does not find them"
        + (f": {', '.join(on_disk)}." if on_disk else "."),
        f"Add their directories to LD_LIBRARY_PATH ({where}), or use a {f.name} release whose RUNPATH reaches the "
        "pip NVIDIA packages.",
        [f"lib{name}: on disk at {', '.join(f.libraries[name]['unreachable_on_disk'])}" for name in on_disk] + logged,
    )


def _soname_major(path: str) -> int | None:
    tail = path.rsplit(".so.", 1)
    return int(tail[1].split(".")[0]) if len(tail) == 2 and tail[1].split(".")[0].isdigit() else None


@rule
def cuda_mismatch(f: Facts) -> Diagnosis | None:
    build = f.probe.get("build_cuda")
    found = (f.libraries.get("cudart") or {}).get("found")
    built = _version(build)
    evidence = []
    if f.cuda_build and built is not None and found:
        major = _soname_major(found["path"])
        if major is not None and major != built.major:
            evidence.append(
                f"libcudart found is {found.get('soname') or found['path']} (CUDA {major}), {f.name} was built with "
                f"CUDA {build}"
            )
        runtime = f.runtime_versions.get("cudart", "")
        if _version(runtime) and Version(runtime).prefix(2) < built.prefix(2):
            evidence.append(f"CUDA runtime {runtime} is older than the CUDA {build} {f.name} was built with")
    evidence += f.log_codes.get("cuda-mismatch", [])
    if not evidence:
        return None
    needed = (
        f"the CUDA {built.prefix(2)} runtime (pip: nvidia-cuda-runtime-cu{built.major}, as the {f.framework} "
        "package's CUDA dependencies pin it)"
        if built
        else f"the CUDA major your {f.name} release was built with (the library names it asks for carry it)"
    )
    return Diagnosis(
        "cuda-mismatch",
        ERROR,
        f"The CUDA libraries found do not match the CUDA {f.name} was built with.",
        f"Install {needed} and remove other CUDA versions from the loader path, or use the {f.name} release built "
        "for the CUDA you have (`envcheck plan` lists them).",
        evidence,
    )


@rule
def cudnn_mismatch(f: Facts) -> Diagnosis | None:
    build = str(f.probe.get("build_cudnn") or "")
    evidence = list(f.log_codes.get("cudnn-mismatch", []))
    if not (f.cuda_build and build[:1].isdigit()):
        return _cudnn_mismatch_logged(f, evidence) if evidence else None
    needed = f.tf.cudnn if f.tf else Version(build)
    loaded = f.runtime_versions.get("cudnn", "")
    version = _version(loaded)
    if version is not None and not f.fw.cudnn_fits(version, needed, f.tf is not None):
        evidence.insert(
            0, f"cuDNN {loaded} found, {f.name} {f.version} was built with cuDNN {needed} ({f.fw.cudnn_rule})"
        )
    if not evidence:
        return None
    return Diagnosis(
        "cudnn-mismatch",
        ERROR,
        f"The cuDNN found does not match the cuDNN {f.name} was built with.",
        f"Install cuDNN {needed.major}.x at least {needed} (pip: nvidia-cudnn-cu{str(f.probe.get('build_cuda'))[:2]}"
        f"=={f.tf.and_cuda.cudnn if f.tf and f.tf.and_cuda else needed}) and remove other cuDNN versions from the "
        "loader path.",
        evidence,
    )


def _cudnn_mismatch_logged(f: Facts, evidence: list[str]) -> Diagnosis:
    """The log shows a cuDNN that does not fit, the build's own cuDNN unknown: the fix names what the data knows."""
    wanted = f"cuDNN {f.tf.cudnn.major}.x at least {f.tf.cudnn}" if f.tf else f"the cuDNN major {f.name} asks for"
    return Diagnosis(
        "cudnn-mismatch",
        ERROR,
        f"The cuDNN found does not match the cuDNN {f.name} was built with.",
        f"Install {wanted} ({f.fw.cudnn_rule}; the version the message names) and remove other cuDNN "
        "versions from the loader path.",
        evidence,
    )


@rule
def compute_capability_unsupported(f: Facts) -> Diagnosis | None:
    code = "compute-capability-unsupported"
    built = ", ".join(f.probe.get("compute_capabilities") or [])
    evidence = [f"{name}: compute capability {cc}; build has {built}" for name, cc, c in f.gpu_checks if c.code == code]
    evidence += f.log_codes.get(code, [])
    if not evidence:
        return None
    return Diagnosis(
        code,
        ERROR,
        f"This {f.name} build has no kernels for the GPU's architecture: the GPU is older than the build supports "
        "(or an architecture between its targets).",
        f"Use a {f.name} release built for this GPU generation (`envcheck plan --gpu NAME` lists them).",
        evidence,
    )


@rule
def ptx_jit(f: Facts) -> Diagnosis | None:
    code = f.code
    native = ", ".join(f"sm_{v.major}{v.minor}" for v in code.sass) if code else None
    native = native or ", ".join(c for c in f.probe.get("compute_capabilities") or [] if c.startswith("sm_"))
    evidence = [
        f"{name}: compute capability {cc}; native kernels only for {native}"
        for name, cc, check in f.gpu_checks
        if check.code == "ptx-jit"
    ]
    evidence += f.log_codes.get("ptx-jit", [])
    if not evidence:
        return None
    return Diagnosis(
        "ptx-jit",
        WARNING,
        "The GPU is newer than this build's native kernels: they are JIT-compiled from PTX (slow first start).",
        f"Use a {f.name} release built for this GPU generation, and keep the JIT cache "
        "(CUDA_CACHE_MAXSIZE=4294967296) between runs.",
        evidence,
    )


@rule
def gpu_too_new(f: Facts) -> Diagnosis | None:
    code = "gpu-too-new"
    evidence = [check.message for _, _, check in f.gpu_checks if check.code == code]
    evidence += f.log_codes.get(code, [])
    if not evidence:
        return None
    return Diagnosis(
        code,
        ERROR,
        f"The GPU is newer than this {f.name} build supports: no native kernels for its architecture, and no PTX "
        "that compiles for it.",
        f"Use a {f.name} release built for this GPU generation (`envcheck plan --gpu NAME` lists which of your stacks "
        "run on it), or a vendor build made for it (NVIDIA's NGC containers); a newer driver does not help.",
        evidence,
    )


@rule
def xla_toolchain_missing(f: Facts) -> Diagnosis | None:
    evidence = f.log_codes.get("xla-toolchain-missing", [])
    if not evidence:
        return None
    return Diagnosis(
        "xla-toolchain-missing",
        ERROR,
        "XLA cannot compile GPU kernels: CUDA's libdevice or ptxas is not where it looks.",
        "Install the CUDA compiler pieces (pip: nvidia-cuda-nvcc-cu12, which tensorflow[and-cuda] and jax[cuda12] "
        "bring; or a CUDA toolkit) and point XLA at them: XLA_FLAGS=--xla_gpu_cuda_data_dir=/usr/local/cuda "
        "(the directory holding nvvm/libdevice), with ptxas on PATH.",
        evidence,
    )


@rule
def gpu_oom(f: Facts) -> Diagnosis | None:
    failed = [b for b in f.benchmark if b.oom]
    evidence = [f"matmul {b.dtype} n={b.n} on {b.device}: {(b.error or '')[:200]}" for b in failed]
    evidence += f.log_codes.get("gpu-oom", [])
    if not evidence:
        return None
    return Diagnosis(
        "gpu-oom",
        WARNING,
        "The GPU ran out of memory" + (f" at n={failed[0].n}" if failed else "") + ".",
        "Use smaller batches or models, stop other processes on the GPU (`nvidia-smi`), or " + f.fw.oom_advice,
        evidence,
    )


@rule
def placement_forced_cpu(f: Facts) -> Diagnosis | None:
    placement = f.probe.get("placement") or {}
    evidence = []
    if placement and not placement.get("on_gpu"):
        evidence.append(
            f"a matmul placed on {placement.get('requested')} ran on {placement.get('placed_on')}"
            + (f" ({placement['error']})" if placement.get("error") else "")
        )
    evidence += [f"{where(s)}: {s['text']}" for s in f.script_findings]
    if not evidence:
        return None
    severity = ERROR if placement and not placement.get("on_gpu") else WARNING
    return Diagnosis(
        "placement-forced-cpu",
        severity,
        f"Code or configuration forces {f.name}'s work onto the CPU.",
        f.fw.forced_cpu_fix + " (or limit them to the code that must run on the CPU).",
        evidence,
    )


def uses_gpu(probe: dict[str, Any], diagnoses: list[Diagnosis]) -> bool:
    """The framework lists a GPU and nothing at error level stands in its way."""
    return bool(probe.get("gpus")) and not any(d.severity == ERROR for d in diagnoses)


def diagnose(facts: Facts) -> list[Diagnosis]:
    """All diagnoses for these facts, root causes first. A CUDA build that sees no GPU always gets an error."""
    found = [d for d in (r(facts) for r in RULES) if d is not None]
    sees_no_gpu = facts.cuda_build and not facts.probe.get("gpus") and not facts.from_log
    if sees_no_gpu and not any(d.severity == ERROR for d in found):
        found.append(
            Diagnosis(
                "gpu-not-detected",
                ERROR,
                f"{facts.name} is built with CUDA but lists no GPU, for a reason envcheck could not pin down.",
                f"Read the {facts.name} log lines in the evidence; run `envcheck doctor` on the host for its side.",
                [f"log: {line[:300]}" for line in facts.log[-10:]],
            )
        )
    return found
