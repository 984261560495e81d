"""Progress for people: the live board on a real pseudo-terminal, plain lines elsewhere, steps with durations."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import textwrap

import pytest

from envcheck import log

BOARD_SCRIPT = textwrap.dedent(
    """
    from envcheck import log
    with log.board(["tf-2.15-cuda12", "tf-2.19-cuda12-a-long-stack-name"]) as board:
        board.set("tf-2.15-cuda12", "building step 3/7: RUN /opt/venv/bin/pip install 'tensorflow[and-cuda]==2.15.1'")
        log.info("a message printed above the board")
        board.set("tf-2.19-cuda12-a-long-stack-name", "cpu-only")
    """
)


def on_a_terminal(script: str, columns: int) -> str:
    """Run a script with stderr on a real pseudo-terminal of that width; what the terminal received."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns)}
    process = subprocess.Popen([sys.executable, "-c", script], stderr=follower, stdout=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the script has finished
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=30)
    os.close(leader)
    return b"".join(chunks).decode()


def test_board_redraws_in_place_within_the_terminal_width():
    screen = on_a_terminal(BOARD_SCRIPT, columns=60)
    lines = [re.sub(r"\x1b\[\d*[FJ]", "", line) for line in screen.replace("\r\n", "\n").split("\n")]
    assert all(len(line) <= 59 for line in lines), [line for line in lines if len(line) > 59]
    assert "\x1b[2F\x1b[J" in screen  # two board lines cleared and drawn again on each change
    assert any(line.startswith("tf-2.15-cuda12") and line.endswith("building step 3/") for line in lines)  # cut
    assert "a message printed above the board" in screen
    assert not re.search(r"^\d\d:\d\d:\d\d ", screen, re.M)  # no timestamps on a terminal
    last = [line for line in lines if line.startswith("tf-2.19-cuda12-a-long-stack-name")][-1]
    assert last.rstrip().endswith("cpu-only")


def test_board_off_a_terminal_prints_timestamped_lines_and_rate_limits_heartbeats(capsys: pytest.CaptureFixture):
    with log.board(["a", "b"]) as board:
        board.set("a", "building step 1/5: FROM debian")
        for n in range(5):
            board.set("a", f"building step 1/5: Collecting wheel {n}", heartbeat=True)
        board.set("b", "gpu")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2  # heartbeats only every 30 s once the stack has a line
    assert re.fullmatch(r"\d\d:\d\d:\d\d \[a\] building step 1/5: FROM debian \(\d+\.\ds\)", lines[0])
    assert re.fullmatch(r"\d\d:\d\d:\d\d \[b\] gpu \(\d+\.\ds\)", lines[1])


def test_step_reports_duration_also_on_failure(capsys: pytest.CaptureFixture):
    with pytest.raises(RuntimeError), log.step("probing"):
        raise RuntimeError("boom")
    err = capsys.readouterr().err
    assert "==> probing" in err and re.search(r"<== probing: failed after \d+\.\ds", err)


@pytest.mark.parametrize(("seconds", "shown"), [(4.26, "4.3s"), (59.9, "59.9s"), (61, "1m01s"), (3725, "62m05s")])
def test_durations_read_as_people_write_them(seconds: float, shown: str):
    assert log.format_seconds(seconds) == shown
