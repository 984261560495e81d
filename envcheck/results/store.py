"""The results store: one directory (results/ next to the matrix) that keeps what every run found.

- results/NAME.json: a stack's latest result on this host, what reruns reuse (results/hosts/HOST/NAME.json for each
  host of `--on`);
- results/records.jsonl: one JSON line per result, appended by every run, by `plan --save` and by
  `results import`; these lines travel between hosts;
- results/.lock: one writer at a time (matrix runs, builds, imports and table refreshes take turns).

Files are replaced atomically and record lines appended with a single write, so a crash or Ctrl-C never leaves
half a file. Records are read as untrusted input: a line that is not a valid record is skipped and named, as is
one longer than MAX_RECORD_BYTES (which ends that file: /dev/zero has no next line) and one stamped more than
FUTURE_SKEW ahead of this host's clock (it would be "newest" in every table for ever). No record is written or
read with a password or token in a URL of any of its strings (hosts.scrub).
"""

from __future__ import annotations

import datetime
import fcntl
import functools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from envcheck import log
from envcheck.inputs.hosts import scrub
from envcheck.results.model import SCHEMA, RecordError, Result, instant

RECORDS_FILE = "records.jsonl"
LOCK_FILE = ".lock"
MAX_RECORD_BYTES = 4 * 1024 * 1024  # a record is tens of KB; a longer line is not one (and must not fill memory)
FUTURE_SKEW = datetime.timedelta(days=1)  # clocks differ; a record further ahead than this is forged or broken


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; published files are readable like any other
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def lock(results_dir: Path) -> Iterator[None]:
    """One writer per results directory at a time: a second one waits (and says so) instead of interleaving."""
    results_dir.mkdir(parents=True, exist_ok=True)
    with (results_dir / LOCK_FILE).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"another envcheck run is using {results_dir}; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _scrubbed(value: Any) -> Any:
    """A record's JSON value with every URL in its strings redacted (an error message may echo a daemon's URL with
    its password, a log tail an index URL with its token); keys are left as they are."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    return value


def record_line(result: Result) -> str:
    return json.dumps(_scrubbed({**result.to_dict(), "record_schema": SCHEMA}), sort_keys=True) + "\n"


def append(path: Path, results: Iterable[Result]) -> None:
    """Record lines, each written with a single O_APPEND write so concurrent writers never interleave a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for result in results:
            os.write(fd, record_line(result).encode())
    finally:
        os.close(fd)


def save(results_dir: Path, result: Result, latest: Path | None = None) -> Path:
    """The stack's latest result (for reuse; in `latest`, a host's own directory, when given) and one more line in
    the records that travel."""
    path = (latest or results_dir) / f"{result.stack}.json"
    write_atomic(path, json.dumps(_scrubbed(result.to_dict()), indent=2, sort_keys=True) + "\n")
    append(results_dir / RECORDS_FILE, [result])
    return path


def host_dir(results_dir: Path, host: str) -> Path:
    """Where the latest results of one host of --on live (results/hosts/NAME/STACK.json)."""
    return results_dir / "hosts" / host


def load(results_dir: Path, stack: str) -> Result | None:
    """A stack's saved result, or None when there is none or it cannot be read (also when it is larger than a
    record can be: nothing is read without a cap)."""
    try:
        with (results_dir / f"{stack}.json").open("rb") as handle:
            raw = handle.read(MAX_RECORD_BYTES + 1)
        return Result.from_dict(json.loads(raw)) if len(raw) <= MAX_RECORD_BYTES else None
    except (OSError, ValueError, RecursionError):
        return None


def parse_line(raw: bytes, now: datetime.datetime | None = None) -> Result:
    """One record line, from any host and any version, its URLs redacted; RecordError says why it cannot be a
    result. `now` is this host's clock (a record stamped more than FUTURE_SKEW after it is refused)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 text (byte {exc.start + 1})") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise RecordError("nested too deeply to be a record") from None
    except ValueError as exc:
        raise RecordError(str(exc)) from None
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
        data = _scrubbed(data)
    except UnicodeEncodeError:
        raise RecordError("a string in it is not valid Unicode (a lone surrogate)") from None
    except RecursionError:
        raise RecordError("nested too deeply to be a record") from None
    result = Result.from_dict(data)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    moment = instant(result.timestamp)
    if moment is not None and moment > now + FUTURE_SKEW:
        raise RecordError(
            f"timestamp {result.timestamp[:40]!r} is in the future, more than {FUTURE_SKEW.days} day ahead of this "
            f"host's clock ({now:%Y-%m-%dT%H:%M}Z): it would be the newest record for ever"
        )
    return result


def read(sources: Iterable[Path]) -> tuple[list[Result], list[str]]:
    """Results from .jsonl files (or every .jsonl under a directory), read line by line; each unreadable line is
    named (FILE:LINE: skipped: why) and skipped, never fatal, and never costs the good lines before it (nor after
    it, unless it is longer than MAX_RECORD_BYTES: that ends its file, which may have no next line)."""
    results: list[Result] = []
    problems: list[str] = []
    now = datetime.datetime.now(datetime.timezone.utc)
    for source in sources:
        files = sorted(source.rglob("*.jsonl")) if source.is_dir() else [source]
        for file in files:
            try:
                with file.open("rb") as handle:
                    for number, line in enumerate(
                        iter(functools.partial(handle.readline, MAX_RECORD_BYTES + 1), b""), 1
                    ):
                        if len(line) > MAX_RECORD_BYTES and not line.endswith(b"\n"):
                            problems.append(
                                f"{file}:{number}: skipped: a line longer than {MAX_RECORD_BYTES // 2**20} MiB is not "
                                f"a record; the rest of {file} is not read"
                            )
                            break
                        if not line.strip():
                            continue
                        try:
                            results.append(parse_line(line, now))
                        except RecordError as exc:
                            problems.append(f"{file}:{number}: skipped: {exc}")
            except OSError as exc:
                problems.append(f"{file}: {exc.strerror or exc}")
    return results, problems


def merge(results: Iterable[Result]) -> list[Result]:
    """The newest result per (stack, host), by the moment it was measured (not by how its timestamp is spelt; one
    that is not a time is the oldest), the later one in the input on a tie, in a stable order."""
    newest: dict[tuple[str, str], Result] = {}
    for result in results:
        key = (result.stack, result.host.label)
        if key not in newest or result.moment >= newest[key].moment:
            newest[key] = result
    return [newest[k] for k in sorted(newest)]


def records_file(results_dir: Path) -> Path:
    return results_dir / RECORDS_FILE


def own_records(results_dir: Path) -> tuple[list[Result], list[str]]:
    path = records_file(results_dir)
    return read([path]) if path.exists() else ([], [])


def import_records(results_dir: Path, results: list[Result]) -> int:
    """Add other hosts' results to this directory's records, each at most once; returns how many were new."""
    with lock(results_dir):
        existing, _ = own_records(results_dir)
        seen = {record_line(r) for r in existing}
        new = []
        for result in results:
            line = record_line(result)
            if line not in seen:
                seen.add(line)
                new.append(result)
        append(records_file(results_dir), new)
    return len(new)
