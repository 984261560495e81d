"""`envcheck explain`: the causes behind a log from a GPU machine, without Docker, a framework or a GPU here.

Most people asking why the GPU is not used bring a log, not a matrix. The log is read once, line by line
(envcheck.logread: any size, any bytes); what it reveals plus the user's flags become the facts the rules of
envcheck.diagnose run on, so a pasted log, a probe run and `doctor` speak one vocabulary of causes and fixes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from envcheck.diagnose import Facts, diagnose
from envcheck.knowledge import Knowledge
from envcheck.knowledge.facts import FRAMEWORK_NAMES
from envcheck.knowledge.rules import runtime_cuda
from envcheck.logread import Known, Reading, read_log
from envcheck.matrix import GPU_VARIANT
from envcheck.results.model import Diagnosis, Severity

SCHEMA = 1
READ_BYTES = 64 * 1024  # of one line; the rest of a longer line is skipped, not held in memory


def lines_of(stream: IO[bytes]) -> Iterator[str]:
    """The lines of a byte stream, decoded as UTF-8 with undecodable bytes replaced, at most READ_BYTES each."""
    while True:
        chunk = stream.readline(READ_BYTES)
        if not chunk:
            return
        if len(chunk) == READ_BYTES and not chunk.endswith(b"\n"):
            while (rest := stream.readline(READ_BYTES)) and not rest.endswith(b"\n"):
                pass
        yield chunk.decode("utf-8", "replace")


@dataclass(frozen=True)
class ExplainOptions:
    """What the user tells about the machine besides the log (each wins over what the log says)."""

    framework: str | None = None
    version: str | None = None
    driver: str | None = None
    gpus: tuple[str, ...] = ()


@dataclass
class Explanation:
    """The verdict on one log, each cause with the lines that prove it, and what the log revealed."""

    source: str
    framework: str
    version: str | None
    read: dict[str, Any]
    diagnoses: list[Diagnosis]
    reading: Reading
    gpu_in_use: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnosis]:
        return [d for d in self.diagnoses if d.severity == Severity.ERROR]

    @property
    def uses_gpu(self) -> bool | None:
        """True when the log shows a GPU device created and no error stands in the way; None when it cannot tell."""
        if self.errors:
            return False
        return True if self.gpu_in_use else None

    @property
    def verdict(self) -> str:
        name = FRAMEWORK_NAMES[self.framework]
        if self.errors:
            more = f" (and {len(self.errors) - 1} more cause(s) below)" if len(self.errors) > 1 else ""
            return f"{name} does not use the GPU: {self.errors[0].summary}{more}"
        if self.diagnoses:
            return f"{name}: {self.diagnoses[0].summary}"
        if self.gpu_in_use:
            return f"{name} uses the GPU ({self.gpu_in_use})."
        unknown = self.reading.unrecognised_count
        return f"No known cause in this log ({self.reading.lines} lines read" + (
            f"; {unknown} error line(s) not recognised, listed below)." if unknown else ")."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "source": self.source,
            "verdict": self.verdict,
            "uses_gpu": self.uses_gpu,
            "framework": self.framework,
            "version": self.version,
            "read": self.read,
            "diagnoses": [d.to_dict() for d in self.diagnoses],
            "notes": list(self.notes),
            "not_recognised": list(self.reading.unrecognised),
            "not_recognised_count": self.reading.unrecognised_count,
            "lines": self.reading.lines,
            "recognised_lines": self.reading.recognised,
        }


def explain(lines: Iterator[str] | list[str], options: ExplainOptions, source: str = "-") -> Explanation:
    """Read a log, then diagnose what it and the options reveal."""
    k = Knowledge.load()
    reading = read_log(lines, k, Known(options.framework, options.version))
    revealed = reading.revealed
    framework = reading.framework(Known(options.framework))
    version = options.version or revealed.versions.get(framework)
    build = k.build(framework, version, GPU_VARIANT[framework]) if version else None
    # The CUDA runtime it runs, as plan reckons it; without a known release, the CUDA the log says is installed.
    cuda = runtime_cuda(build, GPU_VARIANT[framework], k) if build else None
    build_cuda = str(cuda) if cuda else next((text for text, _ in revealed.cuda), None)
    gpus = [(name, k.gpu_compute_capability(name)) for name in options.gpus] or [
        (name, cc) for name, cc, _ in revealed.gpus
    ]
    if not gpus and revealed.capabilities:
        gpus = [("the GPU", revealed.capabilities[0])]
    libcuda = revealed.libcuda_version
    driver = options.driver or revealed.driver or (str(libcuda) if libcuda else None)
    probe: dict[str, Any] = {
        "framework": framework,
        "framework_version": version,
        "python": revealed.python,
        "build_cuda": build_cuda,
        "driver": driver,
        "env": {name: value for name, (value, _) in revealed.env.items()},
        "is_cuda_build": "cpu-only-build" not in reading.codes,
        "nvml": {
            "gpus": [
                {"index": i, "name": name, "compute_capability": str(cc) if cc else None}
                for i, (name, cc) in enumerate(gpus)
            ]
        },
    }
    if framework == "tensorflow":
        probe["tensorflow"] = version
    found = diagnose(Facts(probe=probe, in_container=False, log_reading=reading))
    read = {
        "framework": framework,
        "version": version,
        "python": revealed.python,
        "driver": driver,
        "driver_cuda": revealed.driver_cuda,
        "cuda": sorted({text for text, _ in revealed.cuda}),
        "cudnn": sorted({text for text, _ in revealed.cudnn}),
        "gpus": [{"name": name, "compute_capability": str(cc) if cc else None} for name, cc in gpus],
        "env": probe["env"],
    }
    in_use = revealed.gpu_in_use.evidence() if revealed.gpu_in_use else None
    notes = [
        f"--gpu {name!r} is not a GPU envcheck knows: its compute capability is unknown"
        for name, cc in gpus
        if cc is None and name in options.gpus
    ]
    if version and build is None:
        oldest, newest = k.known(framework)
        notes.append(
            f"{FRAMEWORK_NAMES[framework]} {version} is not in envcheck's data (it knows {oldest}–{newest}): what it "
            "was built with is unknown, so only the log's own messages count"
        )
    return Explanation(source, framework, version, read, found, reading, in_use, notes)


def format_text(found: Explanation) -> str:
    """Verdict first, then each cause with the lines that prove it and the fix, then what the log revealed."""
    out = [found.verdict, ""]
    for d in found.diagnoses:
        out.append(f"[{d.severity}] {d.code}: {d.summary}")
        out += [f"    evidence: {e}" for e in d.evidence]
        out.append(f"    fix: {d.fix}")
    read = found.read
    unknown = f"(version not in the log; give --{found.framework})"
    facts = [f"{FRAMEWORK_NAMES[found.framework]} {found.version or unknown}"]
    if read["python"]:
        facts.append(f"Python {read['python']}")
    if read["driver"]:
        facts.append(f"driver {read['driver']}" + (f" (CUDA {read['driver_cuda']})" if read["driver_cuda"] else ""))
    if read["cuda"] or read["cudnn"]:
        facts.append(f"CUDA {', '.join(read['cuda']) or '?'} / cuDNN {', '.join(read['cudnn']) or '?'} stated")
    for gpu in read["gpus"]:
        cc = f" (compute capability {gpu['compute_capability']})" if gpu["compute_capability"] else ""
        facts.append(f"GPU {gpu['name']}{cc}")
    facts += [f"{name}={value!r}" for name, value in read["env"].items()]
    out += ["Read from the log and the flags: " + "; ".join(facts)]
    out += [f"note: {note}" for note in found.notes]
    if found.reading.unrecognised_count:
        out.append(
            f"Not recognised: {found.reading.unrecognised_count} line(s) that look like errors match no known "
            "message (first ones below); if one is the cause, please report it with the log."
        )
        out += [f"    {line}" for line in found.reading.unrecognised]
    out.append(f"{found.reading.lines} lines read, {found.reading.recognised} with a known message.")
    return "\n".join(out)
