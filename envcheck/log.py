"""Progress for people on stderr, so stdout stays free for machine-readable output.

On a terminal a live board shows one line per stack (queued, building step k/n, running, result, elapsed);
elsewhere (CI logs) every change is a plain timestamped line. Thread-safe: builds report from threads.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.RLock()
_board: Board | None = None


def is_tty() -> bool:
    return sys.stderr.isatty()


def columns() -> int:
    """The terminal's width ($COLUMNS first, as shells export it), so board lines never wrap."""
    try:
        return max(20, int(os.environ["COLUMNS"]))
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 80


def _stamp() -> str:
    return "" if is_tty() else time.strftime("%H:%M:%S ")


def info(message: str) -> None:
    with _lock:
        if _board is not None:
            _board.clear()
        print(f"{_stamp()}{message}", file=sys.stderr, flush=True)
        if _board is not None:
            _board.draw()


def warning(message: str) -> None:
    info(f"warning: {message}")


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class Board:
    """One live line per stack on a terminal; off a terminal, a line per change (heartbeats rate-limited)."""

    HEARTBEAT = 30.0

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.width = max((len(n) for n in names), default=0)
        self.state = dict.fromkeys(names, "queued")
        self.started: dict[str, float] = {}
        self.last_plain: dict[str, tuple[str, float]] = {}
        self.drawn = 0

    def set(self, name: str, text: str, heartbeat: bool = False) -> None:
        """Show a stack's state; heartbeat=True marks chatty updates that plain logs show only now and then."""
        with _lock:
            self.started.setdefault(name, time.monotonic())
            self.state[name] = text
            if is_tty():
                self.clear()
                self.draw()
                return
            previous, when = self.last_plain.get(name, ("", 0.0))
            if heartbeat and time.monotonic() - when < self.HEARTBEAT and previous:
                return
            self.last_plain[name] = (text, time.monotonic())
            print(f"{_stamp()}[{name}] {text} ({self.elapsed(name)})", file=sys.stderr, flush=True)

    def elapsed(self, name: str) -> str:
        return format_seconds(time.monotonic() - self.started[name]) if name in self.started else "-"

    def clear(self) -> None:
        if self.drawn and is_tty():
            sys.stderr.write(f"\033[{self.drawn}F\033[J")
            self.drawn = 0

    def draw(self) -> None:
        if not is_tty():
            return
        width = columns() - 1  # one short of the edge: a full-width line would wrap on some terminals
        for name in self.names:
            line = f"{name:<{self.width}}  {self.elapsed(name):>7}  {self.state[name]}"
            sys.stderr.write(line[:width] + "\n")
        sys.stderr.flush()
        self.drawn = len(self.names)


@contextmanager
def board(names: list[str]) -> Iterator[Board]:
    """The live board for the duration of a matrix run; log.info prints above it."""
    global _board
    with _lock:
        _board = Board(names)
        _board.draw()
    try:
        yield _board
    finally:
        with _lock:
            _board = None


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
