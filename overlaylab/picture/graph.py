"""The picture as a Graphviz graph (laid out by ``dot``), rendered to SVG.

One frame (cluster) per host, one row per host, left to right: its etcd member, its dockerd,
its containers (``eth0`` on the overlay, ``eth1`` on ``docker_gwbridge``),
``docker_gwbridge``, the overlay's sandbox (``br0``, ``vxlan0``) and its own ``eth0``; on the
left the etcd cluster with Docker's keys, on the right the underlay with a VXLAN tunnel for
every two hosts, joined to both hosts' ``eth0`` (their VTEP addresses). A tunnel is a node
with two legs rather than one edge: eight hosts have 28 tunnels, and 28 labelled nodes in a
column read better than 28 edges crossing one another between the hosts.
Every node, frame and edge carries its element's id and a class ``status-<status>``; its SVG
``<title>`` (the tooltip) says what it is and lists the checks about it.
"""

from __future__ import annotations

import html
import itertools
import xml.etree.ElementTree as ET
from typing import Any

import graphviz

from overlaylab.picture.model import (
    ETCD_CLUSTER,
    UNDERLAY,
    Element,
    Picture,
    Status,
    br0_id,
    container_id,
    dockerd_id,
    endpoint_key_id,
    gwbridge_id,
    host_id,
    member_id,
    network_key_id,
    node_key_id,
    sandbox_id,
    uplink_id,
    vxlan_id,
)

FONT = "DejaVu Sans"
FILL: dict[Status, str] = {
    "passed": "#e3f4e1",
    "failed": "#fde2e1",
    "unknown": "#eeeeee",
    "planned": "#f4f4f4",
}
LINE: dict[Status, str] = {
    "passed": "#2e7d32",
    "failed": "#c62828",
    "unknown": "#8c8c8c",
    "planned": "#8c8c8c",
}
UNKNOWN = "?"
SVG_NS = "http://www.w3.org/2000/svg"
TOOLTIP_LINES = 24


class PictureError(Exception):
    """The drawing could not be made (no ``dot``, or it failed)."""


def _style(status: Status, extra: str = "") -> dict[str, str]:
    dashed = ",dashed" if status == "planned" else ""
    return {
        "class": f"status-{status}",
        "color": LINE[status],
        "fillcolor": FILL[status],
        "style": f"filled{extra}{dashed}",
        "penwidth": "2.4" if status == "failed" else "1.2",
    }


def _edge_style(status: Status) -> dict[str, str]:
    return {
        "class": f"status-{status}",
        "color": LINE[status],
        "penwidth": {"failed": "3.2", "passed": "2"}.get(status, "1.4"),
        "style": {"unknown": "dashed", "planned": "dashed"}.get(status, "solid"),
    }


def _table(rows: list[tuple[str, str]], title: str = "") -> str:
    """An HTML-like label: an optional bold title, then rows (port, text) left aligned."""
    cells = [f"<TR><TD><B>{html.escape(title)}</B></TD></TR>"] if title else []
    for port, text in rows:
        p = f' PORT="{port}"' if port else ""
        cells.append(f'<TR><TD{p} ALIGN="LEFT">{html.escape(text)}</TD></TR>')
    table = '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
    return f"<{table}{''.join(cells)}</TABLE>>"


def _v(x: Any) -> str:
    return UNKNOWN if x is None or x == "" else str(x)


class _Builder:
    def __init__(self, pic: Picture) -> None:
        self.pic = pic
        self.tips: dict[str, str] = {}
        self.g = graphviz.Digraph(
            "lab",
            graph_attr={
                "rankdir": "LR",
                "newrank": "true",
                "fontname": FONT,
                "fontsize": "12",
                "nodesep": "0.18",
                "ranksep": "0.5",
                "bgcolor": "white",
                "pad": "0.1",
                "compound": "true",
            },
            node_attr={
                "shape": "box",
                "fontname": FONT,
                "fontsize": "11",
                "margin": "0.08,0.03",
                "height": "0.3",
            },
            edge_attr={"fontname": FONT, "fontsize": "10", "arrowsize": "0.6"},
        )

    def status(self, eid: str) -> Status:
        return self.pic.status(eid)

    def tip(self, eid: str, what: str) -> None:
        if eid.startswith("host-"):  # a frame: the worst of what it holds
            self.tips[eid] = f"{what}: {self.status_of(eid)} (the worst of what it holds)"
            return
        self.tips[eid] = tooltip(what, self.pic.elements.get(eid), self.status_of(eid))

    def status_of(self, eid: str) -> Status:
        if eid.startswith("host-"):
            return self.pic.host_status(eid[len("host-") :])
        return self.status(eid)

    def node(
        self, g: Any, eid: str, label: str, what: str, shape: str = "box", rounded: bool = True
    ) -> None:
        st = self.status(eid)
        g.node(
            eid,
            label=label,
            id=eid,
            shape=shape,
            **_style(st, ",rounded" if rounded else ""),
        )
        self.tip(eid, what)

    def build(self) -> graphviz.Digraph:
        pic = self.pic
        hosts = {str(h["name"]): h for h in pic.spec["hosts"]}
        self.etcd(hosts)
        for h, hd in hosts.items():
            self.host(h, hd)
        self.underlay()
        # One row per host, in the spec's order, each kind of element in its own column.
        for col in (member_id, uplink_id):
            with self.g.subgraph() as same:
                same.attr(rank="same")
                for h in hosts:
                    same.node(col(h))
        rows = [member_id(h) for h in hosts]
        for a, b in itertools.pairwise(rows):
            self.g.edge(a, b, style="invis")
        return self.g

    def etcd(self, hosts: dict[str, dict[str, Any]]) -> None:
        """The etcd cluster's frame, left of the hosts: Docker's keys, each beside its host."""
        pic, facts = self.pic, self.pic.facts
        with self.g.subgraph(name=f"cluster_{ETCD_CLUSTER}") as c:
            c.attr(
                id=ETCD_CLUSTER,
                label="etcd: Docker's keys",
                labeljust="l",
                **_style(self.status(ETCD_CLUSTER), ",rounded"),
            )
            self.tip(
                ETCD_CLUSTER,
                f"the etcd cluster ({len(hosts)} members, leader {_v(facts.leader)}), "
                "v2 keys under /docker",
            )
            for n in pic.overlays:
                nid = facts.network_ids.get(pic.hosts[0]) if n.first else None
                self.node(
                    c,
                    network_key_id(n.name),
                    _table([("", f"network {nid[:12] if nid else '<id>'}"), ("", n.name)]),
                    f"key /docker/network/v1.0/network/{nid or '<id>'}: the overlay {n.name}",
                    shape="note",
                    rounded=False,
                )
                self.g.edge(network_key_id(n.name), member_id(pic.hosts[0]), style="invis")
            for h, hd in hosts.items():
                keys = [node_key_id(h)] + [endpoint_key_id(x) for x in pic.containers_on(h)]
                self.node(
                    c,
                    node_key_id(h),
                    _table([("", "nodes/"), ("", str(hd["advertise"]))]),
                    f"key /docker/nodes/{hd['advertise']}: {h}'s dockerd in the cluster store",
                    shape="note",
                    rounded=False,
                )
                for name in pic.containers_on(h):
                    self.node(
                        c,
                        endpoint_key_id(name),
                        _table([("", "endpoint"), ("", name)]),
                        f"key /docker/network/v1.0/endpoint/<network id>/<endpoint id>: {name}",
                        shape="note",
                        rounded=False,
                    )
                for k in keys:  # beside its host's row
                    self.g.edge(k, member_id(h), style="invis", weight="4")

    def host(self, h: str, hd: dict[str, Any]) -> None:
        """A host's frame, left to right: etcd member, dockerd, containers, docker_gwbridge and
        the overlay's sandbox (br0, vxlan0), eth0 on the underlay."""
        pic, facts = self.pic, self.pic.facts
        with self.g.subgraph(name=f"cluster_{host_id(h)}") as c:
            c.attr(
                id=host_id(h),
                label=f"{h}  {hd['address']}",
                labeljust="l",
                fontsize="12",
                **{**_style(pic.host_status(h), ",rounded"), "fillcolor": "white"},
            )
            self.tip(host_id(h), f"host {h} at {hd['address']}")
            if facts.leader is None:
                leader = "leader ?"
            else:
                leader = "leader" if facts.leader == h else "follower"
            self.node(
                c,
                member_id(h),
                _table([("", leader)], "etcd member"),
                f"etcd member {h} at {hd['etcdEndpoint']} ({leader})",
            )
            port = str(hd["advertise"]).rsplit(":", 1)[-1]
            self.node(
                c,
                dockerd_id(h),
                _table([("", f"advertise :{port}")], "dockerd"),
                f"dockerd of {h} at {hd['dockerHost']}, --cluster-advertise {hd['advertise']}, "
                f"its cluster store the etcd member",
            )
            c.edge(member_id(h), dockerd_id(h), id=f"store-{h}", style="dashed", dir="back")
            self.node(
                c,
                gwbridge_id(h),
                "docker_gwbridge",
                f"docker_gwbridge on {h}: the containers' eth1 (not checked by the validator)",
            )
            mtu = facts.underlay_mtu.get(h)
            self.node(
                c,
                uplink_id(h),
                _table([("", f"MTU {_v(mtu)}")], "eth0"),
                f"{h}'s underlay interface eth0 at {hd['address']}, MTU {_v(mtu)}",
            )
            for n in pic.overlays:
                sid = sandbox_id(h, n.name)
                with c.subgraph(name=f"cluster_{sid}") as s:
                    nid = facts.network_ids.get(h) if n.first else None
                    s.attr(
                        id=sid,
                        label=f"sandbox {n.name}",
                        labeljust="l",
                        fontsize="10",
                        **_style(self.status(sid), ",rounded"),
                    )
                    self.tip(
                        sid,
                        f"the overlay {n.name}'s sandbox on {h}"
                        + (f" (network {nid[:12]})" if nid else ""),
                    )
                    self.node(s, br0_id(h, n.name), "br0", f"bridge br0 of {n.name} on {h}")
                    vni = ", ".join(map(str, facts.vnis)) if n.first else None
                    self.node(
                        s,
                        vxlan_id(h, n.name),
                        _table([("", f"VNI {_v(vni)}"), ("", f"MTU {UNKNOWN}")], "vxlan0"),
                        f"vxlan0 of {n.name} on {h}: the VTEP at {hd['address']}, VNI {_v(vni)}",
                    )
                    s.edge(br0_id(h, n.name), vxlan_id(h, n.name), arrowhead="none")
                c.edge(vxlan_id(h, n.name), uplink_id(h), arrowhead="none")
            names = pic.containers_on(h)
            for name in names:
                self.container(c, h, name)
            if not names:
                for n in pic.overlays:
                    c.edge(dockerd_id(h), br0_id(h, n.name), style="invis", minlen="2")
                c.edge(dockerd_id(h), gwbridge_id(h), style="invis", minlen="2")

    def container(self, c: Any, h: str, name: str) -> None:
        cf = self.pic.facts.containers.get(name)
        net = self.pic.network_of(name)
        ip, mac, mtu = (cf.ip, cf.mac, cf.mtu) if cf else (None, None, None)
        cid = container_id(name)
        self.node(
            c,
            cid,
            _table(
                [
                    ("eth0", f"eth0 {_v(ip)} MTU {_v(mtu)}"),
                    ("", f"MAC {_v(mac)}"),
                    ("eth1", "eth1 docker_gwbridge"),
                ],
                name,
            ),
            f"container {name} on {h}: eth0 on {net.name} ({_v(ip)}, MAC {_v(mac)}, "
            f"MTU {_v(mtu)}), eth1 on docker_gwbridge"
            + (f"; {cf.error}" if cf and cf.error else ""),
        )
        c.edge(dockerd_id(h), cid, style="invis")
        c.edge(
            f"{cid}:eth0",
            br0_id(h, net.name),
            id=f"link-{name}-eth0",
            arrowhead="none",
            **_edge_style(self.status(cid)),
        )
        c.edge(
            f"{cid}:eth1",
            gwbridge_id(h),
            id=f"link-{name}-eth1",
            arrowhead="none",
            **_edge_style("planned" if self.pic.planned else "unknown"),
        )

    def underlay(self) -> None:
        """The underlay's frame, right of the hosts: a VXLAN tunnel between every two hosts'
        VTEPs, each drawn as a node joined to both hosts' eth0 (legs in its colour)."""
        pic = self.pic
        bridge = pic.spec.get("lab", {}).get("bridge")
        with self.g.subgraph(name=f"cluster_{UNDERLAY}") as c:
            c.attr(
                id=UNDERLAY,
                label="underlay" + (f", bridge {bridge}" if bridge else ""),
                labeljust="l",
                labelloc="b",
                **_style(self.status(UNDERLAY), ",rounded"),
            )
            self.tip(
                UNDERLAY, "the hosts' underlay segment" + (f", bridge {bridge}" if bridge else "")
            )
            for a, b, n, tid in pic.tunnels():
                st = self.status(tid)
                net = "" if n.first else f" ({n.name})"
                c.node(
                    tid,
                    label=f"VXLAN {a} ⇄ {b}{net}",
                    id=tid,
                    shape="box",
                    fontsize="11",
                    height="0.22",
                    margin="0.08,0.03",
                    **{**_style(st, ",rounded"), "penwidth": "2.4" if st == "failed" else "1.2"},
                )
                self.tip(tid, f"VXLAN tunnel {a} <-> {b}{net}, between the VTEPs of their vxlan0")
                for end in (a, b):
                    self.g.edge(
                        uplink_id(end),
                        tid,
                        id=f"leg-{tid}-{end}",
                        arrowhead="none",
                        **_edge_style(st),
                    )


def tooltip(what: str, el: Element | None, status: Status) -> str:
    lines = [f"{what}: {status}"]
    if el is not None:
        failed = [r for r in el.checks if not r.ok]
        passed = [r for r in el.checks if r.ok]
        lines += [r.line() for r in failed]
        lines += [f"also {r.line()} (drawn on {where})" for r, where in el.explained]
        lines += [r.line() for r in passed]
    if len(lines) > TOOLTIP_LINES:
        more = len(lines) - TOOLTIP_LINES
        lines = [*lines[:TOOLTIP_LINES], f"... and {more} more (the table below lists all)"]
    if el is not None and not el.checks and status != "planned":
        lines.append("no check of the validator is about it")
    return "\n".join(lines)


def svg(pic: Picture) -> str:
    """The drawing as an SVG element to inline in HTML (no XML prolog, no namespace URL)."""
    b = _Builder(pic)
    g = b.build()
    try:
        raw = g.pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound:
        raise PictureError(
            "Graphviz's dot is not installed (apt-get install graphviz; scripts/setup does)"
        ) from None
    except graphviz.CalledProcessError as e:
        err = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        raise PictureError(f"dot failed: {err[-1] if err else e}") from None
    return _finish(raw, b.tips)


def _finish(raw: str, tips: dict[str, str]) -> str:
    """Each element's ``<title>`` becomes its tooltip; comments and the prolog go."""
    ET.register_namespace("", SVG_NS)
    root = ET.fromstring(raw)
    for g in root.iter(f"{{{SVG_NS}}}g"):
        eid = g.get("id", "")
        title = g.find(f"{{{SVG_NS}}}title")
        if title is None:
            continue
        if eid in tips:
            title.text = tips[eid]
        elif g.get("class") in ("edge", "node"):
            g.remove(title)  # an unnamed helper: graphviz's own name says nothing to a person
    root.set("class", "drawing")
    root.set("role", "img")
    text = ET.tostring(root, encoding="unicode")
    return text.replace(f' xmlns="{SVG_NS}"', "", 1)
