"""Day two on an SSH stack, for real: a third VM-like host added to a running 2-host stack,
then the first host removed, then destroy; every host that leaves is restored byte for byte.

Three Debian 12 hosts under systemd-nspawn (tests/vmhosts.py), as in tests/test_ssh_lab.py,
on their own bridge and segment. The program runs through the engine stand-in on the stack's
previous state, as `pulumi up` on a running stack would.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from overlaylab import spec as out
from overlaylab.etcd import EtcdClient
from overlaylab.hosts import netns
from overlaylab.netrule import RouteGuard
from tests import standin, vmhosts
from tests.labtools import failed_first, require_root, validate_cli
from tests.standin import SSH_BASE
from tests.standin.plan import Step, summary

pytestmark = pytest.mark.lab

LAB_ID = "sshd2"
BRIDGE = "ovbr-sshd2"
SEGMENT = "192.168.227"
NODES = ("docker-node1", "docker-node2", "docker-node3")
# What a host looks like to the lab before and after: its etcd and docker config, services,
# the packaged member, and that none of the lab's files are left.
HOST_STATE = (
    "cat /etc/default/etcd; echo ===; cat /etc/docker/daemon.json 2>&1; echo ===; "
    "systemctl is-active etcd docker; etcdctl member list; echo ===; "
    "ls /usr/local/lib/overlaylab /var/lib/overlaylab /var/lib/etcd/overlaylab "
    "/etc/systemd/system/docker.service.d /etc/systemd/system/etcd.service.d 2>&1 || true"
)


@dataclass
class Stack:
    hosts: list[vmhosts.VmHost]
    key: Path
    tmp: Path
    guard: RouteGuard
    state: list[standin.Record] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def ssh(self, host: str, script: str) -> str:
        h = next(x for x in self.hosts if x.name == host)
        self.guard.check(h.address)
        res = subprocess.run(
            [*SSH_BASE, "-i", str(self.key), f"root@{h.address}", script],
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 0, f"{host}: {script}: {res.stderr}"
        return res.stdout

    def config(self, names: list[str]) -> dict[str, Any]:
        address = {h.name: h.address for h in self.hosts}
        return {
            "lab": {
                "id": LAB_ID,
                "transport": "ssh",
                "segment": f"{SEGMENT}.0/24",
                "bridge": BRIDGE,
                "bridgeAddress": f"{SEGMENT}.1",
            },
            "ssh": {"user": "root", "identityFile": str(self.tmp / "identity" / "id_ssh")},
            "hosts": [{"name": n, "address": address[n]} for n in names],
            "etcd": {"clusterToken": "etcd-sshd2"},
            "network": {"name": "demo", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1"},
            "containers": [{"name": f"test{n[-1]}", "host": n} for n in names],
        }

    def up(self, names: list[str]) -> dict[str, Step]:
        run = standin.run_program(
            self.config(names),
            stack=LAB_ID,
            state_file=self.tmp / "state.json",
            guard=self.guard,
            secrets={"sshPrivateKey": self.key.read_text()},
            old=self.state,
        )
        self.state = run.engine.state()
        assert run.error is None, f"up with {names} failed: {run.error}"
        self.outputs = run.outputs or {}
        print(f"\nup with {names}: {summary(run.steps)}")
        return {s.name: s for s in run.steps}

    def validate(self) -> None:
        res = validate_cli(self.outputs[out.OUT_VALIDATION_SPEC], 60)
        assert res.returncode == 0, failed_first(res.stdout) + res.stderr[-2000:]

    def members(self, via: str) -> list[str]:
        address = next(h.address for h in self.hosts if h.name == via)
        client = EtcdClient(f"http://{address}:2379", self.guard)
        return sorted(m.get("name", "") for m in client.members()[1])


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_root()
    standin.become_subreaper()
    vmhosts.ensure_base()
    tmp = Path(tempfile.mkdtemp(prefix="sshd2-"))
    key, pub = vmhosts.keypair(tmp)
    netns.bridge_up(BRIDGE, f"{SEGMENT}.1", 24)
    hosts = [
        vmhosts.make_host(n, LAB_ID, f"{SEGMENT}.{10 + i}", 24, pub) for i, n in enumerate(NODES)
    ]
    lab = Stack(hosts, key, tmp, RouteGuard(BRIDGE))
    try:
        for h in hosts:
            vmhosts.boot(h, BRIDGE)
        for h in hosts:
            vmhosts.wait_ssh(h, lab.guard)
        for h in hosts:
            lab.ssh(h.name, "systemctl is-system-running --wait; systemctl is-active docker etcd")
        yield lab
    finally:
        errors = standin.destroy(lab.state, guard=lab.guard) if lab.state else []
        for h in hosts:
            vmhosts.power_off(h)
        for h in hosts:
            vmhosts.remove(h)
        vmhosts.detach_all(BRIDGE)
        netns.bridge_down(BRIDGE)
        shutil.rmtree(tmp, ignore_errors=True)
        assert not errors, errors


def test_add_a_host_then_remove_the_first_then_destroy_restoring_each(stack: Stack) -> None:
    before = {n: stack.ssh(n, HOST_STATE) for n in NODES}
    assert all(before[n].count("ls: cannot access") == 5 for n in NODES), before

    stack.up(list(NODES[:2]))
    stack.validate()

    steps = stack.up(list(NODES))
    staying = [f"etcd-{n}" for n in NODES[:2]] + [f"docker-{n}-dockerd" for n in NODES[:2]]
    staying += ["overlay-network", "test-test1", "test-test2"]
    for name in staying:
        assert steps[name].kind == "same", f"{name}: {steps[name]}"
    assert steps["etcd-docker-node3"].kind == "create"
    assert stack.members(NODES[0]) == list(NODES)
    stack.validate()

    steps = stack.up(list(NODES[1:]))
    assert steps["etcd-docker-node1"].kind == "delete"
    assert steps["overlay-network"].kind == "same"
    for name in ("etcd-docker-node2", "etcd-docker-node3", "test-test2", "test-test3"):
        assert steps[name].kind == "same", f"{name}: {steps[name]}"
    assert stack.members(NODES[1]) == list(NODES[1:])
    stack.validate()
    left = stack.ssh(NODES[0], HOST_STATE)
    assert left == before[NODES[0]], f"{NODES[0]} not restored:\n{left}\n---\n{before[NODES[0]]}"

    errors = standin.destroy(stack.state, guard=stack.guard)
    stack.state = []
    assert errors == []
    for n in NODES[1:]:
        after = stack.ssh(n, HOST_STATE)
        assert after == before[n], f"{n} not restored:\n{after}\n---\n{before[n]}"
    assert not (stack.tmp / "identity").exists()
