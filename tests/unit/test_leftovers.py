"""What ``leftovers(cfg)`` sees of a lab, with the machine's ``ip`` and ``iptables`` answers
made up (nothing is created, no root needed); its process check looks at the real /proc."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from overlaylab import leftovers as lo
from overlaylab.config import LabConfig, parse
from overlaylab.config.sample import lab_config

LAB = "ut-left"
SEG = "192.168.219"


def _cfg() -> LabConfig:
    return parse(lab_config(hosts=2, lab_id=LAB, segment=SEG), "test config")


def _machine(monkeypatch: pytest.MonkeyPatch, answers: dict[tuple[str, ...], str]) -> None:
    """``ip``/``iptables`` answer from ``answers`` (a command's argv); anything else: nothing."""
    asked: list[tuple[str, ...]] = []

    def out(argv: list[str]) -> str:
        asked.append(tuple(argv))
        return answers.get(tuple(argv), "[]" if "-j" in argv else "")

    monkeypatch.setattr(lo, "_out", out)


def _links(*links: dict[str, Any]) -> str:
    return json.dumps(list(links))


def test_every_veth_and_bridge_of_a_lab_is_found_by_type_not_only_by_the_names_it_has_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = _cfg()
    gone = "ov" + "0" * 8  # the veth of a host that left the config
    _machine(
        monkeypatch,
        {
            ("ip", "-j", "link", "show", "type", "veth"): _links(
                {"ifname": cfg.hosts[0].veth(LAB), "master": cfg.bridge},
                {"ifname": gone},
                {"ifname": "vb-node7", "master": cfg.bridge},
                {"ifname": "veth1234", "master": "docker0"},
            ),
            ("ip", "-j", "link", "show", "type", "bridge"): _links(
                {"ifname": "ovbr-older"}, {"ifname": "docker0"}
            ),
        },
    )
    found = lo.leftovers(cfg, every_lab=True)
    links = {x for x in found if x.startswith("link ")}
    assert links == {
        "link ovbr-older (bridge)",
        f"link {gone} (veth)",
        f"link {cfg.hosts[0].veth(LAB)} (veth)",
        f"link vb-node7 (veth on {cfg.bridge})",
    }, found
    # by default only this lab's: another lab may be up beside it (its bridge, its veths)
    mine = {x for x in lo.leftovers(cfg) if x.startswith("link ")}
    assert mine == {
        f"link {cfg.hosts[0].veth(LAB)} (veth)",
        f"link vb-node7 (veth on {cfg.bridge})",
    }


def test_the_labs_bridge_is_found_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg()
    assert cfg.bridge is not None
    _machine(
        monkeypatch,
        {("ip", "-j", "link", "show", "type", "bridge"): _links({"ifname": cfg.bridge})},
    )
    assert f"link {cfg.bridge} (bridge)" in lo.leftovers(cfg)


def test_iptables_rules_naming_the_labs_bridge_or_segment_are_leftovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = _cfg()
    _machine(
        monkeypatch,
        {
            ("iptables", "-t", "filter", "-S"): "\n".join([
                "-P FORWARD ACCEPT",
                f"-A FORWARD -i {cfg.bridge} -j ACCEPT",
                f"-A FORWARD -i {cfg.bridge}x -j ACCEPT",
                "-A FORWARD -i docker0 -j ACCEPT",
                f"-A INPUT -s {SEG}.10/32 -p tcp --dport 2379 -j DROP",
            ]),
            ("iptables", "-t", "nat", "-S"): "\n".join([
                f"-A POSTROUTING -s {SEG}.0/24 ! -o {cfg.bridge} -j MASQUERADE",
                "-A POSTROUTING -s 10.0.0.0/24 -j MASQUERADE",
                "-A POSTROUTING -s 192.168.0.0/16 -j MASQUERADE",
            ]),
        },
    )  # fmt: skip
    rules = [x for x in lo.leftovers(cfg) if x.startswith("iptables ")]
    assert rules == [
        f"iptables filter: -A FORWARD -i {cfg.bridge} -j ACCEPT",
        f"iptables filter: -A INPUT -s {SEG}.10/32 -p tcp --dport 2379 -j DROP",
        f"iptables nat: -A POSTROUTING -s {SEG}.0/24 ! -o {cfg.bridge} -j MASQUERADE",
    ]


def test_a_hung_host_verb_of_the_lab_is_a_leftover(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A verb that never ended (`python -m overlaylab.hostops etcd-up --host-dir ...`)."""
    cfg = _cfg()
    _machine(monkeypatch, {})
    host_dir = cfg.host_dir(cfg.hosts[0])
    hung = subprocess.Popen([
        sys.executable, "-c", "import time; time.sleep(120)", "-m", "overlaylab.hostops",
        "etcd-up", "--name", "docker-node1", "--host-dir", host_dir,
    ])  # fmt: skip
    other = subprocess.Popen([
        sys.executable, "-c", "import time; time.sleep(120)", "-m", "overlaylab.hostops",
        "etcd-up", "--host-dir", f"/var/lib/overlaylab/{LAB}x/docker-node1",
    ])  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # its command line, once exec'd
            if b"etcd-up" in Path(f"/proc/{hung.pid}/cmdline").read_bytes():
                break
            time.sleep(0.05)
        found = [x for x in lo.leftovers(cfg) if x.startswith("process ")]
        assert [x.split(":")[0] for x in found] == [f"process {hung.pid}"], found
        assert "overlaylab.hostops etcd-up" in found[0]
    finally:
        for p in (hung, other):
            p.kill()
            p.wait()
