"""A typed view of envcheck/data/knowledge.yaml: what TF releases were built with, what CUDA needs.

Versions are compared as versions (tuples of integers), never as strings; callers ask questions
(`tf_build("2.15.1")`, `min_driver("12.2")`, `gpu_compute_capability("NVIDIA A100-SXM4-40GB")`) instead of
branching on version strings.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATA_FILE = Path(__file__).with_name("data") / "knowledge.yaml"


@functools.total_ordering
@dataclass(frozen=True)
class Version:
    """A dotted numeric version: 12.2, 535.54.03, 2.15.1 (a pre-release suffix like rc1 is ignored)."""

    parts: tuple[int, ...]
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str | float | int) -> Version:
        match = re.match(r"\d+(\.\d+)*", str(text).strip())
        if not match:
            raise ValueError(f"not a version: {text!r}")
        return cls(tuple(int(n) for n in match[0].split(".")), match[0])

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        width = max(len(self.parts), len(other.parts))
        return self.parts + (0,) * (width - len(self.parts)) < other.parts + (0,) * (width - len(other.parts))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return not self < other and not other < self

    def __hash__(self) -> int:
        parts = list(self.parts)
        while parts and parts[-1] == 0:
            parts.pop()
        return hash(tuple(parts))

    @property
    def major(self) -> int:
        return self.parts[0]

    @property
    def minor(self) -> int:
        return self.parts[1] if len(self.parts) > 1 else 0

    def prefix(self, n: int) -> Version:
        return Version((self.parts + (0,) * n)[:n])

    def __str__(self) -> str:
        """As written ("535.54.03" keeps its zero), or the numbers joined for derived versions."""
        return self.text or ".".join(map(str, self.parts))


def kernels_for(compute_capability: Version, native: tuple[Version, ...], ptx: tuple[Version, ...]) -> str:
    """'native' when there is SASS for this GPU, 'ptx' when only a JIT from PTX, else 'none'.

    SASS built for X.Y runs on X.Z with Z >= Y (same major); PTX for X.Y JIT-compiles for any GPU >= X.Y.
    """
    cc = compute_capability.prefix(2)
    if any(sm.major == cc.major and sm <= cc for sm in native):
        return "native"
    if any(p <= cc for p in ptx):
        return "ptx"
    return "none"


def parse_capabilities(entries: list[str]) -> tuple[tuple[Version, ...], tuple[Version, ...]]:
    """TF's build-info list ['sm_50', 'compute_80'] → (native, ptx) as versions (5.0,), (8.0,)."""
    native, ptx = [], []
    for entry in entries:
        kind, _, digits = entry.partition("_")
        if digits.isdigit() and len(digits) >= 2:
            version = Version((int(digits[:-1]), int(digits[-1])))
            (native if kind == "sm" else ptx).append(version)
    return tuple(native), tuple(ptx)


@dataclass(frozen=True)
class Message:
    """A message TensorFlow or Docker prints, and the diagnosis it is evidence for (None: harmless)."""

    text: str
    code: str | None
    meaning: str


@dataclass(frozen=True)
class AndCudaPins:
    cuda_major: int
    cuda_runtime: Version
    cudnn: Version
    packages: tuple[str, ...] = ()  # every NVIDIA wheel the extra pins, when the data has the full set


@dataclass(frozen=True)
class TFBuild:
    """What one TensorFlow minor release was built and tested with."""

    release: str
    python: tuple[Version, Version]
    cuda: Version
    cudnn: Version
    build_cuda: str
    build_cudnn: str
    native: tuple[Version, ...]
    ptx: tuple[Version, ...]
    and_cuda: AndCudaPins | None
    confirmed: bool
    notes: dict[str, str]

    def supports_python(self, python: str) -> bool:
        return self.python[0] <= Version.parse(python).prefix(2) <= self.python[1]

    def python_range(self) -> str:
        return f"{self.python[0]}–{self.python[1]}"

    def kernels_for(self, compute_capability: Version) -> str:
        return kernels_for(compute_capability, self.native, self.ptx)

    @property
    def oldest_gpu(self) -> Version:
        return min(self.native + self.ptx)


class Knowledge:
    def __init__(self, data: dict[str, Any]) -> None:
        self.sources: dict[str, str] = data["sources"]
        sets = {name: tuple(packages) for name, packages in data["and_cuda_sets"].items()}
        self._tf = {release: _tf_build(release, entry, sets) for release, entry in data["tensorflow"].items()}
        self._drivers = {Version.parse(k): Version.parse(v) for k, v in data["cuda_drivers"].items()}
        self._driver_updates = {Version.parse(k): Version.parse(v) for k, v in data["cuda_driver_updates"].items()}
        self._floors = {int(k): Version.parse(v) for k, v in data["minor_compat_floor"].items()}
        self._cudnn_cuda = {int(k): set(v) for k, v in data["cudnn_cuda_majors"].items()}
        # Longest names first so "A100" wins over "A10" and "GTX TITAN X" over "GTX TITAN".
        self._gpus = sorted(((k, Version.parse(v)) for k, v in data["gpus"].items()), key=lambda kv: -len(kv[0]))
        self._peaks = sorted(data["gpu_peaks"].items(), key=lambda kv: -len(kv[0]))
        self.required_libraries: tuple[str, ...] = tuple(data["cuda_libraries"]["required"])
        self.optional_libraries: tuple[str, ...] = tuple(data["cuda_libraries"]["optional"])
        self.messages = tuple(Message(m["text"], m.get("code"), m["meaning"]) for m in data["messages"])

    @classmethod
    @functools.cache
    def load(cls, path: Path = DATA_FILE) -> Knowledge:
        return cls(yaml.safe_load(path.read_text(encoding="utf-8")))

    def releases(self) -> list[str]:
        return sorted(self._tf, key=Version.parse)

    def tf_build(self, tensorflow: str) -> TFBuild | None:
        """The build facts for a TF version ('2.15.1' → the 2.15 entry), or None if unknown."""
        return self._tf.get(str(Version.parse(tensorflow).prefix(2)))

    def min_driver(self, cuda: str | Version) -> Version | None:
        """Minimum Linux driver for a CUDA toolkit/runtime version (an update-level entry when one is listed)."""
        version = cuda if isinstance(cuda, Version) else Version.parse(cuda)
        updates = [d for u, d in self._driver_updates.items() if u.prefix(2) == version.prefix(2) and u <= version]
        ga = self._drivers.get(version.prefix(2))
        candidates = [d for d in [ga, *updates] if d is not None]
        return max(candidates) if candidates else None

    def minor_compat_floor(self, cuda_major: int) -> Version | None:
        return self._floors.get(cuda_major)

    def newest_cuda_for_driver(self, driver: Version) -> Version | None:
        fitting = [cuda for cuda, needed in self._drivers.items() if needed <= driver]
        return max(fitting) if fitting else None

    def cudnn_supports_cuda(self, cudnn_major: int, cuda_major: int) -> bool:
        return cuda_major in self._cudnn_cuda.get(cudnn_major, set())

    def classify(self, line: str) -> Message | None:
        """The known message a log line contains, if any."""
        return next((m for m in self.messages if m.text in line), None)

    def gpu_peak_tflops(self, product: str, dtype: str) -> float | None:
        """The datasheet's peak dense matmul TFLOP/s for a GPU product and dtype, when known."""
        for name, peaks in self._peaks:
            if _word_in(name, product):
                return peaks.get(dtype)
        return None

    def gpu_compute_capability(self, product: str) -> Version | None:
        """The compute capability of a GPU product name such as 'NVIDIA A100-SXM4-40GB' or 'Tesla K80'."""
        return next((cc for name, cc in self._gpus if _word_in(name, product)), None)


def annotate_peaks(benchmark: list[dict[str, Any]], gpu_name: str | None, knowledge: Knowledge) -> None:
    """Add percent_of_peak to GPU benchmark entries where the data file knows the card's peak."""
    for entry in benchmark:
        peak = knowledge.gpu_peak_tflops(gpu_name, entry["dtype"]) if gpu_name else None
        if entry.get("device") == "gpu" and entry.get("tflops") and peak:
            entry["peak_tflops"] = peak
            entry["percent_of_peak"] = round(100 * entry["tflops"] / peak, 1)


def _word_in(name: str, product: str) -> bool:
    """'A100' is in 'NVIDIA A100-SXM4-40GB' but 'A10' is not."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", product, re.IGNORECASE) is not None


def _tf_build(release: str, entry: dict[str, Any], sets: dict[str, tuple[str, ...]]) -> TFBuild:
    pins = entry.get("and_cuda")
    return TFBuild(
        release=release,
        python=(Version.parse(entry["python"][0]), Version.parse(entry["python"][1])),
        cuda=Version.parse(entry["cuda"]),
        cudnn=Version.parse(entry["cudnn"]),
        build_cuda=str(entry["build_cuda"]),
        build_cudnn=str(entry["build_cudnn"]),
        native=tuple(Version.parse(v) for v in entry["native"]),
        ptx=tuple(Version.parse(v) for v in entry["ptx"]),
        and_cuda=AndCudaPins(
            int(pins["cuda_major"]),
            Version.parse(pins["cuda_runtime"]),
            Version.parse(pins["cudnn"]),
            sets[pins["set"]] if pins.get("set") else (),
        )
        if pins
        else None,
        confirmed=bool(entry.get("confirmed", True)),
        notes={str(k): str(v) for k, v in (entry.get("notes") or {}).items()},
    )
