"""A verb of an interrupted run goes on after its engine was killed (an orphan): the next
lifecycle verb on the same host waits for it, and only for it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def _orphan(seconds: float, *argv: str) -> subprocess.Popen[bytes]:
    """A process whose command line reads as a hostops verb (it only sleeps)."""
    code = f"import time; time.sleep({seconds})"
    return subprocess.Popen([sys.executable, "-c", code, "overlaylab.hostops", *argv])


def _later(code: str) -> str:
    """``code`` in a process started now (after the orphan), as the next verb would be."""
    res = subprocess.run(
        [sys.executable, "-c", f"from overlaylab.hosts.proc import *; {code}"],
        capture_output=True, text=True, cwd=PROJECT, timeout=60, check=True,
    )  # fmt: skip
    return res.stdout.strip()


def test_a_lifecycle_verb_on_the_same_host_is_found_and_waited_for() -> None:
    p = _orphan(2, "etcd-down", "--name", "n1", "--netns", "lab-n1")
    try:
        time.sleep(0.3)
        found = _later("print(earlier_lifecycle(('--netns', 'lab-n1')))")
        assert json.loads(found) == [p.pid]
        assert json.loads(_later("print(earlier_lifecycle(('--netns', 'lab-n2')))")) == []
        _later("wait_for_earlier_lifecycle(('--netns', 'lab-n1'), 'etcd-up', timeout=30)")
        assert p.poll() is not None  # the wait ended because the orphan did
    finally:
        p.kill()
        p.wait()


def test_other_verbs_are_not_waited_for() -> None:
    p = _orphan(5, "serf-mesh", "--netns", "lab-n1")
    try:
        time.sleep(0.3)
        assert json.loads(_later("print(earlier_lifecycle(('--netns', 'lab-n1')))")) == []
    finally:
        p.kill()
        p.wait()
