"""Two overlays on two hosts (stacks/Pulumi.isolation.yaml): demo (test1, test2) and backend
(back1, back2), and both1 on both. Every container reaches its own networks' peers through
that network's interface, containers that share no network cannot reach each other, each host
has an overlay sandbox exactly for the networks its containers use; isolation broken by hand
(test1 connected to backend) is reported naming both ends; a container leaving the stack
touches only itself and leaves its host without a sandbox for that network."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlaylab import spec as out
from overlaylab.backup import backup_dir
from overlaylab.etcd import EtcdClient
from overlaylab.hosts.dockerd import docker_api
from overlaylab.netrule import RouteGuard
from overlaylab.stackconfig import raw_from_file
from overlaylab.validate import gone
from tests.labtools import Running, failed_first, kept_up, parsed, validate_cli

pytestmark = pytest.mark.lab

RAW = raw_from_file("isolation")
CFG = parsed(RAW)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    state = tmp_path_factory.mktemp("iso") / "state.json"
    running = Running("isolation", state, RouteGuard(CFG.local_bridge))
    with kept_up(running, RAW):
        yield running


def report(lab: Running, timeout: float = 60) -> tuple[int, list[str]]:
    res = validate_cli(lab.outputs[out.OUT_VALIDATION_SPEC], timeout)
    return res.returncode, res.stdout.splitlines()


def lines_of(lines: list[str], check: str) -> list[str]:
    return [ln for ln in lines if ln.split()[1:2] == [check]]


def api(host: str) -> Any:
    return docker_api(CFG.docker_socket(CFG.host(host)))


def test_each_network_is_reached_through_its_own_interface_and_nothing_else(
    lab: Running,
) -> None:
    rc, lines = report(lab)
    assert rc == 0, failed_first("\n".join(lines))
    iso = lines_of(lines, "overlay.isolation")
    # test1, test2 (demo only) against back1, back2 (backend only), both ways: 8 probes
    assert len(iso) == 8 and all(ln.startswith("ok") for ln in iso), iso
    for net in ("demo", "backend"):
        pings = [ln for ln in lines_of(lines, "overlay.ping") if f" on {net}" in ln]
        assert pings and all(ln.startswith("ok") for ln in pings), pings
    # both1 reaches each network through the interface that has its address on it
    inspect = api("docker-node1").inspect_container("both1")["NetworkSettings"]["Networks"]
    for net in ("demo", "backend"):
        ip = inspect[net]["IPAddress"]
        via = [ln for ln in lines_of(lines, "overlay.ping") if "both1" in ln and f" on {net}" in ln]
        assert via, lines
        ifaces = {w.split("via ", 1)[1].split()[0].strip("):,") for w in via if "via " in w}
        assert len(ifaces) == 1, via
        (iface,) = ifaces
        ex = api("docker-node1").exec_create("both1", ["ip", "-o", "-4", "addr", "show", iface])
        assert ip in api("docker-node1").exec_start(ex).decode(), (net, iface, ip)
    placement = lines_of(lines, "overlay.placement")
    assert {ln.split(":", 1)[0].split(maxsplit=2)[2] for ln in placement} == {
        f"{h} on {n}" for h in ("docker-node1", "docker-node2") for n in ("demo", "backend")
    }, placement
    assert all(ln.startswith("ok") and "an overlay sandbox" in ln for ln in placement), placement
    steps = lab.up(copy.deepcopy(lab.cfg))
    assert [s.name for s in steps.values() if s.kind != "same"] == []


def backup_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "overlaylab.backup", *argv, "--stack", "isolation"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_up_of_the_running_stack_saved_dockers_keys_and_restore_refuses_over_them(
    lab: Running,
) -> None:
    """The first test's second `up` (the stack existed) saved /docker, both networks in it;
    `list` names it, and `restore` onto the running cluster refuses and writes nothing."""
    found = sorted(backup_dir(CFG).glob("*.json"))
    assert found, f"no backup in {backup_dir(CFG)}"
    saved = json.loads(found[-1].read_text())
    text = json.dumps(saved)
    ids = {api("docker-node1").inspect_network(n)["Id"] for n in ("demo", "backend")}
    assert all(i in text for i in ids), (ids, found[-1])
    listed = backup_cli("list")
    assert listed.returncode == 0 and found[-1].name in listed.stdout, listed.stdout
    before = EtcdClient(CFG.client_url(CFG.hosts[0]), lab.guard).v2_get("/docker")
    refused = backup_cli("restore")
    assert refused.returncode == 1 and "refusing to restore" in refused.stderr, refused
    after = EtcdClient(CFG.client_url(CFG.hosts[0]), lab.guard).v2_get("/docker")
    keys = lambda n: sorted(  # noqa: E731
        (x.key, x.value) for x in (n.walk() if n else []) if "/docker/nodes" not in x.key
    )
    assert keys(before) == keys(after)


def test_a_container_connected_by_hand_to_the_other_network_breaks_isolation(
    lab: Running,
) -> None:
    node1 = api("docker-node1")
    node1.connect_container_to_network("test1", "backend")
    try:
        rc, lines = report(lab, timeout=20)
    finally:
        node1.disconnect_container_from_network("test1", "backend")
    failed = [ln for ln in lines_of(lines, "overlay.isolation") if ln.startswith("FAIL")]
    assert rc == 1 and failed, "\n".join(lines)
    assert {ln.split()[2] for ln in failed} == {"test1"}, failed
    assert any("back1" in ln for ln in failed) and any("back2" in ln for ln in failed), failed
    assert any("isolation is broken: test1 reaches" in ln for ln in lines), lines
    rc, lines = report(lab)
    assert rc == 0, failed_first("\n".join(lines))


def test_a_container_leaving_touches_only_itself_and_its_host_loses_that_sandbox(
    lab: Running,
) -> None:
    before = {c["Names"][0]: c["Id"] for c in api("docker-node2").containers(all=True)}
    smaller = copy.deepcopy(RAW)
    smaller["containers"] = [c for c in smaller["containers"] if c["name"] != "back2"]
    try:
        steps = lab.up(smaller)
        changed = sorted(f"{s.name} {s.kind}" for s in steps.values() if s.kind != "same")
        # back2 goes, and so do backend's names gates (no other host's name to resolve on
        # backend any more), and the validation with its new spec: nothing else
        assert "test-back2 delete" in changed, changed
        assert all(
            c == "test-back2 delete" or "-backend-names" in c or c.startswith("validate-")
            for c in changed
        ), changed
        # the validation after up asks every container left on backend for back2: gone
        expected = {
            "back2 (left the stack) from back1 (docker-node1) on backend",
            "back2 (left the stack) from both1 (docker-node1) on backend",
        }
        rc, lines = report(lab)
        assert rc == 0, failed_first("\n".join(lines))
        after_up = lines_of(lines, "overlay.name-gone")
        assert {ln.split(None, 2)[2].split(": ")[0] for ln in after_up} == expected, after_up
        assert all(ln.startswith("ok") and ": does not resolve" in ln for ln in after_up)
        (p,) = [
            ln for ln in lines_of(lines, "overlay.placement") if "docker-node2 on backend" in ln
        ]
        assert p.startswith("ok") and "no overlay sandbox for backend" in p, p
        after = {c["Names"][0]: c["Id"] for c in api("docker-node2").containers(all=True)}
        assert after == {k: v for k, v in before.items() if k != "/back2"}, (before, after)
    finally:
        lab.up(copy.deepcopy(RAW))
    rc, lines = report(lab)
    assert rc == 0, failed_first("\n".join(lines))


def test_a_name_that_left_but_still_resolves_fails_naming_it(lab: Running) -> None:
    """What `up` kept says ghost left demo; a container named ghost, started on demo by hand
    (as a stale record would answer), resolves: the validator fails naming it and who asks."""
    etcd = EtcdClient(CFG.client_url(CFG.hosts[0]), RouteGuard(CFG.local_bridge))
    kept = etcd.v2_get(gone.KEY, recursive=False)
    assert kept is not None and kept.value, "up keeps the stack's containers for the next run"
    former = json.loads(kept.value)
    assert set(former["containers"]) == {c["name"] for c in RAW["containers"]}, former
    node2 = api("docker-node2")
    ghost = node2.create_container(
        RAW["image"]["name"], ["sleep", "600"], name="ghost",
        host_config=node2.create_host_config(network_mode="demo"),
    )  # fmt: skip
    try:
        node2.start(ghost)
        etcd.v2_put(
            gone.KEY, json.dumps({"containers": {**former["containers"], "ghost": ["demo"]}})
        )
        rc, lines = report(lab, timeout=10)
        bad = [ln for ln in lines_of(lines, "overlay.name-gone") if ln.startswith("FAIL")]
        assert rc == 1 and bad, "\n".join(lines)
        assert {ln.split(" from ")[1].split()[0] for ln in bad} == {"test1", "test2", "both1"}
        assert all("ghost (left the stack)" in ln and "resolves to 10.0.0." in ln for ln in bad)
    finally:
        node2.remove_container(ghost, force=True)
        etcd.v2_put(gone.KEY, kept.value)
    rc, lines = report(lab)
    assert rc == 0, failed_first("\n".join(lines))


def test_the_stack_file_is_what_this_module_runs() -> None:
    assert Path("stacks/Pulumi.isolation.yaml").is_file()
    assert [n.name for n in CFG.networks] == ["demo", "backend"]
