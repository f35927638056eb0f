"""From failed records to one line per broken layer: what broke, where, and the evidence.

Pure: it reads only the records, so the report, the JSON and the JUnit file say the same.
The lines go from the bottom of the stack up (etcd, registrations, daemons, containers,
underlay, VXLAN, serf, MTU, the sandbox's tables, names), and a symptom already explained by a
lower layer gets no line of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from overlaylab.validate.records import Result

PREFIX = "diagnosis: "


def _pair(subject: str) -> tuple[str, str]:
    a, b = subject.split(" -> ", 1)
    return a, b.split(" ", 1)[0]


def _at(subject: str) -> tuple[str, str, str]:
    """``name@host`` with the network a lab of several networks adds (`` on <network>``)."""
    name, rest = subject.split("@", 1)
    host, _, net = rest.partition(" on ")
    return name, host, net


def _etcd(failed: list[Result], results: list[Result]) -> list[str]:
    members = [r for r in results if r.check == "etcd.member-healthy"]
    down = [r for r in members if not r.ok]
    if not down:
        return []
    total, healthy = len(members), len(members) - len(down)
    quorum = total // 2 + 1
    detail = ", ".join(
        f"{r.subject} {'unreachable' if r.actual.startswith('unreachable') else 'unhealthy'}"
        for r in down
    )
    if healthy >= quorum:
        return [
            f"etcd member{'s' if len(down) > 1 else ''} {', '.join(r.subject for r in down)} "
            f"down ({detail}); the cluster keeps its quorum ({healthy} of {total} healthy, "
            f"{quorum} needed)"
        ]
    return [
        f"etcd has lost its quorum: {healthy} of {total} members healthy, {quorum} needed "
        f"({detail}); Docker's cluster store cannot be read or written"
    ]


def _registrations(failed: list[Result]) -> list[str]:
    out: list[str] = []
    for r in failed:
        if r.check == "etcd.node-registered":
            out.append(
                f"{r.subject} is not registered in etcd ({r.expected} is missing): its dockerd "
                f"is not in the cluster store"
            )
        elif r.check == "etcd.nodes-exact":
            out.append(
                f"etcd holds registrations of hosts not in the stack under {r.subject}: "
                f"{r.actual} (stale keys of a removed or foreign host)"
            )
    return out


def _daemons(failed: list[Result]) -> tuple[list[str], set[str]]:
    out: list[str] = []
    hosts: set[str] = set()
    for r in failed:
        m = re.search(r"dockerd on (\S+) \((\S+)\) is unreachable", r.actual)
        if m and m.group(1) not in hosts:
            hosts.add(m.group(1))
            out.append(f"dockerd on {m.group(1)} does not answer at {m.group(2)}")
    return out, hosts


def _containers(failed: list[Result], dead_daemons: set[str]) -> tuple[list[str], set[str]]:
    out: list[str] = []
    names: set[str] = set()
    for r in failed:
        if r.check == "docker.container-running":
            name, host, net = _at(r.subject)
            names.add(name)
            if host not in dead_daemons:
                where = f"on {net}" if net else "on the overlay"
                out.append(
                    f"container {name} on {host} is not {where} ({r.actual}): every "
                    f"ping to and from it {'on ' + net + ' ' if net else ''}fails"
                )
        elif r.check == "etcd.endpoint-key":
            name = _at(r.subject)[0]
            n = int(r.actual.split()[0])
            if n > 1:
                out.append(
                    f"{n} endpoint keys in etcd are named {name}: a duplicate container name "
                    f"on the overlay (other hosts may resolve {name} to the wrong container)"
                )
            elif name not in names:
                out.append(f"container {name} has no endpoint key in etcd")
    return out, names


def _layers(failed: list[Result], dead: set[str]) -> tuple[list[str], set[tuple[str, str]]]:
    """Underlay, VXLAN and serf between hosts; returns the host pairs they explain. Serf
    runs inside dockerd: with the daemon down, its port is closed, not blocked."""
    by_pair: dict[tuple[str, str], set[str]] = {}
    refused: set[tuple[str, str]] = set()
    for r in failed:
        if r.check.startswith("underlay.") and " -> " in r.subject:
            a, b = _pair(r.subject)
            if r.check.startswith("underlay.serf") and b in dead:
                continue
            if r.check == "underlay.serf-tcp" and "refused" in r.actual:
                refused.add((a, b))
                continue
            by_pair.setdefault((a, b), set()).add(r.check)
    for a, b in sorted(refused):
        by_pair.setdefault((a, b), set())
    out: list[str] = []
    for (a, b), checks in by_pair.items():
        if "underlay.ping" in checks:
            out.append(f"the underlay from {a} to {b} is broken: {a} cannot ping {b}'s address")
            continue
        if "underlay.vxlan" in checks:
            out.append(f"VXLAN from {a} to {b} is dropped: underlay ping works, UDP 4789 does not")
        if (a, b) in refused:
            out.append(
                f"serf does not listen on {b}: TCP 7946 is refused, so {b}'s dockerd is not "
                f"in the overlay's gossip"
            )
        serf = [
            p
            for c, p in (("underlay.serf-tcp", "TCP"), ("underlay.serf-udp", "UDP"))
            if c in checks
        ]
        if serf:
            out.append(
                f"serf gossip from {a} to {b} is blocked: underlay ping works, "
                f"{' and '.join(serf)} 7946 {'do' if len(serf) > 1 else 'does'} not"
            )
    return out, set(by_pair)


def _mtu(failed: list[Result], results: list[Result]) -> list[str]:
    out = []
    for r in failed:
        m = re.match(r"eth0 MTU (\d+)$", r.actual)
        if r.check == "underlay.mtu" and m:
            overlay = re.search(r"overlay MTU (\d+)", r.expected)
            out.append(
                f"the underlay of {r.subject} is too small for the overlay: eth0 MTU "
                f"{m.group(1)}, the overlay MTU {overlay.group(1) if overlay else '?'} needs "
                f"{r.expected.split('>= ')[1].split()[0]}: full-size packets to and from "
                f"{r.subject} are dropped"
            )
    if not out:
        # Only where small packets pass: when they are lost too, the cause lies elsewhere.
        small = {
            _pair(r.subject)
            for r in results
            if r.check == "overlay.ping" and " by IP " in r.subject and r.ok
        }
        # A container whose interface MTU is wrong has its own line (the container's layer).
        wrong = {_at(r.subject)[0] for r in failed if r.check == "overlay.mtu" and "@" in r.subject}
        for r in failed:
            if r.check == "overlay.path-mtu" and _pair(r.subject) in small:
                a, b = _pair(r.subject)
                if a in wrong or b in wrong:
                    continue
                out.append(
                    f"full-size packets from {a} to {b} are lost ({r.actual}) although small "
                    f"pings may pass: a path MTU problem"
                )
    return out


def _explained(actual: str, dead: set[str]) -> bool:
    """An error already told by a line of its own (a daemon down, etcd without quorum)."""
    return "no etcd member is healthy" in actual or any(f"dockerd on {h} " in actual for h in dead)


def diagnose(results: Iterable[Result]) -> list[str]:
    results = list(results)
    failed = [r for r in results if not r.ok]
    if not failed:
        return []
    lines = _etcd(failed, results) + _registrations(failed)
    daemons, dead = _daemons(failed)
    lines += daemons
    containers, gone = _containers(failed, dead)
    lines += containers
    layer_lines, _ = _layers(failed, dead)
    lines += layer_lines
    lines += _mtu(failed, results)
    for r in failed:
        if r.check in ("overlay.sandbox-fdb", "overlay.sandbox-neigh"):
            host, name = r.subject.split("'s overlay sandbox knows ", 1)
            table = "VXLAN fdb" if r.check.endswith("fdb") else "neighbour table"
            lines.append(
                f"{host}'s overlay sandbox does not know {name}: its {table} has {r.actual}, "
                f"expected {r.expected}"
            )
        elif r.check == "overlay.isolation":
            a, b = _pair(r.subject)
            net = r.subject.split(" on ", 1)[1].split(" ", 1)[0]
            lines.append(
                f"isolation is broken: {a} reaches {b} on {net} although they share no network "
                f"({r.actual})"
            )
        elif r.check == "overlay.placement":
            host, net = r.subject.split(" on ", 1)
            lines.append(
                f"{host} has {r.actual.split(' (')[0]}, expected {r.expected}: Docker creates a "
                f"network's sandbox on a host only while a container on {net} runs there"
            )
        elif r.check == "overlay.mtu" and "@" in r.subject:
            name, host, net = _at(r.subject)
            lines.append(
                f"{name} on {host} has the wrong MTU{' on ' + net if net else ''}: "
                f"{r.actual}, the configuration gives {r.expected.split()[-1]} (did Docker "
                f"ignore the network's com.docker.network.driver.mtu option?)"
            )
        elif r.check == "overlay.name-unique":
            lines.append(f"the name rule is broken: {r.subject} was not refused ({r.actual})")
        elif r.check == "overlay.ping" and "bad address" in r.actual:
            src, dst = _pair(r.subject)
            if src not in gone and dst not in gone:
                m = re.search(r"Docker's embedded DNS on (\S+)", r.actual)
                why = re.search(r"has no record of it(;[^)]*)", r.actual)
                lines.append(
                    f"name {dst} does not resolve in {src}: Docker's embedded DNS on "
                    f"{m.group(1) if m else 'its host'} has no record of it"
                    f"{why.group(1) if why else ''}"
                )
        elif " " not in r.check and r.subject == "lab" and not _explained(r.actual, dead):
            lines.append(f"the {r.check} checks could not run: {r.actual}")
    if not lines:
        lines = [f"{len(failed)} checks failed with no layer below them broken: see the FAIL lines"]
    seen: set[str] = set()
    return [PREFIX + x for x in lines if not (x in seen or seen.add(x))]  # type: ignore[func-returns-value]
