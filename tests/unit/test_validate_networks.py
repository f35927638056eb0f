"""The validator per network (issue 16, items 2, 4 and 8), on a fake lab: fake daemons (their
inspect and network list) and fake namespace probes on a small model of the wire, so what is
checked is the validator's own logic. Nothing here sends a packet or enters a namespace.

The model: each container's namespace has interfaces with an address and an MTU; an echo from
an interface reaches an address iff that address is on another container's interface in the
same subnet and the packet fits both interfaces' MTU.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import overlaylab.validate.probes as probes
import overlaylab.validate.records as records
from overlaylab.config import parse
from overlaylab.spec import validation_spec
from overlaylab.stackconfig import raw_from_file
from overlaylab.validate.diagnose import diagnose
from overlaylab.validate.isolation import check_isolation, check_placement
from overlaylab.validate.layers import check_underlay_mtu
from overlaylab.validate.overlay import (
    check_connectivity,
    check_path_mtu,
    failed_pairs_across,
)
from overlaylab.validate.records import Lab, Result, parse_ip_addr, spec_networks
from overlaylab.validate.run import DATA, per_network

NET_IDS = {"demo": "d" * 64, "backend": "b" * 64}


@dataclass
class Iface:
    ip: str
    mtu: int
    net: str  # the Docker network it is on ("" for one not Docker's)
    mac: str = "02:42:0a:00:00:01"


@dataclass
class Wire:
    """Every container's interfaces, by its namespace path; the echoes sent."""

    netns: dict[str, dict[str, Iface]] = field(default_factory=dict)
    host_of: dict[str, str] = field(default_factory=dict)  # container -> host
    sent: list[tuple[str, str, str | None, int]] = field(default_factory=list)
    option: dict[str, str] = field(default_factory=dict)  # network -> Docker's MTU option

    def subnet_of(self, iface: Iface) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{iface.ip}/24", strict=False)

    def echo(
        self,
        netns: str,
        dst: str,
        size: int = 56,
        df: bool = False,
        timeout: float = 1.0,
        ifname: str | None = None,
    ) -> probes.Outcome:
        self.sent.append((netns, dst, ifname, size))
        own = self.netns[netns]
        outs = [own[ifname]] if ifname else list(own.values())
        for out in outs:
            if ipaddress.ip_address(dst) not in self.subnet_of(out):
                continue
            if df and size + 28 > out.mtu:
                return probes.Outcome(False, f"cannot send to {dst}: Message too long")
            for other, ifaces in self.netns.items():
                for i in ifaces.values():
                    if other != netns and i.ip == dst:
                        if df and size + 28 > i.mtu:
                            return probes.Outcome(False, f"no reply from {dst} in 1s")
                        return probes.Outcome(True, "reply")
        return probes.Outcome(False, f"no reply from {dst} in 1s")

    def dns(self, netns: str, name: str, timeout: float = 1.0) -> tuple[list[str], str]:
        nets = {i.net for i in self.netns[netns].values()}
        for i in self.netns.get(f"/ns/{name}", {}).values():
            if i.net and i.net in nets:
                return [i.ip], ""
        return [], "NXDOMAIN"


class FakeContainer:
    def __init__(self, wire: Wire, name: str) -> None:
        self.status = "running"
        ifaces = wire.netns[f"/ns/{name}"]
        self.attrs: dict[str, Any] = {
            "NetworkSettings": {
                "SandboxKey": f"/ns/{name}",
                "Networks": {
                    i.net: {"IPAddress": i.ip, "MacAddress": i.mac}
                    for i in ifaces.values()
                    if i.net
                },
            }
        }


class FakeNetwork:
    def __init__(self, wire: Wire, name: str) -> None:
        self.name, self.id = name, NET_IDS[name]
        opt = wire.option.get(name)
        self.attrs = {
            "Driver": "overlay",
            "Scope": "global",
            "Options": {"com.docker.network.driver.mtu": opt} if opt else {},
        }


class FakeDocker:
    def __init__(self, wire: Wire, host: str) -> None:
        self.wire, self.host = wire, host
        me = self

        class Containers:
            def get(self, name: str) -> FakeContainer:
                import docker

                if wire.host_of.get(name) != me.host:
                    raise docker.errors.NotFound(name)
                return FakeContainer(wire, name)

        class Networks:
            def list(self, names: list[str]) -> list[FakeNetwork]:
                return [FakeNetwork(wire, n) for n in names if n in NET_IDS]

            def get(self, net_id: str) -> FakeNetwork:
                return next(FakeNetwork(wire, n) for n, i in NET_IDS.items() if i == net_id)

        self.containers, self.networks = Containers(), Networks()


def _lab(spec: dict[str, Any], wire: Wire, monkeypatch: pytest.MonkeyPatch) -> Lab:
    spec = copy.deepcopy(spec)
    spec["lab"]["bridge"] = None  # no route guard: nothing is contacted
    monkeypatch.setattr(probes, "icmp_echo", wire.echo)
    monkeypatch.setattr(probes, "dns_lookup", wire.dns)
    monkeypatch.setattr(
        probes, "addresses", lambda ns: {k: i.ip for k, i in wire.netns[ns].items()}
    )
    monkeypatch.setattr(probes, "link_mtu", lambda ns, ifname: wire.netns[ns][ifname].mtu)
    monkeypatch.setattr(probes, "can_enter", lambda: True)
    lab = Lab(spec)
    lab._docker = {h["name"]: FakeDocker(wire, h["name"]) for h in lab.hosts}
    return lab


def _wire(spec: dict[str, Any], mtu: int = 1450, swap: bool = False) -> Wire:
    """Each container on its networks, addresses in order; ``swap``: a container on two
    networks has its second network's interface as eth0 (attached in another order)."""
    w = Wire()
    nets = spec_networks(spec)
    count: dict[str, int] = {}
    for c in spec["containers"]:
        w.host_of[c["name"]] = c["host"]
        joined = c.get("networks") or [nets[0]["name"]]
        ifaces: dict[str, Iface] = {}
        order = list(reversed(joined)) if swap else joined
        for k, n in enumerate(order):
            count[n] = count.get(n, 1) + 1
            base = next(x for x in nets if x["name"] == n)["subnet"].rsplit(".", 1)[0]
            ifaces[f"eth{k if k == 0 else k + 1}"] = Iface(f"{base}.{count[n]}", mtu, n)
        ifaces["eth1"] = Iface(f"172.18.0.{len(w.netns) + 2}", 1500, "")  # docker_gwbridge
        w.netns[f"/ns/{c['name']}"] = ifaces
    return w


def isolation_spec(**net_mtu: int) -> dict[str, Any]:
    raw = copy.deepcopy(raw_from_file("isolation"))
    for n in raw["networks"]:
        if n["name"] in net_mtu:
            n["mtu"] = net_mtu[n["name"]]
    return validation_spec(parse(raw))


def seed_spec(lab_mtu: int = 1500) -> dict[str, Any]:
    raw = copy.deepcopy(raw_from_file("local"))
    raw["lab"]["mtu"] = lab_mtu
    return validation_spec(parse(raw))


def failed(results: list[Result]) -> list[Result]:
    return [r for r in results if not r.ok]


# --- expected values from the configuration (item 4) --------------------------------------


def test_a_docker_that_ignored_the_mtu_option_fails_validation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """lab.mtu 9000 and backend's mtu 8000: the containers come up at Docker's 1450."""
    raw = copy.deepcopy(raw_from_file("isolation"))
    raw["lab"]["mtu"] = 9000
    raw["networks"][1]["mtu"] = 8000
    spec = validation_spec(parse(raw))
    lab = _lab(spec, _wire(spec, mtu=1450), monkeypatch)
    results = per_network(check_path_mtu)(lab)
    mtus = {r.subject: r for r in results if r.check == "overlay.mtu"}
    assert mtus["test1@docker-node1 on demo"].expected == "interface MTU 8950"
    assert mtus["back1@docker-node1 on backend"].expected == "interface MTU 8000"
    assert all(not r.ok and r.actual == "interface MTU 1450" for r in mtus.values())
    assert len(mtus) == 3 + 3  # test1, test2, both1 on demo; back1, back2, both1 on backend
    # the full-size ping is at the configured MTU, not at what the containers report
    sizes = {size for _, _, _, size in lab_sent(lab)}
    assert sizes == {8950 - 28, 8000 - 28}
    lines = diagnose(results)
    assert (
        "diagnosis: test1 on docker-node1 has the wrong MTU on demo: interface MTU 1450, the "
        "configuration gives 8950 (did Docker ignore the network's "
        "com.docker.network.driver.mtu option?)"
    ) in lines
    assert not any("path MTU problem" in x for x in lines)


def lab_sent(lab: Lab) -> list[tuple[str, str, str | None, int]]:
    sent: list[tuple[str, str, str | None, int]] = probes.icmp_echo.__self__.sent  # type: ignore[attr-defined]
    return sent


def test_the_same_lab_at_the_configured_mtu_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = copy.deepcopy(raw_from_file("isolation"))
    raw["lab"]["mtu"] = 9000
    spec = validation_spec(parse(raw))
    lab = _lab(spec, _wire(spec, mtu=8950), monkeypatch)
    results = per_network(check_path_mtu)(lab)
    assert results and not failed(results)


def test_a_seed_spec_expects_the_mtu_its_docker_option_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The seed's spec carries no MTU: the option the program gave Docker (9000 at lab.mtu
    9000) says 8950; containers at 1450 fail, at Docker's default with no option they pass."""
    spec = seed_spec(9000)
    assert "networks" not in spec
    wire = _wire(spec, mtu=1450)
    wire.option["demo"] = "9000"
    results = check_path_mtu(_lab(spec, wire, monkeypatch))
    assert [(r.subject, r.ok) for r in results if r.check == "overlay.mtu"] == [
        ("test1@docker-node1", False),
        ("test2@docker-node2", False),
    ]
    wire.option.clear()
    results = check_path_mtu(_lab(spec, wire, monkeypatch))
    assert results and not failed(results)


def test_the_underlay_must_carry_the_largest_configured_mtu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = copy.deepcopy(raw_from_file("isolation"))
    raw["lab"]["mtu"] = 9000
    raw["networks"][1]["mtu"] = 4000
    spec = validation_spec(parse(raw))
    lab = _lab(spec, _wire(spec, mtu=1450), monkeypatch)  # what the containers say: ignored
    monkeypatch.setattr(
        probes, "link_mtu", lambda ns, ifname: 1500 if ns.startswith("/run") else 1450
    )
    results = check_underlay_mtu(lab)
    assert [r.ok for r in results] == [False, False]
    assert results[0].expected == "eth0 MTU >= 9000 (overlay MTU 8950 + 50 for VXLAN)"


# --- every probe through the interface on its network (item 8) ------------------------------


@pytest.mark.parametrize("swap", [False, True])
def test_a_container_on_two_networks_reaches_each_through_that_networks_interface(
    monkeypatch: pytest.MonkeyPatch, swap: bool
) -> None:
    spec = isolation_spec()
    wire = _wire(spec, swap=swap)
    lab = _lab(spec, wire, monkeypatch)
    results = per_network(check_connectivity)(lab)
    assert results and not failed(results), [r.line() for r in failed(results)]
    both = wire.netns["/ns/both1"]
    iface = {i.net: name for name, i in both.items() if i.net}
    assert (iface["demo"] == "eth0") is not swap  # attached in the other order: not eth0
    for netns, dst, ifname, _ in wire.sent:
        if netns == "/ns/both1":
            net = "demo" if dst.startswith("10.0.0.") else "backend"
            assert ifname == iface[net], (dst, ifname)
    subjects = {r.subject for r in results}
    assert f"both1 -> back2 by IP (across hosts) on backend via {iface['backend']}" in subjects
    assert f"both1 -> test2 by name (across hosts) on demo via {iface['demo']}" in subjects
    assert "test1 -> test2 by IP (across hosts) on demo" in subjects
    # nobody pings across networks here
    assert not any(r.subject.startswith("test1 -> back") for r in results)


def test_path_mtu_and_interface_mtu_use_the_interface_on_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = isolation_spec(backend=1400)
    wire = _wire(spec, swap=True)  # both1: eth0 on backend, eth2 on demo
    for i in wire.netns["/ns/both1"].values():
        i.mtu = 1400 if i.net == "backend" else 1450 if i.net == "demo" else 1500
    for c in ("back1", "back2"):
        wire.netns[f"/ns/{c}"]["eth0"].mtu = 1400
    lab = _lab(spec, wire, monkeypatch)
    results = per_network(check_path_mtu)(lab)
    assert results and not failed(results), [r.line() for r in failed(results)]
    assert {
        r.subject: r.actual for r in results if r.check == "overlay.mtu" and "both1" in r.subject
    } == {
        "both1@docker-node1 on demo": "interface MTU 1450",
        "both1@docker-node1 on backend": "interface MTU 1400",
    }


def test_a_missing_interface_is_said_not_pinged_from_eth0(monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker reports an address the container's kernel does not have: no probe from eth0."""
    spec = seed_spec()
    wire = _wire(spec)
    wire.netns["/ns/test1"]["eth0"].ip = "10.0.0.99"  # the kernel's; inspect says 10.0.0.2
    lab = _lab(spec, wire, monkeypatch)
    lab._docker["docker-node1"].containers.get = lambda name: _inspect_says(wire, name, "10.0.0.2")
    results = check_connectivity(lab)
    from1 = [r for r in results if r.subject.startswith("test1 ->")]
    assert from1 and all(not r.ok for r in from1)
    assert all(r.actual == "test1 has no interface holding 10.0.0.2" for r in from1)
    assert not any(ns == "/ns/test1" for ns, *_ in wire.sent)


def _inspect_says(wire: Wire, name: str, ip: str) -> FakeContainer:
    c = FakeContainer(wire, name)
    c.attrs["NetworkSettings"]["Networks"]["demo"]["IPAddress"] = ip
    return c


def test_the_seed_spec_keeps_its_subjects(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = seed_spec()
    lab = _lab(spec, _wire(spec), monkeypatch)
    assert [r.subject for r in per_network(check_connectivity)(lab)] == [
        "test1 -> test2 by IP (across hosts)",
        "test1 -> test2 by name (across hosts)",
        "test2 -> test1 by IP (across hosts)",
        "test2 -> test1 by name (across hosts)",
    ]
    assert check_isolation(lab) == []


# --- isolation (item 2) -------------------------------------------------------------------


def test_containers_that_share_no_network_are_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = isolation_spec()
    lab = _lab(spec, _wire(spec), monkeypatch)
    results = check_isolation(lab)
    pairs = {(r.subject.split(" -> ")[0], r.subject.split(" -> ")[1].split()[0]) for r in results}
    assert pairs == {
        (a, b)
        for a, b in [("test1", "back1"), ("test1", "back2"), ("test2", "back1"), ("test2", "back2")]
        for a, b in [(a, b), (b, a)]
    }
    assert all(r.ok for r in results), [r.line() for r in failed(results)]
    assert "test1 -> back2 on backend (10.0.1.3)" in {r.subject for r in results}
    assert all("has no interface on" in r.actual for r in results)


def test_a_container_connected_to_the_other_network_by_hand_breaks_isolation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = isolation_spec()
    wire = _wire(spec)
    wire.netns["/ns/test1"]["eth2"] = Iface("10.0.1.9", 1450, "backend")  # docker network connect
    lab = _lab(spec, wire, monkeypatch)
    results = check_isolation(lab)
    bad = failed(results)
    assert {r.subject for r in bad} == {
        "test1 -> back1 on backend (10.0.1.2)",
        "test1 -> back2 on backend (10.0.1.3)",
    }
    assert bad[0].actual.startswith("back1 answered test1 through test1's eth2 (10.0.1.9 on ")
    assert ("/ns/test1", "10.0.1.3", "eth2", 56) in wire.sent
    assert (
        "diagnosis: isolation is broken: test1 reaches back2 on backend although they share no "
        "network"
    ) in " ".join(diagnose(results))
    # the other way round the probe has no interface to go from: still isolated
    assert all(r.ok for r in results if r.subject.startswith("back"))


def test_an_attachment_that_gets_no_answer_passes_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = isolation_spec()
    wire = _wire(spec)
    wire.netns["/ns/test1"]["eth2"] = Iface("10.0.1.9", 1450, "backend")
    lab = _lab(spec, wire, monkeypatch)
    monkeypatch.setattr(probes, "icmp_echo", lambda *a, **k: probes.Outcome(False, "no reply"))
    results = check_isolation(lab)
    assert all(r.ok for r in results)
    assert any("which the stack does not give it" in r.actual for r in results)


# --- placement (item 2) --------------------------------------------------------------------


def test_a_host_has_a_sandbox_exactly_for_the_networks_of_its_containers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    raw = copy.deepcopy(raw_from_file("isolation"))
    raw["containers"] = [c for c in raw["containers"] if c["name"] != "back2"]  # none on node2
    spec = validation_spec(parse(raw))
    lab = _lab(spec, _wire(spec), monkeypatch)
    dirs = {h: tmp_path / h for h in ("docker-node1", "docker-node2")}
    monkeypatch.setattr(Lab, "sandbox_dir", lambda self, host: str(dirs[host]))
    for d in dirs.values():
        d.mkdir()
    stale: set[str] = set()  # files that are no namespace any more (Docker unmounted them)
    monkeypatch.setattr(
        records,
        "_mount_points",
        lambda: {str(f) for d in dirs.values() for f in d.iterdir()} - stale,
    )
    (dirs["docker-node1"] / f"1-{NET_IDS['demo'][:10]}").touch()
    (dirs["docker-node1"] / f"1-{NET_IDS['backend'][:10]}").touch()
    (dirs["docker-node2"] / f"1-{NET_IDS['demo'][:10]}").touch()
    results = check_placement(lab)
    assert [(r.subject, r.ok) for r in results] == [
        ("docker-node1 on demo", True),
        ("docker-node2 on demo", True),
        ("docker-node1 on backend", True),
        ("docker-node2 on backend", True),
    ]
    # a sandbox where no container of the stack is, and none where one is: both fail
    (dirs["docker-node2"] / f"1-{NET_IDS['backend'][:10]}").touch()
    (dirs["docker-node1"] / f"1-{NET_IDS['demo'][:10]}").unlink()
    bad = failed(check_placement(lab))
    assert [(r.subject, r.expected, r.actual.split(" (")[0]) for r in bad] == [
        ("docker-node1 on demo", "an overlay sandbox for demo", "no overlay sandbox for demo"),
        (
            "docker-node2 on backend",
            "no overlay sandbox for backend",
            "an overlay sandbox for backend",
        ),
    ]
    lines = diagnose(bad)
    assert lines[1].startswith(
        "diagnosis: docker-node2 has an overlay sandbox for backend, expected no overlay sandbox "
        "for backend"
    )
    # a file left behind by an unmounted sandbox is no sandbox
    stale.add(str(dirs["docker-node2"] / f"1-{NET_IDS['backend'][:10]}"))
    assert [r.subject for r in failed(check_placement(lab))] == ["docker-node1 on demo"]
    stale.clear()
    # run by `up`, a sandbox where the stack has no container is a container leaving: reported
    lab.in_up = True
    (leaving,) = [r for r in check_placement(lab) if r.subject == "docker-node2 on backend"]
    assert leaving.ok and "leaving the stack" in leaving.actual, leaving


# --- the records and their parsing ---------------------------------------------------------


def test_failed_pairs_name_their_network() -> None:
    def r(subject: str) -> Result:
        return Result("overlay.ping", subject, "reply", "no reply", False)

    assert failed_pairs_across(
        [
            r("test1 -> test2 by IP (across hosts)"),
            r("both1 -> back2 by IP (across hosts) on backend via eth2"),
            r("test1 -> both1 by IP (same host) on demo"),
        ]
    ) == [("test1", "test2", ""), ("both1", "back2", "backend")]


def test_a_container_missing_from_one_network_is_diagnosed_on_that_network() -> None:
    results = [
        Result(
            "docker.container-running",
            "both1@docker-node1 on backend",
            "running on backend",
            "not running or not attached (not attached to backend)",
            False,
        )
    ]
    assert diagnose(results) == [
        "diagnosis: container both1 on docker-node1 is not on backend (not running or not "
        "attached (not attached to backend)): every ping to and from it on backend fails"
    ]


def test_ip_addr_output_is_read_by_interface() -> None:
    text = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
        "24: eth0    inet 10.0.1.2/24 brd 10.0.1.255 scope global eth0\n"
        "26: eth1@if27    inet 172.18.0.3/16 brd 172.18.255.255 scope global eth1\n"
    )
    assert parse_ip_addr(text) == {"lo": "127.0.0.1", "eth0": "10.0.1.2", "eth1": "172.18.0.3"}


def test_the_new_groups_are_data_plane_groups() -> None:
    assert [n for n, _ in DATA][-2:] == ["isolation", "placement"]


def test_a_seed_spec_with_no_daemon_listing_the_network_fails_path_mtu_per_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The MTU is unknown then (the network checks say why): each pair fails naming it, and
    the underlay is held to the default overlay MTU as before."""
    spec = seed_spec()
    lab = _lab(spec, _wire(spec), monkeypatch)
    for d in lab._docker.values():
        d.networks.list = lambda names: []
    results = check_path_mtu(lab)
    assert [(r.check, r.ok) for r in results] == [("overlay.path-mtu", False)] * 2
    assert results[0].actual.startswith("MTU unknown: no daemon lists network demo")
    monkeypatch.setattr(probes, "link_mtu", lambda ns, ifname: 1500)
    under = check_underlay_mtu(lab)
    assert [r.expected for r in under] == ["eth0 MTU >= 1500 (overlay MTU 1450 + 50 for VXLAN)"] * 2
    assert all(r.ok for r in under)


def test_every_per_network_group_sees_each_network_and_its_containers_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = isolation_spec()
    lab = _lab(spec, _wire(spec), monkeypatch)
    seen: list[tuple[str, list[str], str | None, str]] = []

    def probe(view: Lab) -> list[Result]:
        seen.append(
            (
                view.network["name"],
                [c["name"] for c in view.containers],
                view.network_id("docker-node2"),
                view.suffix,
            )
        )
        return []

    per_network(probe)(lab)
    assert seen == [
        ("demo", ["test1", "test2", "both1"], NET_IDS["demo"], " on demo"),
        ("backend", ["back1", "back2", "both1"], NET_IDS["backend"], " on backend"),
    ]
    # each view's containers are inspected on its own network
    back = lab.views()[1].container_infos()
    assert back["both1"].ip == "10.0.1.4" and back["both1"].network == "backend"
    assert lab.container_infos()["both1"].ip == "10.0.0.4"
    # the network and endpoint checks run per network (wrapped), etcd's once
    from overlaylab.validate.checks import check_endpoints, check_etcd, check_network
    from overlaylab.validate.run import CONTROL

    groups = dict(CONTROL)
    assert groups["network"].__name__ == "check_network" and groups["network"] is not check_network
    assert groups["endpoints"].__name__ == "check_endpoints"
    assert groups["endpoints"] is not check_endpoints
    assert groups["etcd"] is check_etcd


def test_a_running_attached_container_is_a_passed_record_not_a_test_that_ran_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import overlaylab.validate.checks as checks
    from overlaylab.validate import catalogue

    spec = seed_spec()
    wire = _wire(spec)
    lab = _lab(spec, wire, monkeypatch)
    infos = lab.container_infos()
    eps = {
        i.name: [{"name": i.name, "locator": h["address"],
                  "ep_iface": {"addr": f"{i.ip}/24", "mac": i.mac}}]
        for i in infos.values() for h in lab.hosts if h["name"] == i.host
    }  # fmt: skip
    monkeypatch.setattr(checks, "endpoint_keys", lambda lab, net_id: eps)
    results = checks.check_endpoints(lab)
    running = [r for r in results if r.check == "docker.container-running"]
    assert [(r.subject, r.ok) for r in running] == [
        ("test1@docker-node1", True), ("test2@docker-node2", True),
    ], [r.line() for r in running]  # fmt: skip
    assert running[0].actual == "running on the overlay, 10.0.0.2"
    tests = {o.test: o for o in catalogue.outcomes(spec, results, None, None)}
    assert tests["containers-running"].status == "passed"
    # stopped: the same record fails
    wire.host_of["test2"] = "elsewhere"
    lab.refresh()
    bad = [r for r in checks.check_endpoints(lab) if r.check == "docker.container-running"]
    assert [(r.subject, r.ok) for r in bad] == [("test1@docker-node1", True),
                                                ("test2@docker-node2", False)]  # fmt: skip
