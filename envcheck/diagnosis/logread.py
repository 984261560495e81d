"""Reading a framework's log: the known messages its lines carry, and what the log reveals about the machine.

Two readers use it: `envcheck explain` (a log a user brings from a GPU machine) and the probe's diagnosis (the
framework's own lines from a container run). A message can stand for more than one cause -- a library that failed to
load is missing, off the loader path or of another version -- so a known message may name a resolve rule, and the
reading picks the code from what the whole log reveals (versions, libraries on disk, driver versions, the GPU, the
environment) and from what the caller already knows (explain's flags, the probe's facts). Lines are read one at a
time, so a log of any size streams through once; nothing a line holds makes it raise.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from envcheck import frameworks
from envcheck.frameworks import DEFAULT, TENSORFLOW
from envcheck.knowledge import Knowledge, Version
from envcheck.knowledge.facts import Build, Message, TFBuild

MAX_LINE = 4000  # characters of one line that are read: a log may hold megabyte-long lines
MAX_EVIDENCE = 5  # lines kept as evidence per cause
MAX_UNRECOGNISED = 20
STRONG_VOTE = 10  # a line with a framework's strong marker counts as this many with plain markers
MAX_FACTS = 50  # stated versions, capabilities, GPUs kept from one log (a huge log may repeat them endlessly)

PYTHON = re.compile(r"\bPython(?:\s+version)?\s*[:=]?\s*(3\.\d+(?:\.\d+)?)", re.IGNORECASE)
DRIVER = re.compile(r"(?:driver(?:\s+version)?\s*[:=]?\s*|NVIDIA\s+)(\d{3}\.\d{2,3}(?:\.\d{2,3})?)\b", re.IGNORECASE)
LIBCUDA = re.compile(r"libcuda reported version is:?\s*(\d+\.\d+(?:\.\d+)?)|DSO version (\d+\.\d+(?:\.\d+)?)")
KERNEL = re.compile(
    r"kernel reported version is:?\s*(\d+\.\d+(?:\.\d+)?)|Kernel Module\s+(\d+\.\d+(?:\.\d+)?)"
    r"|kernel version (\d+\.\d+(?:\.\d+)?) does not match"
)
DRIVER_CUDA = re.compile(
    r"CUDA Version: (\d+\.\d+)|driver's CUDA version is (\d+\.\d+)|driver on your system is too old \(found version "
    r"(\d{4,5})\)"
)
STATED_CUDA = re.compile(
    r"CUDA/cuDNN version[^:\n]*:\s*(?:CUDA\s*)?(\d+(?:\.\d+)*)(?:\s*[/,]\s*(?:cuDNN\s*)?(\d+(?:\.\d+)*))?"
    r"|Cuda compilation tools, release (\d+\.\d+)"
    r"|^\s*(cudatoolkit|cudnn)\s+(\d+(?:\.\d+)+)\s",
    re.IGNORECASE,
)
HEADING = re.compile(r"^#+\s*(TensorFlow version|CUDA/cuDNN version|Python version|GPU model and memory)\s*$", re.I)
CUDA_LIBS = "cudart|cublasLt|cublas|cufft|curand|cusolver|cusparse|cudnn|cupti|nccl|nvJitLink|cuda"
LIB_FILE = re.compile(rf"\blib({CUDA_LIBS})(?:_\w+)?\.so\.(\d+)")
LIB_IS_VERSION = re.compile(rf"\blib({CUDA_LIBS})\.so is version (\d+)")
LIB_NAME = re.compile(rf"\blib({CUDA_LIBS})(?:_\w+)?\.so(?:\.(\d+))?", re.IGNORECASE)
DLERROR = re.compile(rf"(?:dlerror|Error): lib({CUDA_LIBS})(?:_\w+)?\.so(?:\.(\d+))?", re.IGNORECASE)
# Windows names of the same libraries: cudart64_101.dll (CUDA 10.1), cublas64_11.dll, cudnn64_8.dll; nvcuda.dll is
# the driver's. The suffix is the CUDA release where it has three digits below 110 (or two from 80: 9.0 → 90), else
# the library's major.
DLL_NAME = re.compile(rf"\b(?:({CUDA_LIBS})64_(\d+)|(nvcuda))\.dll\b", re.IGNORECASE)
# A soname or DLL that pins the CUDA release itself (before CUDA 11 cudart's did: libcudart.so.10.1; CUDA 10.0's
# other libraries too: libcublas.so.10.0), and the toolkit's own directory (/usr/local/cuda-10.2, CUDA\v10.1).
PINNED_SONAME = re.compile(rf"\blib({CUDA_LIBS})\.so\.(\d+\.\d+)\b")
TOOLKIT_DIR = re.compile(r"/usr/local/cuda-(\d+\.\d+)\b|CUDA[\\/]+v(\d+\.\d+)\b")
CAPABILITY = re.compile(
    r"compute ?capability:?\s*(\d+\.\d+)|cuda capability (\d+\.\d+)|major: (\d+) minor: (\d+)"
    r"|capability sm_(\d+)(\d)\b",
    re.IGNORECASE,
)
SUPPORTED_ARCHS = re.compile(r"supports CUDA capabilities ((?:sm_\d+\s*)+)")
GPU_HINT = re.compile(r"geforce|tesla|quadro|titan|rtx|gtx|grid |nvidia [a-z]\d|name: ", re.IGNORECASE)
SMI_ROW = re.compile(r"^\|\s+(\d+)\s+\S.*?\s(?:On|Off)\s+\|")
FOUND_DEVICE = re.compile(r"Found device (\d+) with properties|StreamExecutor device \((\d+)\)")
VISIBLE = re.compile(r"\b(CUDA_VISIBLE_DEVICES|NVIDIA_VISIBLE_DEVICES)[\"']?\]?\s*=\s*[\"']?([^\s\"'`;)]*)")
PIP_NVIDIA = re.compile(r"\[and-cuda\]|nvidia-[a-z-]+-cu1\d|site-packages/nvidia/", re.IGNORECASE)
# A container started with `docker run` and no GPU request (--gpus, --runtime nvidia, nvidia-docker, CDI --device).
DOCKER_RUN = re.compile(r"(?:^|[$#>`]\s*|sudo\s+)docker\s+(?:container\s+)?run\b")
GPU_REQUEST = re.compile(r"--gpus|--runtime[= ]nvidia|nvidia-docker|--device[= ]nvidia\.com/gpu")
# The framework saying, in the user's session, that it has no GPU: torch.cuda.is_available() → False.
NOT_AVAILABLE = re.compile(r"is_available\(\)\s*(?:\)|$)|^(?:Out\[\d+\]:\s*)?False$")
# The framework saw a GPU in another run the log reports ("torch.cuda.is_available() shows true"): the machine has one.
SAW_GPU = re.compile(r"is_available\(\)\W*(?:\w+\W+){0,3}?(?:true|True)\b")
GPU_IN_USE = re.compile(r"Created (?:TensorFlow )?device \(?/job:localhost/replica:0/task:0/device:GPU:\d")
ERRORISH = re.compile(
    r"^[EF]\d{4} |^\S*\s*[EF] \S+\.cc:\d+\]|\d [EF] \S+\.cc:\d+\]|\b(?:\w*Error|Exception|FAILED|CUDA_ERROR_\w+"
    r"|CUDNN_STATUS_\w+|failed)\b"
)
# The CUDA a framework build was made with, as its version or conda build string says it: torch 1.6.0+cu101,
# jaxlib 0.4.6+cuda11.cudnn82, pytorch 1.7.1 py3.8_cuda10.2.89_cudnn7.6.5_0, collect_env's "CUDA used to build".
BUILD_CUDA = re.compile(
    r"\d\+cu(\d{2,3})\b|\d\+cuda(\d{2})\b|CUDA used to build PyTorch: (\d+\.\d+)|\bpy[\d.]+_cuda(\d+\.\d+)"
)
# Native Windows: the user's OS line ("win10", "Windows 11"), a drive-letter path, a Windows package name. WSL's own
# words are not it (WSL runs Linux wheels).
WINDOWS = re.compile(
    r"\bwin(?:dows)?[ _-]?(?:7|8|10|11)\b|-windows-x86_64|\b[A-Z]:\\(?:Users|Program|Python)", re.IGNORECASE
)
# Windows Subsystem for Linux: its kernel, the Windows driver's libraries, or the user saying so.
WSL = re.compile(r"microsoft-standard-WSL|/usr/lib/wsl/|\bWSL2?\b")
# docker compose's prefix of each line a service prints ("web-1  | ...", "abc123_backend | ...").
COMPOSE_PREFIX = re.compile(r"^([A-Za-z0-9][\w.]*[-_][\w.-]*)\s+\|\s")
NO_SMI = re.compile(r"nvidia-smi(?:: command|:)? not found|/nvidia-smi: No such file or directory")
# A line a Ray worker process printed ("(pid=3343) ...", "(RolloutWorker pid=12, ip=10.0.0.1) ..."): Ray sets
# CUDA_VISIBLE_DEVICES to '' in workers of tasks and actors that request no GPUs (vllm-project/vllm#3198).
RAY_WORKER = re.compile(r"\((?:[A-Za-z_]\w*\s+)?pid=\d+(?:,\s*ip=[\d.]+)?\)")
# TensorFlow saying it was built without CUDA: tf.test.is_built_with_cuda() and its False, on the line or the next.
BUILT_WITH_CUDA = re.compile(r"is_buil[dt]_with_cuda\(\)")
SAYS_FALSE = re.compile(
    r"(?:#|->|=>|→|:)\s*(?:it\s+)?(?:returns?\s+|gives?\s+|is\s+)?false\b|\s(?:returns?|gives?|prints?|is)\s+false\b",
    re.IGNORECASE,
)
ANSWER_FALSE = re.compile(r"^(?:Out\[\d+\]:\s*)?False$")
LABELLED_FALSE = re.compile(r"built[ _]with[ _]cuda\b[^:=]*[:=]\s*False\s*$", re.IGNORECASE)  # print("...CUDA?:", ...)
# ldd of a pip wheel's library, then one of its CUDA dependencies resolved outside the wheels.
LDD_WHEEL = re.compile(r"^(?:\S*\$\s*)?ldd\s+\S*(?:site|dist)-packages/")
LDD_RESOLVED = re.compile(
    r"^lib(?:cublas\w*|cufft\w*|curand|cusolver\w*|cusparse|cudnn\w*|nvJitLink|nvrtc\w*|cudart)\.so\S*\s+=>\s+(/\S+)"
)
# The plugin's initialize() failing in jaxlib's API (a function or argument the jaxlib of another release lacks).
PLUGIN_API = re.compile(r"\bxla_client\.\w+\(|has no attribute|incompatible function arguments")
NOT_A_CAUSE = re.compile(r"^\s*(?:Traceback \(most recent call last\)|File \".*\", line \d+)")


_version = Version.lenient


@dataclass(frozen=True)
class Line:
    number: int
    text: str

    def evidence(self, label: str = "line") -> str:
        return f"{label} {self.number}: {self.text.strip()[:300]}"


@dataclass
class Revealed:
    """What a log tells about the machine it ran on, besides its known messages."""

    framework_votes: Counter[str] = field(default_factory=Counter)
    versions: dict[str, str] = field(default_factory=dict)  # framework → the first version the log states
    version_lines: dict[str, Line] = field(default_factory=dict)
    python: str | None = None
    driver: str | None = None
    libcuda: Line | None = None  # "libcuda reported version is" (user-space driver)
    kernel: Line | None = None  # "kernel reported version is" / "Kernel Module" (the loaded module)
    driver_cuda: str | None = None  # the newest CUDA the driver supports, where the log says
    cuda: list[tuple[str, Line]] = field(default_factory=list)  # CUDA versions stated as installed
    cudnn: list[tuple[str, Line]] = field(default_factory=list)
    on_disk: dict[str, dict[int, Line]] = field(default_factory=dict)  # library → majors seen installed or opened
    gpus: list[tuple[str, Version | None, Line]] = field(default_factory=list)
    capabilities: list[Version] = field(default_factory=list)
    supported_archs: list[Version] = field(default_factory=list)
    gpu_indices: set[int] = field(default_factory=set)  # GPUs the machine lists (nvidia-smi rows, Found device N)
    env: dict[str, tuple[str, Line]] = field(default_factory=dict)
    pip_nvidia: Line | None = None  # a line showing pip's NVIDIA library wheels ([and-cuda], nvidia-*-cu12)
    gpu_in_use: Line | None = None
    docker_run: Line | None = None  # `docker run` without a GPU request
    plugin_failed: Line | None = None  # JAX's CUDA plugin is installed but raised while it initialised
    plugin_api: Line | None = None  # ... in a call into jaxlib's API (not in its CUDA checks)
    wheel_needs: Line | None = None  # LD_DEBUG: a pip NVIDIA wheel's library asks the loader for a dependency
    ld_shadow: Line | None = None  # ... which the loader then looks for on LD_LIBRARY_PATH first
    said_no_gpu: list[Line] = field(default_factory=list)  # torch.cuda.is_available() and its False
    saw_gpu: Line | None = None  # is_available() answered True somewhere the log reports (SAW_GPU)
    import_frame: Line | None = None  # a traceback frame of a framework's __init__.py at import (<module>)
    import_error: Line | None = None  # the exception line that ends that traceback
    not_installed: Line | None = None  # ModuleNotFoundError: No module named 'torch' (the framework itself)
    no_smi: Line | None = None  # "nvidia-smi: command not found" (no driver utilities mounted, e.g. in a container)
    cuda_releases: list[tuple[Version, Line]] = field(default_factory=list)  # installed, as pinned names/dirs say
    built_with_cuda: Line | None = None  # a line asking tf.test.is_built_with_cuda()
    built_without_cuda: list[Line] = field(default_factory=list)  # ... and the False it answered
    build_cuda: tuple[str, Line] | None = None  # the CUDA the framework build says it was made with (+cu101)
    wsl: Line | None = None  # the log comes from WSL
    windows: Line | None = None  # ... or from native Windows (WINDOWS)
    compose: Counter[str] = field(default_factory=Counter)  # docker compose service prefixes, by lines
    ldd_wheel: Line | None = None  # `ldd` of a pip wheel's library (its dependencies follow)

    @property
    def container(self) -> bool:
        """The log was written in a container started without a GPU request (`docker run` without --gpus, or a
        compose service, whose lines carry its prefix)."""
        return self.docker_run is not None or any(n >= 2 for n in self.compose.values())

    @property
    def libcuda_version(self) -> Version | None:
        """The user-space driver's version ("libcuda reported version is", "DSO version")."""
        return _first_version(self.libcuda)

    @property
    def driver_versions_differ(self) -> bool:
        user, kernel = self.libcuda_version, _first_version(self.kernel)
        return bool(user and kernel and user.prefix(2) != kernel.prefix(2))


def _first_version(line: Line | None) -> Version | None:
    if line is None:
        return None
    for pattern in (LIBCUDA, KERNEL):
        found = pattern.search(line.text)
        if found:
            return _version(next(g for g in found.groups() if g))
    return None


@dataclass
class Known:
    """What the caller knows besides the log: explain's flags, or the probe's facts."""

    framework: str | None = None
    version: str | None = None
    build: Build | None = None
    on_disk: dict[str, set[int]] = field(default_factory=dict)
    gpu_count: int | None = None
    capabilities: tuple[Version, ...] = ()  # of the GPUs the caller names (explain's --gpu)


@dataclass
class Reading:
    """One log, read: each cause it gives evidence for, what it reveals, and the error lines nothing explains."""

    codes: dict[str, list[str]] = field(default_factory=dict)
    revealed: Revealed = field(default_factory=Revealed)
    unrecognised: list[str] = field(default_factory=list)
    unrecognised_count: int = 0
    lines: int = 0
    recognised: int = 0
    label: str = "line"  # how evidence names a line: "line 12" in a user's log, "log line 12" in a probe's

    def framework(self, known: Known | None = None) -> str:
        if known and known.framework:
            return known.framework
        votes = self.revealed.framework_votes
        return votes.most_common(1)[0][0] if votes else DEFAULT.name


@dataclass
class _Hit:
    message: Message
    lines: list[Line] = field(default_factory=list)  # the first MAX_EVIDENCE lines it is in


CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029]")


def clean(raw: str) -> str:
    """A line as a user pasted it, without control bytes and the quoting and markup of issue threads and chat."""
    text = CONTROL.sub(" ", raw[:MAX_LINE]).strip()
    if text[:1] in (">", "`", "*"):
        text = text.lstrip(">`* \t")
    return text.rstrip("`* \t")


STAMP = re.compile(r"^(?:\d{4}-\d\d-\d\d[ T][\d:.,]+:?\s*|[IWEF]\d{4} [\d:.]+\s+\d+\s+)")
MEMO_SIZE = 100_000  # distinct lines remembered: logs repeat the same lines with new time stamps


def read_log(lines: Iterable[str], knowledge: Knowledge, known: Known | None = None, label: str = "line") -> Reading:
    """Read every line once, then resolve each known message against everything the log revealed. A line seen
    before (time stamps aside) is not read again: its message is remembered, and what it revealed is known."""
    known = known or Known()
    reading = Reading(label=label)
    hits: dict[int, _Hit] = {}
    seen: dict[str, tuple[Message | None, bool]] = {}
    pending_heading = None
    for number, raw in enumerate(lines, start=1):
        reading.lines = number
        text = clean(raw)
        if not text:
            continue
        key = STAMP.sub("", text, count=1)
        if pending_heading:
            key = f"{pending_heading}: {text}"
            _reveal(reading.revealed, Line(number, key), knowledge, False)
            pending_heading = None
        elif heading := HEADING.match(text):
            pending_heading = heading.group(1)
            continue
        memo = seen.get(key)
        if memo is None:
            message = knowledge.classify(text)
            errorish = message is None and bool(ERRORISH.search(text)) and not NOT_A_CAUSE.match(text)
            library_failure = message is not None and message.resolve in ("library", "dlopen")
            _reveal(reading.revealed, Line(number, text), knowledge, library_failure)
            if len(seen) < MEMO_SIZE:
                seen[key] = (message, errorish)
        else:
            message, errorish = memo
        if message is not None:
            reading.recognised += 1
            hit = hits.setdefault(id(message), _Hit(message))
            if len(hit.lines) < MAX_EVIDENCE:
                hit.lines.append(Line(number, text))
        elif errorish:
            reading.unrecognised_count += 1
            if len(reading.unrecognised) < MAX_UNRECOGNISED:
                reading.unrecognised.append(Line(number, text).evidence(label))
    _resolve(reading, list(hits.values()), knowledge, known)
    return reading


def _reveal(found: Revealed, line: Line, k: Knowledge, library_failure: bool) -> None:
    """Gather what one line says about the machine: versions, libraries, GPUs, the environment. Each expression
    runs only where a plain substring shows it can match, which keeps a dense log fast."""
    text = line.text
    lower = text.lower()
    strong = {fw.name for fw in frameworks.FRAMEWORKS if any(m in lower for m in fw.log_strong_markers)}
    for fw in frameworks.FRAMEWORKS:
        voted = any(m in lower for m in fw.log_markers)
        if strong:  # a line only one framework's logs hold votes for it alone, and outweighs plain markers
            if fw.name in strong:
                found.framework_votes[fw.name] += STRONG_VOTE
        elif voted:
            found.framework_votes[fw.name] += 1
        if (
            fw.name not in found.versions
            and (voted or any(hint in lower for hint in fw.log_version_hints))
            and (match := fw.log_version.search(text))
        ):
            found.versions[fw.name] = match.group(1)
            found.version_lines[fw.name] = line
    if found.python is None and "python" in lower and (match := PYTHON.search(text)):
        found.python = match.group(1)
    if found.libcuda is None and ("libcuda reported" in text or "DSO version" in text) and LIBCUDA.search(text):
        found.libcuda = line
    if found.kernel is None and ("kernel" in lower) and KERNEL.search(text):
        found.kernel = line
    if found.driver is None and ("driver" in lower or "nvidia " in lower) and (match := DRIVER.search(text)):
        found.driver = match.group(1)
    if found.driver_cuda is None and ("cuda version" in lower or "found version" in lower):
        found.driver_cuda = _driver_cuda(text)
    stated = "cuda/cudnn" in lower or "compilation tools" in lower or lower.startswith(("cudatoolkit", "cudnn"))
    if stated and len(found.cuda) + len(found.cudnn) < MAX_FACTS:
        for match in STATED_CUDA.finditer(text):
            cuda, cudnn, nvcc, package, version = match.groups()
            if cuda or nvcc:
                found.cuda.append((cuda or nvcc, line))
            if cudnn:
                found.cudnn.append((cudnn, line))
            if package:
                (found.cuda if package.lower() == "cudatoolkit" else found.cudnn).append((version, line))
    if ".so" in text and not library_failure:
        for pattern in (LIB_FILE, LIB_IS_VERSION):
            for lib, major in pattern.findall(text):
                found.on_disk.setdefault(_library(lib), {}).setdefault(int(major), line)
    if ".dll" in lower and not library_failure:
        for match in DLL_NAME.finditer(text):
            lib, version = _dll(match)
            if lib and version:
                found.on_disk.setdefault(lib, {}).setdefault(version.major, line)
    if len(found.cuda_releases) < MAX_FACTS and "cuda" in lower:
        found.cuda_releases += [(v, line) for v in _pinned_releases(text, library_failure)]
    if ("capabilit" in lower or "major:" in lower) and len(found.capabilities) < MAX_FACTS:
        found.capabilities += [cc for match in CAPABILITY.finditer(text) if (cc := _cc(match))]
        if match := SUPPORTED_ARCHS.search(text):
            found.supported_archs = [v for a in match.group(1).split() if (v := _version(f"{a[3:-1]}.{a[-1]}"))]
    name = k.gpu_name_in(text) if GPU_HINT.search(text) else None
    if name and len(found.gpus) < MAX_FACTS and not any(n == name for n, _, _ in found.gpus):
        found.gpus.append((name, k.gpu_compute_capability(name), line))
    if text.startswith("|") and (match := SMI_ROW.match(text)):
        found.gpu_indices.add(int(match.group(1)))
    if "evice" in text and (match := FOUND_DEVICE.search(text)):
        found.gpu_indices.add(int(next(g for g in match.groups() if g)))
    if "VISIBLE_DEVICES" in text:
        for name, value in VISIBLE.findall(text):
            found.env.setdefault(name, (value, line))
    if found.pip_nvidia is None and ("nvidia" in lower or "and-cuda" in lower) and PIP_NVIDIA.search(text):
        found.pip_nvidia = line
    if found.gpu_in_use is None and "Created" in text and GPU_IN_USE.search(text):
        found.gpu_in_use = line
    if found.plugin_failed is None and "Jax plugin configuration error" in text:
        found.plugin_failed = line
    elif found.plugin_failed and found.plugin_api is None and PLUGIN_API.search(text):
        found.plugin_api = line
    if "needed by" in text and ("site-packages/nvidia/" in text or "_plugin/../nvidia/" in text):
        found.wheel_needs = line
    elif found.wheel_needs and found.ld_shadow is None and _searched_first_elsewhere(text):
        found.ld_shadow = line
    if found.docker_run is None and "docker" in lower and DOCKER_RUN.search(text) and not GPU_REQUEST.search(text):
        found.docker_run = line
    if ("is_available" in text or text.endswith("False")) and len(found.said_no_gpu) < 2 and NOT_AVAILABLE.search(text):
        found.said_no_gpu.append(line)
    if found.saw_gpu is None and "is_available" in text and SAW_GPU.search(text):
        found.saw_gpu = line
    if "__init__" in text or "Error" in text or "Exception" in text:
        _reveal_import(found, line)
    if found.no_smi is None and "nvidia-smi" in text and NO_SMI.search(text):
        found.no_smi = line
    if "_with_cuda" in text and (match := BUILT_WITH_CUDA.search(text)):
        found.built_with_cuda = line
        if not found.built_without_cuda and SAYS_FALSE.search(text[match.end() :]):
            found.built_without_cuda = [line]
    elif found.built_with_cuda and found.built_with_cuda.number == line.number - 1 and ANSWER_FALSE.match(text):
        found.built_without_cuda = found.built_without_cuda or [found.built_with_cuda, line]
    elif found.built_with_cuda and not found.built_without_cuda and "uilt" in text and LABELLED_FALSE.search(text):
        found.built_without_cuda = [found.built_with_cuda, line]
    if found.build_cuda is None and "cu" in lower and (match := BUILD_CUDA.search(text)):
        wheel, major, stated, conda = match.groups()
        found.build_cuda = (f"{wheel[:-1]}.{wheel[-1]}" if wheel else major or stated or conda, line)
    if found.wsl is None and ("wsl" in lower) and WSL.search(text):
        found.wsl = line
    if found.windows is None and "win" in lower and WINDOWS.search(text):
        found.windows = line
    if " |" in text and len(found.compose) < MAX_FACTS and (match := COMPOSE_PREFIX.match(text)):
        found.compose[match.group(1)] += 1
    if text.startswith(("ldd", "$ ldd")) or "$ ldd " in text:
        found.ldd_wheel = line if LDD_WHEEL.search(text) else None
    elif (
        found.ldd_wheel
        and found.ld_shadow is None
        and "=>" in text
        and (match := LDD_RESOLVED.match(text))
        and "-packages/" not in match.group(1)  # resolved outside the pip wheels
    ):
        found.wheel_needs, found.ld_shadow = found.ldd_wheel, line


def _searched_first_elsewhere(text: str) -> bool:
    """LD_DEBUG's next step for a wheel's dependency: the LD_LIBRARY_PATH search, or a first try outside the
    wheels (the loader searches LD_LIBRARY_PATH before the wheel's RUNPATH)."""
    if "search path=" in text:
        return "(LD_LIBRARY_PATH)" in text
    return "trying file=" in text and "site-packages" not in text


def _cc(match: re.Match[str]) -> Version | None:
    """The compute capability a CAPABILITY match spells (3.5, major: 3 minor: 5, sm_35)."""
    value, cuda_cap, major, minor, sm_major, sm_minor = match.groups()
    return _version(value or cuda_cap or (f"{major}.{minor}" if major else f"{sm_major}.{sm_minor}"))


def _driver_cuda(text: str) -> str | None:
    """The newest CUDA a driver supports, as nvidia-smi, XLA or PyTorch (11040 = 11.4) print it."""
    match = DRIVER_CUDA.search(text)
    if match is None:
        return None
    value = next(g for g in match.groups() if g)
    return f"{int(value) // 1000}.{int(value) % 1000 // 10}" if value.isdigit() else value


def _dll(match: re.Match[str]) -> tuple[str | None, Version | None]:
    """The library a DLL_NAME match names and its version: the CUDA release (cudart64_101 → 10.1, cublas64_90 →
    9.0) where the suffix pins one, else the library's major (cublas64_11 → 11, cudnn64_8 → 8); nvcuda → libcuda."""
    lib, digits, driver = match.groups()
    if driver:
        return "cuda", None
    value = int(digits)
    if (len(digits) == 3 and value < 110) or (len(digits) == 2 and value >= 80):
        return _library(lib), _version(f"{digits[:-1]}.{digits[-1]}")
    return _library(lib), _version(str(value))


def _pinned(text: str) -> Version | None:
    """The CUDA release a library name pins (libcudart.so.10.1, cudart64_101.dll), None where it names a major only
    (libcudart.so.11.0 is every CUDA 11's, cublas64_11.dll)."""
    for match in PINNED_SONAME.finditer(text):
        version = _version(match.group(2))
        if version is not None and version.major < 11:
            return version
    for match in DLL_NAME.finditer(text):
        _, version = _dll(match)
        if version is not None and len(version.release) >= 2:
            return version
    return None


def _pinned_releases(text: str, library_failure: bool) -> list[Version]:
    """The CUDA releases a line shows installed: the toolkit's directory (also on the LD_LIBRARY_PATH a load
    failure prints), a pinned library name (not in a load failure: that is the one wanted)."""
    found = [_version(next(g for g in m.groups() if g)) for m in TOOLKIT_DIR.finditer(text)]
    named = not library_failure and (".so." in text or ".dll" in text.lower())
    pinned = _pinned(text) if named else None
    return [v for v in [*found, pinned] if v is not None]


def _library(name: str) -> str:
    """libcudnn_ops_infer → cudnn; names as the knowledge data spells them."""
    name = name.split("_")[0]
    return {"cublaslt": "cublasLt", "nvjitlink": "nvJitLink"}.get(name.lower(), name)


# -- resolving the messages that stand for more than one cause ------------------------------------------------------

Resolver = Callable[[Line, Reading, Knowledge, Known], "str | None"]


def _wanted(line: Line) -> tuple[str | None, int | None]:
    """The library a load failure is about (the dependency the dynamic linker names, if it is another) and its
    major version."""
    named = LIB_NAME.search(line.text)
    failed = DLERROR.search(line.text)
    found = failed if failed and named and _library(failed.group(1)) != _library(named.group(1)) else named
    if not found and (dll := DLL_NAME.search(line.text)):
        lib, version = _dll(dll)
        return lib, version.major if version else None
    if not found:
        return None, None
    return _library(found.group(1)), int(found.group(2)) if found.group(2) else None


def _installed(reading: Reading, known: Known, lib: str) -> set[int]:
    """Majors of a library the log or the caller shows installed (CUDA's own version counts for cudart/cublas,
    whose sonames carry it; cuDNN's for cudnn)."""
    majors = set(reading.revealed.on_disk.get(lib, {})) | known.on_disk.get(lib, set())
    stated = {"cudnn": reading.revealed.cudnn, "cudart": reading.revealed.cuda, "cublas": reading.revealed.cuda}
    majors |= {v.major for text, _ in stated.get(lib, []) if (v := _version(text))}
    return majors


def _mismatch_code(lib: str) -> str:
    return "cudnn-mismatch" if lib == "cudnn" else "cuda-mismatch"


def _off_path_release(reading: Reading, known: Known) -> bool:
    """A TensorFlow release whose [and-cuda] libraries the loader misses, installed with them."""
    build, version = known.build, known.version or reading.revealed.versions.get(TENSORFLOW.name)
    return (
        isinstance(build, TFBuild)
        and bool(version)
        and version in build.and_cuda_off_path
        and reading.revealed.pip_nvidia is not None
    )


# Libraries whose soname major is the CUDA major they belong to (libcufft, libcusolver, libcurand count their own).
CUDA_MAJOR_SONAMES = ("cudart", "cublas", "cublasLt", "cusparse", "nvrtc", "nvJitLink")


def _build_cuda_major(reading: Reading, known: Known) -> int | None:
    """The CUDA major the framework build was made with: as the log's version says it (+cu118, +cuda11), else as
    the data knows the release."""
    stated = reading.revealed.build_cuda
    version = _version(stated[0]) if stated else None
    if version is not None:
        return version.major
    cuda = known.build.cuda if known.build else None
    return cuda.major if cuda else None


def resolve_library(line: Line, reading: Reading, k: Knowledge, known: Known) -> str | None:
    lib, major = _wanted(line)
    if lib == "cuda":  # libcuda is the driver's own library
        if reading.revealed.wsl:
            return "wsl-libcuda"  # WSL's comes from the Windows driver, in /usr/lib/wsl/lib
        return "no-gpu-runtime" if reading.revealed.container else "no-driver"
    if lib is None:
        return None
    if "undefined symbol" in line.text:
        return "cuda-mismatch"  # found, but another version than its user was built against
    build_major = _build_cuda_major(reading, known)
    if lib in CUDA_MAJOR_SONAMES and major is not None and build_major is not None and major != build_major:
        # The framework asks for its own CUDA's libraries: one of another major is wanted by something else, and
        # "Could not load library X. Error:" is cuDNN's loader (a cuDNN built for that other CUDA).
        return "cudnn-mismatch" if line.text.startswith("Could not load library") else "cuda-mismatch"
    subdir = k.off_loader_path.get(lib)
    if subdir and subdir.lower() not in line.text.lower():
        return "cuda-libs-not-on-path"  # installed with the toolkit, where the loader does not look
    wanted, releases = _pinned(line.text), {v.prefix(2) for v, _ in reading.revealed.cuda_releases}
    releases |= {v.prefix(2) for text, _ in reading.revealed.cuda if (v := _version(text)) and len(v.release) >= 2}
    if wanted is not None and releases and wanted.prefix(2) not in releases:
        return "cuda-mismatch"  # a name that pins its CUDA release (libcudart.so.10.1), and another release installed
    installed = _installed(reading, known, lib)
    if major is not None and installed and major not in installed:
        return _mismatch_code(lib)
    if major is not None and major in installed:
        return "cuda-libs-not-on-path"
    return "cuda-libs-not-on-path" if _off_path_release(reading, known) else "cuda-libs-missing"


def resolve_dlopen(line: Line, reading: Reading, k: Knowledge, known: Known) -> str | None:
    """TF's summary line follows the cause of the libraries it sums up; alone, the stated versions decide."""
    named = [code for code in LIBRARY_CAUSES if code in reading.codes]
    if named:
        return max(named, key=lambda code: len(reading.codes[code]))
    build = known.build
    if isinstance(build, TFBuild):
        for stated, needed, code in (
            (reading.revealed.cuda, build.cuda.major, "cuda-mismatch"),
            (reading.revealed.cudnn, build.cudnn.major, "cudnn-mismatch"),
        ):
            majors = {v.major for text, _ in stated if (v := _version(text))}
            if majors and needed not in majors:
                return code
    return "cuda-libs-not-on-path" if _off_path_release(reading, known) else "cuda-libs-missing"


def hides_all_gpus(value: str, gpu_count: int | None) -> bool:
    """CUDA_VISIBLE_DEVICES that leaves CUDA no GPU: empty, -1, a first entry that is neither an index nor a
    GPU-/MIG- UUID (CUDA stops at the first invalid entry), or only indices the machine does not have."""
    entries = [e.strip() for e in value.split(",")]
    if not entries or not entries[0] or entries[0] in ("-1", "none", "void", "NoDevFiles"):
        return True
    first = entries[0]
    if first.startswith(("GPU-", "MIG-")):
        return False
    if not first.isdigit():
        return True
    indices = []
    for entry in entries:
        if not entry.isdigit():
            break
        indices.append(int(entry))
    return gpu_count is not None and all(i >= gpu_count for i in indices)


def gpu_count(reading: Reading, known: Known) -> int | None:
    if known.gpu_count is not None:
        return known.gpu_count
    indices = reading.revealed.gpu_indices
    return max(indices) + 1 if indices else None


def resolve_no_device(line: Line, reading: Reading, k: Knowledge, known: Known) -> str | None:
    """No usable GPU: the driver's two halves differ, or CUDA_VISIBLE_DEVICES names none the machine has; else no
    driver or GPU. An index CUDA cannot find while the machine's count is unknown counts as hiding: CUDA found none."""
    if reading.revealed.driver_versions_differ:
        return "driver-library-mismatch"
    visible = reading.revealed.env.get("CUDA_VISIBLE_DEVICES")
    if visible and (hides_all_gpus(visible[0], gpu_count(reading, known)) or gpu_count(reading, known) is None):
        return "gpus-hidden"
    if RAY_WORKER.search(line.text):
        return "gpus-hidden"  # a Ray worker given no GPU: Ray set its CUDA_VISIBLE_DEVICES to ''
    if reading.revealed.saw_gpu is not None:
        return "gpus-hidden"  # the framework sees a GPU elsewhere on this machine: this process was given none
    return None


def resolve_compat(line: Line, reading: Reading, k: Knowledge, known: Known) -> str | None:
    return "driver-library-mismatch" if reading.revealed.driver_versions_differ else None


def _capability(line: Line, reading: Reading, known: Known | None = None) -> Version | None:
    found = CAPABILITY.search(line.text)
    if found:
        return _cc(found)
    gpus = [cc for _, cc, _ in reading.revealed.gpus if cc] + reading.revealed.capabilities
    gpus += list(known.capabilities) if known else []
    return gpus[0] if gpus else None


def _newest_target(build: Build | None) -> Version | None:
    code = build.code if build else None
    if code is None or not (code.sass or code.ptx):
        return None
    return max([*code.sass, *code.ptx])


def resolve_capability(line: Line, reading: Reading, k: Knowledge, known: Known) -> str | None:
    """Older or newer than the build: the wheel's own list where the line gives it, else the build's code, else the
    newest architecture the CUDA the log says it was built with can target. A release the data does not know
    borrows no other release's facts; only a log that names no release is judged by the oldest one the data knows
    (a GPU newer than its newest target is newer than that era)."""
    cc = _capability(line, reading, known)
    if cc is None:
        return None
    newest = max(reading.revealed.supported_archs) if reading.revealed.supported_archs else None
    if newest is None:
        newest = _newest_target(known.build)
    if newest is None and reading.revealed.build_cuda:
        newest = k.newest_arch(reading.revealed.build_cuda[0])
    fw = frameworks.framework(reading.framework(known))
    if newest is None and not (known.version or reading.revealed.versions.get(fw.name)):
        oldest, _ = fw.known(k)
        newest = _newest_target(fw.build(k, oldest, fw.gpu_variant()))
    return "gpu-too-new" if newest is not None and cc.prefix(2) > newest else None


def resolve_tf_kernels(line: Line, reading: Reading, k: Knowledge, known: Known) -> str | None:
    """TF JIT-compiles PTX for a GPU not in its build list; on GPUs its PTX does not run on, that fails."""
    cc = _capability(line, reading)
    version = known.version or reading.revealed.versions.get(TENSORFLOW.name)
    if cc is None:
        return None
    if version:
        return None if k.ptx_runs_on(TENSORFLOW.name, version, cc) else "gpu-too-new"
    fails = k.ptx_jit_fails.get(TENSORFLOW.name)
    return "gpu-too-new" if fails and cc >= fails[0] else None


def resolve_dnn_init(line: Line, reading: Reading, k: Knowledge, known: Known) -> str | None:
    """cuDNN could not start: the cuDNN mismatch the log shows, else (the default) no memory left for it."""
    return "cudnn-mismatch" if "cudnn-mismatch" in reading.codes else None


SKIP = "-"  # what a resolver returns for a line that is only the consequence of another cause the log shows


def resolve_fallback(line: Line, reading: Reading, k: Knowledge, known: Known) -> str | None:
    """JAX only says it runs on the CPU: a CPU-only jaxlib, unless the log names why its GPU backend failed."""
    others = set(reading.codes) - {"cpu-only-build"}
    return SKIP if others or reading.revealed.plugin_failed else None


def resolve_alone(line: Line, reading: Reading, k: Knowledge, known: Known) -> str | None:
    """A warning that is the cause only where the log shows no other (WSL's ldconfig complaint is printed on
    machines where CUDA works too)."""
    return SKIP if set(reading.codes) else None


def resolve_no_wheel(line: Line, reading: Reading, k: Knowledge, known: Known) -> str | None:
    """pip found no wheel: CUDA jaxlib wheels exist for Linux only (asked for elsewhere, only a CPU jaxlib
    installs); for any other requirement, none for this Python."""
    lower = line.text.lower()
    return "cpu-only-build" if "jax" in lower and "cuda" in lower else None


RESOLVERS: dict[str, Resolver] = {
    "library": resolve_library,
    "dlopen": resolve_dlopen,
    "no-device": resolve_no_device,
    "compat": resolve_compat,
    "capability": resolve_capability,
    "tf-kernels": resolve_tf_kernels,
    "dnn-init": resolve_dnn_init,
    "fallback": resolve_fallback,
    "alone": resolve_alone,
    "no-wheel": resolve_no_wheel,
}


DEFERRED = ("dlopen", "dnn-init", "fallback", "alone")  # summaries of other lines: resolved after the lines they sum up
LIBRARY_CAUSES = ("cuda-libs-missing", "cuda-libs-not-on-path", "cuda-mismatch", "cudnn-mismatch")


def _resolve(reading: Reading, hits: list[_Hit], k: Knowledge, known: Known) -> None:
    fw = frameworks.framework(reading.framework(known))
    if known.build is None:
        version = known.version or reading.revealed.versions.get(fw.name)
        known.build = fw.build(k, version, fw.gpu_variant()) if version else None
    ordered = [h for h in hits if h.message.resolve not in DEFERRED] + [
        h for h in hits if h.message.resolve in DEFERRED
    ]
    for hit in ordered:
        if hit.message.code is None:
            continue
        resolver = RESOLVERS.get(hit.message.resolve or "")
        for line in hit.lines:
            code = (resolver(line, reading, k, known) if resolver else None) or hit.message.code
            if code != SKIP:
                _add(reading, code, [line])
    _import_failed(reading, k)
    _add_context(reading, known, k)


def _add(reading: Reading, code: str, lines: list[Line]) -> None:
    found = reading.codes.setdefault(code, [])
    found += [line.evidence(reading.label) for line in lines][: MAX_EVIDENCE - len(found)]


def _windows_cpu_only(reading: Reading, known: Known, k: Knowledge) -> bool:
    """TensorFlow on native Windows (not WSL), of a release after the last with a Windows GPU build."""
    revealed = reading.revealed
    if revealed.windows is None or revealed.wsl is not None or revealed.gpu_in_use is not None:
        return False
    if reading.framework(known) != TENSORFLOW.name:
        return False
    version = _version(known.version or revealed.versions.get(TENSORFLOW.name) or "")
    return version is not None and version.prefix(2) > k.tf_windows_gpu_last


def _add_context(reading: Reading, known: Known, k: Knowledge) -> None:
    """The lines that back a resolved cause (the two driver versions, the CUDA_VISIBLE_DEVICES setting), and the
    cause a known release brings by itself: TF 2.16.1 with [and-cuda] does not find its own libraries."""
    revealed = reading.revealed
    if _off_path_release(reading, known) and not revealed.gpu_in_use and not set(LIBRARY_CAUSES) & set(reading.codes):
        lines = [revealed.version_lines.get(TENSORFLOW.name), revealed.pip_nvidia]
        _add(reading, "cuda-libs-not-on-path", [line for line in lines if line])
    if "driver-library-mismatch" in reading.codes and revealed.driver_versions_differ:
        _add(reading, "driver-library-mismatch", [x for x in (revealed.libcuda, revealed.kernel) if x])
    if "gpus-hidden" in reading.codes and "CUDA_VISIBLE_DEVICES" in revealed.env:
        _add(reading, "gpus-hidden", [revealed.env["CUDA_VISIBLE_DEVICES"][1]])
    if revealed.ld_shadow and revealed.wheel_needs:
        # LD_DEBUG shows a pip NVIDIA wheel's library resolving its dependency on LD_LIBRARY_PATH before the wheels.
        _add(reading, "cuda-mismatch", [revealed.wheel_needs, revealed.ld_shadow])
    if revealed.plugin_failed and "cpu-only-build" in reading.codes and set(LIBRARY_CAUSES) & set(reading.codes):
        # The CUDA plugin is there and failed on a library: "a CUDA-enabled jaxlib is not installed" follows from it.
        del reading.codes["cpu-only-build"]
    if revealed.plugin_failed and revealed.plugin_api and not reading.codes:
        # JAX's CUDA plugin raised in a call into jaxlib's API while it initialised, and no library or version
        # check says why: the plugin is of another release than jaxlib (left by an older or newer install).
        _add(reading, "jax-plugin-mismatch", [revealed.plugin_failed, revealed.plugin_api])
    if revealed.built_without_cuda:
        # TensorFlow itself says so: tf.test.is_built_with_cuda() is False (tensorflow-cpu, or native Windows >= 2.11).
        _add(reading, "cpu-only-build", revealed.built_without_cuda)
    if _windows_cpu_only(reading, known, k) and not reading.codes:
        # Native Windows and a TensorFlow after the last with a Windows GPU build: pip gave it a CPU-only one.
        version_line = revealed.version_lines.get(TENSORFLOW.name)
        _add(reading, "cpu-only-build", [line for line in (revealed.windows, version_line) if line])
    said_false = any(line.text.rstrip().endswith("False") for line in revealed.said_no_gpu)
    if revealed.container and (said_false or revealed.no_smi) and not reading.codes:
        # Nothing but a container started without a GPU request and no GPU (nor nvidia-smi) in it.
        shown = [revealed.docker_run, *revealed.said_no_gpu, revealed.no_smi]
        _add(reading, "no-gpu-runtime", [line for line in shown if line])
    if revealed.no_smi and not revealed.container and not revealed.gpu_in_use and not reading.codes:
        # No nvidia-smi on the host (the driver package brings it) and nothing else: no driver is installed.
        _add(reading, "no-driver", [revealed.no_smi])


# -- a framework that is installed but fails at import, and one that is not installed -------------------------------

# A traceback frame in a framework's own __init__.py while it is imported: `File ".../torch/__init__.py", line 237,
# in <module>`, and IPython's `.../torch/__init__.py in <module>` / `File .../torch/__init__.py:237`.
IMPORT_FRAME = re.compile(
    r"[/\\](torch|jax|tensorflow)[/\\]__init__\.py(?:\"?, line \d+, in <module>| in <module>|:\d+\s*$)"
)
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception)(?::\s|$)")
NOT_INSTALLED = re.compile(r"ModuleNotFoundError: No module named '(torch|jax|tensorflow)'")


def _reveal_import(found: Revealed, line: Line) -> None:
    """The frame of a framework's import in a traceback, the exception line after it, and the framework missing."""
    text = line.text
    if found.not_installed is None and NOT_INSTALLED.search(text):
        found.not_installed = line
        return
    if found.import_frame is None:
        if IMPORT_FRAME.search(text):
            found.import_frame = line
    elif found.import_error is None and EXCEPTION_LINE.match(text):
        found.import_error = line


def _import_failed(reading: Reading, k: Knowledge) -> None:
    """framework-import-failed: a traceback through a framework's __init__.py that ends in an exception no known
    message explains (a library that failed to load is its own cause); framework-missing: Python has no such module."""
    revealed = reading.revealed
    frame, error = revealed.import_frame, revealed.import_error
    if (
        frame is not None
        and error is not None
        and k.classify(error.text) is None
        and not NOT_INSTALLED.search(error.text)
    ):
        _add(reading, "framework-import-failed", [frame, error])
    if revealed.not_installed is not None and not reading.codes:
        _add(reading, "framework-missing", [revealed.not_installed])
