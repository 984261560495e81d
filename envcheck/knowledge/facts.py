"""A typed view of knowledge.yaml: what TensorFlow, PyTorch and JAX releases were built with and carry, what CUDA
needs from the driver.

Versions compare with `packaging` (12.10 > 12.9, 3.10 == 3.10.0); callers ask questions (`tf_build("2.15.1")`,
`build("torch", "2.5.1", "pypi")`, `min_driver("12.2")`, `gpu_compute_capability("NVIDIA A100-SXM4-40GB")`)
instead of branching on version strings. What to conclude from the facts is in rules.py.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version as _PackagingVersion

if TYPE_CHECKING:
    from envcheck.frameworks import Framework

DATA_FILE = Path(__file__).with_name("knowledge.yaml")
_NUMERIC = re.compile(r"[0-9]+(\.[0-9]+)*")


class Version(_PackagingVersion):
    """A dotted numeric version (12.2, 535.54.03, 2.15.1) compared by packaging's rules; a suffix such as rc1 is
    ignored, and the text is kept as written, since drivers are spelled 535.54.03, not 535.54.3."""

    def __init__(self, text: str | float | int) -> None:
        match = _NUMERIC.match(str(text).strip())
        if not match:
            raise ValueError(f"not a version: {text!r}")
        super().__init__(match[0])
        self._text = match[0]

    @classmethod
    def parse(cls, text: str | float | int) -> Version:
        return cls(text)

    @classmethod
    def lenient(cls, value: Any) -> Version | None:
        """The version a text spells, or None for anything else (records and logs may hold any value)."""
        try:
            return cls(value) if isinstance(value, str) and value else None
        except ValueError:
            return None

    def prefix(self, n: int) -> Version:
        """The first n components (12.5.1 → 12.5), zero-filled (12 → 12.0)."""
        return Version(".".join(str(p) for p in (self.release + (0,) * n)[:n]))

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Version('{self._text}')"


def capability(entry: str) -> Version | None:
    """'sm_90' / 'compute_90' / 'sm_90a' → 9.0 (the arch-specific 'a' suffix is kept out of the number)."""
    digits = entry.partition("_")[2].rstrip("af")
    return Version(f"{digits[:-1]}.{digits[-1]}") if digits.isdigit() and len(digits) >= 2 else None


@dataclass(frozen=True)
class GpuCode:
    """GPU code in a build: SASS for some architectures, PTX (with its ISA version, when read) for others."""

    sass: tuple[Version, ...]
    ptx: dict[Version, Version | None]  # PTX target → PTX ISA version (None: not read)

    @classmethod
    def from_build_info(cls, entries: list[str]) -> GpuCode:
        """TF's build-info list ['sm_60', 'compute_90'] → GPU code. In TF's builds `compute_XY` means SASS for
        sm_XY and PTX for compute_XY both (every wheel 2.10-2.21 read with scripts/read_wheels.py)."""
        sass, ptx = [], {}
        for entry in entries:
            cc = capability(entry)
            if cc is None:
                continue
            sass.append(cc)
            if entry.startswith("compute_"):
                ptx[cc] = None
        return cls(tuple(sorted(set(sass))), ptx)

    def kernels_for(self, compute_capability: Version) -> str:
        """'native' when there is SASS for this GPU, 'ptx' when only a JIT from PTX, else 'none'.

        SASS built for X.Y runs on X.Z with Z >= Y (same major); PTX for X.Y JIT-compiles for any GPU >= X.Y.
        """
        cc = compute_capability.prefix(2)
        if any(sm.major == cc.major and sm <= cc for sm in self.sass):
            return "native"
        if self.jit_ptx(cc) is not None:
            return "ptx"
        return "none"

    def jit_ptx(self, compute_capability: Version) -> Version | None:
        """The PTX target the driver JIT-compiles for this GPU: the newest one not newer than the GPU."""
        fitting = [p for p in self.ptx if p <= compute_capability.prefix(2)]
        return max(fitting) if fitting else None

    @property
    def oldest(self) -> Version:
        return min((*self.sass, *self.ptx))

    def describe(self) -> str:
        sass = ", ".join(f"sm_{v.major}{v.minor}" for v in self.sass)
        ptx = ", ".join(
            f"compute_{v.major}{v.minor}" + (f" (PTX ISA {isa})" if isa else "") for v, isa in self.ptx.items()
        )
        return f"SASS {sass or 'none'}; PTX {ptx or 'none'}"


@dataclass(frozen=True)
class ImportBreak:
    """Framework releases that a newer version of a dependency they leave unpinned breaks at import
    (knowledge.yaml `import_breaks`)."""

    framework: str
    versions: tuple[SpecifierSet, ...]  # any of them
    dependency: str
    first_bad: Version
    message: re.Pattern[str]
    pin: str
    fixed_in: tuple[Version, ...]
    why: str
    source: str

    @classmethod
    def from_data(cls, row: dict[str, Any]) -> ImportBreak:
        return cls(
            row["framework"],
            tuple(SpecifierSet(spec) for spec in row["versions"]),
            row["dependency"],
            Version(row["from"]),
            re.compile(row["message"]),
            row["pin"],
            tuple(Version(v) for v in row.get("fixed_in") or ()),
            " ".join(str(row["why"]).split()),
            row["source"],
        )

    def affects(self, version: str | None) -> bool:
        """Whether this framework release is one the break hits (an unknown release: not known to be)."""
        found = Version.lenient(version)
        return found is not None and any(found in spec for spec in self.versions)

    def fixed_after(self, version: str | None) -> Version | None:
        """The first release that fixes it, newer than `version` (the first of all when that is unknown)."""
        found = Version.lenient(version)
        return next((v for v in sorted(self.fixed_in) if found is None or v > found), None)


@dataclass(frozen=True)
class Message:
    """A message a framework, CUDA or Docker prints, and the diagnosis it is evidence for (None: harmless).

    `resolve` names the rule in envcheck.diagnosis.logread that picks the code when the message can mean more than
    one cause.
    """

    text: str
    code: str | None
    meaning: str
    pattern: re.Pattern[str] | None = None
    resolve: str | None = None

    @classmethod
    def from_data(cls, entry: dict[str, Any]) -> Message:
        pattern = re.compile(entry["pattern"]) if "pattern" in entry else None
        text = entry.get("text") or entry["pattern"]
        return cls(text, entry.get("code"), entry["meaning"], pattern, entry.get("resolve"))

    @property
    def regex(self) -> str:
        return self.pattern.pattern if self.pattern else re.escape(self.text)

    def search(self, line: str) -> re.Match[str] | None:
        return (self.pattern or re.compile(re.escape(self.text))).search(line)

    def found_in(self, line: str) -> bool:
        return bool(self.pattern.search(line)) if self.pattern else self.text in line


@dataclass(frozen=True)
class AndCudaPins:
    """What tensorflow[and-cuda] requires: exact pins (2.14-2.19) or ranges (2.20 on)."""

    cuda_major: int
    cuda_runtime: Version  # the pin, or the floor of the range
    cudnn: Version
    packages: tuple[str, ...] = ()  # every NVIDIA wheel the extra pins exactly, when the data has the full set
    ranges: dict[str, str] = field(default_factory=dict)  # package → version range, when the extra has ranges
    python: SpecifierSet | None = None  # narrower than TF's own range when a pinned wheel lacks newer Pythons
    python_note: str = ""


def _framework(name: str) -> Framework:
    """A framework by name. envcheck.frameworks sits above this module (each framework knows which lookup here
    describes its releases), so it is imported when first asked for, not when this module is."""
    from envcheck.frameworks import framework

    return framework(name)


@dataclass(frozen=True, kw_only=True)
class Build:
    """What one release of a framework, installed one way (its variant), was built with and carries: the facts
    lint, plan and diagnose need whatever the framework."""

    framework: str
    release: str
    python: tuple[Version, Version]
    cuda: Version | None  # the CUDA of its GPU build (None: a CPU build, or one that uses the image's CUDA)
    cudnn: Version | None
    code: GpuCode | None  # the GPU code of its binaries (None: not read for this variant)
    confirmed: bool = True
    notes: dict[str, str] = field(default_factory=dict)
    unavailable: str = ""  # why pip cannot install this variant of this release ("" when it can)
    cuda_range: bool = False  # the CUDA libraries come as ranges: pip installs the newest of cuda.major

    @property
    def name(self) -> str:
        """The framework's display name."""
        return _framework(self.framework).display_name

    @property
    def label(self) -> str:
        return f"{self.name} {self.release}"

    @property
    def python_spec(self) -> SpecifierSet:
        return SpecifierSet(f">={self.python[0]},<{self.python[1].major}.{self.python[1].minor + 1}")

    def supports_python(self, python: str) -> bool:
        return Version(python).prefix(2) in self.python_spec

    def python_range(self) -> str:
        return f"{self.python[0]}–{self.python[1]}"

    def kernels_for(self, compute_capability: Version) -> str:
        return self.code.kernels_for(compute_capability) if self.code else "unknown"


@dataclass(frozen=True, kw_only=True)
class TFBuild(Build):
    """What one TensorFlow minor release was built and tested with, and the GPU code its wheel carries."""

    framework: str = "tensorflow"
    cuda: Version
    cudnn: Version
    code: GpuCode  # read from the wheel where known, else derived from the build info
    releases: tuple[str, ...] = ()  # every final release of the minor series on PyPI (empty: not in the data)
    build_cuda: str
    build_cudnn: str
    native: tuple[Version, ...]  # build info: sm_XY entries
    ptx: tuple[Version, ...]  # build info: compute_XY entries
    and_cuda: AndCudaPins | None
    and_cuda_off_path: tuple[str, ...] = ()  # versions whose [and-cuda] libraries the loader does not find


@dataclass(frozen=True, kw_only=True)
class TorchBuild(Build):
    """A PyTorch minor release: its default PyPI wheel's CUDA and pins, and PyTorch's own wheel indexes."""

    framework: str = "torch"
    nccl: Version | None = None
    indexes: tuple[str, ...] | None = None  # cuXYZ indexes with wheels of this release (None: not known)
    indexes_confirmed: bool = True
    releases: tuple[str, ...] = ()  # every final release of the minor series on PyPI (empty: not in the data)
    index_code: dict[str, IndexCode] = field(default_factory=dict)  # cuXYZ → its wheels' GPU code, where known
    find_links: str = ""  # the find-links page its index wheels were installed from (1.x), "" for index URLs


@dataclass(frozen=True)
class IndexCode:
    """The GPU code of one PyTorch index's wheels of a release (from the build scripts' TORCH_CUDA_ARCH_LIST)."""

    index: str
    code: GpuCode
    confirmed: bool = True  # False: not read from the scripts of that very release

    @property
    def cuda(self) -> Version | None:
        return index_cuda(self.index)


@dataclass(frozen=True)
class JaxExtra:
    """A GPU extra of a JAX release before the PyPI plugins (jax[cuda], jax[cuda11_pip], jax[cuda12_local], …):
    a jaxlib+cudaNN wheel from Google's find-links page, with CUDA from pip (local False) or from the system."""

    name: str
    cuda: Version | None  # the oldest CUDA its jaxlib works with (None: not known)
    cudnn: Version | None  # the oldest cuDNN
    local: bool  # True: CUDA and cuDNN must be on the system; False: pip brings them (nvidia-* wheels)
    find_links: str
    confirmed: bool = True


def index_cuda(index: str) -> Version | None:
    """PyTorch's wheel index name → its CUDA: cu118 → 11.8, cu130 → 13.0, cu92 → 9.2, cpu → None."""
    digits = index[2:] if index.startswith("cu") else ""
    return Version(f"{digits[:-1]}.{digits[-1]}") if digits.isdigit() and len(digits) >= 2 else None


@dataclass(frozen=True)
class Peak:
    """A GPU's datasheet peak dense matmul TFLOP/s per dtype ('tf32': float32 on tensor cores)."""

    name: str
    tflops: dict[str, float]


class Knowledge:
    def __init__(self, data: dict[str, Any]) -> None:
        self.sources: dict[str, str] = data["sources"]
        sets = {name: tuple(packages) for name, packages in data["and_cuda_sets"].items()}
        self._tf = {release: _tf_build(release, entry, sets) for release, entry in data["tensorflow"].items()}
        self._drivers = {Version(k): Version(v) for k, v in data["cuda_drivers"].items()}
        self._driver_updates = {Version(k): Version(v) for k, v in data["cuda_driver_updates"].items()}
        self._floors = {int(k): Version(v) for k, v in data["minor_compat_floor"].items()}
        self._ptx_isa = {Version(k): Version(v) for k, v in data["ptx_isa"].items()}
        self._newest_arch = {Version(k): Version(v) for k, v in (data.get("cuda_newest_arch") or {}).items()}
        self._cudnn_cuda = {int(k): set(v) for k, v in data["cudnn_cuda_majors"].items()}
        # Longest names first so "A100" wins over "A10" and "GTX TITAN X" over "GTX TITAN".
        self._gpus = sorted(((k, Version(v)) for k, v in data["gpus"].items()), key=lambda kv: -len(kv[0]))
        names = "|".join(re.escape(name) for name, _ in self._gpus)
        self._gpu_names = re.compile(rf"(?<![A-Za-z0-9])(?:{names})(?![A-Za-z0-9])", re.IGNORECASE)
        self._peaks = sorted((Peak(k, v) for k, v in data["gpu_peaks"].items()), key=lambda p: -len(p.name))
        self.tf32_from = Version(data["tf32"]["compute_capability"])
        self.tf_windows_gpu_last = Version(data["tensorflow_windows_gpu_last"])
        self.required_libraries: tuple[str, ...] = tuple(data["cuda_libraries"]["required"])
        self.optional_libraries: tuple[str, ...] = tuple(data["cuda_libraries"]["optional"])
        self._required_by = {  # a framework's own list, where it has one
            key: tuple(names)
            for key, names in data["cuda_libraries"].items()
            if key not in ("required", "optional", "off_loader_path")
        }
        self.off_loader_path: dict[str, str] = dict(data["cuda_libraries"].get("off_loader_path") or {})
        self.messages = tuple(Message.from_data(m) for m in data["messages"])
        self.import_breaks = tuple(ImportBreak.from_data(row) for row in data.get("import_breaks") or ())
        # One pass of one expression rejects the many lines no message is in; only the rest are tried in order.
        self._any_message = re.compile("|".join(f"(?:{m.regex})" for m in self.messages))
        self.ptx_jit_fails = {
            fw: (Version(row["from"]), Version(row["releases"][0]), Version(row["releases"][1]))
            for fw, row in (data.get("ptx_jit_fails") or {}).items()
        }
        self._torch = {release: _torch_build(release, entry) for release, entry in data["torch"].items()}
        self._jax = sorted(((Version(k), v) for k, v in data["jax"].items()), key=lambda kv: kv[0])
        self._jax_releases = {str(first): _releases("jax", str(first), row) for first, row in self._jax}
        self._jax_extras = {str(first): _jax_extras(str(first), row) for first, row in self._jax}
        self._jax_newest = Version(data["jax_newest"])
        self._image_sizes: dict[str, dict[str, float]] = data.get("image_sizes_gb") or {}

    @classmethod
    @functools.cache
    def load(cls, path: Path = DATA_FILE) -> Knowledge:
        return cls(yaml.safe_load(path.read_text(encoding="utf-8")))

    def image_size(self, framework: str, variant: str) -> float | None:
        """What an envcheck image of this framework and variant takes on a daemon's disk, in GB (measured)."""
        size = (self._image_sizes.get(framework) or {}).get(variant)
        return float(size) if isinstance(size, (int, float)) else None

    def releases(self) -> list[str]:
        return sorted(self._tf, key=Version)

    def tf_build(self, tensorflow: str) -> TFBuild | None:
        """The build facts for a TF version ('2.15.1' → the 2.15 entry), or None if unknown."""
        try:
            return self._tf.get(str(Version(tensorflow).prefix(2)))
        except ValueError:
            return None

    def torch_releases(self) -> list[str]:
        return sorted(self._torch, key=Version)

    def jax_rows(self) -> list[str]:
        """The first release of each JAX row, oldest first."""
        return [str(first) for first, _ in self._jax]

    def release_versions(self, framework: str, series: str) -> list[str]:
        """Every final release on PyPI of a row of the data: a minor series of TensorFlow or PyTorch ('2.9' →
        ['2.9.0', '2.9.1']), a JAX row by its first release ('0.4.26' → 0.4.26 … 0.4.28); [] when not known."""
        if framework == "jax":
            return list(self._jax_releases.get(series, ()))
        build = self._tf.get(series) if framework == "tensorflow" else self._torch.get(series)
        return list(build.releases) if build else []

    def series_of(self, framework: str, version: str) -> str | None:
        """The row of the data a release belongs to ('2.9.1' → '2.9'; JAX '0.4.27' → '0.4.26'), or None."""
        parsed = Version.lenient(version)
        if parsed is None:
            return None
        if framework == "jax":
            rows = [str(first) for first, _ in self._jax if first <= parsed]
            return rows[-1] if rows and parsed <= self._jax_newest else None
        series = str(parsed.prefix(2))
        return series if series in (self._tf if framework == "tensorflow" else self._torch) else None

    def torch_index_code(self, series: str, index: str) -> IndexCode | None:
        """The GPU code of PyTorch's `index` wheels (cu126, …) of a minor release ('2.9' or '2.9.1'), or None
        when the data does not know it (the PyPI default wheel's code is `torch_build(v, "pypi").code`)."""
        parsed = Version.lenient(series)
        build = self._torch.get(str(parsed.prefix(2))) if parsed else None
        return build.index_code.get(index) if build else None

    def jax_extras(self, version: str) -> dict[str, JaxExtra]:
        """The GPU extras of a JAX release's row before PyPI's plugins (cuda, cuda11_pip, cuda12_pip, …), by name."""
        series = self.series_of("jax", version)
        return dict(self._jax_extras.get(series, {})) if series else {}

    def jax_releases(self) -> tuple[str, str]:
        """The first JAX release of the oldest row and the newest release the rows hold."""
        return str(self._jax[0][0]), str(self._jax_newest)

    def known(self, framework: str) -> tuple[str, str]:
        """The oldest and newest release of a framework the data knows."""
        return _framework(framework).known(self)

    def build(self, framework: str, version: str, variant: str, index: str | None = None) -> Build | None:
        """What a release of a framework brings when installed as `variant` (None when the data does not know
        the release): the framework knows which of the lookups below describes it."""
        return _framework(framework).build(self, version, variant, index)

    def torch_build(self, version: str, variant: str, index: str | None = None) -> TorchBuild | None:
        """A PyTorch minor release as PyPI's default wheel (`pypi`) or one of PyTorch's own indexes."""
        parsed = Version.lenient(version)
        return _torch_variant(self._torch.get(str(parsed.prefix(2))), variant, index) if parsed else None

    def jax_build(self, version: str, variant: str) -> Build | None:
        """A JAX release's row (it holds until the next row's release) seen through one install variant."""
        parsed = Version.lenient(version)
        if parsed is None:
            return None
        rows = [entry for first, entry in self._jax if first <= parsed]
        if not rows or parsed > self._jax_newest:
            return None
        row = rows[-1]
        confirmed = bool(row.get("confirmed", True))
        bare = Build(
            framework="jax", release=version, python=_python(row), cuda=None, cudnn=None, code=None, confirmed=confirmed
        )
        if variant == "cpu":
            return bare
        extra = self.jax_extras(version).get(variant)
        if extra is not None:  # a jaxlib+cudaNN wheel from Google's find-links page: its GPU code was never read
            return replace(
                bare,
                cuda=extra.cuda,
                cudnn=extra.cudnn,
                cuda_range=not extra.local,  # *_pip: nvidia-*-cuNN ranges; local: the machine's CUDA, at least this
                confirmed=confirmed and extra.confirmed,
            )
        if variant == "cuda12-local":  # the plugin without CUDA libraries: the image brings them
            unavailable = (
                ""
                if row.get("cuda12_local")
                else "jax[cuda12-local] of releases before 0.4.30 needs jaxlib+cuda12 wheels that are only on "
                "Google's find-links page (storage.googleapis.com/jax-releases), not on PyPI"
            )
            return replace(bare, code=_wheel_code((row.get("cuda12") or {}).get("wheel_code")), unavailable=unavailable)
        plugin = row.get(variant)
        if not plugin:
            since = next((str(first) for first, entry in self._jax if entry.get(variant)), None)
            missing = f"JAX {version} has no jax[{variant}] on PyPI" + (f" (it exists from {since})" if since else "")
            return replace(bare, unavailable=missing)
        return replace(
            bare,
            cuda=Version(plugin["cuda"]),
            cudnn=Version(plugin["cudnn"]),
            code=_wheel_code(plugin["wheel_code"]),
            cuda_range=True,
        )

    def required_libraries_for(self, framework: str) -> tuple[str, ...]:
        """The CUDA libraries a framework cannot use the GPU without."""
        return self._required_by.get(framework, self.required_libraries)

    def min_driver(self, cuda: str | Version) -> Version | None:
        """Minimum Linux driver for a CUDA toolkit/runtime version (an update-level entry when one is listed)."""
        version = cuda if isinstance(cuda, Version) else Version(cuda)
        updates = [d for u, d in self._driver_updates.items() if u.prefix(2) == version.prefix(2) and u <= version]
        ga = self._drivers.get(version.prefix(2))
        candidates = [d for d in [ga, *updates] if d is not None]
        return max(candidates) if candidates else None

    def cuda_releases(self) -> list[Version]:
        """The CUDA releases whose minimum driver the data holds, oldest first."""
        return sorted(self._drivers)

    def minor_compat_floor(self, cuda_major: int) -> Version | None:
        return self._floors.get(cuda_major)

    def newest_cuda_for_driver(self, driver: Version) -> Version | None:
        fitting = [cuda for cuda, needed in self._drivers.items() if needed <= driver]
        return max(fitting) if fitting else None

    def newest_cuda(self, major: int) -> Version | None:
        """The newest CUDA minor of a major that the data knows (what a `<13` range may install today)."""
        known = [cuda for cuda in self._drivers if cuda.major == major]
        return max(known) if known else None

    def ptx_isa(self, cuda: Version) -> Version | None:
        """The newest PTX ISA a CUDA version knows (what its nvcc writes, what its driver JIT-compiles)."""
        fitting = [isa for c, isa in self._ptx_isa.items() if c <= cuda.prefix(2)]
        return max(fitting) if fitting else None

    def newest_arch(self, cuda: str) -> Version | None:
        """The newest GPU architecture a CUDA release's nvcc builds for (knowledge `cuda_newest_arch`); a bare
        major ('11', as jaxlib's +cuda11 says it) stands for its newest minor, the most a build of it can have."""
        parsed = Version.lenient(cuda)
        if parsed is None:
            return None
        whole_major = "." not in cuda.strip()
        fitting = [
            arch
            for release, arch in self._newest_arch.items()
            if (release.major <= parsed.major if whole_major else release <= parsed.prefix(2))
        ]
        return max(fitting) if fitting else None

    def driver_ptx_isa(self, driver: Version) -> Version | None:
        """The newest PTX ISA a driver's JIT compiles: that of the newest CUDA the driver supports."""
        cuda = self.newest_cuda_for_driver(driver)
        return self.ptx_isa(cuda) if cuda is not None else None

    def cudnn_supports_cuda(self, cudnn_major: int, cuda_major: int) -> bool:
        return cuda_major in self._cudnn_cuda.get(cudnn_major, set())

    def classify(self, line: str) -> Message | None:
        """The known message a log line contains, if any (the first in the data's order)."""
        if not self._any_message.search(line):
            return None
        return next((m for m in self.messages if m.found_in(line)), None)

    def ptx_runs_on(self, framework: str, release: str, cc: Version) -> bool:
        """False where users found a release's PTX does not JIT for this GPU (knowledge `ptx_jit_fails`)."""
        fails = self.ptx_jit_fails.get(framework)
        if fails is None:
            return True
        start, first, last = fails
        try:
            version = Version(release).prefix(2)
        except ValueError:
            return True
        return not (cc >= start and first <= version <= last)

    def gpu_name_in(self, text: str) -> str | None:
        """The most specific known GPU product name in a line of text ('RTX 5070 Ti' before 'RTX 5070')."""
        found = self._gpu_names.search(text)
        return next((name for name, _ in self._gpus if name.lower() == found.group(0).lower()), None) if found else None

    def gpu_peak(self, product: str) -> Peak | None:
        """The datasheet peaks of a GPU product, matched by its most specific known name (form factors differ:
        'H100 PCIe' and 'H100 NVL' are not the SXM part, so a bare 'H100' matches nothing)."""
        return next((p for p in self._peaks if _word_in(p.name, product)), None)

    def gpu_compute_capability(self, product: str) -> Version | None:
        """The compute capability of a GPU product name such as 'NVIDIA A100-SXM4-40GB' or 'Tesla K80'."""
        return next((cc for name, cc in self._gpus if _word_in(name, product)), None)


def _word_in(name: str, product: str) -> bool:
    """'A100' is in 'NVIDIA A100-SXM4-40GB' but 'A10' is not."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", product, re.IGNORECASE) is not None


def _wheel_code(wheel: dict[str, Any] | None) -> GpuCode | None:
    if not wheel:
        return None
    return GpuCode(
        tuple(Version(v) for v in wheel["sass"]),
        {Version(arch): Version(isa) if isa is not None else None for arch, isa in (wheel.get("ptx") or {}).items()},
    )


def _python(entry: dict[str, Any]) -> tuple[Version, Version]:
    return Version(entry["python"][0]), Version(entry["python"][1])


def _release(release: str, entry: dict[str, Any]) -> dict[str, Any]:
    """What every framework's release entry has: its Python range and the CUDA and cuDNN of its GPU build."""
    return {
        "release": release,
        "python": _python(entry),
        "cuda": Version(entry["cuda"]),
        "cudnn": Version(entry["cudnn"]),
        "confirmed": bool(entry.get("confirmed", True)),
    }


class KnowledgeError(ValueError):
    """knowledge.yaml holds a row of the wrong shape; the message names the row."""


def _releases(framework: str, key: str, entry: dict[str, Any]) -> tuple[str, ...]:
    """A row's `releases`: a list of release versions, each within the row (same minor, or for JAX not before
    the row's first release), oldest first."""
    releases = entry.get("releases")
    if releases is None:
        return ()
    if not isinstance(releases, list) or not all(isinstance(r, str) and Version.lenient(r) for r in releases):
        raise KnowledgeError(f"{framework} {key}: releases must be a list of version strings, not {releases!r}")
    first = Version(key)
    for release in releases:
        version = Version(release)
        outside = version < first if framework == "jax" else version.prefix(2) != first.prefix(2)
        if outside:
            raise KnowledgeError(f"{framework} {key}: release {release} is not in this row")
    if [Version(r) for r in releases] != sorted(Version(r) for r in releases):
        raise KnowledgeError(f"{framework} {key}: releases must be listed oldest first")
    return tuple(releases)


def _index_code(release: str, entry: dict[str, Any]) -> dict[str, IndexCode]:
    found = {}
    for index, wheel in (entry.get("index_code") or {}).items():
        if index_cuda(str(index)) is None or not isinstance(wheel, dict) or not isinstance(wheel.get("sass"), list):
            raise KnowledgeError(f"torch {release}: index_code {index!r} must be cuXYZ: {{sass: [...], ptx: {{...}}}}")
        try:
            code = _wheel_code(wheel)
        except ValueError as error:
            raise KnowledgeError(f"torch {release}: index_code {index}: {error}") from error
        assert code is not None
        found[str(index)] = IndexCode(str(index), code, bool(wheel.get("confirmed", True)))
    return found


def _jax_extras(first: str, row: dict[str, Any]) -> dict[str, JaxExtra]:
    """A JAX row's `extras`: name → {cuda, cudnn, local, find_links[, confirmed]}."""
    found = {}
    for name, extra in (row.get("extras") or {}).items():
        if not isinstance(extra, dict) or not isinstance(extra.get("local"), bool) or not extra.get("find_links"):
            raise KnowledgeError(f"jax {first}: extras {name!r} must be {{cuda, cudnn, local: bool, find_links: URL}}")
        try:
            cuda = Version(extra["cuda"]) if extra.get("cuda") is not None else None
            cudnn = Version(extra["cudnn"]) if extra.get("cudnn") is not None else None
        except ValueError as error:
            raise KnowledgeError(f"jax {first}: extras {name}: {error}") from error
        found[str(name)] = JaxExtra(
            str(name), cuda, cudnn, extra["local"], str(extra["find_links"]), bool(extra.get("confirmed", True))
        )
    return found


def _torch_build(release: str, entry: dict[str, Any]) -> TorchBuild:
    return TorchBuild(
        release=release,
        python=_python(entry),
        cuda=Version(entry["cuda"]),
        cudnn=Version(entry["cudnn"]) if entry.get("cudnn") is not None else None,  # null: bundled, not read
        confirmed=bool(entry.get("confirmed", True)),
        code=_wheel_code(entry["wheel_code"]),
        nccl=Version(entry["nccl"]) if entry.get("nccl") is not None else None,
        indexes=tuple(entry["indexes"]) if entry.get("indexes") is not None else None,
        indexes_confirmed=bool(entry.get("indexes_confirmed", True)),
        releases=_releases("torch", release, entry),
        index_code=_index_code(release, entry),
        find_links=str(entry.get("find_links") or ""),
    )


def _torch_variant(build: TorchBuild | None, variant: str, index: str | None) -> TorchBuild | None:
    """The default PyPI wheel as read; an index's wheel has that index's CUDA, and the GPU code its build script
    gave it where the data holds that (`index_code`; else unknown)."""
    if build is None or variant == "pypi" or not index:
        return build
    if index == "cpu":
        return replace(build, cuda=None, cudnn=None, code=None)
    unavailable = ""
    if build.indexes is not None and index not in build.indexes and build.indexes_confirmed:
        unavailable = (
            f"PyTorch {build.release} has no {index} wheels (its indexes: {', '.join(['cpu', *build.indexes])})"
        )
    code = build.index_code.get(index)
    return replace(
        build,
        cuda=index_cuda(index),
        cudnn=None,
        code=code.code if code else None,
        confirmed=build.confirmed and (code is None or code.confirmed),
        unavailable=unavailable,
    )


def _tf_build(release: str, entry: dict[str, Any], sets: dict[str, tuple[str, ...]]) -> TFBuild:
    pins = entry.get("and_cuda")
    build_info = entry["capabilities"]
    native = tuple(c for e in build_info if e.startswith("sm_") and (c := capability(e)))
    ptx = tuple(c for e in build_info if e.startswith("compute_") and (c := capability(e)))
    code = _wheel_code(entry.get("wheel_code")) or GpuCode.from_build_info(build_info)
    and_cuda = None
    if pins:
        python = pins.get("python")
        and_cuda = AndCudaPins(
            int(pins["cuda_major"]),
            Version(pins["cuda_runtime"]),
            Version(pins["cudnn"]),
            sets[pins["set"]] if pins.get("set") else (),
            dict(pins.get("ranges") or {}),
            SpecifierSet(f">={python[0]},<{Version(python[1]).major}.{Version(python[1]).minor + 1}")
            if python
            else None,
            str(pins.get("python_note") or ""),
        )
    return TFBuild(
        **_release(release, entry),
        releases=_releases("tensorflow", release, entry),
        build_cuda=str(entry["build_cuda"]),
        build_cudnn=str(entry["build_cudnn"]),
        native=native,
        ptx=ptx,
        code=code,
        and_cuda=and_cuda,
        and_cuda_off_path=tuple(str(v) for v in entry.get("and_cuda_off_path") or ()),
        notes={str(k): str(v) for k, v in (entry.get("notes") or {}).items()},
    )
