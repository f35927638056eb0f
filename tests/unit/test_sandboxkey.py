"""Overlay sandbox names as libnetwork makes them (``overlaylab.sandboxkey``): the first 12
characters of ``<epoch>-<network id>``. Found by the restart soak of 2026-12-02: after the
tenth restart of a host's only container on the network the sandbox was ``10-1a1a7c2cf``, and
every check that looked for ``*-<id[:10]>`` saw none (placement failed, the silent counters
and the capture skipped it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import overlaylab.validate.records as records
from overlaylab import sandboxkey
from overlaylab.validate.counters import vxlan_counters

NET = "1a1a7c2cfef676c9eddb927640a185750c4b0f09383639fa662d4af63a4622dc"


def test_the_network_ids_part_shrinks_as_the_epoch_grows() -> None:
    assert sandboxkey.key(1, NET) == "1-1a1a7c2cfe"
    assert sandboxkey.key(10, NET) == "10-1a1a7c2cf"
    assert sandboxkey.key(123, NET) == "123-1a1a7c2c"
    for epoch in (1, 9, 10, 11, 99, 100, 1000):
        name = sandboxkey.key(epoch, NET)
        assert sandboxkey.parse(name) == (epoch, name.split("-", 1)[1])
        assert sandboxkey.of_network(name, NET)
        assert not sandboxkey.of_network(name, "2" + NET[1:])
    # a container's sandbox is named by its id (no dash); other names are not sandboxes
    for other in ("e0f7e7ebfa6b", "1-1a1a7c2cf", "x-1a1a7c2cfe", "default"):
        assert sandboxkey.parse(other) is None, other


def test_the_newest_epoch_is_last(tmp_path: Path) -> None:
    for epoch in (9, 10, 2):
        (tmp_path / sandboxkey.key(epoch, NET)).touch()
    (tmp_path / sandboxkey.key(3, "b" * 64)).touch()
    got = [Path(p).name for p in sandboxkey.in_dir(str(tmp_path), NET)]
    assert got == ["2-1a1a7c2cfe", "9-1a1a7c2cfe", "10-1a1a7c2cf"]
    assert sandboxkey.in_dir(str(tmp_path / "absent"), NET) == []


def test_placement_sees_a_sandbox_past_its_tenth_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "11-1a1a7c2cf"
    box.touch()
    monkeypatch.setattr(records, "_mount_points", lambda: {str(box)})
    lab = records.Lab.__new__(records.Lab)
    monkeypatch.setattr(records.Lab, "sandbox_dir", lambda self, host: str(tmp_path))
    assert lab.overlay_sandboxes("docker-node2", NET) == [str(box)]


def test_the_silent_counters_read_a_sandbox_past_its_tenth_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "x" / "netns" / "11-1a1a7c2cf"
    box.parent.mkdir(parents=True)
    box.touch()
    seen: list[list[str]] = []

    def runner(argv: list[str]) -> str:
        seen.append(argv)
        stats = {"rx": {"errors": 0, "dropped": 0}, "tx": {"errors": 0, "dropped": 0}}
        return json.dumps([{"ifname": "vxlan0", "stats64": stats}])

    lab = records.Lab.__new__(records.Lab)
    lab.spec = {"lab": {"transport": "local"}}
    monkeypatch.setattr(records.Lab, "sandbox_dir", lambda self, host: str(box.parent))
    got = vxlan_counters(lab, "docker-node2", runner)
    assert any(str(box) in " ".join(a) for a in seen), seen
    assert got == {f"11-1a1a7c2cf/vxlan0 {d}_{w}": 0 for d in ("rx", "tx")
                   for w in ("errors", "dropped")}, got  # fmt: skip
