"""Runtime reconfiguration against real etcd members on loopback addresses (127.x.y.z).

Each member gets its own loopback address with the stack's ports, as hosts do on the lab's
segment: found a cluster of two, add a third while it runs, remove one, and a removal from a
cluster without quorum that must not hang.

Each test's members live on a loopback /24 of their own, drawn at random and checked free, and
form a cluster with a token of their own: another etcd on this machine (a lab's, or this module
run from another checkout at the same time) can neither take their ports nor answer for them.
Nothing here bounds how fast etcd is (that is bench/'s business): what converges is waited for,
with limits far above what a loaded machine needs.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from overlaylab.errors import EtcdError
from overlaylab.etcd import EtcdClient
from overlaylab.membership import (
    LEAVING,
    LEAVING_TTL,
    Bootstrap,
    bootstrap,
    client_url,
    leave,
    parse_cluster,
    withdraw,
)

CLIENT, PEER = 23790, 23800
#: How long anything here may take to converge: far above what a loaded 2-core machine needs.
LIMIT = 120.0
#: The members' client timeout. The product's is 2 s; here a request that a loaded machine
#: answers late must not turn into a different path through the code under test (a member add
#: that times out but is committed reads as "already listed").
REQUEST_TIMEOUT = 10.0
T = TypeVar("T")


def _etcd() -> str:
    path = shutil.which("etcd")
    if path is None:
        pytest.fail("etcd is not installed: run scripts/setup (as root) first", pytrace=False)
    return path


def _free_base() -> str:
    """A loopback /24 (127.a.b.0) whose first members' ports nobody holds."""
    for _ in range(50):
        base = f"127.{random.randint(100, 254)}.{random.randint(0, 254)}"
        try:
            for i in range(1, 4):
                for port in (CLIENT, PEER):
                    with socket.socket() as s:
                        s.bind((f"{base}.{i}", port))
        except OSError:
            continue
        return base
    raise AssertionError("no free loopback /24 found for the test's etcd members")


def client(url: str) -> EtcdClient:
    return EtcdClient(url, None, timeout=REQUEST_TIMEOUT)


def in_thread(fn: Callable[[], T], what: str, limit: float = LIMIT) -> T:
    """``fn()`` in a thread: its result, its exception re-raised, or a failure after ``limit``."""
    out: list[T] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:  # re-raised in the test's thread
            err.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    if t.is_alive():
        raise AssertionError(f"{what} still running after {limit:.0f}s")
    if err:
        raise err[0]
    return out[0]


def removed(said: str, own: str) -> bool:
    """Does leave()'s line say the member removed itself? (A member that removes itself is
    stopped by etcd, often before it answers: leave() then confirms through the others.)"""
    return said.startswith("removed from the cluster")


class Members:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.etcd = _etcd()
        self.base = _free_base()
        self.token = f"t-{uuid.uuid4().hex[:12]}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def addr(self, i: int) -> str:
        return f"{self.base}.{i}"

    def peer(self, i: int) -> str:
        return f"http://{self.addr(i)}:{PEER}"

    def url(self, i: int) -> str:
        return client_url(self.peer(i), CLIENT)

    def founding(self, *ids: int) -> list[tuple[str, str]]:
        return [(f"m{i}", self.peer(i)) for i in ids]

    def static(self, *ids: int) -> Bootstrap:
        """The static bootstrap of a cluster founded by these members."""
        return Bootstrap("new", ",".join(f"{n}={u}" for n, u in self.founding(*ids)), "")

    def start(self, i: int, b: Bootstrap) -> None:
        name = f"m{i}"
        log = (self.root / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [self.etcd, "--name", name, "--data-dir", str(self.root / name),
             "--listen-peer-urls", self.peer(i), "--initial-advertise-peer-urls", self.peer(i),
             "--listen-client-urls", self.url(i), "--advertise-client-urls", self.url(i),
             "--initial-cluster-token", self.token, "--initial-cluster", b.initial_cluster,
             "--initial-cluster-state", b.state, "--enable-v2=true"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self, i: int) -> None:
        self.procs[f"m{i}"].kill()
        self.procs[f"m{i}"].wait()

    def healthy(self, i: int, timeout: float = LIMIT) -> list[str]:
        """The names in the member list once member i answers healthy."""
        c = client(self.url(i))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if c.health():
                    return sorted(m.get("name", "") for m in c.members()[1])
            except EtcdError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"m{i} not healthy after {timeout:.0f}s: {self.logs()}")

    def logs(self) -> dict[str, str]:
        return {n: (self.root / f"{n}.log").read_text()[-600:] for n in self.procs}

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.kill()
            p.wait()


@pytest.fixture
def members() -> Iterator[Members]:
    root = Path(tempfile.mkdtemp(prefix="membership-"))
    try:
        m = Members(root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield m
    finally:
        m.stop_all()
        shutil.rmtree(root, ignore_errors=True)


def test_founders_start_new_a_late_host_is_added_and_a_leaver_removes_itself(
    members: Members,
) -> None:
    founding = members.founding(1, 2)
    plans = [
        bootstrap(name=f"m{i}", peer_url=members.peer(i), founding=founding, client_port=CLIENT,
                  client_for=client)
        for i in (1, 2)
    ]  # fmt: skip
    assert [p.state for p in plans] == ["new", "new"]
    for i, p in zip((1, 2), plans, strict=True):
        members.start(i, p)
    assert members.healthy(1) == ["m1", "m2"]

    # Day two: the program knows three hosts; the new one finds the running cluster.
    plan = bootstrap(
        name="m3", peer_url=members.peer(3), founding=members.founding(1, 2, 3),
        client_port=CLIENT, client_for=client, timeout=LIMIT,
    )  # fmt: skip
    assert plan.state == "existing" and "added" in plan.how, plan
    assert sorted(parse_cluster(plan.initial_cluster)) == members.founding(1, 2, 3)
    members.start(3, plan)
    assert members.healthy(3) == ["m1", "m2", "m3"]

    # The first host leaves: it removes itself while it runs; two remain healthy.
    said = leave(name="m1", own=client(members.url(1)), client_for=client)
    assert members.healthy(2) == ["m2", "m3"]  # then healthy, maybe a moment later
    assert members.healthy(3) == ["m2", "m3"]
    assert removed(said, members.url(1)), said
    # It said it was leaving (LEAVING); a cluster that stays keeps no trace of that.
    mark = client(members.url(2)).v2_get(LEAVING)
    if "remain healthy" in said:
        assert mark is None, mark
    else:  # confirmed otherwise: the mark expires with its TTL
        assert mark is None or all(0 < (n.ttl or 0) <= LEAVING_TTL for n in mark.nodes), mark


def test_a_member_whose_removal_is_refused_stops_trying_once_every_other_is_leaving(
    members: Members,
) -> None:
    """A destroy: every member leaves at once, each saying so first (LEAVING). etcd refuses a
    removal while the members that would remain have been connected for less than 5 s (its
    strict reconfiguration check), as right after a start or another removal; a member that
    sees every other one leaving stops there instead of retrying until its deadline (8 s of
    an 8-host destroy). The deadline is far beyond the test's limit: a member that kept
    retrying would still be at it when the limit is up."""
    for i in (1, 2, 3):
        members.start(i, members.static(1, 2, 3))
    assert members.healthy(1) == ["m1", "m2", "m3"]
    c = client(members.url(1))
    ids = {m["name"]: m["ID"] for m in c.members()[1]}
    for other in ("m2", "m3"):
        c.v2_put(f"{LEAVING}/{ids[other]}", "leaving", ttl=LEAVING_TTL)
    said = in_thread(
        lambda: leave(name="m1", own=c, client_for=client, timeout=10 * LIMIT, confirm=10 * LIMIT),
        "m1's leave while every other member leaves",
    )
    # Refused and given up, or removed and not waiting for the others' confirmation.
    assert "every other member is leaving too" in said, said


def test_leaving_a_cluster_without_quorum_stops_without_hanging(members: Members) -> None:
    for i in (1, 2):
        members.start(i, members.static(1, 2))
    assert members.healthy(1) == ["m1", "m2"]
    members.stop(2)
    said = in_thread(
        lambda: leave(name="m1", own=client(members.url(1)), client_for=client),
        "m1's leave of a cluster without quorum",
    )
    assert said.startswith("not removed from the cluster"), said


def test_a_founder_that_starts_late_joins_as_a_founder(members: Members) -> None:
    for i in (1, 2):
        members.start(i, members.static(1, 2, 3))
    assert members.healthy(1) == ["m1", "m2", "m3"]  # m3 listed (static), not started
    plan = bootstrap(
        name="m3", peer_url=members.peer(3), founding=members.founding(1, 2, 3),
        client_port=CLIENT, client_for=client, timeout=LIMIT,
    )  # fmt: skip
    assert plan.state == "new" and "late founder" in plan.how, plan
    members.start(3, plan)
    assert members.healthy(3) == ["m1", "m2", "m3"]


def test_a_member_added_that_never_starts_is_withdrawn(members: Members) -> None:
    """An added member that never runs would count in the quorum: its add is undone."""
    for i in (1, 2):
        members.start(i, members.static(1, 2))
    assert members.healthy(1) == ["m1", "m2"]
    plan = bootstrap(
        name="m3", peer_url=members.peer(3), founding=members.founding(1, 2, 3),
        client_port=CLIENT, client_for=client, timeout=LIMIT,
    )  # fmt: skip
    # m3 is now a member that does not run: 2 of 3 is the quorum
    # Added through whichever founder answered first (all are asked at once: find_running).
    assert plan.state == "existing" and plan.added_via in (members.url(1), members.url(2)), plan
    assert members.healthy(1) == ["", "m1", "m2"]  # an added member has no name until it runs
    said = withdraw(plan, members.peer(3), client)
    assert said == f"its member add was withdrawn at {plan.added_via}", said
    assert members.healthy(1) == ["m1", "m2"]


@pytest.mark.parametrize("n", [2, 3])
def test_every_member_leaving_at_once_does_not_wait_for_the_gone(members: Members, n: int) -> None:
    """A destroy tears every host down at once: each member leaves, then is stopped. One that
    removed itself must not wait out its deadline for the others to confirm: they are gone.
    (It did: 20 s of most 2-host `down`s, 23 s of an 8-host one.)

    The deadline and the confirmation's wait are set far beyond the test's limit, so a member
    that waited for the gone would still be leaving when the limit is up, however fast or slow
    the machine is."""
    ids = range(1, n + 1)
    for i in ids:
        members.start(i, members.static(*ids))
    for i in ids:
        assert len(members.healthy(i)) == n
    said: dict[str, str] = {}
    errors: dict[str, BaseException] = {}

    def teardown(i: int) -> None:
        try:
            said[f"m{i}"] = leave(
                name=f"m{i}", own=client(members.url(i)), client_for=client,
                timeout=10 * LIMIT, confirm=10 * LIMIT,
            )  # fmt: skip
            members.stop(i)  # etcd_down stops the member right after it left
        except BaseException as e:  # reported below, in the test's thread
            errors[f"m{i}"] = e

    threads = {f"m{i}": threading.Thread(target=teardown, args=(i,), daemon=True) for i in ids}
    for t in threads.values():
        t.start()
    deadline = time.monotonic() + LIMIT
    for t in threads.values():
        t.join(max(0.0, deadline - time.monotonic()))
    still = sorted(name for name, t in threads.items() if t.is_alive())
    assert not still, f"{still} still leaving after {LIMIT:.0f}s: {said}"
    if errors:
        raise AssertionError(f"a member's teardown failed: {errors}") from next(
            iter(errors.values())
        )
    assert sorted(said) == [f"m{i}" for i in ids], said
    # Each member either got out of the cluster, or saw every other one leaving too (then
    # there is nothing to keep consistent: LEAVING), or found them all gone (they saw its
    # mark and stopped before its own store applied theirs: CI, 2026-12-03); none ended
    # waiting for the rest.
    for i in ids:
        s = said[f"m{i}"]
        assert (
            removed(s, members.url(i))
            or "every other member is leaving too" in s
            or "every other member is gone" in s
        ), said
    assert not any("not healthy yet" in s for s in said.values()), said


def test_a_founder_without_quorum_says_so_on_its_peer_port_and_not_on_its_client_port(
    members: Members,
) -> None:
    """What find_running relies on, against etcd itself: a founder started alone answers
    ``not_decided`` on its peer URL while its client port answers nothing (it accepts and
    waits for ReadyNotify); once its cluster has a leader, the peer URL gives the version."""
    members.start(1, members.static(1, 2))
    c = client(members.peer(1))
    deadline = time.monotonic() + LIMIT
    while True:
        try:
            got = c.cluster_version()
            break
        except EtcdError:  # not listening yet
            assert time.monotonic() < deadline, members.logs()
            time.sleep(0.1)
    assert got == "not_decided", got
    with pytest.raises(EtcdError, match="unreachable"):
        client(members.url(1)).health()  # accepted, never answered: the probe's timeout
    members.start(2, members.static(1, 2))
    assert members.healthy(1) == ["m1", "m2"]
    assert c.cluster_version().startswith("3."), c.cluster_version()


def test_a_member_whose_data_is_lost_is_removed_and_added_again_keeping_the_keys(
    members: Members,
) -> None:
    """Three members, one killed and its data dir deleted: it must not found a cluster nor
    start on an empty data dir under its old id; it is removed and added, joins with an empty
    data dir, and reads the v2 key the others kept (Docker's keys are v2)."""
    for i in (1, 2, 3):
        members.start(i, members.static(1, 2, 3))
    assert members.healthy(1) == ["m1", "m2", "m3"]
    client(members.url(1)).v2_put("/docker/network/v1.0/network/abc", "kept")
    old_id = next(m["ID"] for m in client(members.url(1)).members()[1] if m["name"] == "m3")
    members.stop(3)
    shutil.rmtree(members.root / "m3")
    plan = bootstrap(
        name="m3", peer_url=members.peer(3), founding=members.founding(1, 2, 3),
        client_port=CLIENT, client_for=client, timeout=LIMIT, lost=True,
    )  # fmt: skip
    assert plan.state == "existing" and f"removed (member {old_id})" in plan.how, plan
    assert plan.added_via, plan  # withdrawn if its start fails
    members.start(3, plan)
    assert members.healthy(3) == ["m1", "m2", "m3"]
    ids = {m["name"]: m["ID"] for m in client(members.url(2)).members()[1]}
    assert ids["m3"] != old_id, ids
    node = client(members.url(3)).v2_get("/docker/network/v1.0/network/abc")
    assert node is not None and node.value == "kept", node


def test_a_member_whose_data_is_lost_in_a_cluster_without_quorum_refuses_and_founds_nothing(
    members: Members,
) -> None:
    """Two members, one lost: the one left has no quorum, so the lost one can be neither
    removed nor added; it must not found a cluster of its own."""
    for i in (1, 2):
        members.start(i, members.static(1, 2))
    assert members.healthy(1) == ["m1", "m2"]
    members.stop(2)
    shutil.rmtree(members.root / "m2")
    with pytest.raises(EtcdError, match="lost its data and no other member answers healthy"):
        in_thread(
            lambda: bootstrap(
                name="m2", peer_url=members.peer(2), founding=members.founding(1, 2),
                client_port=CLIENT, client_for=client, timeout=LIMIT, lost=True,
            ),
            "the lost member's bootstrap",
        )  # fmt: skip
    assert not (members.root / "m2").exists()
    # and without `lost`, the same call would found: the guard is what stops it
    plan = bootstrap(
        name="m2", peer_url=members.peer(2), founding=members.founding(1, 2),
        client_port=CLIENT, client_for=client,
    )  # fmt: skip
    assert plan.state == "new", plan
