"""Preflight and failed creates on this machine: a bridge, a namespace, an etcd of their own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from overlaylab.errors import EtcdError, NetworkRuleError
from overlaylab.hosts import netns, netns_daemons
from overlaylab.netrule import RouteGuard
from tests.labtools import require_root

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.lab  # a bridge and an address of its own on this machine
def test_route_guard_allows_the_lab_only_while_its_bridge_holds_the_address() -> None:
    require_root()
    bridge, addr = "ovbr-rtest", "192.168.215.10"
    guard = RouteGuard(bridge)
    with pytest.raises(NetworkRuleError, match=r"not through the lab.s bridge ovbr-rtest|no route"):
        guard.check(addr)
    netns.bridge_up(bridge, "192.168.215.1", 24)
    try:
        guard.check(addr)  # routed through the bridge now: allowed
    finally:
        netns.bridge_down(bridge)
    time.sleep(0.1)
    with pytest.raises(NetworkRuleError):
        guard.check(addr)
    guard.check("127.0.0.1")


@pytest.mark.lab  # a namespace and an etcd of its own on this machine
def test_a_failed_etcd_create_leaves_nothing(tmp_path: Path) -> None:
    """No resource is recorded for a failed create, so no delete would ever clean it up."""
    require_root()
    bridge, ns, veth = "ovbr-efail", "efail-n1", "ovefail1"
    host_dir = tmp_path / "n1"
    netns.bridge_up(bridge, "192.168.219.1", 24)
    try:
        netns.host_up(ns, "n1", veth, "192.168.219.10", 24, bridge)
        with pytest.raises(EtcdError, match="etcd n1 exited at start"):
            netns_daemons.etcd_up(
                netns=ns,
                name="n1",
                address="192.168.219.10",
                client_port=2379,
                peer_port=2380,
                token="t",
                initial_cluster="other=http://192.168.219.99:2380",
                host_dir=str(host_dir),
                bridge=bridge,
            )
        assert not host_dir.exists(), sorted(p.name for p in host_dir.iterdir())
    finally:
        netns.host_down(ns, veth)
        netns.bridge_down(bridge)
