"""The data-plane checks between containers: pings by IP and by name, and the path MTU.

On a local lab (root, namespaces on this machine) every probe runs in this process from
inside the source container's network namespace (:mod:`overlaylab.validate.probes`); a name is
resolved by asking Docker's embedded DNS from there, as the container's own resolver does. On
an ssh stack the probes run in the containers through ``docker exec`` with busybox's ping,
which cannot set the don't-fragment bit: there the path-MTU probe sends a full-size ping that
may be fragmented on the way, so it proves full-size packets arrive, not that they arrive whole.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from overlaylab.validate import probes
from overlaylab.validate.records import ContainerInfo, Lab, Result, _r

PING_TIMEOUT = 1.0
ICMP_OVERHEAD = 28  # IP 20 + ICMP 8


def _exec_ping(
    lab: Lab, src: ContainerInfo, target: str, size: int | None = None, via: str | None = None
) -> probes.Outcome:
    """busybox's ping in the container; ``via``: its source address on the tested network
    (``-I``), so the echo leaves through that network's interface."""
    argv = [
        "ping", "-c", "1", "-W", "1",
        *(["-s", str(size)] if size else []), *(["-I", via] if via else []), target,
    ]  # fmt: skip
    try:
        res = lab.docker(src.host).containers.get(src.name).exec_run(argv)
    except Exception as e:
        return probes.Outcome(False, f"exec failed: {e}")
    text = res.output.decode(errors="replace").strip().splitlines()
    if res.exit_code == 0:
        return probes.Outcome(True, "reply")
    return probes.Outcome(False, text[-1] if text else f"exit {res.exit_code}")


def _in_overlay(lab: Lab, ip: str) -> bool:
    """Probes from containers go only to the tested network's addresses (the network rule)."""
    return ipaddress.ip_address(ip) in ipaddress.ip_network(lab.network["subnet"])


def ping(lab: Lab, src: ContainerInfo, target: str, by_name: bool) -> probes.Outcome:
    """From ``src``'s interface on the view's network to ``target`` (an address or a name)."""
    if not lab.local or src.netns is None:
        return _exec_ping(lab, src, target, via=src.ip)
    ip = target
    if by_name:
        found, why = probes.dns_lookup(src.netns, target, timeout=PING_TIMEOUT)
        if not found:
            return probes.Outcome(False, f"ping: bad address '{target}' ({why})")
        # two containers that share two networks: the name's address on the tested one
        ip = next((x for x in found if _in_overlay(lab, x)), found[0])
    if not _in_overlay(lab, ip):
        return probes.Outcome(False, f"{target} is {ip}, outside {lab.network['subnet']}")
    ifname = lab.ifname(src)
    if ifname is None:
        return probes.Outcome(False, f"{src.name} has no interface holding {src.ip}")
    return probes.icmp_echo(src.netns, ip, timeout=PING_TIMEOUT, ifname=ifname)


def _via(lab: Lab, src: ContainerInfo) -> str:
    """For a container on more than one network: which of its interfaces the probe used."""
    if len(lab.networks_of(src.name)) < 2:
        return ""
    return f" via {lab.ifname(src) or '?'}"


def _pairs(lab: Lab, infos: dict[str, ContainerInfo]) -> list[tuple[ContainerInfo, ContainerInfo]]:
    return [
        (infos[a["name"]], infos[b["name"]])
        for a in lab.containers
        for b in lab.containers
        if a is not b
    ]


def check_connectivity(lab: Lab) -> list[Result]:
    infos = lab.container_infos()
    jobs: list[tuple[str, ContainerInfo, ContainerInfo, bool]] = []
    for a, b in _pairs(lab, infos):
        scope = "across hosts" if a.host != b.host else "same host"
        tail = f"({scope}){lab.suffix}{_via(lab, a)}"
        jobs.append((f"{a.name} -> {b.name} by IP {tail}", a, b, False))
        jobs.append((f"{a.name} -> {b.name} by name {tail}", a, b, True))

    def one(job: tuple[str, ContainerInfo, ContainerInfo, bool]) -> Result:
        subject, src, dst, by_name = job
        if not src.on_overlay:
            return _r("overlay.ping", subject, "reply", "source has no overlay address", False)
        if not by_name and dst.ip is None:
            return _r("overlay.ping", subject, "reply", "target has no overlay address", False)
        res = ping(lab, src, dst.name if by_name else str(dst.ip), by_name)
        actual = res.detail
        if not res.ok and "bad address" in actual:
            actual += (
                f" ('{dst.name}' does not resolve in {src.name}: Docker's embedded DNS on"
                f" {src.host} has no record of it{dns_history(lab, src.host, dst.name)})"
            )
        return _r("overlay.ping", subject, "reply", actual, res.ok)

    return lab.map(one, jobs)


_TIME = re.compile(r'time="[0-9-]+T([0-9:]+)')


def dns_history(lab: Lab, host: str, name: str) -> str:
    """What a local lab's dockerd (run with --debug) logged about its DNS record of ``name``:
    when it was last added and deleted, and its last failed read of a network's endpoints
    from etcd (libnetwork then drops the remote names it had and reads again only on the
    next endpoint change). Empty where there is no such log."""
    url = next((h["dockerHost"] for h in lab.hosts if h["name"] == host), "")
    if not (lab.local and url.startswith("unix://")):
        return ""
    try:
        lines = (Path(url[len("unix://") :]).parent / "docker.log").read_text(errors="replace")
    except OSError:
        return ""
    if "level=debug" not in lines:
        return ""
    # A daemon's records live in its memory: only the log since its last start counts.
    start = lines.rfind('msg="Starting up"')
    if start >= 0:
        lines = lines[lines.rfind("\n", 0, start) + 1 :]
    last: dict[str, str] = {}
    marks = {
        "added": f".addSvcRecords({name}, ",
        "deleted": f".deleteSvcRecords({name}, ",
        "endpoints read from etcd failed": "failed to get endpoints for network",
    }
    for ln in lines.splitlines():
        for what, mark in marks.items():
            if mark in ln:
                m = _TIME.search(ln)
                last[what] = m.group(1) if m else "?"
    said = [f"{what} last at {at}" for what, at in last.items()]
    if "added" not in last:
        said.insert(0, f"no record of {name} ever added")
    m = _TIME.search(lines) if start >= 0 else None
    since = f" since dockerd started at {m.group(1)}" if m else ""
    return f"; its log{since}: " + ", ".join(said)


def overlay_mtu(lab: Lab, info: ContainerInfo) -> int | None:
    """The MTU of a container's interface on the view's network (the one holding its
    address there: eth0 only where that is it)."""
    mtu = _overlay_mtu(lab, info)
    lab.facts.container_mtu(info.name, info.host, mtu)
    return mtu


def _overlay_mtu(lab: Lab, info: ContainerInfo) -> int | None:
    ifname = lab.ifname(info)
    if ifname is None:
        return None
    if lab.local and info.netns:
        try:
            return probes.link_mtu(info.netns, ifname)
        except OSError:
            return None
    try:
        res = (
            lab.docker(info.host)
            .containers.get(info.name)
            .exec_run(["cat", f"/sys/class/net/{ifname}/mtu"])
        )
        return int(res.output.decode().strip()) if res.exit_code == 0 else None
    except Exception:
        return None


def check_path_mtu(lab: Lab) -> list[Result]:
    """Each container's interface on the network has the MTU the configuration gives it
    (``overlay.mtu``: a Docker that ignored the MTU option fails here), and a full-size,
    don't-fragment ping at that MTU goes between every pair of containers on different hosts
    (``overlay.path-mtu``): an underlay too small for the overlay black-holes exactly these."""
    infos = lab.container_infos()
    pairs = [(a, b) for a, b in _pairs(lab, infos) if a.host != b.host]
    want: int | None = None
    unknown = ""
    try:
        want = lab.expected_mtu()
    except Exception as e:  # a seed spec's MTU, with no daemon listing the network
        unknown = str(e)
    mtus = dict(
        zip(infos, lab.map(lambda i: overlay_mtu(lab, i), list(infos.values())), strict=True)
    )
    out = []
    for i in infos.values():
        if i.ip is None or want is None:
            continue  # told by docker.container-running, or by the network checks
        subject = f"{i.name}@{i.host}{lab.suffix}"
        got = mtus[i.name]
        out.append(
            _r(
                "overlay.mtu",
                subject,
                f"interface MTU {want}",
                f"interface MTU {got}" if got else "interface MTU unreadable",
            )
        )

    def one(pair: tuple[ContainerInfo, ContainerInfo]) -> Result:
        a, b = pair
        subject = f"{a.name} -> {b.name} (across hosts){lab.suffix}{_via(lab, a)}"
        expected = f"reply to a {want or 'full'}-byte don't-fragment ping"
        if a.ip is None or b.ip is None:
            why = "source" if a.ip is None else "target"
            return _r("overlay.path-mtu", subject, expected, f"{why} has no overlay address", False)
        if want is None:
            return _r("overlay.path-mtu", subject, expected, f"MTU unknown: {unknown}", False)
        ifname = lab.ifname(a)
        if lab.local and a.netns:
            res = probes.icmp_echo(
                a.netns, b.ip, size=want - ICMP_OVERHEAD, df=True, timeout=PING_TIMEOUT,
                ifname=ifname,
            )  # fmt: skip
        else:
            res = _exec_ping(lab, a, b.ip, size=want - ICMP_OVERHEAD, via=a.ip)
        actual = f"reply at {want} bytes" if res.ok else f"{res.detail} at {want} bytes"
        return _r("overlay.path-mtu", subject, expected, actual, res.ok)

    return out + lab.map(one, pairs)


def failed_pairs_across(results: list[Result]) -> list[tuple[str, str, str]]:
    """(source, target, network) of failed cross-host pings; the network is "" on a lab of
    one network (its subjects name none), else the one the subject ends ``on <network>``."""
    out: list[tuple[str, str, str]] = []
    for r in results:
        if (
            r.check in ("overlay.ping", "overlay.path-mtu")
            and not r.ok
            and "across hosts" in r.subject
        ):
            src, rest = r.subject.split(" -> ", 1)
            m = re.search(r"\) on (\S+)", rest)
            pair = (src, rest.split(" ", 1)[0], m.group(1) if m else "")
            if pair not in out:
                out.append(pair)
    return out
