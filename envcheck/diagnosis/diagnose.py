"""Why the GPU is not used: small rules, one per cause, each reading probe facts and what Docker said.

A rule returns a Diagnosis or None. Rules run in registration order, which puts root causes (no GPU runtime,
no framework, a CPU-only package, no driver) before their consequences. The facts are the probe's for any
framework (TensorFlow, PyTorch, JAX; probe documents of schema 1 are TensorFlow's). Codes are a public, stable
vocabulary; adding a cause is adding one rule here and its test. What the knowledge implies (supported Pythons, how a
driver runs a CUDA runtime, whether a GPU has native kernels or PTX the driver can compile, cuDNN compatibility)
comes from knowledge.rules, the same conclusions lint and plan draw. The framework's own log lines, read by logread
against the known messages in the knowledge data, are evidence for the rule whose code they support;
`envcheck explain` runs the same rules on a user's log alone (Facts.log_reading), where only evidence counts: a fact
the log does not mention is unknown, not absent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from envcheck import frameworks
from envcheck.diagnosis import conflicts, imports
from envcheck.diagnosis.logread import hides_all_gpus
from envcheck.diagnosis.probe_facts import Facts, soname_major
from envcheck.diagnosis.scan import HIDING_VALUES, where
from envcheck.knowledge import Version
from envcheck.knowledge import rules as knowledge_rules
from envcheck.knowledge.rules import Level
from envcheck.results.model import Diagnosis, Severity

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


Rule = Callable[[Facts], "Diagnosis | None"]
RULES: list[Rule] = []


def rule(func: Rule) -> Rule:
    RULES.append(func)
    return func


# What no-gpu-runtime says, by what stopped the GPU: Docker's refusal (no toolkit), or a `docker run` asking none.
TOOLKIT_MISSING = (
    "Docker could not give the container a GPU: the host has no NVIDIA Container Toolkit (or no GPU runtime).",
    "Install the NVIDIA Container Toolkit on the host, run `sudo nvidia-ctk runtime configure --runtime=docker` and "
    "restart the Docker daemon; then `docker run --gpus all` works.",
)
NO_GPU_REQUESTED = (
    "The container was started without a GPU: `docker run` (or the compose service) asked for none, so the "
    "framework inside finds no GPU.",
    "Start it with `docker run --gpus all ...` (the NVIDIA Container Toolkit on the host; `nvidia-docker` or "
    "`--runtime=nvidia` on older setups); on Kubernetes, request nvidia.com/gpu.",
)


def logged_rule(code: str, summary: str, fix: str) -> Rule:
    """A rule whose only evidence is the log lines the knowledge data's messages give `code`, registered in RULES
    where it is made (their order is the order diagnoses are said)."""

    def found(f: Facts) -> Diagnosis | None:
        evidence = f.log_codes.get(code, [])
        return Diagnosis(code, ERROR, summary, fix, evidence) if evidence else None

    found.__name__ = code.replace("-", "_")
    return rule(found)


@rule
def no_gpu_runtime(f: Facts) -> Diagnosis | None:
    refused = [f"docker: {f.gpu_refusal[:300]}"] if f.gpu_refusal else []
    logged = f.log_codes.get("no-gpu-runtime", [])
    if refused or logged:
        # A user's log that shows its `docker run` without a GPU request (logread) is that, not a missing toolkit.
        unasked = not refused and f.log_reading is not None and f.log_reading.revealed.container
        summary, fix = NO_GPU_REQUESTED if unasked else TOOLKIT_MISSING
        return Diagnosis("no-gpu-runtime", ERROR, summary, fix, refused or logged)
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
    """TensorFlow keeps its code of probe schema 1 (tensorflow-missing); PyTorch and JAX get framework-missing. Only
    for a framework that is not there: one installed whose import raises is framework-import-failed."""
    if f.from_log:
        logged = f.log_codes.get("framework-missing", [])
        fix = f"Install it in the Python that runs this: {f.fw.install_command()} {f.fw.install_note}."
        return Diagnosis(f.fw.missing_code, ERROR, f"{f.name} is not installed.", fix, logged) if logged else None
    if f.version or f.probe.get("import_failure"):
        return None
    error = f.probe.get("framework_error") or f.probe.get("tensorflow_error")
    if f.none_found:
        python = f.probe.get("executable") or "its Python"
        return Diagnosis(
            "framework-missing",
            ERROR,
            f"No framework ({', '.join(fw.display_name for fw in frameworks.FRAMEWORKS)}) is installed for {python}.",
            "Probe the Python that has the framework (`python: /path/to/python` in the stack, `--python` for "
            "`envcheck probe`), or install one into this one.",
            [str(error or "no framework found")],
        )
    return Diagnosis(
        f.fw.missing_code,
        ERROR,
        f"{f.name} cannot be imported.",
        f"Install it in this Python: {f.fw.install_command()} {f.fw.install_note}, or fix the import error shown.",
        [str(error or f"{f.framework} not importable")],
    )


@rule
def framework_import_failed(f: Facts) -> Diagnosis | None:
    """Installed, but its import raises: the exception, the frame, the dependency it failed in, and the pin or
    release that fixes it (imports.fix)."""
    failure = f.probe.get("import_failure")
    error_line = f.log_reading.revealed.import_error if f.log_reading is not None else None
    logged = f.log_codes.get(imports.CODE, [])
    if failure is not None:
        version = next(iter(failure["distributions"].values()), None)
        found = imports.Found(
            f.framework, version, failure["exception"], failure["message"], failure["dependencies"],
            failure["dependency_frame"],
        )  # fmt: skip
        evidence = imports.evidence(failure, f.framework)
    elif logged:  # the traceback's exception line, else the known message's own line (jax's jaxlib check)
        text = error_line.text if error_line is not None else logged[0].partition(": ")[2]
        exception, _, message = text.strip().partition(": ")
        found = imports.Found(f.framework, f.version, exception, message, {})
        evidence = list(logged)
    else:
        return None
    fix, more = imports.fix(found, f.knowledge, f.name)
    label = f"{f.name} {found.version}" if found.version else f.name
    summary = f"{label} is installed but `import {f.framework}` fails: {found.exception}: {found.message[:200]}"
    return Diagnosis(imports.CODE, ERROR, summary.rstrip(": "), fix, [*evidence, *more])


@rule
def python_unsupported(f: Facts) -> Diagnosis | None:
    python = f.probe.get("python")
    build = f.build
    logged = f.log_codes.get("python-unsupported", [])
    if logged:  # pip found no wheel for this Python, or a launcher refused it: the log says so
        return Diagnosis(
            "python-unsupported",
            ERROR,
            f"{f.name}{' ' + f.version if f.version else ''} has no build for this Python"
            + (f" {python}" if isinstance(python, str) else "")
            + ": pip finds no wheel of it (or the program refuses this Python).",
            "Use a Python the release has wheels for (its PyPI file list names them: cp310 is Python 3.10), or a "
            + (f"{build.label} with Python {build.python_range()}" if build else "newer release that supports it")
            + f"; `envcheck plan` lists the {f.name} releases and the Pythons each supports.",
            logged,
        )
    if not build or not isinstance(python, str) or not Version.lenient(python):
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


wsl_libcuda = logged_rule(
    "wsl-libcuda",
    "On WSL the driver's libcuda comes from the Windows driver, in /usr/lib/wsl/lib, and the loader does not find "
    "it there (not on the loader path, or its links are missing).",
    "Do not install a Linux NVIDIA driver inside WSL; add the Windows driver's directory to the loader path "
    "(`export LD_LIBRARY_PATH=/usr/lib/wsl/lib:$LD_LIBRARY_PATH`), or rebuild its links and the cache: "
    "`cd /usr/lib/wsl/lib && sudo ln -sf libcuda.so.1.1 libcuda.so.1 && sudo ln -sf libcuda.so.1 libcuda.so && "
    "sudo ldconfig` (the links are recreated when Windows updates its driver); `nvidia-smi` in WSL must list the GPU.",
)
fabric_manager_missing = logged_rule(
    "fabric-manager-missing",
    "CUDA reports the system not yet initialized (error 802): on an NVSwitch machine (HGX/DGX A100, H100, H200) "
    "the NVIDIA Fabric Manager is not running or has not finished configuring the GPU fabric.",
    "Install the nvidia-fabricmanager package of exactly the driver's version and start it (`sudo systemctl enable "
    "--now nvidia-fabricmanager`; `nvidia-smi -q | grep -A2 Fabric` says State: Completed when ready); in a "
    "managed service, wait for the fabric or report the node.",
)


nvidia_uvm_broken = logged_rule(
    "nvidia-uvm-broken",
    "CUDA cannot initialise (CUDA unknown error) though the GPU and driver are there: the nvidia_uvm kernel module "
    "is not loaded or is in a broken state, most often after the machine slept (suspend/resume).",
    "Reload the module: `sudo rmmod nvidia_uvm && sudo modprobe nvidia_uvm` (stop the programs using the GPU "
    "first), or reboot; against suspend, enable the driver's power management services "
    "(nvidia-suspend/nvidia-resume, NVreg_PreserveVideoMemoryAllocations=1) or avoid suspending with CUDA jobs.",
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
    built = Version.lenient(build)
    minimum = support.minimum if support else (f.knowledge.min_driver(built) if built else None)
    return Diagnosis(
        "driver-too-old",
        severity,
        summary,
        (f"Upgrade the host's driver to {minimum} or newer" if minimum else "Upgrade the host's driver")
        + f", or use an older {f.name}/CUDA stack "
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


torch_abi_mismatch = logged_rule(
    "torch-abi-mismatch",
    "A compiled extension (or a library left by another install) was built against another PyTorch release: a "
    "PyTorch C++ symbol it needs is not in the torch that is loaded.",
    "Install the extension's build for this torch and CUDA (or rebuild it: `pip install --force-reinstall "
    "--no-cache-dir --no-build-isolation PACKAGE`), or the torch release it was built for; remove libraries left "
    "by older installs (e.g. /usr/local/lib/libc10.so) from the loader path.",
)


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


@rule
def cuda_mismatch(f: Facts) -> Diagnosis | None:
    build = f.probe.get("build_cuda")
    found = (f.libraries.get("cudart") or {}).get("found")
    built = Version.lenient(build)
    evidence = []
    if f.cuda_build and built is not None and found:
        major = soname_major(found["path"])
        if major is not None and major != built.major:
            evidence.append(
                f"libcudart found is {found.get('soname') or found['path']} (CUDA {major}), {f.name} was built with "
                f"CUDA {build}"
            )
        runtime = f.runtime_versions.get("cudart", "")
        if Version.lenient(runtime) and Version(runtime).prefix(2) < built.prefix(2):
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
    version = Version.lenient(loaded)
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


# Before the kernel-image rules: XLA falls back to the driver's JIT when its ptxas is too old, and that fails.
ptxas_too_old = logged_rule(
    "ptxas-too-old",
    "XLA (or Triton) runs a ptxas older than the code it generates or the GPU: the PTX assembler of an older CUDA, "
    "found first on PATH, is used instead of the one the framework installed.",
    "Put a ptxas at least as new as the framework's CUDA first on PATH, or remove the older CUDA's bin directory "
    "from PATH so the pip one (nvidia-cuda-nvcc-cu12, which jax[cuda12] and tensorflow[and-cuda] bring) is used; "
    "`ptxas --version` shows which one runs.",
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
        if check.code == "ptx-jit" and "gpu-too-new" not in f.log_codes  # the log shows the JIT failing
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


xla_toolchain_missing = logged_rule(
    "xla-toolchain-missing",
    "XLA cannot compile GPU kernels: CUDA's libdevice or ptxas is not where it looks.",
    "Install the CUDA compiler pieces (pip: nvidia-cuda-nvcc-cu12, which tensorflow[and-cuda] and jax[cuda12] "
    "bring; or a CUDA toolkit) and point XLA at them: XLA_FLAGS=--xla_gpu_cuda_data_dir=/usr/local/cuda "
    "(the directory holding nvvm/libdevice), with ptxas on PATH.",
)
jax_plugin_mismatch = logged_rule(
    "jax-plugin-mismatch",
    "JAX's CUDA plugin (jax-cuda12-plugin / -pjrt) was made for another jaxlib release: JAX refuses it and runs "
    "on the CPU.",
    "Install the plugin of the same release as jax and jaxlib in one call, e.g. `pip install -U "
    '"jax[cuda12]==X.Y.Z"` (it pins jaxlib and both plugin wheels together); remove a plugin left by an older '
    "install (`pip list | grep jax`).",
)
shm_too_small = logged_rule(
    "shm-too-small",
    "Shared memory (/dev/shm) is too small or not writable for NCCL's buffers or DataLoader workers.",
    "Give the container more shared memory: `docker run --shm-size=16g` (or `--ipc=host`); on Kubernetes mount a "
    "memory-backed emptyDir at /dev/shm; or set NCCL_SHM_DISABLE=1 / fewer DataLoader workers.",
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


def all_use_gpu(facts: Facts, diagnoses: list[Diagnosis]) -> bool:
    """Every framework the probe read lists a GPU and nothing at error level stands in the way of any."""
    return uses_gpu(facts.probe, diagnoses) and all(part.probe.get("gpus") for part in facts.parts)


def diagnose_all(facts: Facts) -> list[Diagnosis]:
    """diagnose() for each framework the probe read in one environment: a diagnosis every framework gets alike (the
    host's, the container's) once; one only some get, named by its framework; then the libraries they load
    differently (conflicts.from_probe)."""
    parts = facts.parts
    if len(parts) == 1:
        return diagnose(facts)
    each = [(part.framework, diagnose(part)) for part in parts]
    common = set.intersection(*({(d.code, d.summary) for d in found} for _, found in each))
    result, said = [], set()
    for name, found in each:
        for d in found:
            key = (d.code, d.summary)
            if key not in common:
                result.append(dataclasses.replace(d, framework=name))
            elif key not in said:
                said.add(key)
                result.append(d)
    return [*result, *conflicts.from_probe(parts)]


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
