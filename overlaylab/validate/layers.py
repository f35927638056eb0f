"""The layers under the overlay, between hosts: underlay, VXLAN, serf, MTU, the sandbox's tables.

On a local lab the underlay checks run always, between every ordered pair of hosts, from
inside the source host's namespace: they cost a few milliseconds in all, and a blocked serf port
breaks nothing visible until gossip times out, so it is caught only if looked for:

- ``underlay.ping``: ICMP echo from host A's namespace to host B's address;
- ``underlay.vxlan``: a UDP datagram to B:4789 (a VXLAN header the kernel ignores) is
  delivered in B's namespace, seen by a raw socket there (see :mod:`.probes` for why);
- ``underlay.serf-udp``: the same to B:7946 (a memberlist message serf ignores);
- ``underlay.serf-tcp``: a TCP handshake with B:7946;
- ``underlay.mtu``: each host's underlay interface carries the overlay MTU plus VXLAN's 50
  bytes.

Every lab address is checked with the route guard (the route from this machine goes through
the lab's bridge) before any probe is sent to it.

When a cross-host ping fails, :func:`check_sandboxes` looks into the source host's overlay
sandbox, the namespace Docker 20.10 keeps at ``<exec-root>/netns/<epoch>-<network id>`` cut
to 12 characters (:mod:`overlaylab.sandboxkey`; beside the containers' ``SandboxKey``), for the
VXLAN fdb entry (remote MAC -> remote VTEP) and the neighbour entry (remote IP -> MAC) of the
unreachable container.

On an ssh stack nothing runs in the hosts' namespaces from here; when a cross-host ping fails
the validator pings the other host's address over SSH from the source host
(``underlay.ping``). VXLAN, serf and the sandbox are not probed there.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from typing import Any
from urllib.parse import urlsplit

import overlaylab.validate.probes as probes
from overlaylab import sandboxkey
from overlaylab.defaults import UNDERLAY_MTU, VXLAN_OVERHEAD
from overlaylab.errors import LabError
from overlaylab.validate.overlay import overlay_mtu
from overlaylab.validate.records import ContainerInfo, Lab, Result, _r

VXLAN_PORT = 4789
SERF_PORT = 7946
PROBE_TIMEOUT = 1.0
DEFAULT_OVERLAY_MTU = UNDERLAY_MTU - VXLAN_OVERHEAD


def _host_pairs(lab: Lab) -> list[tuple[str, str]]:
    names = [h["name"] for h in lab.hosts]
    return [(a, b) for a in names for b in names if a != b]


def check_underlay(lab: Lab) -> list[Result]:
    if not lab.local or len(lab.hosts) < 2:
        return []

    def pair(ab: tuple[str, str]) -> list[Result]:
        a, b = ab
        subject = f"{a} -> {b}"
        addr = lab.address(b)
        try:
            if lab.guard is not None:
                lab.guard.check(addr)
        except LabError as e:
            return [_r("underlay.ping", subject, "reply", str(e), False)]
        src, dst = lab.host_netns(a), lab.host_netns(b)
        icmp = probes.icmp_echo(src, addr, timeout=PROBE_TIMEOUT)
        vxlan = probes.udp_reaches(src, dst, addr, VXLAN_PORT, probes.VXLAN_NOOP, PROBE_TIMEOUT)
        serf_udp = probes.udp_reaches(src, dst, addr, SERF_PORT, probes.SERF_NOOP, PROBE_TIMEOUT)
        serf_tcp = probes.tcp_open(src, addr, SERF_PORT, timeout=PROBE_TIMEOUT)
        return [
            _r("underlay.ping", subject, "reply", icmp.detail, icmp.ok),
            _r(
                "underlay.vxlan",
                subject,
                "UDP 4789 delivered",
                f"UDP 4789 {vxlan.detail}",
                vxlan.ok,
            ),
            _r(
                "underlay.serf-udp",
                subject,
                "UDP 7946 delivered",
                f"UDP 7946 {serf_udp.detail}",
                serf_udp.ok,
            ),
            _r(
                "underlay.serf-tcp",
                subject,
                "TCP 7946 open",
                f"TCP 7946 {serf_tcp.detail}",
                serf_tcp.ok,
            ),
        ]

    out = [r for rs in lab.map(pair, _host_pairs(lab)) for r in rs]
    return out + check_underlay_mtu(lab)


def check_underlay_mtu(lab: Lab) -> list[Result]:
    """Each host's underlay carries the largest overlay MTU the configuration gives plus
    VXLAN's 50 bytes (the containers' MTUs are only read, for the page)."""
    views = lab.views()
    for v in views:
        infos = [i for i in v.container_infos().values() if i.on_overlay]
        lab.map(lambda i, v=v: overlay_mtu(v, i), infos)  # type: ignore[misc]
    known: list[int] = []
    for v in views:
        # A seed spec's MTU is read from the network's option: unknown with no daemon to ask
        # (told by the network checks), then the default, as before the spec carried MTUs.
        with contextlib.suppress(Exception):
            known.append(v.expected_mtu())
    overlay = max(known, default=DEFAULT_OVERLAY_MTU)
    need = overlay + VXLAN_OVERHEAD

    def host(name: str) -> Result:
        expected = f"eth0 MTU >= {need} (overlay MTU {overlay} + {VXLAN_OVERHEAD} for VXLAN)"
        try:
            mtu = probes.link_mtu(lab.host_netns(name), "eth0")
        except OSError as e:
            return _r("underlay.mtu", name, expected, f"cannot read eth0's MTU: {e}", False)
        lab.facts.host_mtu(name, mtu)
        return _r("underlay.mtu", name, expected, f"eth0 MTU {mtu}", mtu >= need)

    return lab.map(host, [h["name"] for h in lab.hosts])


# --- on failure ------------------------------------------------------------------------------


def overlay_sandbox(lab: Lab, info: ContainerInfo, net_id: str) -> str | None:
    """The overlay network's sandbox namespace on ``info``'s host (Docker 20.10's layout)."""
    if not info.netns:
        return None
    found = sandboxkey.in_dir(os.path.dirname(info.netns), net_id)
    return found[-1] if found else None  # the newest epoch


def _view_of(lab: Lab, net: str) -> Lab:
    return next((v for v in lab.views() if v.network["name"] == net), lab) if net else lab


def _json_in(netns: str, argv: list[str]) -> list[dict[str, Any]]:
    res = subprocess.run(
        ["nsenter", f"--net={netns}", "--", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=5,
    )
    if res.returncode != 0:
        raise LabError(f"{' '.join(argv)} in {netns} failed: {res.stderr.strip()}")
    return list(json.loads(res.stdout or "[]"))


def check_sandboxes(lab: Lab, failed: list[tuple[str, str, str]]) -> list[Result]:
    """For failed cross-host pairs: does the source's sandbox of that network know the
    target (its address and MAC on that network)?"""
    if not lab.local or not failed:
        return []
    out: list[Result] = []
    tables: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for src_name, dst_name, net in failed:
        view = _view_of(lab, net)
        infos = view.container_infos()
        a, b = infos.get(src_name), infos.get(dst_name)
        if a is None or b is None or not a.on_overlay or not b.on_overlay:
            continue
        subject = f"{a.host}'s overlay sandbox knows {b.name}{view.suffix}"
        vtep = lab.address(b.host)
        try:
            net_id = view.network_id(a.host)
            sandbox = overlay_sandbox(lab, a, net_id or "")
            if sandbox is None:
                raise LabError(f"no overlay sandbox for network {net_id} under {a.netns}")
            if sandbox not in tables:
                tables[sandbox] = (
                    _json_in(sandbox, ["bridge", "-j", "fdb", "show"]),
                    _json_in(sandbox, ["ip", "-j", "neigh", "show"]),
                )
        except (LabError, OSError, ValueError, subprocess.SubprocessError) as e:
            out.append(_r("overlay.sandbox-fdb", subject, "readable sandbox", str(e), False))
            continue
        fdb, neigh = tables[sandbox]
        dsts = sorted(
            {str(e.get("dst")) for e in fdb if str(e.get("mac")).lower() == b.mac and e.get("dst")}
        )
        out.append(
            _r(
                "overlay.sandbox-fdb",
                subject,
                f"{b.mac} via VTEP {vtep}",
                f"{b.mac} via VTEP {', '.join(dsts)}" if dsts else f"no fdb entry for {b.mac}",
                dsts == [vtep],
            )
        )
        macs = sorted(
            {
                str(e.get("lladdr")).lower()
                for e in neigh
                if e.get("dst") == b.ip and e.get("lladdr")
            }
        )
        out.append(
            _r(
                "overlay.sandbox-neigh",
                subject,
                f"{b.ip} at {b.mac}",
                f"{b.ip} at {', '.join(macs)}" if macs else f"no neighbour entry for {b.ip}",
                macs == [b.mac],
            )
        )
    return out


def check_underlay_over_ssh(lab: Lab, failed: list[tuple[str, str, str]]) -> list[Result]:
    """ssh stacks, on failure: can the source host ping the target host's address?"""
    if lab.local:
        return []
    hosts = {c["name"]: c["host"] for c in lab.all_containers}
    pairs = sorted({(hosts[a], hosts[b]) for a, b, _ in failed if a in hosts and b in hosts})
    pairs += [(b, a) for a, b in pairs if (b, a) not in pairs]

    def one(ab: tuple[str, str]) -> Result:
        a, b = ab
        subject = f"{a} -> {b} (over ssh)"
        url = urlsplit(next(h["dockerHost"] for h in lab.hosts if h["name"] == a))
        try:
            if lab.guard is not None:
                lab.guard.check(lab.address(a))
            res = subprocess.run(
                [
                    "ssh",
                    *lab.ssh_opts,
                    "-p",
                    str(url.port or 22),
                    f"{url.username or 'root'}@{url.hostname}",
                    f"busybox ping -c 1 -W 1 {lab.address(b)}",
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=15,
            )
        except (LabError, OSError, subprocess.SubprocessError) as e:
            return _r("underlay.ping", subject, "reply", str(e), False)
        tail = (res.stdout + res.stderr).strip().splitlines()
        detail = (
            "reply" if res.returncode == 0 else (tail[-1] if tail else f"exit {res.returncode}")
        )
        return _r("underlay.ping", subject, "reply", detail, res.returncode == 0)

    return lab.map(one, pairs)
