"""Checks of more than one overlay: isolation between networks, and where their sandboxes are.

- ``overlay.isolation``: two containers that share no network cannot reach each other. From the
  source, for each address of the target (one per network it is on), the probe goes out of the
  source's interface on that address's subnet if it has one (a container connected to the
  other network by hand has), and a reply fails naming both. Without such an interface the
  source has no route to it but its gateway's (docker_gwbridge, which leads off the overlays),
  so nothing is sent: isolated by construction, and said so.
- ``overlay.placement``: Docker creates a network's sandbox on a host only when a container
  attached to it runs there (the seed's Analysis): a host with a container of the stack on a
  network has that network's sandbox, a host with none has none. Local labs only (the
  sandboxes are namespaces on this machine); an ssh stack gets no placement records.
"""

from __future__ import annotations

import ipaddress

from overlaylab.validate import probes
from overlaylab.validate.overlay import PING_TIMEOUT, _exec_ping
from overlaylab.validate.records import ContainerInfo, Lab, Result, _r


def _addresses_by_network(lab: Lab) -> dict[str, dict[str, ContainerInfo]]:
    """Per network: its containers as their daemons report them on it."""
    return {v.network["name"]: v.container_infos() for v in lab.views()}


def check_isolation(lab: Lab) -> list[Result]:
    if len(lab.networks) < 2:
        return []
    by_net = _addresses_by_network(lab)
    subnets = {n["name"]: ipaddress.ip_network(n["subnet"]) for n in lab.networks}
    names = [c["name"] for c in lab.all_containers]
    pairs = [
        (a, b)
        for a in names
        for b in names
        if a != b and not set(lab.networks_of(a)) & set(lab.networks_of(b))
    ]
    jobs: list[tuple[str, str, str, ContainerInfo, ContainerInfo]] = []
    for a, b in pairs:
        src_net = lab.networks_of(a)[0]
        src = by_net[src_net].get(a)
        for net in lab.networks_of(b):
            dst = by_net[net].get(b)
            if src is None or dst is None or dst.ip is None:
                continue
            jobs.append((a, b, net, src, dst))

    def one(job: tuple[str, str, str, ContainerInfo, ContainerInfo]) -> Result:
        a, b, net, src, dst = job
        subject = f"{a} -> {b} on {net} ({dst.ip})"
        expected = f"no answer ({a} and {b} share no network)"
        if src.ip is None:
            return _r("overlay.isolation", subject, expected, f"{a} is not running", True)
        assert dst.ip is not None
        own = lab.addresses(src)
        if not own:
            return _r("overlay.isolation", subject, expected, f"{a}'s addresses unreadable", False)
        there = [(i, ip) for i, ip in own.items() if ipaddress.ip_address(ip) in subnets[net]]
        if not there:
            return _r(
                "overlay.isolation", subject, expected,
                f"no answer: {a} has no interface on {net} ({subnets[net]})", True,
            )  # fmt: skip
        ifname, via = there[0]
        if lab.local and src.netns:
            res = probes.icmp_echo(src.netns, dst.ip, timeout=PING_TIMEOUT, ifname=ifname)
        else:
            res = _exec_ping(lab, src, dst.ip, via=via)
        if res.ok:
            return _r(
                "overlay.isolation", subject, expected,
                f"{b} answered {a} through {a}'s {ifname} ({via} on {net}): {a} is attached "
                f"to {net}, which the stack does not give it", False,
            )  # fmt: skip
        # No answer: isolation holds, though the attachment is not the stack's (said).
        return _r(
            "overlay.isolation", subject, expected,
            f"no answer ({res.detail}); but {a} has {ifname} ({via}) on {net}, which the "
            f"stack does not give it", True,
        )  # fmt: skip

    return lab.map(one, jobs)


def check_placement(lab: Lab) -> list[Result]:
    if not lab.local:
        return []
    out: list[Result] = []
    for v in lab.views():
        net = v.network["name"]
        placed = {c["host"] for c in v.containers}
        for h in (h["name"] for h in lab.hosts):
            subject = f"{h} on {net}"
            want = h in placed
            expected = f"an overlay sandbox for {net}" if want else f"no overlay sandbox for {net}"
            net_id = v.network_id(h)
            if not net_id:
                out.append(_r("overlay.placement", subject, expected, "no such network", False))
                continue
            found = lab.overlay_sandboxes(h, net_id)
            what = f"an overlay sandbox for {net}" if found else f"no overlay sandbox for {net}"
            ok = bool(found) == want
            if found and not want and lab.in_up:
                # Run by `up`: a container that left the stack is deleted after this check
                # (the engine's order), so its sandbox may still be there: reported, not
                # failed, as a leaving member is. The validator run by hand is strict.
                what += " (a container leaving the stack: `up` deletes it after this check)"
                ok = True
            elif found and not want:
                what += f" ({found[-1]}: a container not in the stack is on {net} there?)"
            out.append(_r("overlay.placement", subject, expected, what, ok))
    return out
