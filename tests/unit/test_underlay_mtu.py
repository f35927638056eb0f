"""SSH stacks: each host's preflight reports the MTU of the interface holding its lab address;
the cross-host gate (hosts-unique) refuses a host below lab.mtu, or hosts that disagree."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from overlaylab import hostops
from overlaylab.errors import PreflightError
from overlaylab.hosts.underlay import check_underlay_mtus, lab_interface, read_underlay
from overlaylab.stackconfig import raw_from_file
from tests.conftest import Graph
from tests.unit.test_program_ssh import KEY, NODES

ADDR_JSON = json.dumps(
    [
        {"ifname": "lo", "mtu": 65536, "addr_info": [{"family": "inet", "local": "127.0.0.1"}]},
        {"ifname": "eth1", "mtu": 1500, "addr_info": [{"family": "inet", "local": "10.9.0.5"}]},
        {"ifname": "host0", "mtu": 9000, "addr_info": [{"local": "192.168.205.10"}]},
    ]
)


def report(host: str, mtu: int | None, engine: str = "") -> str:
    rep: dict[str, Any] = {"hostname": host, "engineId": engine or f"id-{host}"}
    if mtu is not None:
        rep.update(address=f"addr-of-{host}", interface="host0", mtu=mtu)
    return "some log line\n" + json.dumps(rep)


def test_the_lab_interface_is_the_one_holding_the_address() -> None:
    assert lab_interface(ADDR_JSON, "192.168.205.10") == ("host0", 9000)
    assert lab_interface(ADDR_JSON, "10.9.0.5") == ("eth1", 1500)
    assert lab_interface(ADDR_JSON, "192.168.205.11") is None


def test_preflight_reads_this_machines_interface() -> None:
    """Read-only, here: loopback holds 127.0.0.1; no interface holds a TEST-NET address."""
    assert read_underlay("here", "127.0.0.1") == {
        "address": "127.0.0.1",
        "interface": "lo",
        "mtu": 65536,
    }
    with pytest.raises(PreflightError, match=r"^here: no interface holds the lab address 192"):
        read_underlay("here", "192.0.2.254")


def test_hosts_that_carry_lab_mtu_alike_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        hostops.main(["hosts-unique", report("a", 9000), report("b", 9000), "--mtu", "9000"]) == 0
    )
    assert "underlay MTU 9000 on every host (lab.mtu 9000)" in capsys.readouterr().out


def test_a_host_below_lab_mtu_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        hostops.main(["hosts-unique", report("a", 9000), report("b", 1500), "--mtu", "9000"]) == 1
    )
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: host b's interface host0 for addr-of-b has MTU 1500, below lab.mtu 9000: raise "
        "that interface's MTU to 9000 or set lab.mtu to 1500 (the overlay gets lab.mtu minus 50)"
    )


def test_the_default_lab_mtu_is_1500(capsys: pytest.CaptureFixture[str]) -> None:
    """A cloud VM's 1450-byte interface is refused at the default lab.mtu."""
    assert hostops.main(["hosts-unique", report("a", 1500), report("b", 1450)]) == 1
    assert "has MTU 1450, below lab.mtu 1500" in capsys.readouterr().err


def test_hosts_that_disagree_are_refused_in_one_line() -> None:
    reports = [json.loads(report(h, m).splitlines()[-1]) for h, m in (("a", 1500), ("b", 9000))]
    with pytest.raises(PreflightError) as info:
        check_underlay_mtus(reports, 1500)
    assert str(info.value) == (
        "hosts a and b disagree on the underlay MTU (host0 1500, host0 9000): give every host's "
        "interface on the segment the same MTU, lab.mtu 1500"
    )


def test_a_report_without_an_mtu_is_not_judged() -> None:
    """A preflight run without --address (recorded before MTU was read) reports none."""
    reports = [json.loads(report(h, m).splitlines()[-1]) for h, m in (("a", None), ("b", 1500))]
    assert check_underlay_mtus(reports, 1500) == "underlay MTU 1500 on every host (lab.mtu 1500)"


def test_unique_names_are_still_checked_first(capsys: pytest.CaptureFixture[str]) -> None:
    same = [report("a", 9000, engine="x"), report("b", 1500, engine="x")]
    assert hostops.main(["hosts-unique", *same, "--mtu", "9000"]) == 1
    assert "share the Docker engine ID x" in capsys.readouterr().err


# --- the graph under mocks --------------------------------------------------------------------


def _ssh_graph(record_graph: Any, mtu: int | None) -> Graph:
    raw = copy.deepcopy(raw_from_file("lab"))
    if mtu is not None:
        raw["lab"]["mtu"] = mtu
    g: Graph = record_graph(raw, secrets={"sshPrivateKey": KEY})
    assert g.run.error is None, g.run.error
    return g


@pytest.mark.parametrize("mtu", [None, 9000])
def test_each_preflight_reads_its_own_lab_address(record_graph: Any, mtu: int | None) -> None:
    g = _ssh_graph(record_graph, mtu)
    for h, ip in zip(NODES, ("192.168.205.10", "192.168.205.11"), strict=True):
        create = g.run.engine.inputs[g.named(f"lab-{h}-preflight").urn]["create"]
        assert create.endswith(f"--peer-port 2380 --address {ip}"), create


def test_the_gate_gets_lab_mtu_only_where_it_is_not_1500(record_graph: Any) -> None:
    plain = _ssh_graph(record_graph, None)
    assert "--mtu" not in plain.run.engine.inputs[plain.named("lab-unique").urn]["create"]
    jumbo = _ssh_graph(record_graph, 9000)
    create = jumbo.run.engine.inputs[jumbo.named("lab-unique").urn]["create"]
    assert create.endswith("'lab-docker-node2-preflight done' --mtu 9000"), create
