"""The lab as elements of a picture, each with the validator's checks about it.

Pure: from the validation spec (the dict ``python -m overlaylab.validate`` takes), the
validator's records and what it saw (:class:`~overlaylab.validate.facts.Facts`). Every drawn
element has a stable id (``host-docker-node1``, ``container-test1``,
``tunnel-docker-node1-docker-node2``, ...; see the ``*_id`` functions) and a status:
``passed`` (every check about it passed), ``failed`` (one did not), ``unknown`` (no check is
about it: the validator does not look at it, or skipped it) or ``planned`` (drawn from the
config alone, before any lab exists).

Which check is about which element follows the checks' names and subjects
(``overlaylab/validate/checks.py``, ``layers.py``, ``overlay.py``); see :func:`targets`. A
failed ping between containers is drawn on the tunnel between their hosts and on both
containers, unless a layer below explains it, as the diagnosis does: a container that is not
running takes its pings, a broken underlay, VXLAN or serf between the hosts (or an underlay
MTU too small) gives them to the tunnel alone, and a name that does not resolve goes to the
source container and its host's dockerd. Such a record is still listed on the other elements'
tooltips, as explained.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from overlaylab.validate.facts import Facts
from overlaylab.validate.records import Result

Status = Literal["passed", "failed", "unknown", "planned"]

ETCD_CLUSTER = "etcd-cluster"
UNDERLAY = "underlay"


def host_id(h: str) -> str:
    return f"host-{h}"


def member_id(h: str) -> str:
    return f"etcd-member-{h}"


def dockerd_id(h: str) -> str:
    return f"dockerd-{h}"


def gwbridge_id(h: str) -> str:
    return f"gwbridge-{h}"


def uplink_id(h: str) -> str:
    """The host's own underlay interface (eth0, its lab address)."""
    return f"eth0-{h}"


def sandbox_id(h: str, net: str) -> str:
    return f"sandbox-{h}-{net}"


def br0_id(h: str, net: str) -> str:
    return f"br0-{h}-{net}"


def vxlan_id(h: str, net: str) -> str:
    return f"vxlan0-{h}-{net}"


def container_id(c: str) -> str:
    return f"container-{c}"


def node_key_id(h: str) -> str:
    return f"key-node-{h}"


def network_key_id(net: str) -> str:
    return f"key-network-{net}"


def endpoint_key_id(c: str) -> str:
    return f"key-endpoint-{c}"


def tunnel_id(a: str, b: str, net: str | None = None) -> str:
    """The VXLAN tunnel between two hosts' VTEPs, hosts in the spec's order; ``net`` only for
    overlays after the first (the first overlay's ids do not change when one is added)."""
    return f"tunnel-{net}-{a}-{b}" if net else f"tunnel-{a}-{b}"


@dataclass
class Element:
    id: str
    checks: list[Result] = field(default_factory=list)
    #: failed records drawn on another element, which explains them (its id)
    explained: list[tuple[Result, str]] = field(default_factory=list)

    def status(self, planned: bool) -> Status:
        if planned:
            return "planned"
        if any(not r.ok for r in self.checks):
            return "failed"
        return "passed" if self.checks else "unknown"


@dataclass(frozen=True)
class Overlay:
    name: str
    subnet: str
    gateway: str
    first: bool  # the spec's first overlay: its ids carry no network name


def overlays(spec: dict[str, Any]) -> list[Overlay]:
    """The spec's overlays: today its one ``network``; a list ``networks`` is drawn as well."""
    nets = spec.get("networks") or [spec["network"]]
    return [
        Overlay(str(n["name"]), str(n.get("subnet", "")), str(n.get("gateway", "")), i == 0)
        for i, n in enumerate(nets)
    ]


@dataclass
class Picture:
    spec: dict[str, Any]
    facts: Facts
    planned: bool
    elements: dict[str, Element]
    unplaced: list[Result]  # records about no drawn element (listed on the page only)

    @property
    def hosts(self) -> list[str]:
        return [str(h["name"]) for h in self.spec["hosts"]]

    @property
    def overlays(self) -> list[Overlay]:
        return overlays(self.spec)

    def containers_on(self, host: str) -> list[str]:
        return [str(c["name"]) for c in self.spec["containers"] if c["host"] == host]

    def network_of(self, container: str) -> Overlay:
        nets = self.overlays
        # a container on several networks is drawn on its first
        want = next(
            (
                c.get("network") or (c.get("networks") or [None])[0]
                for c in self.spec["containers"]
                if c["name"] == container
            ),
            None,
        )
        return next((n for n in nets if n.name == want), nets[0])

    def tunnels(self) -> list[tuple[str, str, Overlay, str]]:
        """(host a, host b, overlay, id) for every pair of hosts, in the spec's order."""
        hs = self.hosts
        return [
            (a, b, n, tunnel_id(a, b, None if n.first else n.name))
            for n in self.overlays
            for i, a in enumerate(hs)
            for b in hs[i + 1 :]
        ]

    def status(self, eid: str) -> Status:
        return self.elements[eid].status(self.planned)

    def host_status(self, host: str) -> Status:
        """A host's frame: the worst of what is drawn inside it."""
        inside = [self.status(e) for e in self.inside(host)]
        if self.planned:
            return "planned"
        if "failed" in inside:
            return "failed"
        return "passed" if "passed" in inside else "unknown"

    def inside(self, host: str) -> list[str]:
        ids = [member_id(host), dockerd_id(host), gwbridge_id(host), uplink_id(host)]
        for n in self.overlays:
            ids += [sandbox_id(host, n.name), br0_id(host, n.name), vxlan_id(host, n.name)]
        return ids + [container_id(c) for c in self.containers_on(host)]


def element_ids(spec: dict[str, Any]) -> list[str]:
    """Every element the picture draws (a host's frame included), in drawing order."""
    pic = Picture(spec, Facts(), True, {}, [])
    ids = [ETCD_CLUSTER, UNDERLAY]
    ids += [network_key_id(n.name) for n in pic.overlays]
    for h in pic.hosts:
        ids += [host_id(h), node_key_id(h), *pic.inside(h)]
        ids += [endpoint_key_id(c) for c in pic.containers_on(h)]
    return ids + [t[3] for t in pic.tunnels()]


# --- which check is about what ---------------------------------------------------------------

_DAEMON_DOWN = re.compile(r"dockerd on (\S+) \((\S+)\) is unreachable")


def _pair(subject: str) -> tuple[str, str]:
    a, b = subject.split(" -> ", 1)
    return a, b.split(" ", 1)[0]


class _Context:
    """What the attribution rules need to know about all the records at once."""

    def __init__(self, pic: Picture, results: list[Result]) -> None:
        self.pic = pic
        self.host_of = {str(c["name"]): str(c["host"]) for c in pic.spec["containers"]}
        self.index = {h: i for i, h in enumerate(pic.hosts)}
        failed = [r for r in results if not r.ok]
        self.not_running = {
            r.subject.split("@", 1)[0] for r in failed if r.check == "docker.container-running"
        }
        self.dead = {m.group(1) for r in failed if (m := _DAEMON_DOWN.search(r.actual))}
        self.broken_pairs: set[frozenset[str]] = set()
        self.small_mtu: set[str] = set()
        for r in failed:
            if r.check.startswith("underlay.") and " -> " in r.subject:
                self.broken_pairs.add(frozenset(_pair(r.subject)))
            elif r.check == "underlay.mtu":
                self.small_mtu.add(r.subject)

    def tunnels(self, a: str, b: str, net: str | None = None) -> list[str]:
        """The tunnels between hosts a and b (of overlay ``net``, else of every overlay)."""
        if a not in self.index or b not in self.index or a == b:
            return []
        a, b = sorted((a, b), key=self.index.__getitem__)
        return [
            tid for x, y, n, tid in self.pic.tunnels() if (x, y) == (a, b) and net in (None, n.name)
        ]

    def containers(self, r: Result) -> tuple[list[str], list[str], str]:
        """A container-to-container record: (the ids it is drawn on, the ids it is explained
        on, why)."""
        a, b = _pair(r.subject)
        ha, hb = self.host_of.get(a, ""), self.host_of.get(b, "")
        across = "across hosts" in r.subject
        net = self.pic.network_of(a).name if a in self.host_of else None
        tunnel = self.tunnels(ha, hb, net) if across else []
        ends = [container_id(x) for x in (a, b) if x in self.host_of]
        default = tunnel + ends
        if r.ok:
            return default, [], ""
        gone = [container_id(x) for x in (a, b) if x in self.not_running]
        if gone:
            return gone, [e for e in default if e not in gone], "a container is not running"
        if across and (
            frozenset((ha, hb)) in self.broken_pairs
            or (r.check == "overlay.path-mtu" and {ha, hb} & self.small_mtu)
        ):
            return tunnel, ends, "the layers under the tunnel are broken"
        if "bad address" in r.actual and ha:
            drawn = [container_id(a), dockerd_id(ha)]
            return drawn, [e for e in default if e not in drawn], "a name does not resolve"
        return default, [], ""


def targets(r: Result, ctx: _Context) -> tuple[list[str], list[str], str]:
    """The ids a record is drawn on, the ids that list it as explained, and why."""
    c, s = r.check, r.subject
    hosts = ctx.index
    extra = []
    m = _DAEMON_DOWN.search(r.actual) if not r.ok else None
    if m and m.group(1) in hosts:
        extra = [dockerd_id(m.group(1))]
    if s == "lab":  # a whole group could not run
        if "no etcd member is healthy" in r.actual:
            return [ETCD_CLUSTER], [], ""
        return extra, [], ""
    ids: list[str] = []
    if c == "etcd.member-healthy" and s in hosts:
        ids = [member_id(s)]
    elif c == "etcd.member-list" and s in hosts:
        ids = [member_id(s), ETCD_CLUSTER]
    elif c == "etcd.node-registered" and s in hosts:
        ids = [node_key_id(s), dockerd_id(s)]
    elif c == "etcd.nodes-exact":
        ids = [ETCD_CLUSTER]
    elif c.startswith("etcd.network-"):
        ids = [network_key_id(ctx.pic.overlays[0].name)]
    elif c == "etcd.endpoint":
        ids = [network_key_id(n.name) for n in ctx.pic.overlays if n.name == s]
    elif c in ("docker.network-exists", "docker.network-id", "docker.network-global"):
        if s in hosts:
            ids = [sandbox_id(s, ctx.pic.overlays[0].name)]
    elif c == "docker.container-running" or c.startswith("etcd.endpoint-"):
        name = s.split("@", 1)[0]
        if name in ctx.host_of:
            if c == "docker.container-running":
                ids = [container_id(name)]
            elif c in ("etcd.endpoint-ip", "etcd.endpoint-mac"):
                # the key against the address and MAC its daemon gives the container's eth0
                ids = [endpoint_key_id(name), container_id(name)]
            else:
                ids = [endpoint_key_id(name)]
    elif c == "underlay.mtu" and s in hosts:
        ids = [uplink_id(s)]
    elif c == "overlay.mtu" and "@" in s:
        name = s.split("@", 1)[0]
        ids = [container_id(name)] if name in ctx.host_of else []
    elif c == "overlay.placement" and " on " in s:
        host, net = s.split(" on ", 1)
        if host in hosts and net in {n.name for n in ctx.pic.overlays}:
            ids = [sandbox_id(host, net)]
    elif c.startswith("underlay.") and " -> " in s:
        a, b = _pair(s)
        serf = c.startswith("underlay.serf")
        if not r.ok and serf and (b in ctx.dead or "refused" in r.actual) and b in hosts:
            ids = [dockerd_id(b)]  # serf runs inside dockerd: a closed port is the daemon's
        else:
            ids = ctx.tunnels(a, b)
    elif c in ("overlay.ping", "overlay.path-mtu") and " -> " in s:
        drawn, told, why = ctx.containers(r)
        return _dedup(drawn + extra), told, why
    elif c in ("overlay.sandbox-fdb", "overlay.sandbox-neigh"):
        host = s.split("'s overlay sandbox knows ", 1)[0]
        if host in hosts:
            ids = [vxlan_id(host, ctx.pic.overlays[0].name)]
    elif c == "overlay.name-unique":
        m2 = re.match(r"(\S+) again on (\S+)$", s)
        if m2 and m2.group(2) in hosts:
            ids = [dockerd_id(m2.group(2))]
            if m2.group(1) in ctx.host_of:
                ids.append(endpoint_key_id(m2.group(1)))
    elif c == "overlay.name-probe-clean":
        if s in hosts:
            ids = [dockerd_id(s)]
        elif s.startswith("endpoint keys named "):
            name = s.rsplit(" ", 1)[1]
            ids = [endpoint_key_id(name)] if name in ctx.host_of else []
    return _dedup(ids + extra), [], ""


def _dedup(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def build(
    spec: dict[str, Any],
    results: Iterable[Result] = (),
    facts: Facts | None = None,
    planned: bool = False,
) -> Picture:
    """The picture's elements with the records about each; ``planned``: no records, every
    element drawn as planned."""
    results = list(results)
    pic = Picture(spec, facts or Facts(), planned, {}, [])
    pic.elements = {i: Element(i) for i in element_ids(spec)}
    ctx = _Context(pic, results)
    for r in results:
        drawn, told, why = targets(r, ctx)
        drawn = [i for i in drawn if i in pic.elements]
        if not drawn:
            pic.unplaced.append(r)
        for i in drawn:
            pic.elements[i].checks.append(r)
        for i in told:
            if i in pic.elements and drawn:
                pic.elements[i].explained.append((r, f"{drawn[0]}: {why}"))
    return pic
