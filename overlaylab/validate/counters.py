"""Silent faults: counters that should not move while the validator runs.

Read once before the check groups start and once after they end (:func:`read`, then
:func:`compare`); a check fails when a counter moved in between, naming the counter, the host
and the delta (the daemon's error lines are reported beside them):

- ``silent.vxlan-errors``: rx/tx errors (failed) and drops (reported: a new sandbox's device
  drops frames in ordinary operation) of every VXLAN interface in the host's
  overlay sandboxes (Docker 20.10 keeps them at ``<exec-root>/netns/<epoch>-<network id>``
  cut to 12 characters, :mod:`overlaylab.sandboxkey`; a local lab's exec-root is ``x``
  beside the daemon's socket, an ssh host's the default ``/var/run/docker``), read with
  ``ip -s -j link show type vxlan`` inside each sandbox;
- ``silent.udp-errors``: ``Udp: InErrors`` and ``RcvbufErrors`` of ``/proc/net/snmp`` in the
  host's namespace (the VXLAN and serf sockets live there, not in the sandbox);
- ``silent.dockerd-errors`` (reported, never failed: ordinary operation logs such lines too):
  ``level=error`` lines the daemon logged after the first reading
  (a local lab: ``docker.log`` in the host's directory, read from its size at the start; an
  ssh host: ``journalctl -u docker --since @<its clock at the start>``), less the lines known
  to come from the validator's own probes (:data:`BENIGN`).

A counter that this process cannot read (a local lab without root) is a record saying so
with ok=True, reported, never silently absent; one whose reading fails (the namespace or the
log is gone, SSH refused) is a failure naming why. None of the
validator's probes moves these counters: its VXLAN probe lacks the I flag and is dropped by
the VXLAN socket before any device counter (see :mod:`.probes`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from overlaylab import sandboxkey
from overlaylab.errors import LabError
from overlaylab.validate.records import Lab, Result, _r

VXLAN = "silent.vxlan-errors"
UDP = "silent.udp-errors"
DOCKERD = "silent.dockerd-errors"
CHECKS = (VXLAN, UDP, DOCKERD)

#: The ssh hosts' exec-root (the daemon runs with Docker's default there).
SSH_SANDBOX_DIR = "/var/run/docker/netns"
VXLAN_STATS = (("rx", "errors"), ("rx", "dropped"), ("tx", "errors"), ("tx", "dropped"))
UDP_FIELDS = ("InErrors", "RcvbufErrors")
ERROR_LINE = re.compile(r"\blevel=error\b")
#: Error-level lines of dockerd that every validation produces, and why (seen in a lab's logs).
BENIGN: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"cleanup: failed to delete container from containerd: no such container"),
        "a container whose start was refused (the name-rule probe)",
    ),
    (
        re.compile(r"stream copy error: read /proc/self/fd/\d+: file already closed"),
        "an exec's output stream closing (docker exec)",
    ),
)


class Unreadable(LabError):
    """A counter this transport or this process cannot read (reported, not failed)."""


#: Runs argv (locally) and returns its stdout; raises LabError with the reason. Replaced by
#: the unit tests.
Runner = Callable[[list[str]], str]


def run(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        raise LabError(f"{argv[0]}: {e}") from None
    if p.returncode != 0:
        tail = (p.stderr.strip() or p.stdout.strip()).splitlines()
        raise LabError(f"{' '.join(argv[:3])}... exit {p.returncode}: {tail[-1] if tail else ''}")
    return p.stdout


@dataclass
class Reading:
    """One reading of every counter: values by (check, host) -> counter -> value, why a
    (check, host) could not be read, and where each daemon's log stood."""

    values: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    unreadable: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (check, host) whose reading failed (not merely unreadable here): a failure.
    failed: set[tuple[str, str]] = field(default_factory=set)
    log_marks: dict[str, int] = field(default_factory=dict)  # host -> offset (local) or epoch


def ssh_argv(lab: Lab, host: str, command: str) -> list[str]:
    """``ssh`` to an ssh stack's host (as the validator's underlay check reaches it)."""
    url = urlsplit(str(next(h["dockerHost"] for h in lab.hosts if h["name"] == host)))
    if lab.guard is not None:
        lab.guard.check(lab.address(host))
    user = url.username or "root"
    return ["ssh", *lab.ssh_opts, "-p", str(url.port or 22), f"{user}@{url.hostname}", command]


def host_dir(lab: Lab, host: str) -> str | None:
    """A local lab's host directory (the daemon's socket, its logs), else None."""
    url = str(next(h["dockerHost"] for h in lab.hosts if h["name"] == host))
    if not url.startswith("unix://"):
        return None
    return os.path.dirname(url[len("unix://") :])


def _ssh(lab: Lab) -> bool:
    return lab.spec["lab"].get("transport", "local") == "ssh"


def parse_vxlan(text: str, where: str) -> dict[str, int]:
    """``ip -s -j link show type vxlan``: ``<where>/<ifname> <rx|tx>_<errors|dropped>``."""
    out: dict[str, int] = {}
    for link in json.loads(text or "[]"):
        stats = link.get("stats64") or link.get("stats") or {}
        for direction, what in VXLAN_STATS:
            value = (stats.get(direction) or {}).get(what)
            if value is not None:
                out[f"{where}/{link.get('ifname', '?')} {direction}_{what}"] = int(value)
    return out


def parse_snmp_udp(text: str) -> dict[str, int]:
    """``/proc/net/snmp``'s ``Udp:`` header and value lines: the fields of :data:`UDP_FIELDS`."""
    rows = [ln.split()[1:] for ln in text.splitlines() if ln.startswith("Udp:")]
    if len(rows) < 2:
        raise LabError("no Udp: lines in /proc/net/snmp")
    table = dict(zip(rows[0], rows[1], strict=False))
    return {f"Udp {k}": int(table[k]) for k in UDP_FIELDS if k in table}


def vxlan_counters(lab: Lab, host: str, runner: Runner = run) -> dict[str, int]:
    if _ssh(lab):
        script = (
            f'for f in {SSH_SANDBOX_DIR}/*-*; do [ -e "$f" ] || continue; '
            'echo "== ${f##*/}"; nsenter --net="$f" ip -s -j link show type vxlan; done'
        )
        text = runner(ssh_argv(lab, host, script))
        out: dict[str, int] = {}
        for block in text.split("== ")[1:]:
            name, _, body = block.partition("\n")
            if sandboxkey.parse(name.strip()) is not None:
                out.update(parse_vxlan(body.strip(), name.strip()))
        return out
    where = lab.sandbox_dir(host)
    if where is None:
        raise Unreadable("the sandboxes of a local lab are read as root only")
    found: dict[str, int] = {}
    names = sorted(os.listdir(where))  # no directory: the daemon never ran (an OSError)
    for name in (n for n in names if sandboxkey.parse(n) is not None):
        argv = ["nsenter", f"--net={os.path.join(where, name)}", "ip", "-s", "-j", "link"]
        try:
            found.update(parse_vxlan(runner([*argv, "show", "type", "vxlan"]), name))
        except LabError:
            # Docker removes a network's sandbox when its last container there leaves, and
            # its file can outlive the namespace ("reassociate to namespace ... failed", seen
            # in CI on day-two steps): a sandbox going away, compared in neither reading.
            continue
    return found


def udp_counters(lab: Lab, host: str, runner: Runner = run) -> dict[str, int]:
    if _ssh(lab):
        return parse_snmp_udp(runner(ssh_argv(lab, host, "cat /proc/net/snmp")))
    if not lab.local:
        raise Unreadable("a local lab's host namespace is read as root only")
    return parse_snmp_udp(
        runner(["nsenter", f"--net={lab.host_netns(host)}", "cat", "/proc/net/snmp"])
    )


def log_mark(lab: Lab, host: str, runner: Runner = run) -> int:
    """Where the daemon's log stands: docker.log's size, or the ssh host's clock (seconds)."""
    if _ssh(lab):
        return int(runner(ssh_argv(lab, host, "date +%s")).strip())
    where = host_dir(lab, host)
    if where is None:
        raise Unreadable("no daemon log on this machine (the daemon is not a local lab's)")
    return os.path.getsize(os.path.join(where, "docker.log"))


def new_error_lines(lab: Lab, host: str, mark: int, runner: Runner = run) -> list[str]:
    """The daemon's ``level=error`` lines logged since ``mark`` (see :func:`log_mark`)."""
    if _ssh(lab):
        text = runner(
            ssh_argv(lab, host, f"journalctl -u docker --since @{mark} -o cat --no-pager")
        )
    else:
        path = os.path.join(str(host_dir(lab, host)), "docker.log")
        with open(path, "rb") as f:
            f.seek(mark if mark <= os.path.getsize(path) else 0)  # a rotated log: all of it
            text = f.read().decode(errors="replace")
    return [ln for ln in text.splitlines() if ERROR_LINE.search(ln)]


def _try(reading: Reading, check: str, host: str, fn: Callable[[], dict[str, int]]) -> None:
    try:
        reading.values[(check, host)] = fn()
    except (LabError, OSError, ValueError, KeyError) as e:
        _unread(reading, check, host, e)


def _unread(reading: Reading, check: str, host: str, e: Exception) -> None:
    reading.unreadable[(check, host)] = str(e) or type(e).__name__
    if not isinstance(e, Unreadable):
        reading.failed.add((check, host))


def read(lab: Lab, runner: Runner = run, marks: bool = True) -> Reading:
    """Every counter of every host (in parallel); ``marks``: also where each log stands (the
    first reading only). Never raises: what cannot be read is kept with its reason."""
    reading = Reading()

    def one(host: str) -> None:
        _try(reading, VXLAN, host, lambda: vxlan_counters(lab, host, runner))
        _try(reading, UDP, host, lambda: udp_counters(lab, host, runner))
        if marks:
            try:
                reading.log_marks[host] = log_mark(lab, host, runner)
            except (LabError, OSError, ValueError) as e:
                _unread(reading, DOCKERD, host, e)

    lab.map(one, [str(h["name"]) for h in lab.hosts])
    return reading


def benign(line: str) -> str | None:
    """Why an error line is expected (one of :data:`BENIGN`), or None."""
    return next((why for pattern, why in BENIGN if pattern.search(line)), None)


def compare(lab: Lab, before: Reading, after: Reading, runner: Runner = run) -> list[Result]:
    """One record per check and host: the counters that moved between the two readings with
    their delta (a failure), or that none did, or why they could not be read."""
    out: list[Result] = []
    for host in (str(h["name"]) for h in lab.hosts):
        for check in (VXLAN, UDP):
            key = (check, host)
            why = before.unreadable.get(key) or after.unreadable.get(key)
            if why:
                bad = key in before.failed or key in after.failed
                out.append(_r(check, host, "no counter moved", f"not read: {why}", not bad))
                continue
            old, new = before.values.get(key, {}), after.values.get(key, {})
            if not new:
                out.append(_r(check, host, "no counter moved", "no overlay sandbox to read", True))
                continue
            moved = [
                f"{name} +{new[name] - old[name]}"
                for name in sorted(new)
                if name in old and new[name] != old[name]
            ]
            # A VXLAN device's drops move in ordinary operation: a new sandbox's device drops
            # the frames it has no fdb entry for (a starting container's multicast; seen as
            # "tx_dropped +1" in a lab right after a container's restart): reported, not
            # failed. Its errors, and UDP's, fail.
            failing = [m for m in moved if "_dropped " not in m]
            if failing:
                out.append(_r(check, host, "no counter moved", ", ".join(moved), False))
            elif moved:
                said = f"{', '.join(moved)} (drops: reported, not a failure)"
                out.append(_r(check, host, "no counter moved", said, True))
            else:
                seen = f"{len([n for n in new if n in old])} counters unchanged"
                out.append(_r(check, host, "no counter moved", seen, True))
        out.append(_dockerd(lab, host, before, runner))
    return out


def _dockerd(lab: Lab, host: str, before: Reading, runner: Runner) -> Result:
    expected = "no level=error line"
    if host not in before.log_marks:
        why = before.unreadable.get((DOCKERD, host), "no mark")
        ok = (DOCKERD, host) not in before.failed
        return _r(DOCKERD, host, expected, f"not read: {why}", ok)
    try:
        lines = new_error_lines(lab, host, before.log_marks[host], runner)
    except (LabError, OSError, ValueError) as e:
        return _r(DOCKERD, host, expected, f"not read: {e}", isinstance(e, Unreadable))
    unexpected = [ln for ln in lines if benign(ln) is None]
    known = len(lines) - len(unexpected)
    tail = f" ({known} expected from the validator's probes)" if known else ""
    if unexpected:
        # Reported, not failed: Docker 20.10 logs error-level lines in ordinary operation
        # (seen in CI on 2026-12-02 during day-two steps: "Failed to receive from netlink:
        # interrupted system call"), so a line alone does not say the lab is broken.
        first = _message(unexpected[0])
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        said = f"+{len(unexpected)}: {first}{more}{tail} (reported, not a failure)"
        return _r(DOCKERD, host, expected, said, True)
    return _r(DOCKERD, host, expected, f"no level=error line{tail}", True)


def _message(line: str) -> str:
    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
    text = m.group(1) if m else line
    with contextlib.suppress(Exception):
        text = text.replace("\\n", " ").replace("\\t", " ")
    return text[:200]
