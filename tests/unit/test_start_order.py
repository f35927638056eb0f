"""The daemons' start order (``overlaylab.hosts.dockerd.wait_for_turn``) against a fake store:
who waits for whom, when a re-run does not wait, and the one-line error when a daemon before
it never joins."""

from __future__ import annotations

import pytest

from overlaylab.errors import DockerError, EtcdError
from overlaylab.etcd import V2Node
from overlaylab.hosts.dockerd import wait_for_turn

N1, N2, N3 = (
    ("docker-node1", "10.9.9.10:2375"),
    ("docker-node2", "10.9.9.11:2375"),
    (
        "docker-node3",
        "10.9.9.12:2375",
    ),
)


class Store:
    """``/docker/nodes`` as a list of advertise addresses; ``after`` reads it adds one."""

    def __init__(
        self, nodes: list[str], later: list[tuple[int, str]] | None = None, most: int = 0
    ) -> None:
        self.nodes, self.later, self.reads, self.most = list(nodes), list(later or []), 0, most

    def v2_get(self, key: str, recursive: bool = True) -> V2Node | None:
        assert key == "/docker/nodes"
        self.reads += 1
        # AssertionError is no LabError: wait_for_turn does not take it for an unreachable store
        assert not self.most or self.reads <= self.most, f"read {self.reads} times: it waits"
        for at, adv in list(self.later):
            if self.reads >= at:
                self.nodes.append(adv)
                self.later.remove((at, adv))
        if not self.nodes:
            return None
        kids = tuple(V2Node(f"{key}/{a}", "", False, 20, ()) for a in self.nodes)
        return V2Node(key, None, True, None, kids)


def test_the_first_daemon_does_not_wait() -> None:
    store = Store([])
    wait_for_turn(
        [], hostname="docker-node1", advertise=N1[1], etcd=store, serf_on=lambda *_: False
    )
    assert store.reads == 0


def test_it_waits_for_the_last_one_before_it_with_its_key_and_serf() -> None:
    store = Store([N1[1]], later=[(3, N2[1])])
    serf: list[str] = []

    def serf_on(host: str, adv: str) -> bool:
        serf.append(host)
        return True

    wait_for_turn([N1, N2], hostname="docker-node3", advertise=N3[1], etcd=store, serf_on=serf_on)
    assert store.reads == 3
    assert serf == ["docker-node2"]  # asked only once node2's key is there


def test_a_key_without_serf_keeps_it_waiting() -> None:
    store = Store([N1[1]])
    with pytest.raises(DockerError, match="docker-node1 has registered, but its serf"):
        wait_for_turn([N1], hostname="docker-node2", advertise=N2[1], etcd=store,
                      serf_on=lambda *_: False, stall=0.3)  # fmt: skip


def test_a_rerun_of_a_daemon_already_in_the_store_does_not_wait() -> None:
    """An update re-runs create with the stdin of its creation: node1 may have left since."""
    store = Store([N2[1], N3[1]], most=1)  # a second read would be a wait for node2's turn
    asked: list[str] = []

    def serf_on(host: str, adv: str) -> bool:
        asked.append(host)
        return False

    wait_for_turn([N1, N2], hostname="docker-node3", advertise=N3[1], etcd=store,
                  serf_on=serf_on, stall=3600)  # fmt: skip
    assert (store.reads, asked) == (1, [])


def test_no_progress_fails_naming_the_first_daemon_not_in_the_store() -> None:
    store = Store([N1[1]])
    with pytest.raises(DockerError) as e:
        wait_for_turn([N1, N2], hostname="docker-node3", advertise=N3[1], etcd=store,
                      serf_on=lambda *_: True, stall=0.3)  # fmt: skip
    assert "docker-node2 has not registered in the store" in str(e.value)
    assert "\n" not in str(e.value)


def test_an_unreachable_store_counts_as_no_progress() -> None:
    class Down:
        def v2_get(self, key: str, recursive: bool = True) -> V2Node | None:
            raise EtcdError("etcd at http://10.9.9.12:2379 is unreachable: refused")

    with pytest.raises(DockerError, match="docker-node1 has not registered"):
        wait_for_turn([N1], hostname="docker-node2", advertise=N2[1], etcd=Down(),
                      serf_on=lambda *_: True, stall=0.3)  # fmt: skip
