"""How a starting member learns whether its cluster runs: every other founder asked at once.

A founder that has started but has no quorum yet accepts TCP on its client port and answers
nothing until it is ready (etcd 3.4 ``embed/serve.go``: ``serve`` waits on ``ReadyNotify``
before serving a request), so a probe of it waits the client's whole timeout (2 s). Asked one
after another, a member that starts while k others wait for their quorum spends 2k seconds
before it starts: measured in an 8-host up, 3.5 s of each member's 3.6 s.
"""

from __future__ import annotations

import threading

from overlaylab.errors import EtcdError
from overlaylab.membership import find_running

FOUNDERS = [(f"m{i}", f"http://10.9.0.{i}:2380") for i in range(1, 6)]


class Hanging:
    """A founder that is listening but not ready: answers only once every probe is in
    flight (a barrier of all of them), then says it has no quorum."""

    def __init__(self, endpoint: str, barrier: threading.Barrier, healthy: bool) -> None:
        self.endpoint = endpoint
        self.barrier = barrier
        self.healthy = healthy

    def cluster_version(self) -> str:
        # An older member, or a peer port this machine cannot read: the client port decides.
        raise EtcdError(f"etcd at {self.endpoint} answered /version with 404")

    def health(self) -> bool:
        try:
            self.barrier.wait(timeout=20)  # a generous limit, not a measure of speed
        except threading.BrokenBarrierError:
            raise EtcdError(f"{self.endpoint}: probed alone, not beside the others") from None
        if not self.healthy:
            raise EtcdError(f"etcd at {self.endpoint} is unreachable: timed out")
        return True


def test_every_other_founder_is_probed_at_once_and_none_running_means_founding() -> None:
    barrier = threading.Barrier(len(FOUNDERS) - 1)
    asked: list[str] = []

    def client_for(url: str) -> Hanging:
        if url.endswith(":2379"):
            asked.append(url)
        return Hanging(url, barrier, healthy=False)

    assert find_running(FOUNDERS, "m1", 2379, client_for) is None  # type: ignore[arg-type]
    assert sorted(asked) == [f"http://10.9.0.{i}:2379" for i in range(2, 6)]
    assert not barrier.broken


def test_a_healthy_member_among_hanging_ones_is_found() -> None:
    barrier = threading.Barrier(len(FOUNDERS) - 1)

    def client_for(url: str) -> Hanging:
        return Hanging(url, barrier, healthy=url.endswith(".4:2379"))

    got = find_running(FOUNDERS, "m1", 2379, client_for)  # type: ignore[arg-type]
    assert got is not None and got.endpoint == "http://10.9.0.4:2379"


class Founding:
    """A founder that has started, without a quorum yet: its peer port says the cluster is not
    decided (etcd answers this before it is ready); its client port would hang."""

    def __init__(self, endpoint: str, asked: list[str]) -> None:
        self.endpoint = endpoint
        self.asked = asked

    def cluster_version(self) -> str:
        self.asked.append(f"version {self.endpoint}")
        return "not_decided"

    def health(self) -> bool:
        self.asked.append(f"health {self.endpoint}")
        raise EtcdError(f"etcd at {self.endpoint} is unreachable: timed out")


def test_founders_whose_cluster_is_not_decided_are_not_asked_on_their_client_port() -> None:
    asked: list[str] = []
    got = find_running(FOUNDERS, "m1", 2379, lambda url: Founding(url, asked))  # type: ignore[arg-type,return-value]
    assert got is None
    assert sorted(asked) == sorted(f"version http://10.9.0.{i}:2380" for i in range(2, 6))


class Decided(Founding):
    def cluster_version(self) -> str:
        self.asked.append(f"version {self.endpoint}")
        return "3.4.0"

    def health(self) -> bool:
        self.asked.append(f"health {self.endpoint}")
        return True


def test_a_decided_cluster_is_asked_for_its_health() -> None:
    asked: list[str] = []
    founders = FOUNDERS[:2]
    got = find_running(founders, "m1", 2379, lambda url: Decided(url, asked))  # type: ignore[arg-type,return-value]
    assert got is not None and got.endpoint == "http://10.9.0.2:2379"
    assert asked == ["version http://10.9.0.2:2380", "health http://10.9.0.2:2379"]
