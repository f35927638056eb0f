"""``standin.reaper.reap_now``: an exited daemon this process is the parent of is reaped at
once, not left a zombie until the reaper's next round (the end of every destroy calls it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from standin.executor import destroy
from standin.reaper import reap_now


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _zombie_sleep() -> int:
    """A child ``sleep`` that exits at once and that nothing else waits for."""
    pid = os.fork()
    if pid == 0:  # the child: become `sleep`, whose name the reaper knows
        try:
            os.execvp("sleep", ["sleep", "0"])
        finally:
            os._exit(127)
    deadline = time.monotonic() + 10
    while _state(pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _state(pid) == "Z", f"sleep {pid} did not exit: {_state(pid)}"
    return pid


def test_reap_now_reaps_an_exited_daemon_at_once() -> None:
    pid = _zombie_sleep()
    reap_now()
    assert _state(pid) is None, f"sleep {pid} is still {_state(pid)}"


def test_a_destroy_leaves_no_zombie_of_ours_behind() -> None:
    pid = _zombie_sleep()
    assert destroy([]) == []
    assert _state(pid) is None, f"sleep {pid} is still {_state(pid)}"
