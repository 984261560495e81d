"""Progress for people on stderr, so stdout stays free for machine-readable output.

On a terminal, status lines overwrite each other; elsewhere (CI logs) each line is timestamped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def is_tty() -> bool:
    return sys.stderr.isatty()


def info(message: str) -> None:
    _clear_status()
    stamp = "" if is_tty() else time.strftime("%H:%M:%S ")
    print(f"{stamp}{message}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    info(f"warning: {message}")


_status_shown = False


def status(message: str) -> None:
    """A short live line (e.g. the current build step); plain timestamped lines when not on a terminal."""
    global _status_shown
    if is_tty():
        width = 120
        sys.stderr.write("\r\033[K" + message[:width])
        sys.stderr.flush()
        _status_shown = True
    else:
        info(message)


def _clear_status() -> None:
    global _status_shown
    if _status_shown:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
        _status_shown = False


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


@contextmanager
def step(name: str) -> Iterator[None]:
    """Announce a step and report how long it took, also when it fails."""
    info(f"==> {name}")
    start = time.monotonic()
    try:
        yield
    except BaseException:
        info(f"<== {name}: failed after {format_seconds(time.monotonic() - start)}")
        raise
    info(f"<== {name}: done in {format_seconds(time.monotonic() - start)}")
