"""Jumbo frames: with `lab.mtu: 9000` the bridge and every veth carry 9000 bytes, the
containers' overlay interface gets 8950 (VXLAN's 50 bytes less), a full-size don't-fragment
probe passes between hosts (the validator's overlay.path-mtu), and nothing is left.

Where Docker puts which number (the program passes ``com.docker.network.driver.mtu=9000``):
inside the overlay's own namespace (``<exec-root>/netns/1-<network id>``) its bridge ``br0``,
its VXLAN device and the containers' veth ends all get 8950, the option minus 50."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import docker
import pytest

from overlaylab import spec as out
from overlaylab.netrule import RouteGuard
from tests.labtools import LabFixture, lab_config, parsed

pytestmark = pytest.mark.lab


def _mtu(*argv: str) -> int:
    res = subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, check=True)
    return int(json.loads(res.stdout)[0]["mtu"])


def _links(netns_file: Path) -> dict[str, tuple[str, int]]:
    """Every link but lo in a namespace Docker made (a file, not in /run/netns): kind, MTU."""
    argv = ["nsenter", f"--net={netns_file}", "ip", "-j", "-d", "link", "show"]
    res = subprocess.run(argv, capture_output=True, text=True, check=True)
    links: list[dict[str, Any]] = json.loads(res.stdout)
    return {
        x["ifname"]: (x.get("linkinfo", {}).get("info_kind", "?"), int(x["mtu"]))
        for x in links
        if x["ifname"] != "lo"
    }


def test_a_jumbo_underlay_gives_the_overlay_8950(tmp_path: Path) -> None:
    raw = lab_config(2, lab_id="mtu", segment="192.168.216")
    raw["lab"]["mtu"] = 9000
    cfg = parsed(raw)
    assert cfg.overlay_mtu == 8950
    guard = RouteGuard(cfg.local_bridge)
    with LabFixture("mtu", tmp_path / "mtu.json", raw, guard=guard, settle=0) as lab:
        run = lab.up()
        assert _mtu("link", "show", "dev", cfg.local_bridge) == 9000
        for h in cfg.hosts:
            assert _mtu("link", "show", "dev", h.veth(cfg.lab_id)) == 9000
            assert _mtu("-n", h.netns(cfg.lab_id), "link", "show", "dev", "eth0") == 9000
        client = docker.DockerClient(
            base_url=f"unix://{cfg.host_dir(cfg.hosts[0])}/docker.sock", version="1.41"
        )
        res = client.containers.get("test1").exec_run(["cat", "/sys/class/net/eth0/mtu"])
        assert res.output.decode().strip() == "8950"
        net_id = client.networks.get(cfg.network_name).id
        sandbox = Path(cfg.host_dir(cfg.hosts[0])) / "x" / "netns" / f"1-{net_id[:10]}"
        links = _links(sandbox)
        print(f"overlay namespace {sandbox.name}: {links}")
        kinds = {kind for kind, _ in links.values()}
        assert {"bridge", "vxlan", "veth"} <= kinds, links
        assert {mtu for _, mtu in links.values()} == {8950}, links
        report = (run.outputs or {})[out.OUT_VALIDATION_REPORT]
        assert " 0 failed" in report.splitlines()[-1], report
        assert "overlay.path-mtu" in report and "8950" in report, report
