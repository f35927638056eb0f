"""The control-plane checks: etcd members, Docker's keys in etcd, the network, the name rule."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
from typing import Any

from overlaylab.errors import LabError
from overlaylab.validate.records import Lab, Result, _r

NETWORK_PREFIX = "/docker/network/v1.0/network/"
ENDPOINT_PREFIX = "/docker/network/v1.0/endpoint/"
NODES = "/docker/nodes"


def check_etcd(lab: Lab) -> list[Result]:
    expected = sorted(h["name"] for h in lab.hosts)

    def member(name: str) -> list[Result]:
        c = lab.etcd[name]
        try:
            healthy = c.health()
        except LabError as e:
            return [_r("etcd.member-healthy", name, "healthy", f"unreachable ({e})", False)]
        out = [_r("etcd.member-healthy", name, "healthy", "healthy" if healthy else "unhealthy")]
        if healthy:
            _, members = c.members()
            have = sorted(str(m.get("name", "")) for m in members)
            leaving = sorted(set(have) - set(expected)) if lab.in_up else []
            if leaving and set(expected) <= set(have):
                shown = f"{expected} + {leaving} leaving (deleted after this check by `up`)"
                out.append(_r("etcd.member-list", name, expected, shown, True))
            else:
                out.append(_r("etcd.member-list", name, expected, have))
        return out

    return [r for rs in lab.map(member, list(lab.etcd)) for r in rs]


def check_nodes(lab: Lab) -> list[Result]:
    node = lab.any_etcd().v2_get(NODES)
    have = set(node.children()) if node else set()
    out = [
        _r(
            "etcd.node-registered",
            h["name"],
            f"{NODES}/{h['advertise']}",
            f"{NODES}/{h['advertise']}" if h["advertise"] in have else "no such key",
        )
        for h in lab.hosts
    ]
    extra = sorted(have - {h["advertise"] for h in lab.hosts})
    # In `up` a host leaving the stack still has its daemon, whose key (with its TTL) goes
    # after this check; a key with no TTL is no daemon's, and `up` deleted those before any
    # change (overlaylab/nodekeys.py): one still there fails in `up` too.
    stale = [a for a in extra if node is not None and node.children()[a].ttl is None]
    leaving = [a for a in extra if a not in stale]
    shown: object = extra
    if lab.in_up and not stale:
        shown = f"{leaving} leaving (deleted after this check by `up`)"
    elif lab.in_up and leaving:
        shown = f"{stale} with no TTL (stale); {leaving} leaving"
    out.append(
        _r(
            "etcd.nodes-exact",
            NODES,
            "only the stack's hosts",
            shown if extra else "only the stack's hosts",
            not extra or (lab.in_up and not stale),
        )
    )
    return out


def check_network(lab: Lab) -> list[Result]:
    out: list[Result] = []
    name = lab.network["name"]
    first = lab.hosts[0]["name"]
    net_id = lab.network_id(first)
    out.append(
        _r(
            "docker.network-exists",
            first + lab.suffix,
            f"network {name}",
            f"network {name}" if net_id else "no such network",
        )
    )
    if not net_id:
        return out
    key = NETWORK_PREFIX + net_id
    node = lab.any_etcd().v2_get(key)
    out.append(_r("etcd.network-key", key, "present", "present" if node else "missing"))
    if node and node.value:
        data = json.loads(node.value)
        out.append(_r("etcd.network-name", key, name, data.get("name")))
        out.append(_r("etcd.network-type", key, "overlay", data.get("networkType")))
        pools = [
            json.loads(i["IPAMData"]).get("Pool")
            for i in json.loads(data.get("ipamV4Info") or "[]")
        ]
        out.append(_r("etcd.network-subnet", key, [lab.network["subnet"]], pools))
        gateways = [
            json.loads(i["IPAMData"]).get("Gateway")
            for i in json.loads(data.get("ipamV4Info") or "[]")
        ]
        if "mtu" in lab.network:
            # A spec with networks (the seed's keeps its checks): the gateway as configured
            # (libnetwork's IPAMData keeps it with the subnet's prefix length).
            want = f"{lab.network['gateway']}/{lab.network['subnet'].split('/')[1]}"
            out.append(_r("etcd.network-gateway", key, [want], gateways))

    def on_host(host: str) -> list[Result]:
        try:
            nets = lab.docker(host).networks.list(names=[name])
        except Exception as e:
            return [
                _r(
                    "docker.network-global",
                    host + lab.suffix,
                    "reachable daemon",
                    f"error: {e}",
                    False,
                )
            ]
        nets = [n for n in nets if n.name == name]
        if not nets:
            return [
                _r("docker.network-id", host + lab.suffix, net_id[:12], "network not listed", False)
            ]
        n = nets[0]
        return [
            _r("docker.network-id", host + lab.suffix, net_id[:12], n.id[:12]),
            _r(
                "docker.network-global",
                host + lab.suffix,
                "overlay/global",
                f"{n.attrs.get('Driver')}/{n.attrs.get('Scope')}",
            ),
        ]

    out += [r for rs in lab.map(on_host, [h["name"] for h in lab.hosts]) for r in rs]
    return out


def endpoint_keys(lab: Lab, net_id: str) -> dict[str, list[dict[str, Any]]]:
    """The overlay's endpoint keys in etcd, by endpoint name."""
    node = lab.any_etcd().v2_get(ENDPOINT_PREFIX + net_id)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for n in node.nodes if node else ():
        if n.value:
            ep = json.loads(n.value)
            by_name.setdefault(ep.get("name", ""), []).append(ep)
    return by_name


def check_endpoints(lab: Lab) -> list[Result]:
    out: list[Result] = []
    net_id = lab.network_id(lab.hosts[0]["name"])
    if not net_id:
        return [_r("etcd.endpoint", lab.network["name"], "network exists", "no network", False)]
    by_name = endpoint_keys(lab, net_id)
    infos = lab.container_infos()
    locator = {h["name"]: h["address"] for h in lab.hosts}
    for c in lab.containers:
        eps = by_name.get(c["name"], [])
        info = infos[c["name"]]
        subject = f"{c['name']}@{c['host']}{lab.suffix}"
        running = f"running on {lab.network['name']}" if lab.suffix else "running on the overlay"
        if not info.on_overlay:
            out.append(
                _r(
                    "docker.container-running",
                    subject,
                    running,
                    "not running or not attached" + (f" ({info.error})" if info.error else ""),
                    False,
                )
            )
        else:
            # said when it holds too: a healthy lab's test is passed, not "ran no checks"
            out.append(
                _r("docker.container-running", subject, running, f"{running}, {info.ip}", True)
            )
        if len(eps) != 1:
            out.append(
                _r("etcd.endpoint-key", subject, "1 endpoint key", f"{len(eps)} keys", False)
            )
            continue
        ep = eps[0]
        iface = ep.get("ep_iface", {})
        out.append(_r("etcd.endpoint-locator", subject, locator[c["host"]], ep.get("locator")))
        if info.on_overlay:
            ep_ip = str(ipaddress.ip_interface(iface.get("addr", "0.0.0.0/32")).ip)
            out.append(_r("etcd.endpoint-ip", subject, info.ip, ep_ip))
            out.append(
                _r("etcd.endpoint-mac", subject, info.mac, str(iface.get("mac", "")).lower())
            )
    return out


def check_name_rule(lab: Lab) -> list[Result]:
    """A container name is unique across the overlay: a second one elsewhere is refused."""
    import docker

    if len(lab.hosts) < 2 or not lab.containers:
        return []
    c = lab.containers[0]
    other = next(h["name"] for h in lab.hosts if h["name"] != c["host"])
    subject = f"{c['name']} again on {other}"
    client = lab.docker(other)
    refused, detail = False, ""
    probe = None
    try:
        probe = client.containers.create(
            lab.spec.get("image", "busybox:latest"),
            ["sh", "-c", "sleep 5"],
            name=c["name"],
            network=lab.network["name"],
            detach=True,
        )
        probe.start()
        detail = "started"
    except docker.errors.APIError as e:
        refused = True
        detail = str(e.explanation or e)
    finally:
        if probe is not None:
            with contextlib.suppress(docker.errors.NotFound):
                probe.remove(force=True)
    out = [_r("overlay.name-unique", subject, "refused", "refused" if refused else detail, refused)]
    if refused:
        out[0] = _r("overlay.name-unique", subject, "refused", f"refused ({detail})", True)
    left = client.containers.list(all=True, filters={"name": f"^/{c['name']}$"})
    out.append(
        _r(
            "overlay.name-probe-clean",
            other,
            "no container left",
            "no container left" if not left else f"{len(left)} left",
        )
    )
    net_id = lab.network_id(c["host"])

    def named() -> list[str]:
        eps = endpoint_keys(lab, net_id or "none")
        return sorted(str(ep.get("name")) for group in eps.values() for ep in group)

    names = named()
    count = names.count(c["name"])
    actual = str(count)
    if count != 1:
        # Evidence for a rare failure: what the store held, and whether it was a moment's.
        time.sleep(1)
        again = named()
        actual = (
            f"{count} (endpoints {names} in {net_id or 'no network'}, read from "
            f"{lab.any_etcd().endpoint}; 1 s later {again.count(c['name'])}: {again})"
        )
    out.append(
        _r(
            "overlay.name-probe-clean",
            f"endpoint keys named {c['name']}",
            1,
            actual,
            count == 1,
        )
    )
    return out
