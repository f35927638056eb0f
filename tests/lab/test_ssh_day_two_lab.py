"""Day two on an SSH stack, for real: a third VM-like host added to a running 2-host stack,
the program's code changed while it runs, then the first host removed, then destroy; every
host that leaves is restored byte for byte.

Three Debian 12 hosts under systemd-nspawn (tests/vmhosts.py), as in tests/lab/test_ssh_lab.py,
on their own bridge and segment. The program runs through the engine stand-in on the stack's
previous state, as `pulumi up` on a running stack would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from overlaylab.etcd import EtcdClient
from overlaylab.hosts import proc
from overlaylab.netrule import RouteGuard
from standin.plan import Step, summary
from tests import vmhosts
from tests.labtools import LabFixture, Running

pytestmark = pytest.mark.lab

PACKAGE = Path(__file__).resolve().parents[2] / "overlaylab"
LIB = "/usr/local/lib/overlaylab"

LAB_ID = "sshd2"
BRIDGE = "ovbr-sshd2"
SEGMENT = "192.168.227"
NODES = ("docker-node1", "docker-node2", "docker-node3")


@dataclass
class Stack(vmhosts.Fleet):
    running: Running

    def config(self, names: list[str]) -> dict[str, Any]:
        return self.stack_config(LAB_ID, names)

    def up(self, names: list[str]) -> dict[str, Step]:
        steps = self.running.up(self.config(names))
        print(f"\nup with {names}: {summary(list(steps.values()))}")
        return steps

    def untouched(self, containers: dict[str, str]) -> dict[str, str]:
        """What a day-two step must not change on what stays, read on the hosts: each
        container's id and addresses, each of their hosts' etcd and dockerd main pids."""
        got = {}
        for name, host in containers.items():
            got[name] = self.ssh(
                host,
                "docker inspect -f '{{.Id}} {{range .NetworkSettings.Networks}}"
                "{{.IPAddress}} {{end}}' " + name,
            ).strip()
            got[f"{host} pids"] = " ".join(
                self.ssh(host, "systemctl show -p MainPID --value etcd docker").split()
            )
        return got

    def members(self, via: str) -> list[str]:
        address = next(h.address for h in self.hosts if h.name == via)
        client = EtcdClient(f"http://{address}:2379", self.guard)
        return sorted(m.get("name", "") for m in client.members()[1])


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The hosts and the stack on them, in the lab fixture: the stack is destroyed before the
    hosts go, and nothing of either is left on this machine after."""
    with LabFixture(LAB_ID, guard=RouteGuard(BRIDGE)) as fixture:
        f = fixture.enter("the VM hosts", vmhosts.fleet(LAB_ID, BRIDGE, SEGMENT, NODES))
        secrets = {"sshPrivateKey": f.key.read_text()}
        running = fixture.keep(Running(LAB_ID, f.tmp / "state.json", f.guard, secrets=secrets))
        yield Stack(f.hosts, f.key, f.tmp, f.guard, running)


def test_add_a_host_then_remove_the_first_then_destroy_restoring_each(stack: Stack) -> None:
    before = stack.snapshot()  # vmhosts.HOST_STATE
    assert all(before[n].count("ls: cannot access") == 5 for n in NODES), before

    stack.up(list(NODES[:2]))
    stack.running.validate()

    first_two = {"test1": NODES[0], "test2": NODES[1]}
    before_add = stack.untouched(first_two)
    assert all(v and "0" not in v.split() for v in before_add.values()), before_add
    steps = stack.up(list(NODES))
    assert stack.untouched(first_two) == before_add, "adding a host changed a staying one"
    staying = [f"etcd-{n}" for n in NODES[:2]] + [f"docker-{n}-dockerd" for n in NODES[:2]]
    staying += ["overlay-network", "test-test1", "test-test2"]
    for name in staying:
        assert steps[name].kind == "same", f"{name}: {steps[name]}"
    assert steps["etcd-docker-node3"].kind == "create"
    assert stack.members(NODES[0]) == list(NODES)
    stack.running.validate()

    # A code change on the running stack: each host gets the new version beside the old one,
    # linked before the old one's delete removes only itself; no host state changes.
    probe = PACKAGE / "_upgrade_probe.py"
    probe.write_text('"""Written by test_ssh_day_two_lab for one up; removed after it."""\n')
    every = {**first_two, "test3": NODES[2]}
    before_code = stack.untouched(every)
    try:
        steps = stack.up(list(NODES))
    finally:
        probe.unlink()
    assert stack.untouched(every) == before_code, "a code change restarted or replaced something"
    for n in NODES:
        assert steps[f"lab-{n}-copy"].kind == steps[f"lab-{n}-lib"].kind == "replace", n
        assert steps[f"etcd-{n}"].kind == steps[f"docker-{n}-dockerd"].kind == "same", n
        layout = stack.ssh(n, f"readlink {LIB}/overlaylab; ls {LIB}").split()
        assert len(layout) == 3 and layout[0].endswith("/overlaylab"), f"{n}: {layout}"
        version = layout[0].split("/")[0]
        assert sorted(layout[1:]) == sorted([version, "overlaylab"]), f"{n}: old copy left"
        stack.ssh(n, f"PYTHONPATH={LIB} python3 -c 'import overlaylab._upgrade_probe'")
    stack.running.validate()

    last_two = {"test2": NODES[1], "test3": NODES[2]}
    before_remove = stack.untouched(last_two)
    steps = stack.up(list(NODES[1:]))
    assert stack.untouched(last_two) == before_remove, "removing a host changed a staying one"
    assert steps["etcd-docker-node1"].kind == "delete"
    assert steps["overlay-network"].kind == "same"
    for name in ("etcd-docker-node2", "etcd-docker-node3", "test-test2", "test-test3"):
        assert steps[name].kind == "same", f"{name}: {steps[name]}"
    assert stack.members(NODES[1]) == list(NODES[1:])
    stack.running.validate()
    left = stack.ssh(NODES[0], vmhosts.HOST_STATE)
    assert left == before[NODES[0]], f"{NODES[0]} not restored:\n{left}\n---\n{before[NODES[0]]}"

    assert stack.running.destroy() == []
    for n in NODES[1:]:
        after = stack.ssh(n, vmhosts.HOST_STATE)
        assert after == before[n], f"{n} not restored:\n{after}\n---\n{before[n]}"
    assert vmhosts.identity_gone(stack.tmp) == []


def test_a_rebooted_host_is_seen_over_ssh_and_mended_by_a_plain_up(stack: Stack) -> None:
    """docker-node2 rebooted: systemd brings its etcd and Docker back, its container (no
    restart policy) stays stopped. The survey asks each host over SSH and finds exactly that;
    the preview plans test2's replace; a plain `up` replaces test2 alone (and validates), host
    1's container and both hosts' etcd and dockerd pids stay; the next `up` runs nothing."""
    from overlaylab.config import parse
    from overlaylab.survey import survey

    two = list(NODES[:2])
    stack.up(two)
    stack.running.validate()
    raw = stack.config(two)
    cfg = parse({**raw, **(stack.running.secrets or {})}, "test")
    assert survey(cfg).findings == ()

    host = next(h for h in stack.hosts if h.name == NODES[1])
    vmhosts.power_off(host)
    vmhosts.boot(host, BRIDGE)
    vmhosts.wait_ssh(host, stack.guard)
    stack.ssh(host.name, "systemctl is-system-running --wait", check=False)
    active = "systemctl is-active docker && systemctl is-active etcd"
    proc.wait_for(
        "docker and etcd active after the reboot",
        lambda: stack.ssh(host.name, active, check=False).split() == ["active"] * 2,
        90,
        0.5,
    )
    found = [str(f) for f in survey(cfg).findings]
    assert found == [f"container test2 on {NODES[1]} is not running"], found

    kept = stack.untouched({"test1": NODES[0]})
    plan = stack.running.preview(raw)
    assert plan["test-test2"].kind == "replace" and plan["validate-run"].kind == "replace"
    assert plan["test-test1"].kind == "same" and plan[f"etcd-{NODES[1]}"].kind == "same"
    steps = stack.up(two)
    ran = {n for n, s in steps.items() if s.kind != "same"}
    assert ran - {n for n in ran if n.endswith("-names")} == {"test-test2", "validate-run"}, ran
    assert stack.untouched({"test1": NODES[0]}) == kept
    stack.running.validate()
    again = stack.up(two)
    assert {n for n, s in again.items() if s.kind != "same"} == set(), again


def test_a_host_gone_for_good_is_forgotten_and_the_rest_stays_clean(stack: Stack) -> None:
    """docker-node3 dies for good (a crash, no shutdown), its stack up. `python -m
    overlaylab.forget` removes its member through another, its container's endpoint through
    another host's daemon, its node key, and its resources from the state; the `up` without
    it then deletes nothing there and validates, the two hosts that stay keep their pids and
    containers, the cluster lists them alone, and no key of Docker's names the host."""
    import subprocess
    import sys

    import standin.state
    from overlaylab.stackconfig import write_stack_file

    stack.up(list(NODES))
    stack.running.validate()
    first_two = {"test1": NODES[0], "test2": NODES[1]}
    kept = stack.untouched(first_two)
    gone = next(h for h in stack.hosts if h.name == NODES[2])
    vmhosts.crash(gone)  # no clean shutdown: its endpoint and node key stay in the store
    before = _keys_naming(stack, gone.address)
    assert any("/endpoint/" in k for k in before) and any("/nodes/" in k for k in before), before

    config_file = write_stack_file(stack.tmp / f"Pulumi.{LAB_ID}.yaml", stack.config(list(NODES)))
    res = subprocess.run(
        [sys.executable, "-m", "overlaylab.forget", "--stack", LAB_ID, "--host", gone.name,
         "--config-file", str(config_file), "--ssh-key", str(stack.key),
         "--state-file", str(stack.running.state_file)],
        capture_output=True, text=True, cwd=PACKAGE.parent, timeout=300, check=False,
    )  # fmt: skip
    # the teardown destroys what the state now holds, whatever the asserts below say
    stack.running.state = standin.state.load(stack.running.state_file)
    assert res.returncode == 0, res.stdout + res.stderr
    said = res.stdout
    assert f"etcd: member {gone.name} removed through" in said, said
    assert "docker: endpoint test3 on demo removed through" in said, said
    assert f"docker: node key /docker/nodes/{gone.address}:2375 deleted" in said, said
    assert stack.members(NODES[0]) == list(NODES[:2])
    assert not [
        r.name for r in stack.running.state if gone.name in r.name or r.name == "test-test3"
    ]

    steps = stack.up(list(NODES[:2]))
    assert not [n for n, s in steps.items() if s.kind == "delete"], steps
    assert stack.untouched(first_two) == kept
    stack.running.validate()
    assert _keys_naming(stack, gone.address) == []


def _keys_naming(stack: Stack, address: str) -> list[str]:
    """Docker's keys whose name or value holds ``address`` (a node key, an endpoint there)."""
    client = EtcdClient(f"http://{stack.hosts[0].address}:2379", stack.guard)
    keys = client.v2_get("/docker", recursive=True)
    assert keys is not None
    return [n.key for n in keys.walk() if address in (n.value or "") or address in n.key]
