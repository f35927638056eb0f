"""The stand-in's process as the lab daemons' parent, so that none lingers as a zombie."""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time
from pathlib import Path

_REAPABLE = {"etcd", "dockerd", "containerd", "containerd-shim", "runc", "docker-proxy", "sleep"}
_reaper_started = False


def become_subreaper() -> None:
    """Adopt the lab's orphaned daemons and reap them when they exit.

    hostops starts daemons detached; once it exits they are re-parented to PID 1, and on
    machines whose PID 1 does not reap (containers, this CI) they linger as zombies. Marking
    this process as a child subreaper makes it their parent instead, and a thread reaps the
    known daemon names only, never the children that ``subprocess`` waits for itself.
    """
    global _reaper_started
    if _reaper_started:
        return
    _reaper_started = True
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    threading.Thread(target=_reap, name="standin-reaper", daemon=True).start()


def reap_now() -> None:
    """Reap, now, every adopted daemon that has exited: the end of a destroy calls it, so that
    a member killed by its last verbs is gone when the destroy returns, not up to one round of
    the reaper's thread later (a caller that looks for leftovers at once would see a zombie)."""
    me = os.getpid()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z" and int(fields[1]) == me and comm in _REAPABLE:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(p.name), os.WNOHANG)


def _reap() -> None:
    while True:
        reap_now()
        time.sleep(0.3)
