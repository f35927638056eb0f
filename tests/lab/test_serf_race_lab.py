"""The unreachable-host flake, forced: a daemon whose first serf join fails is never retried.

Docker 20.10's overlay driver (libnetwork drivers/overlay/overlay.go, ``nodeJoin``) joins serf
through a ``sync.Once`` with exactly one neighbour, when store discovery reports hosts; on a
failure it only resets the Once, and discovery calls again only when a *new* host appears
in ``/docker/nodes``. A host whose join attempts all fail (in the flake: the neighbour's key was
already in etcd but its serf did not listen yet, "connect: connection refused" in docker.log)
and whom no other daemon picks as its neighbour stays a serf cluster of one: its containers'
"jl" events and its peer queries reach nobody, so no other host ever gets an fdb or neighbour
entry for them, and it gets none for theirs.

Here serf (7946 tcp and udp) is rejected in one host's namespace while the daemons start,
which fails every join attempt between it and the others exactly as the refused connection
does, and is lifted a few seconds later, before or while the containers start. After that the
overlay must work: the program has to make sure every daemon's serf knows every other host.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from overlaylab import spec as out
from overlaylab.config import Host, LabConfig
from overlaylab.errors import LabError
from overlaylab.etcd import EtcdClient
from overlaylab.hosts.dockerd import serf_listening
from overlaylab.hosts.proc import run
from overlaylab.labdump import dump
from overlaylab.netrule import RouteGuard
from overlaylab.validate import validate
from tests.labtools import LabFixture, lab_config

pytestmark = pytest.mark.lab

SERF_RULES = [
    ["INPUT", "-p", "tcp", "--dport", "7946", "-j", "REJECT", "--reject-with", "tcp-reset"],
    ["INPUT", "-p", "udp", "--dport", "7946", "-j", "REJECT"],
    ["OUTPUT", "-p", "tcp", "--dport", "7946", "-j", "REJECT", "--reject-with", "tcp-reset"],
    ["OUTPUT", "-p", "udp", "--dport", "7946", "-j", "REJECT"],
]


def _iptables(netns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["nsenter", f"--net=/run/netns/{netns}", "--", "iptables", "-w", *args]
    return run(argv, check=check)


def _rejected(netns: str) -> int:
    """Packets the serf rules have rejected so far in ``netns`` (their counters)."""
    total = 0
    for chain in ("INPUT", "OUTPUT"):
        for line in _iptables(netns, "-L", chain, "-v", "-x", "-n").stdout.splitlines():
            if "REJECT" in line and "dpt:7946" in line:
                total += int(line.split()[0])
    return total


@dataclass
class Cut:
    """What the cut did: its events, the serf packets its rules rejected, and what went wrong
    (in its thread, so the test asserts it)."""

    events: list[str] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


@contextlib.contextmanager
def serf_cut_while_daemons_start(
    cfg: LabConfig, victim: Host, hold: float = 3.0, timeout: float = 180
) -> Iterator[Cut]:
    """Reject serf in ``victim``'s namespace from the moment it exists until every daemon's serf
    listens and every host's ``/docker/nodes`` key is written, plus ``hold`` seconds."""
    netns = victim.netns(cfg.lab_id)
    cut = Cut()
    stop = threading.Event()

    def all_registered() -> bool:
        try:
            h = cfg.hosts[0]
            node = EtcdClient(cfg.client_url(h), RouteGuard(cfg.local_bridge), timeout=1).v2_get(
                "/docker/nodes"
            )
        except LabError:
            return False
        return node is not None and len(node.nodes) == len(cfg.hosts)

    def inject() -> None:
        t0 = time.monotonic()
        while not Path(f"/run/netns/{netns}").exists():
            if stop.is_set() or time.monotonic() - t0 > timeout:
                cut.errors.append(f"{netns} did not appear: serf was never cut")
                return
            time.sleep(0.02)
        inserted: list[list[str]] = []
        try:
            for r in SERF_RULES:
                _iptables(netns, "-I", *r)
                inserted.append(r)
                _iptables(netns, "-C", *r)  # fails unless the rule is in place
            cut.events.append(f"{time.strftime('%H:%M:%S')} serf rejected in {netns}")
            while not stop.is_set() and time.monotonic() - t0 < timeout:
                listening = all(serf_listening(h.netns(cfg.lab_id)) for h in cfg.hosts)
                if listening and all_registered():
                    break
                time.sleep(0.1)
            stop.wait(hold)
            cut.rejected = _rejected(netns)
            cut.events.append(f"{time.strftime('%H:%M:%S')} {cut.rejected} serf packets rejected")
        except Exception as e:
            cut.errors.append(f"cutting serf in {netns}: {e}")
        finally:
            for r in inserted:
                try:
                    _iptables(netns, "-D", *r)
                except Exception as e:
                    cut.errors.append(f"rule {' '.join(r)} not removed from {netns}: {e}")
                    continue
                if _iptables(netns, "-C", *r, check=False).returncode == 0:
                    cut.errors.append(f"rule {' '.join(r)} still in {netns} after its removal")
            cut.events.append(f"{time.strftime('%H:%M:%S')} serf allowed again in {netns}")

    t = threading.Thread(target=inject, daemon=True)
    t.start()
    try:
        yield cut
    finally:
        stop.set()
        t.join(timeout=30)
        if t.is_alive():
            cut.errors.append("the serf cut's thread did not end in 30s")


def test_overlay_works_when_a_daemons_first_serf_join_fails(tmp_path: Path) -> None:
    with LabFixture("race", tmp_path / "race.json", lab_config(hosts=3)) as fixture:
        cfg = fixture.cfg
        victim = cfg.hosts[-1]
        with serf_cut_while_daemons_start(cfg, victim) as cut:
            lab = fixture.up(fails=None)  # judged below, after the cut's own checks
        capture = dump(cfg)
        print("\n".join(cut.events))
        print(capture)
        # The cut was real: its rules were in place, rejected serf (a join refused), and are gone.
        assert cut.errors == [], cut.errors
        assert cut.rejected > 0, f"no serf packet was rejected, no join was refused: {cut.events}"
        assert lab.error is None, f"up failed after serf was cut and restored: {lab.error}"
        # Nothing heals on its own later either: validate again once serf has been open a while.
        time.sleep(5)
        results = validate((lab.outputs or {})[out.OUT_VALIDATION_SPEC], timeout=5)
        failed = [f"{r.check} {r.subject}: {r.actual}" for r in results if not r.ok]
        assert failed == [], "\n".join(failed) + "\n" + dump(cfg)
