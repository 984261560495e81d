"""Why the GPU is not used: small rules, one per cause, each reading probe facts and what Docker said.

A rule returns a Diagnosis or None. Rules run in registration order, which puts root causes (no GPU runtime,
no TensorFlow, a CPU-only package, no driver) before their consequences. Codes are a public, stable vocabulary;
adding a cause is adding one rule here and its test. What the knowledge implies (supported Pythons, how a
driver runs a CUDA runtime, whether a GPU has native kernels or PTX the driver can compile, cuDNN compatibility)
comes from knowledge.rules, the same conclusions lint and plan draw. TensorFlow's own log lines, classified
against the known messages in the knowledge data, are attached as evidence to the rule whose code they support.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from envcheck.knowledge import GpuCode, Knowledge, TFBuild, Version
from envcheck.knowledge import rules as knowledge_rules
from envcheck.knowledge.rules import Check, DriverSupport, Level
from envcheck.results.model import Benchmark, Diagnosis, RecordError, Severity
from envcheck.scan import HIDING_VALUES, where

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


def _version(value: Any) -> Version | None:
    try:
        return Version(value) if isinstance(value, str) else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Facts:
    """Everything a rule may read: the probe's JSON, what Docker said, and what `doctor --script` found."""

    probe: dict[str, Any]
    gpu_refusal: str | None = None
    in_container: bool = True
    docker: dict[str, Any] | None = None  # doctor: the host's Docker daemon, when reachable
    script_findings: tuple[dict[str, Any], ...] = ()

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

    @cached_property
    def tf(self) -> TFBuild | None:
        version = self.probe.get("tensorflow")
        return self.knowledge.tf_build(version) if isinstance(version, str) else None

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
        """What the knowledge says of each GPU NVML lists with this build's GPU code (the wheel's, for a known
        release; else what the build info says)."""
        code = self.tf.code if self.tf else GpuCode.from_build_info(list(self.probe.get("compute_capabilities") or []))
        if not code.sass and not code.ptx:
            return []
        release = self.tf.release if self.tf else str(self.probe.get("tensorflow"))
        found = []
        for gpu in self.nvml.get("gpus") or []:
            cc = _version(gpu.get("compute_capability"))
            if cc is None:
                continue
            name = gpu.get("name") or f"GPU {gpu.get('index')}"
            check = knowledge_rules.gpu_check(code, release, name, cc, self.driver_support, self.knowledge)
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
        """TF's log lines (and Docker's refusal) by the diagnosis code they are evidence for."""
        found: dict[str, list[str]] = {}
        for line in [*(self.probe.get("tf_log") or []), self.gpu_refusal or ""]:
            message = self.knowledge.classify(line)
            if message and message.code:
                found.setdefault(message.code, []).append(f"log: {line.strip()[:300]}")
        return found


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
def tensorflow_missing(f: Facts) -> Diagnosis | None:
    if f.probe.get("tensorflow"):
        return None
    return Diagnosis(
        "tensorflow-missing",
        ERROR,
        "TensorFlow cannot be imported.",
        "Install it in this Python: `pip install 'tensorflow[and-cuda]'` (Linux, GPU), or fix the import error shown.",
        [str(f.probe.get("tensorflow_error") or "tensorflow not importable")],
    )


@rule
def python_unsupported(f: Facts) -> Diagnosis | None:
    python = f.probe.get("python")
    if not f.tf or not isinstance(python, str) or not _version(python):
        return None
    if not knowledge_rules.python_support(str(f.probe.get("tensorflow")), python, None, f.tf):
        return None
    return Diagnosis(
        "python-unsupported",
        WARNING,
        f"TensorFlow {f.tf.release} is tested with Python {f.tf.python_range()}, not {f.probe['python']}.",
        f"Use Python {f.tf.python[1]} (or another in {f.tf.python_range()}), or a TensorFlow release that supports "
        f"Python {f.probe['python']}.",
        [f"python {f.probe['python']}, tensorflow {f.probe.get('tensorflow')}"],
    )


@rule
def cpu_only_build(f: Facts) -> Diagnosis | None:
    if f.probe.get("is_cuda_build") is not False:
        return None
    return Diagnosis(
        "cpu-only-build",
        ERROR,
        f"This TensorFlow {f.probe.get('tensorflow')} is a CPU-only build (is_built_with_cuda() is False).",
        "Install the GPU-capable package instead: `pip uninstall tensorflow-cpu && pip install 'tensorflow[and-cuda]'`"
        " (the old `tensorflow-gpu` package no longer exists).",
        [f"tf.test.is_built_with_cuda() = False; build info: {f.probe.get('build_info')}"],
    )


@rule
def no_driver(f: Facts) -> Diagnosis | None:
    error = str(f.nvml.get("error") or "")
    if f.gpu_refusal or f.probe.get("gpus") or f.nvml.get("available") or "mismatch" in error.lower():
        return None
    if f.nvml.get("proc_version"):
        return None  # the kernel driver is loaded; NVML's bindings are what is missing
    where = "inside the container" if f.in_container else "on this host"
    return Diagnosis(
        "no-driver",
        ERROR,
        f"No NVIDIA driver is reachable {where}: NVML cannot start and no GPU is visible.",
        "Install the NVIDIA driver on the host (check with `nvidia-smi`); for containers also request GPUs "
        "(`--gpus all`) with the NVIDIA Container Toolkit installed.",
        [
            f"NVML: {error or 'not available'}",
            "device nodes: " + (", ".join(f.probe.get("device_nodes") or []) or "no /dev/nvidia*"),
            *f.log_codes.get("no-driver", []),
        ],
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
    hidden = [
        f"{name}={f.env[name]!r}"
        for name in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
        if name in f.env and f.env[name].strip().lower() in HIDING_VALUES
    ]
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
    summary = (
        f"The NVIDIA driver is too old for the CUDA {build} this TensorFlow was built with."
        if severity == ERROR
        else f"The NVIDIA driver is older than CUDA {build} needs; it runs only through minor-version "
        "compatibility (no PTX JIT of newer code)."
    )
    built = _version(build)
    minimum = support.minimum if support else (f.knowledge.min_driver(built) if built else None)
    return Diagnosis(
        "driver-too-old",
        severity,
        summary,
        f"Upgrade the host's driver to {minimum or 'a newer one'} or newer, or use an older TensorFlow/CUDA stack "
        f"(`envcheck plan --driver {f.probe.get('driver')}` lists which).",
        evidence,
    )


def _missing_libraries(f: Facts) -> tuple[list[str], list[str]]:
    """Required CUDA libraries (the driver's libcuda aside) that the loader cannot find: (nowhere, on disk)."""
    nowhere, on_disk = [], []
    for name in f.knowledge.required_libraries:
        entry = f.libraries.get(name)
        if name == "cuda" or entry is None or entry.get("found"):
            continue
        (on_disk if entry.get("unreachable_on_disk") else nowhere).append(name)
    return nowhere, on_disk


@rule
def cuda_libs_missing(f: Facts) -> Diagnosis | None:
    if not f.cuda_build or not f.libraries:
        return None
    nowhere, _ = _missing_libraries(f)
    if not nowhere:
        return None
    return Diagnosis(
        "cuda-libs-missing",
        ERROR,
        f"CUDA libraries TensorFlow needs are not installed: {', '.join(nowhere)}.",
        "Install TensorFlow with its CUDA libraries: `pip install 'tensorflow[and-cuda]=="
        + f"{f.probe.get('tensorflow')}'`, or use a CUDA {f.probe.get('build_cuda')} + cuDNN "
        f"{f.probe.get('build_cudnn')} base image (nvidia/cuda:*-cudnn*-runtime).",
        [f"lib{name}: not found on the loader path nor on disk" for name in nowhere]
        + f.log_codes.get("cuda-libs-missing", []),
    )


@rule
def cuda_libs_not_on_path(f: Facts) -> Diagnosis | None:
    if not f.cuda_build or not f.libraries:
        return None
    _, on_disk = _missing_libraries(f)
    if not on_disk:
        return None
    dirs = sorted({path.rsplit("/", 1)[0] for name in on_disk for path in f.libraries[name]["unreachable_on_disk"]})
    return Diagnosis(
        "cuda-libs-not-on-path",
        ERROR,
        f"CUDA libraries are installed but the loader does not find them: {', '.join(on_disk)}.",
        f"Add their directories to LD_LIBRARY_PATH (export LD_LIBRARY_PATH={':'.join(dirs)}:$LD_LIBRARY_PATH), or "
        "use a TensorFlow release whose RUNPATH reaches the pip NVIDIA packages.",
        [f"lib{name}: on disk at {', '.join(f.libraries[name]['unreachable_on_disk'])}" for name in on_disk]
        + f.log_codes.get("cuda-libs-not-on-path", []),
    )


def _soname_major(path: str) -> int | None:
    tail = path.rsplit(".so.", 1)
    return int(tail[1].split(".")[0]) if len(tail) == 2 and tail[1].split(".")[0].isdigit() else None


@rule
def cuda_mismatch(f: Facts) -> Diagnosis | None:
    build = f.probe.get("build_cuda")
    found = (f.libraries.get("cudart") or {}).get("found")
    if not f.cuda_build or not build or not found:
        return None
    built = Version(build)
    evidence = []
    major = _soname_major(found["path"])
    if major is not None and major != built.major:
        evidence.append(f"libcudart found is {found['soname']} (CUDA {major}), TensorFlow was built with CUDA {build}")
    runtime = f.runtime_versions.get("cudart", "")
    if _version(runtime) and Version(runtime).prefix(2) < built.prefix(2):
        evidence.append(f"CUDA runtime {runtime} is older than the CUDA {build} TensorFlow was built with")
    if not evidence:
        return None
    return Diagnosis(
        "cuda-mismatch",
        ERROR,
        "The CUDA runtime found does not match the CUDA TensorFlow was built with.",
        f"Install the CUDA {built.prefix(2)} runtime (pip: nvidia-cuda-runtime-cu{built.major}, as "
        "tensorflow[and-cuda] pins it) and remove other CUDA runtimes from the loader path.",
        evidence,
    )


@rule
def cudnn_mismatch(f: Facts) -> Diagnosis | None:
    build = str(f.probe.get("build_cudnn") or "")
    if not f.cuda_build or not build[:1].isdigit():
        return None
    needed = f.tf.cudnn if f.tf else Version(build)
    evidence = list(f.log_codes.get("cudnn-mismatch", []))
    loaded = f.runtime_versions.get("cudnn", "")
    version = _version(loaded)
    if version is not None:
        usable = knowledge_rules.cudnn_usable(version, needed) if f.tf else version.major == needed.major
        if not usable:
            evidence.insert(
                0,
                f"cuDNN {loaded} found, TensorFlow {f.probe.get('tensorflow')} was built with cuDNN "
                f"{needed} (needs the same major and an equal or higher minor)",
            )
    if not evidence:
        return None
    return Diagnosis(
        "cudnn-mismatch",
        ERROR,
        "The cuDNN found does not match the cuDNN TensorFlow was built with.",
        f"Install cuDNN {needed.major}.x at least {needed} (pip: nvidia-cudnn-cu{str(f.probe.get('build_cuda'))[:2]}"
        f"=={f.tf.and_cuda.cudnn if f.tf and f.tf.and_cuda else needed}) and remove other cuDNN versions from the "
        "loader path.",
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
        "The GPU is older than any this TensorFlow build has kernels for.",
        "Use an older TensorFlow release that still supports this GPU (`envcheck plan --gpu NAME` lists them), or "
        "a newer GPU.",
        evidence,
    )


@rule
def ptx_jit(f: Facts) -> Diagnosis | None:
    code = f.tf.code if f.tf else None
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
        "Use a TensorFlow release built for this GPU generation, and keep the JIT cache "
        "(CUDA_CACHE_MAXSIZE=4294967296) between runs.",
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
        "Use smaller batches or models, stop other processes on the GPU (`nvidia-smi`), or set "
        "TF_FORCE_GPU_ALLOW_GROWTH=true so TensorFlow does not reserve all memory up front.",
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
        "Code or configuration forces TensorFlow's work onto the CPU.",
        "Remove tf.device('/CPU:0') scopes, CUDA_VISIBLE_DEVICES=''/-1 assignments and "
        "tf.config.set_visible_devices([], 'GPU') calls, or limit them to the code that must run on CPU.",
        evidence,
    )


def uses_gpu(probe: dict[str, Any], diagnoses: list[Diagnosis]) -> bool:
    """TensorFlow lists a GPU and nothing at error level stands in its way."""
    return bool(probe.get("gpus")) and not any(d.severity == ERROR for d in diagnoses)


def diagnose(facts: Facts) -> list[Diagnosis]:
    """All diagnoses for these facts, root causes first. A CUDA build that sees no GPU always gets an error."""
    found = [d for d in (r(facts) for r in RULES) if d is not None]
    sees_no_gpu = facts.cuda_build and not facts.probe.get("gpus")
    if sees_no_gpu and not any(d.severity == ERROR for d in found):
        found.append(
            Diagnosis(
                "gpu-not-detected",
                ERROR,
                "TensorFlow is built with CUDA but lists no GPU, for a reason envcheck could not pin down.",
                "Read the TensorFlow log lines in the evidence; run `envcheck doctor` on the host for its side.",
                [f"log: {line[:300]}" for line in (facts.probe.get("tf_log") or [])[-10:]],
            )
        )
    return found
