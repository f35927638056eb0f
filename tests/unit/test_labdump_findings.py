"""The capture's findings (``python -m overlaylab.labdump``) per network: each host's sandbox
of a network is compared with the containers on that network only, and a host with no
container on a network is expected to have no sandbox for it (the seed's Analysis)."""

from __future__ import annotations

from typing import Any

from overlaylab.config import parse
from overlaylab.labdump import HostView, Sandbox, findings
from overlaylab.stackconfig import raw_from_file

CFG = parse(raw_from_file("isolation"))
IDS = {"demo": "d" * 64, "backend": "b" * 64}
ADDR = {"docker-node1": CFG.hosts[0].address, "docker-node2": CFG.hosts[1].address}
# (container, host, network, ip, mac), as stacks/Pulumi.isolation.yaml places them
PLACED = [
    ("test1", "docker-node1", "demo", "10.0.0.2", "02:42:0a:00:00:02"),
    ("test2", "docker-node2", "demo", "10.0.0.3", "02:42:0a:00:00:03"),
    ("back1", "docker-node1", "backend", "10.0.1.2", "02:42:0a:00:01:02"),
    ("back2", "docker-node2", "backend", "10.0.1.3", "02:42:0a:00:01:03"),
]


def _views(drop: tuple[str, str] | None = None) -> list[HostView]:
    """Every sandbox knows every remote container of its network, but ``drop`` (host, mac)."""
    views = []
    for h in CFG.hosts:
        mine = [p for p in PLACED if p[1] == h.name]
        conts: list[dict[str, Any]] = [
            {"name": n, "status": "running", "networks": {net: {"ip": ip, "mac": mac}}}
            for n, _, net, ip, mac in mine
        ]
        boxes = []
        for net in {p[2] for p in mine}:
            remote = [p for p in PLACED if p[2] == net and p[1] != h.name]
            fdb = [f"{mac} dst {ADDR[host]} self permanent" for _, host, _, _, mac in remote
                   if (h.name, mac) != drop]  # fmt: skip
            neigh = [f"{ip} dev vxlan0 lladdr {mac} PERMANENT" for _, _, _, ip, mac in remote]
            boxes.append(Sandbox(f"/x/netns/1-{IDS[net][:10]}", "vxlan0", fdb, neigh))
        joined = {x.name: "EventMemberJoin" for x in CFG.hosts}
        views.append(HostView(h, False, None, joined, {}, [], boxes, conts, dict(IDS)))
    return views


def test_every_sandbox_is_compared_with_its_own_network_only() -> None:
    assert findings(CFG, _views()) == []


def test_a_missing_entry_is_named_with_its_network() -> None:
    found = findings(CFG, _views(drop=("docker-node1", "02:42:0a:00:01:03")))
    assert found == [
        f"docker-node1's overlay sandbox on backend does not know back2 on docker-node2: "
        f"no fdb entry 02:42:0a:00:01:03 -> {ADDR['docker-node2']}"
    ]


def test_no_sandbox_is_a_finding_only_where_a_container_is_on_the_network() -> None:
    views = _views()
    # docker-node2 keeps no container on backend: no sandbox is expected, none is a finding
    views[1].containers = [c for c in views[1].containers if c["name"] != "back2"]
    views[1].sandboxes = [s for s in views[1].sandboxes if not s.path.endswith(IDS["backend"][:10])]
    views[0].sandboxes = [
        Sandbox(s.path, s.vxlan, [f for f in s.fdb if "01:03" not in f],
                [n for n in s.neigh if "10.0.1.3" not in n])
        for s in views[0].sandboxes
    ]  # fmt: skip
    assert findings(CFG, views) == []
    views[0].sandboxes = []
    assert findings(CFG, views) == [
        "docker-node1 has no overlay sandbox for demo although test1 is on it",
        "docker-node1 has no overlay sandbox for backend although back1 is on it",
    ]
