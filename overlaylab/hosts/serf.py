"""Whether a dockerd's serf knows every host, and the nudge that makes it join them.

Docker 20.10's overlay driver, in cluster-store mode, joins serf once, to one neighbour, when
store discovery reports hosts (libnetwork ``drivers/overlay/overlay.go`` ``nodeJoin``: a
``sync.Once`` reset only on failure), and discovery reports a host again only when it is
*added* (``hostdiscovery/hostdiscovery.go``). Daemons started together can try a neighbour
whose ``/docker/nodes`` key exists before its serf listens; the join fails ("connection
refused") and is never retried, and a daemon that nobody else joined stays a serf cluster of
one for good: its containers' join events reach nobody, and nobody's reach it. Containers on
other hosts are learned only through serf in this mode (``joinleave.go``, ``ov_serf.go``), so
that host's containers are unreachable by IP and by name from every other host, both ways:
the flake once in about fourteen 8-host ups.

Standard library only: this runs on real hosts with their system python3.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

from overlaylab.errors import DockerError
from overlaylab.etcd import EtcdClient
from overlaylab.hosts.proc import log

# libnetwork logs serf's own "[INFO] serf: EventMemberJoin: <node> <ip>" lines at info level
# (drivers/overlay/ov_serf.go, logWriter): the only view of a daemon's serf members from outside.
_SERF_EVENT = re.compile(r"serf: (EventMember\w+): (\S+) (\d+\.\d+\.\d+\.\d+)")


def serf_members(log_text: str) -> set[str]:
    """Addresses of the serf members a dockerd last saw join (not since leave or fail)."""
    state: dict[str, str] = {}
    for m in _SERF_EVENT.finditer(log_text):
        state[m.group(3)] = m.group(1)
    return {ip for ip, ev in state.items() if ev in ("EventMemberJoin", "EventMemberUpdate")}


def serf_mesh(
    *,
    hostname: str,
    advertise: str,
    peers: Sequence[str],
    etcd: EtcdClient,
    read_log: Callable[[], str],
    timeout: float = 60,
    first_nudge: float = 2.0,
) -> None:
    """Wait until this dockerd's serf has seen every peer (by address) join; while it has not,
    re-announce the daemon's ``/docker/nodes`` key so that serf joins are tried again.

    Docker 20.10 in cluster-store mode joins serf once, to one neighbour, when store discovery
    reports hosts (libnetwork drivers/overlay/overlay.go nodeJoin, a sync.Once that is only
    reset on failure); discovery reports a host again only when it is *added*. A join that
    fails (the neighbour's key is in etcd before its serf listens) is never retried, and a
    daemon that nobody else joined stays a serf cluster of one: no other host ever learns its
    containers, nor it theirs. Deleting the key and writing it back makes every daemon see this
    host added: this daemon retries its own failed join, and any daemon whose joins all failed
    tries this one."""
    me = advertise.rsplit(":", 1)[0]
    want = sorted(set(peers) - {me})
    key = f"/docker/nodes/{advertise}"
    start = time.monotonic()
    nudge_at, gap, nudges = start + first_nudge, 1.0, 0
    while True:
        missing = [p for p in want if p not in serf_members(read_log())]
        if not missing:
            log(f"dockerd {hostname}: serf knows every host ({len(want) + 1}); nudges {nudges}")
            return
        now = time.monotonic()
        if now - start >= timeout:
            raise DockerError(
                f"dockerd {hostname}'s serf never saw {', '.join(missing)} join after "
                f"{timeout:g} s and {nudges} re-announcements of {key}: the overlay cannot reach "
                "those hosts "
                "(is 7946 tcp/udp open between them? restart this dockerd before any container)"
            )
        if now >= nudge_at:
            node = etcd.v2_get(key, recursive=False)
            value = node.value if node is not None and node.value else advertise
            etcd.v2_delete(key)
            # Each daemon must list /docker/nodes while the key is gone, or it sees no change.
            time.sleep(gap)
            etcd.v2_put(key, value, ttl=60)
            nudges += 1
            log(f"dockerd {hostname}: serf has not seen {', '.join(missing)}; re-announced {key}")
            gap = min(gap * 2, 8.0)
            nudge_at = time.monotonic() + 3
        time.sleep(0.3)
