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


def reannounce(etcd: EtcdClient, advertise: str, gap: float) -> None:
    """Delete the ``/docker/nodes`` key of the daemon that advertises ``advertise`` and write
    it back ``gap`` seconds later: every daemon's store discovery sees that host *added*, and
    each daemon whose serf join has not succeeded yet tries it (libnetwork
    ``hostdiscovery.go:75-91``, ``overlay.go:272-291``). Its owner writes it again at its next
    heartbeat anyway (TTL 60 s)."""
    key = f"/docker/nodes/{advertise}"
    node = etcd.v2_get(key, recursive=False)
    value = node.value if node is not None and node.value else advertise
    etcd.v2_delete(key)
    # Each daemon must list /docker/nodes while the key is gone, or it sees no change.
    time.sleep(gap)
    etcd.v2_put(key, value, ttl=60)


def join_through_door(
    *,
    hostname: str,
    anchor: str,
    etcd: EtcdClient,
    read_log: Callable[[], str],
    open_door: Callable[[], None],
    timeout: float = 60,
    first_nudge: float = 0.5,
    gap: float = 0.5,
) -> int:
    """Wait until this daemon's serf has joined the anchor's (the first host's, ``ip:port``),
    re-announcing the anchor's node key while it has not, then open the door; returns the
    re-announcements it took.

    Why a door: daemons started together can join each other before any of them joined the
    first one, and two that joined each other never try again, so the hosts split into serf
    clusters that never merge (docs/design.md, "The daemons' start order"). A daemon started
    with its door shut (serf's TCP port refuses every host but the anchor:
    ``netns_daemons.shut_serf_door``) can only be joined by the anchor, and its own joins
    only succeed to the anchor or to a daemon whose door is open, which has joined the
    anchor's cluster: every join lands in that one cluster, however the starts interleave.
    Its join to the anchor can fail (the anchor's serf not listening yet, or the anchor not
    first in the daemon's discovery batch), and nothing in Docker tries it again until the
    anchor is added again: hence the re-announcements."""
    ip = anchor.rsplit(":", 1)[0]
    start = time.monotonic()
    nudge_at, nudges = start + first_nudge, 0
    while ip not in serf_members(read_log()):
        now = time.monotonic()
        if now - start >= timeout:
            raise DockerError(
                f"dockerd {hostname}'s serf never joined the first host's ({ip}) after "
                f"{timeout:g} s and {nudges} re-announcements of its node key: is that "
                f"host's dockerd running, and TCP 7946 open from here to it?"
            )
        if now >= nudge_at:
            reannounce(etcd, anchor, gap)
            nudges += 1
            nudge_at = time.monotonic() + 0.5
        time.sleep(0.05)
    open_door()
    log(f"dockerd {hostname}: serf joined the first host's ({ip}); door open, nudges {nudges}")
    return nudges


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
            reannounce(etcd, advertise, gap)
            nudges += 1
            log(f"dockerd {hostname}: serf has not seen {', '.join(missing)}; re-announced {key}")
            gap = min(gap * 2, 8.0)
            nudge_at = time.monotonic() + 3
        time.sleep(0.1)
