"""`envcheck explain`: the causes behind a log from a GPU machine, without Docker, a framework or a GPU here.

Most people asking why the GPU is not used bring a log, not a matrix. The log is read once, line by line
(logread: any bytes, in UTF-8 or, by its BOM, UTF-16 as PowerShell writes it; up to MAX_LOG_BYTES, so endless
input ends); what it reveals plus the user's flags become the facts the rules of diagnose run on, so a pasted
log, a probe run and `doctor` speak one vocabulary of causes and fixes.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from envcheck import frameworks
from envcheck.diagnosis.diagnose import diagnose
from envcheck.diagnosis.logread import Known, Reading, read_log
from envcheck.diagnosis.pick import with_install_hint
from envcheck.diagnosis.probe_facts import Facts
from envcheck.inputs.options import ExplainOptions
from envcheck.knowledge import Knowledge
from envcheck.knowledge.rules import runtime_cuda
from envcheck.results.model import Diagnosis, Severity

SCHEMA = 1
READ_BYTES = 64 * 1024  # characters of one line; the rest of a longer line is skipped, not held in memory
# Bytes of one log read: real ones are megabytes (the slow test reads a 100 MB one whole); /dev/zero ends here in
# a fraction of a second, `yes` (a line every 2 bytes, the slowest input) in well under a minute.
MAX_LOG_BYTES = 128 * 1024 * 1024
CHUNK = 64 * 1024  # bytes read at a time
SNIFF = 1024  # bytes at the start that decide a log without BOM is UTF-16
BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def encoding_of(head: bytes) -> str:
    """The encoding a log's first bytes show: its BOM's (UTF-8, UTF-16 LE or BE); UTF-16 without a BOM where nearly
    every other byte is NUL and the bytes between are not (ASCII text as Windows tools write it, with the odd
    character beyond Latin-1 such as a typographic apostrophe); else UTF-8."""
    for bom, encoding in BOMS:
        if head.startswith(bom):
            return encoding
    pairs = min(len(head), SNIFF) // 2
    even, odd = head[: 2 * pairs : 2].count(0), head[1 : 2 * pairs : 2].count(0)
    if pairs >= 2 and odd >= 0.9 * pairs and even <= 0.1 * pairs:
        return "utf-16-le"
    if pairs >= 2 and even >= 0.9 * pairs and odd <= 0.1 * pairs:
        return "utf-16-be"
    return "utf-8"


class LogLines:
    """The lines of a byte stream as they arrive, decoded by encoding_of (undecodable bytes replaced), each at most
    READ_BYTES characters, from at most `limit` bytes: neither an endless stream nor an endless line is held or
    read for ever. `cut_at` is where reading stopped when the stream had more."""

    def __init__(self, stream: IO[bytes], limit: int = MAX_LOG_BYTES) -> None:
        self.stream = stream
        self.limit = limit
        self.cut_at: int | None = None

    def __iter__(self) -> Iterator[str]:
        pending, skipping = "", False  # the start of a line not ended yet; whether its rest is being skipped
        for text in self._texts():
            *ended, rest = text.split("\n")
            for piece in ended:
                if not skipping:
                    yield (pending + piece)[:READ_BYTES]
                pending, skipping = "", False
            if not skipping:
                pending += rest
                if len(pending) >= READ_BYTES:
                    yield pending[:READ_BYTES]
                    pending, skipping = "", True
        if pending:
            yield pending

    def _chunks(self) -> Iterator[bytes]:
        read = getattr(self.stream, "read1", self.stream.read)  # what has arrived, not a full chunk: pipes stream
        total = 0
        while total < self.limit:
            data = read(min(CHUNK, self.limit - total))
            if not data:
                return
            total += len(data)
            yield data
        if read(1):
            self.cut_at = total

    def _texts(self) -> Iterator[str]:
        chunks = self._chunks()
        head = b""
        for data in chunks:
            head += data
            if len(head) >= 4:  # a BOM, and two characters of UTF-16
                break
        decoder = codecs.getincrementaldecoder(encoding_of(head))("replace")
        yield decoder.decode(head)
        for data in chunks:
            yield decoder.decode(data)
        yield decoder.decode(b"", final=True)


def lines_of(stream: IO[bytes], limit: int = MAX_LOG_BYTES) -> LogLines:
    """The lines of a log from a byte stream (a file, standard input), read up to `limit` bytes."""
    return LogLines(stream, limit)


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
    cut_at: int | None = None  # bytes read when the log was longer than MAX_LOG_BYTES

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
        name = frameworks.framework(self.framework).display_name
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
            "cut_at_bytes": self.cut_at,
        }


def explain(lines: Iterable[str], options: ExplainOptions, source: str = "-") -> Explanation:
    """Read a log, then diagnose what it and the options reveal (and say where a log too long was cut)."""
    k = Knowledge.load()
    named = tuple(cc for name in options.gpus if (cc := k.gpu_compute_capability(name)))
    reading = read_log(lines, k, Known(options.framework, options.version, capabilities=named))
    revealed = reading.revealed
    fw = frameworks.framework(reading.framework(Known(options.framework)))
    framework = fw.name
    version = options.version or revealed.versions.get(framework)
    build = fw.build(k, version, fw.gpu_variant()) if version else None
    # The CUDA runtime it runs, as plan reckons it; without a known release, the CUDA the log says is installed.
    cuda = runtime_cuda(build, fw.gpu_variant(), k) if build else None
    # Else the CUDA its version says it was built with (+cu118), else the CUDA the log says is installed.
    stated = revealed.build_cuda[0] if revealed.build_cuda else None
    build_cuda = str(cuda) if cuda else stated or next((text for text, _ in revealed.cuda), None)
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
    # Errors first (each in the rules' root-cause order): a cause the log proves before what the data predicts.
    found = sorted(diagnose(Facts(probe=probe, in_container=False, log_reading=reading)), key=_severity_rank)
    found = with_install_hint(found, fw, driver, gpus, revealed.python, k)
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
        oldest, newest = fw.known(k)
        notes.append(
            f"{fw.display_name} {version} is not in envcheck's data (it knows {oldest}–{newest}): what it "
            "was built with is unknown, so only the log's own messages count"
        )
    cut_at = lines.cut_at if isinstance(lines, LogLines) else None
    if cut_at is not None:
        notes.append(
            f"the log was cut at {cut_at} bytes: explain reads no more of one log, so a cause written only after "
            "that is not seen"
        )
    return Explanation(source, framework, version, read, found, reading, in_use, notes, cut_at)


SEVERITY_ORDER = (Severity.ERROR, Severity.WARNING, Severity.INFO)


def _severity_rank(diagnosis: Diagnosis) -> int:
    severity = diagnosis.severity
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


def format_text(found: Explanation) -> str:
    """Verdict first, then each cause with the lines that prove it and the fix, then what the log revealed."""
    out = [found.verdict, ""]
    for d in found.diagnoses:
        out.append(f"[{d.severity}] {d.code}: {d.summary}")
        out += [f"    evidence: {e}" for e in d.evidence]
        out.append(f"    fix: {d.fix}")
    read = found.read
    unknown = f"(version not in the log; give --{found.framework})"
    facts = [f"{frameworks.framework(found.framework).display_name} {found.version or unknown}"]
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
