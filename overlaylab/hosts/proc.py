"""Processes and files on this machine: run, wait, spawn, stop, and the pid checks."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from overlaylab.errors import HostCommandError, LabError
from overlaylab.netrule import RouteGuard

_quiet = False


def log(msg: str) -> None:
    if not _quiet:
        print(msg, flush=True)


def set_quiet(quiet: bool = True) -> None:
    """Silence ``log`` (the benchmark keeps its table readable)."""
    global _quiet
    _quiet = quiet


def run(
    argv: Sequence[str],
    check: bool = True,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; ``env`` is added to this process's environment."""
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    if check and proc.returncode != 0:
        raise HostCommandError(f"{argv[0]} failed", argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def wait_for(what: str, probe: Callable[[], bool], timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pid_of(pidfile: Path, marker: str) -> int | None:
    """The pid in ``pidfile`` if that process is alive and its command line names ``marker``."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if alive(pid) and any(marker in a for a in cmdline(pid)):
        return pid
    return None


def stop(pid: int, name: str, grace: float) -> None:
    kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        # etcd may ignore SIGTERM once its peers are gone; dockerd may hang on a dead shim.
        log(f"{name} (pid {pid}) ignored SIGTERM for {grace:.0f}s: killing it")
        kill(pid, signal.SIGKILL)
        wait_for(f"{name} (pid {pid}) to exit", lambda: not alive(pid), 10)


def spawn(argv: Sequence[str], logfile: Path, tmpdir: Path | None = None) -> int:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if tmpdir is not None:
        # containerd dumps goroutine stacks to $TMPDIR when signalled: keep them in the
        # host's own dir, which teardown removes, not in this machine's /tmp.
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def log_error(logfile: Path) -> str:
    """Why a daemon died, from its log: its last error-level line, else its last line that is
    no info or warning (Docker's log starts with deprecation warnings that would otherwise
    lead the message), else its tail."""
    try:
        text = logfile.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    bad = [ln for ln in text if re.search(r'level=(error|fatal)|"level":"(error|fatal)"', ln)]
    # dockerd prints some fatal errors bare ("Unable to get the full path to root ..."): the
    # last line that is not a leveled info or warning.
    bare = [
        ln
        for ln in text
        if ln.strip() and not re.search(r'level=(debug|info|warn)|"level":"(debug|info|warn)', ln)
    ]
    return bad[-1] if bad else bare[-1] if bare else log_tail(logfile)


def log_tail(logfile: Path, lines: int = 5) -> str:
    try:
        return "\n".join(logfile.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def tcp_open(address: str, port: int, guard: RouteGuard | None) -> bool:
    """Does ``address:port`` accept a connection? Lab addresses are route-checked first."""
    if guard is not None:
        guard.check(address)
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def remove_if_empty(d: Path) -> None:
    """Remove a host's dir, then its lab's and the state root, as far as they are empty."""
    for p in (d, d.parent, d.parent.parent):
        try:
            p.rmdir()
        except OSError:
            return


#: The verbs that make or unmake a host's state. On one host they never overlap in a run (each
#: waits for the one before it), so one still running is a step in flight of an interrupted
#: run (its engine was killed; the verb goes on, an orphan).
LIFECYCLE = frozenset({"host-up", "host-down", "etcd-up", "etcd-down", "docker-up", "docker-down"})


def _started(pid: int) -> int:
    """The process's start time, in clock ticks since boot (/proc/<pid>/stat field 22)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _ancestors(pid: int) -> set[int]:
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return seen


def earlier_lifecycle(host: tuple[str, str] | None, me: int | None = None) -> list[int]:
    """Lifecycle verbs on the same host (``host`` is a flag and its value, e.g. ("--netns",
    "seed-docker-node1"); None on a machine that is one host) started before this process,
    other than its own ancestors."""
    me = me or os.getpid()
    mine, since = _ancestors(me), _started(me)
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) in mine:
            continue
        argv = cmdline(int(p.name))
        if "overlaylab.hostops" not in argv:
            continue
        rest = argv[argv.index("overlaylab.hostops") + 1 :]
        pairs = set(itertools.pairwise(rest))
        same = host is None or host in pairs
        if rest[:1] and rest[0] in LIFECYCLE and same and _started(int(p.name)) <= since:
            found.append(int(p.name))
    return found


def wait_for_earlier_lifecycle(
    host: tuple[str, str] | None, what: str, timeout: float = 180
) -> None:
    """A step in flight of an interrupted run goes on after its engine was killed: wait for it
    (every verb is bounded), so that this one sees the host as that one leaves it."""
    pids = earlier_lifecycle(host)
    if not pids:
        return
    log(f"{what}: waiting for a verb of an interrupted run on this host (pid {pids[0]})")
    wait_for(f"{what}: the verbs of an interrupted run", lambda: not earlier_lifecycle(host),
             timeout)  # fmt: skip
