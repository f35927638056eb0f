"""What bounds an ``up``: the chain of steps that ended it (its critical path), and the floor
this machine allows (the CPU the up's processes used divided by the cores).

The critical path is read from the up's steps (``standin.plan.Step``: when each started, how
long it took) and the resource graph's edges (each record's dependencies, parent and
provider, as the engine orders them): the step that ended last, then the dependency of it
that ended last, and so on back to a step that waited on nothing. The wait before a step is
the time between its last dependency's end and its own start (for the first, the time from
the run's start): time spent in no step of the chain, e.g. in the program between
registrations.

The CPU is read from ``/proc``: this process and every descendant alive (``utime + stime``
and the ``cutime + cstime`` of the children each has reaped, ``/proc/<pid>/stat``), before
and after the up. The lab's daemons (etcd, dockerd, containerd, the shims, the containers)
are this process's descendants (``standin.become_subreaper`` adopts the detached ones and
reaps them), and the step processes (ip, nsenter, docker, ...) are reaped by this process
or by a descendant, so their time lands in a ``cutime``. Kernel work not charged to a
process (softirqs of the veths and the VXLAN device) is not counted: the floor is a lower
bound. The whole machine's busy share (``/proc/stat``) over the same interval is printed
beside it, since other work on the machine takes cores from the lab.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

PROC = Path("/proc")


class StepLike(Protocol):
    """What is read of a ``standin.plan.Step``."""

    @property
    def urn(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def seconds(self) -> float: ...
    @property
    def started(self) -> float: ...


class RecordLike(Protocol):
    """What is read of a ``standin.state.Record``."""

    @property
    def urn(self) -> str: ...
    @property
    def deps(self) -> Sequence[str]: ...
    @property
    def parent(self) -> str: ...
    @property
    def provider(self) -> str: ...


def edges(records: Iterable[RecordLike]) -> dict[str, set[str]]:
    """Each resource's dependencies as the engine orders it: its dependencies (depends_on and
    property dependencies), its parent and its provider (the urn, without the ``::id``)."""
    out: dict[str, set[str]] = {}
    for r in records:
        e = {*r.deps, r.parent, r.provider.rsplit("::", 1)[0] if r.provider else ""}
        e.discard("")
        e.discard(r.urn)
        out[r.urn] = e
    return out


@dataclass(frozen=True)
class Link:
    """One step of the critical path."""

    name: str
    type: str
    started: float
    seconds: float
    wait: float  # from the end of the link before it (or the run's start) to its start

    @property
    def ended(self) -> float:
        return self.started + self.seconds


def critical_path(steps: Sequence[StepLike], deps: Mapping[str, Iterable[str]]) -> list[Link]:
    """The chain of steps that bounds the run, first step first: the step that ended last,
    then, among its dependencies that ran, the one that ended last, and so on."""
    ran = {s.urn: s for s in steps if s.kind != "same"}
    if not ran:
        return []

    def end(s: StepLike) -> float:
        return s.started + s.seconds

    chain: list[StepLike] = []
    cur: StepLike | None = max(ran.values(), key=end)
    seen: set[str] = set()
    while cur is not None and cur.urn not in seen:
        seen.add(cur.urn)
        chain.append(cur)
        before = [ran[d] for d in deps.get(cur.urn, ()) if d in ran and d not in seen]
        cur = max(before, key=end) if before else None
    chain.reverse()
    links = []
    prev_end = 0.0
    for s in chain:
        links.append(Link(s.name, s.type, s.started, s.seconds, max(0.0, s.started - prev_end)))
        prev_end = end(s)
    return links


def path_lines(links: Sequence[Link], wall: float | None = None) -> list[str]:
    """The chain as a table: start, duration, the wait before it; then the totals."""
    lines = ["    start    took    wait  type           step"]
    for k in links:
        lines.append(
            f"  {k.started:7.2f} {k.seconds:6.2f}s {k.wait:6.2f}s  "
            f"{k.type.rsplit(':', 1)[-1]:<14} {k.name}"
        )
    if links:
        busy = sum(k.seconds for k in links)
        waits = sum(k.wait for k in links)
        tail = ""
        if wall is not None:
            tail = f"; after its last step {max(0.0, wall - links[-1].ended):.2f}s to the up's end"
        lines.append(
            f"  {len(links)} steps, {busy:.2f}s in steps, {waits:.2f}s waiting between them,"
            f" ending at {links[-1].ended:.2f}s{tail}"
        )
    return lines


# --- CPU ---------------------------------------------------------------------------------------


def _stat(text: str) -> tuple[int, int, int]:
    """(ppid, utime + stime, cutime + cstime) in clock ticks, from a ``/proc/<pid>/stat``."""
    f = text[text.rfind(")") + 2 :].split()
    # fields after the comm, from state (3): ppid is 4, utime 14, stime 15, cutime 16, cstime 17
    return int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14])


def tree_ticks(pid: int, proc: Path = PROC) -> int:
    """CPU ticks of ``pid`` and every live descendant, with the children each has reaped."""
    table: dict[int, tuple[int, int, int]] = {}
    for p in proc.iterdir():
        if not p.name.isdigit():
            continue
        try:
            table[int(p.name)] = _stat((p / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    kids: dict[int, list[int]] = {}
    for q, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(q)
    total, todo, seen = 0, [pid], set()
    while todo:
        q = todo.pop()
        if q in seen or q not in table:
            continue
        seen.add(q)
        total += table[q][1] + table[q][2]
        todo.extend(kids.get(q, []))
    return total


#: (text in the command line, what the process is), first match wins; else its comm
LABELS = (
    ("overlaylab.hostops names-keep", "names keepers"),
    ("overlaylab.hostops", "hostops verbs"),
    ("overlaylab.validate", "validator"),
    ("containerd-shim", "containerd-shims"),
)


def label(cmdline: str, comm: str) -> str:
    """What a process is, for the CPU by kind: its role in the lab or its command's name."""
    for text, name in LABELS:
        if text in cmdline:
            return name
    return comm


def tree_table(pid: int, proc: Path = PROC) -> dict[int, tuple[str, int, int]]:
    """``pid`` and every live descendant: (kind, own ticks, reaped children's ticks)."""
    table: dict[int, tuple[int, int, int, str]] = {}
    for p in proc.iterdir():
        if not p.name.isdigit():
            continue
        try:
            text = (p / "stat").read_text()
            ppid, own, reaped = _stat(text)
            comm = text[text.find("(") + 1 : text.rfind(")")]
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmd = ""
            table[int(p.name)] = (ppid, own, reaped, label(cmd, comm))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    kids: dict[int, list[int]] = {}
    for q, row in table.items():
        kids.setdefault(row[0], []).append(q)
    out: dict[int, tuple[str, int, int]] = {}
    todo = [pid]
    while todo:
        q = todo.pop()
        if q in out or q not in table:
            continue
        _, own, reaped, kind = table[q]
        out[q] = ("this process (engine and program)" if q == pid else kind, own, reaped)
        todo.extend(kids.get(q, []))
    return out


def by_kind(
    before: dict[int, tuple[str, int, int]], after: dict[int, tuple[str, int, int]], hz: int
) -> dict[str, float]:
    """Seconds of CPU over the interval by kind of process: each live process's own, and the
    children it reaped meanwhile under "reaped by <kind>" (short-lived commands: a shell, a
    verb, the docker CLI, a probe). A process that ended unreaped by the tree is not seen."""
    out: dict[str, float] = {}
    for q, (kind, own, reaped) in after.items():
        was = before.get(q)
        d_own = own - (was[1] if was else 0)
        d_reaped = reaped - (was[2] if was else 0)
        if d_own > 0:
            out[kind] = out.get(kind, 0.0) + d_own / hz
        if d_reaped > 0:
            key = f"reaped by {kind}"
            out[key] = out.get(key, 0.0) + d_reaped / hz
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def machine_ticks(proc: Path = PROC) -> tuple[int, int]:
    """(busy, total) ticks of all cores since boot, from ``/proc/stat``'s ``cpu`` line
    (idle and iowait are not busy)."""
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:]]
            # user nice system idle iowait irq softirq steal (guest counted in user)
            total = sum(v[:8])
            return total - v[3] - v[4], total
    raise ValueError(f"no cpu line in {proc / 'stat'}")


@dataclass(frozen=True)
class Cpu:
    """The CPU of one measured interval."""

    seconds: float  # of this process and its descendants
    wall: float
    cores: int
    machine_busy: float | None  # the whole machine's busy share of its cores, 0..1
    by: tuple[tuple[str, float], ...] = ()  # seconds by kind of process, most first

    @property
    def floor(self) -> float:
        """The least wall time this CPU needs on this machine: every core busy all along."""
        return self.seconds / self.cores

    def line(self) -> str:
        other = "" if self.machine_busy is None else f"; the machine {self.machine_busy:.0%} busy"
        kinds = ", ".join(f"{k} {v:.1f}s" for k, v in self.by[:8])
        return (
            f"wall {self.wall:.2f}s; CPU {self.seconds:.2f}s of the lab's processes on"
            f" {self.cores} cores: floor {self.floor:.2f}s{other}"
            + (f"; by kind: {kinds}" if kinds else "")
        )


class CpuMeter:
    """``start()`` before, ``stop()`` after: the CPU of this process and its descendants."""

    def __init__(self, proc: Path = PROC, pid: int | None = None, cores: int | None = None):
        self.proc = proc
        self.pid = os.getpid() if pid is None else pid
        self.cores = cores or os.cpu_count() or 1
        self.hz = os.sysconf("SC_CLK_TCK")
        self._t0 = 0.0
        self._ticks0 = 0
        self._machine0: tuple[int, int] | None = None
        self._table0: dict[int, tuple[str, int, int]] = {}

    def _machine(self) -> tuple[int, int] | None:
        try:
            return machine_ticks(self.proc)
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._ticks0 = tree_ticks(self.pid, self.proc)
        self._table0 = tree_table(self.pid, self.proc)
        self._machine0 = self._machine()

    def stop(self) -> Cpu:
        ticks = tree_ticks(self.pid, self.proc) - self._ticks0
        kinds = by_kind(self._table0, tree_table(self.pid, self.proc), self.hz)
        wall = time.monotonic() - self._t0
        m1, m0 = self._machine(), self._machine0
        busy = None
        if m0 is not None and m1 is not None and m1[1] > m0[1]:
            busy = (m1[0] - m0[0]) / (m1[1] - m0[1])
        return Cpu(max(0, ticks) / self.hz, wall, self.cores, busy, tuple(kinds.items()))
