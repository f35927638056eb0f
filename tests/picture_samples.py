"""Synthetic validator records for the picture's tests: what the validator reports of a healthy
local lab of N hosts (one container each), or of one with UDP 4789 dropped on one host, in
the checks' own subject formats (overlaylab/validate/checks.py, layers.py, overlay.py)."""

from __future__ import annotations

from typing import Any

from overlaylab.config import parse
from overlaylab.config.sample import lab_config
from overlaylab.spec import validation_spec
from overlaylab.validate.facts import Facts
from overlaylab.validate.records import Result

NET_ID = "80ec1e992f" + "ab" * 27


def spec(hosts: int, lab_id: str = "pic", segment: str = "192.168.232") -> dict[str, Any]:
    return validation_spec(parse(lab_config(hosts=hosts, lab_id=lab_id, segment=segment)))


def ok(check: str, subject: str, value: str) -> Result:
    return Result(check, subject, value, value, True)


def bad(check: str, subject: str, expected: str, actual: str) -> Result:
    return Result(check, subject, expected, actual, False)


def records(sp: dict[str, Any], vxlan_dropped_on: str | None = None) -> list[Result]:
    """Every record of a validation of ``sp``'s lab; ``vxlan_dropped_on``: that host's
    namespace drops incoming UDP 4789, as tests/lab/test_faults.py injects it."""
    hosts = [h["name"] for h in sp["hosts"]]
    adv = {h["name"]: h["advertise"] for h in sp["hosts"]}
    conts = sp["containers"]
    host_of = {c["name"]: c["host"] for c in conts}
    ip = {c["name"]: f"10.0.0.{i + 2}" for i, c in enumerate(conts)}
    key = f"/docker/network/v1.0/network/{NET_ID}"
    out: list[Result] = []
    for h in hosts:
        out.append(ok("etcd.member-healthy", h, "healthy"))
        out.append(ok("etcd.member-list", h, str(sorted(hosts))))
    out += [ok("etcd.node-registered", h, f"/docker/nodes/{adv[h]}") for h in hosts]
    out.append(ok("etcd.nodes-exact", "/docker/nodes", "only the stack's hosts"))
    out.append(ok("docker.network-exists", hosts[0], "network demo"))
    out += [
        ok("etcd.network-key", key, "present"),
        ok("etcd.network-name", key, "demo"),
        ok("etcd.network-type", key, "overlay"),
        ok("etcd.network-subnet", key, "['10.0.0.0/24']"),
    ]
    for h in hosts:
        out.append(ok("docker.network-id", h, NET_ID[:12]))
        out.append(ok("docker.network-global", h, "overlay/global"))
    for c in conts:
        s = f"{c['name']}@{c['host']}"
        addr = next(h["address"] for h in sp["hosts"] if h["name"] == c["host"])
        out.append(ok("etcd.endpoint-locator", s, addr))
        out.append(ok("etcd.endpoint-ip", s, ip[c["name"]]))
        out.append(ok("etcd.endpoint-mac", s, mac(ip[c["name"]])))
    drop = vxlan_dropped_on
    for a in hosts:
        for b in hosts:
            if a == b:
                continue
            s = f"{a} -> {b}"
            out.append(ok("underlay.ping", s, "reply"))
            if b == drop:
                out.append(
                    bad("underlay.vxlan", s, "UDP 4789 delivered", "UDP 4789 not delivered in 1s")
                )
            else:
                out.append(ok("underlay.vxlan", s, "UDP 4789 delivered"))
            out.append(ok("underlay.serf-udp", s, "UDP 7946 delivered"))
            out.append(ok("underlay.serf-tcp", s, "TCP 7946 open"))
    need = "eth0 MTU >= 1500 (overlay MTU 1450 + 50 for VXLAN)"
    out += [Result("underlay.mtu", h, need, "eth0 MTU 1500", True) for h in hosts]
    failed_pairs = []
    for a in conts:
        for b in conts:
            if a is b:
                continue
            x, y = a["name"], b["name"]
            across = a["host"] != b["host"]
            scope = "across hosts" if across else "same host"
            broken = across and drop in (a["host"], b["host"])
            for how in ("IP", "name"):
                s = f"{x} -> {y} by {how} ({scope})"
                if broken:
                    out.append(bad("overlay.ping", s, "reply", f"no reply from {ip[y]} in 1s"))
                else:
                    out.append(ok("overlay.ping", s, "reply"))
            if across:
                s = f"{x} -> {y} (across hosts)"
                exp = "reply to a 1450-byte don't-fragment ping"
                if broken:
                    act = f"no reply from {ip[y]} in 1s at 1450 bytes"
                    out.append(bad("overlay.path-mtu", s, exp, act))
                    failed_pairs.append((x, y))
                else:
                    out.append(Result("overlay.path-mtu", s, exp, "reply at 1450 bytes", True))
    if len(hosts) > 1 and conts:
        first, other = conts[0]["name"], next(h for h in hosts if h != conts[0]["host"])
        out.append(
            Result(
                "overlay.name-unique",
                f"{first} again on {other}",
                "refused",
                "refused (Conflict: endpoint with name test1 already exists in network demo)",
                True,
            )
        )
        out.append(ok("overlay.name-probe-clean", other, "no container left"))
        out.append(ok("overlay.name-probe-clean", f"endpoint keys named {first}", "1"))
    for x, y in failed_pairs:
        s = f"{host_of[x]}'s overlay sandbox knows {y}"
        vtep = next(h["address"] for h in sp["hosts"] if h["name"] == host_of[y])
        out.append(ok("overlay.sandbox-fdb", s, f"{mac(ip[y])} via VTEP {vtep}"))
        out.append(ok("overlay.sandbox-neigh", s, f"{ip[y]} at {mac(ip[y])}"))
    return out


def mac(ip: str) -> str:
    return "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))


def facts(sp: dict[str, Any]) -> Facts:
    f = Facts()
    for i, c in enumerate(sp["containers"]):
        addr = f"10.0.0.{i + 2}"
        f.container(c["name"], c["host"], addr, mac(addr))
        f.container_mtu(c["name"], c["host"], 1450)
    for h in sp["hosts"]:
        f.host_mtu(h["name"], 1500)
        f.network_id(h["name"], NET_ID)
    f.overlay_vnis([256])  # read for the page alone (read_for_page)
    f.etcd_leader(sp["hosts"][0]["name"])
    return f
