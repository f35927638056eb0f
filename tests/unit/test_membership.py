"""Runtime reconfiguration against real etcd members on loopback addresses (127.0.0.x).

Each member gets its own loopback address with the stack's ports, as hosts do on the lab's
segment: found a cluster of two, add a third while it runs, remove one, and a removal from a
cluster without quorum that must not hang.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlaylab.errors import EtcdError
from overlaylab.etcd import EtcdClient
from overlaylab.membership import (
    Bootstrap,
    bootstrap,
    client_url,
    leave,
    parse_cluster,
    withdraw,
)

CLIENT, PEER = 23790, 23800
pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed")


def addr(i: int) -> str:
    return f"127.0.0.{20 + i}"


def peer(i: int) -> str:
    return f"http://{addr(i)}:{PEER}"


def client(url: str) -> EtcdClient:
    return EtcdClient(url, None, timeout=2)


class Members:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, i: int, b: Bootstrap) -> None:
        name = f"m{i}"
        log = (self.root / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            ["etcd", "--name", name, "--data-dir", str(self.root / name),
             "--listen-peer-urls", peer(i), "--initial-advertise-peer-urls", peer(i),
             "--listen-client-urls", f"http://{addr(i)}:{CLIENT}",
             "--advertise-client-urls", f"http://{addr(i)}:{CLIENT}",
             "--initial-cluster-token", "t", "--initial-cluster", b.initial_cluster,
             "--initial-cluster-state", b.state, "--enable-v2=true"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def healthy(self, i: int, timeout: float = 30) -> list[str]:
        c = client(f"http://{addr(i)}:{CLIENT}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if c.health():
                    return sorted(m.get("name", "") for m in c.members()[1])
            except EtcdError:
                pass
            time.sleep(0.2)
        logs = {n: (self.root / f"{n}.log").read_text()[-600:] for n in self.procs}
        raise AssertionError(f"m{i} not healthy after {timeout}s: {logs}")

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.kill()
            p.wait()


@pytest.fixture
def members() -> Iterator[Members]:
    root = Path(tempfile.mkdtemp(prefix="membership-"))
    m = Members(root)
    try:
        yield m
    finally:
        m.stop_all()
        shutil.rmtree(root, ignore_errors=True)


def test_founders_start_new_a_late_host_is_added_and_a_leaver_removes_itself(
    members: Members,
) -> None:
    founding = [("m1", peer(1)), ("m2", peer(2))]
    plans = [
        bootstrap(name=f"m{i}", peer_url=peer(i), founding=founding, client_port=CLIENT,
                  client_for=client)
        for i in (1, 2)
    ]  # fmt: skip
    assert [p.state for p in plans] == ["new", "new"]
    for i, p in zip((1, 2), plans, strict=True):
        members.start(i, p)
    assert members.healthy(1) == ["m1", "m2"]

    # Day two: the program knows three hosts; the new one finds the running cluster.
    plan = bootstrap(
        name="m3", peer_url=peer(3), founding=[*founding, ("m3", peer(3))],
        client_port=CLIENT, client_for=client,
    )  # fmt: skip
    assert plan.state == "existing" and "added" in plan.how
    assert sorted(parse_cluster(plan.initial_cluster)) == [
        ("m1", peer(1)), ("m2", peer(2)), ("m3", peer(3))
    ]  # fmt: skip
    members.start(3, plan)
    assert members.healthy(3) == ["m1", "m2", "m3"]

    # The first host leaves: it removes itself while it runs; two remain healthy.
    said = leave(name="m1", own=client(client_url(peer(1), CLIENT)), client_for=client)
    assert said.startswith("removed from the cluster"), said  # then healthy, maybe a moment later
    assert members.healthy(2) == ["m2", "m3"]


def test_leaving_a_cluster_without_quorum_stops_without_hanging(members: Members) -> None:
    founding = [("m1", peer(1)), ("m2", peer(2))]
    for i in (1, 2):
        members.start(i, Bootstrap("new", ",".join(f"{n}={u}" for n, u in founding), ""))
    assert members.healthy(1) == ["m1", "m2"]
    members.procs["m2"].kill()
    members.procs["m2"].wait()
    start = time.monotonic()
    said = leave(name="m1", own=client(client_url(peer(1), CLIENT)), client_for=client)
    assert said.startswith("not removed from the cluster"), said
    assert time.monotonic() - start < 30


def test_a_founder_that_starts_late_joins_as_a_founder(members: Members) -> None:
    founding = [("m1", peer(1)), ("m2", peer(2)), ("m3", peer(3))]
    for i in (1, 2):
        members.start(i, Bootstrap("new", ",".join(f"{n}={u}" for n, u in founding), ""))
    assert members.healthy(1) == ["m1", "m2", "m3"]  # m3 listed (static), not started
    plan = bootstrap(
        name="m3", peer_url=peer(3), founding=founding, client_port=CLIENT, client_for=client
    )
    assert plan.state == "new" and "late founder" in plan.how
    members.start(3, plan)
    assert members.healthy(3) == ["m1", "m2", "m3"]


def test_a_member_added_that_never_starts_is_withdrawn(members: Members) -> None:
    """An added member that never runs would count in the quorum: its add is undone."""
    founding = [("m1", peer(1)), ("m2", peer(2))]
    for i in (1, 2):
        members.start(i, Bootstrap("new", ",".join(f"{n}={u}" for n, u in founding), ""))
    assert members.healthy(1) == ["m1", "m2"]
    plan = bootstrap(
        name="m3", peer_url=peer(3), founding=[*founding, ("m3", peer(3))],
        client_port=CLIENT, client_for=client,
    )  # fmt: skip
    assert plan.added_via  # m3 is now a member that does not run: 2 of 3 is the quorum
    said = withdraw(plan, peer(3), client)
    assert said.startswith("its member add was withdrawn"), said
    assert members.healthy(1) == ["m1", "m2"]
    assert len(client(f"http://{addr(1)}:{CLIENT}").members()[1]) == 2


@pytest.mark.parametrize("n", [2, 3])
def test_every_member_leaving_at_once_does_not_wait_for_the_gone(members: Members, n: int) -> None:
    """A destroy tears every host down at once: each member leaves, then is stopped. One that
    removed itself must not wait out its deadline for the others to confirm: they are gone.
    (It did: 20 s of most 2-host `down`s, 23 s of an 8-host one.)"""
    founding = [(f"m{i}", peer(i)) for i in range(1, n + 1)]
    for i in range(1, n + 1):
        members.start(i, Bootstrap("new", ",".join(f"{m}={u}" for m, u in founding), ""))
    assert len(members.healthy(1)) == n
    said: dict[str, str] = {}
    took: dict[str, float] = {}

    def teardown(i: int) -> None:
        start = time.monotonic()
        said[f"m{i}"] = leave(
            name=f"m{i}", own=client(client_url(peer(i), CLIENT)), client_for=client
        )
        members.procs[f"m{i}"].kill()  # etcd_down stops the member right after it left
        members.procs[f"m{i}"].wait()
        took[f"m{i}"] = time.monotonic() - start

    threads = [threading.Thread(target=teardown, args=(i,)) for i in range(1, n + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(took.values()) < 8, (took, said)
