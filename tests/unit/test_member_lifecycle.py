"""The etcd member lifecycle (``overlaylab.hosts.member``) over a fake seat: what both
transports share, without a process or a network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from overlaylab.errors import EtcdError, LabError
from overlaylab.etcd import EtcdClient
from overlaylab.hosts import member


class Silent(EtcdClient):
    """No member answers: the cluster is being founded."""

    def health(self) -> bool:
        raise EtcdError(f"{self.endpoint} refused")

    def members(self) -> Any:
        raise EtcdError(f"{self.endpoint} refused")


class Seat:
    listen_timeout = 0.3

    def __init__(self, root: Path, *, listens: bool = True, clean: bool = True) -> None:
        self.data, self.marker = root / "etcd", root / "etcd-cluster.json"
        self.tls, self.clean_failed_start, self.listens = False, clean, listens
        self.calls: list[str] = []
        self.started: member.Start | None = None

    def prepare(self) -> None:
        self.calls.append("prepare")

    def start(self, start: member.Start) -> str:
        self.calls.append("start")
        self.started = start
        return "started here"

    def listening(self) -> bool:
        return self.listens

    def client_for(self, url: str) -> EtcdClient:
        return Silent(url, None)

    def own(self, client_url: str) -> EtcdClient:
        self.calls.append(f"own {client_url}")
        return Silent(client_url, None)

    def ours(self) -> bool:
        return True

    def stop(self, name: str) -> None:
        self.calls.append("stop")

    def remove(self) -> str:
        self.calls.append("remove")
        return "removed"


M = member.Member(
    name="n1",
    address="10.1.0.1",
    client_port=2379,
    peer_port=2380,
    token="t",
    initial_cluster="n1=http://10.1.0.1:2380,n2=http://10.1.0.2:2380",
)


def test_a_first_member_founds_the_cluster_and_records_who_it_is(tmp_path: Path) -> None:
    seat = Seat(tmp_path)
    member.member_up(seat, M)
    assert seat.calls == ["prepare", "start"]
    assert seat.started is not None and seat.started.state == "new"
    assert seat.started.initial_cluster == M.initial_cluster
    assert (seat.started.client, seat.started.loopback) == (
        "http://10.1.0.1:2379",
        "http://127.0.0.1:2379",
    )
    assert json.loads(seat.marker.read_text()) == {
        "name": "n1", "token": "t", "client": "http://10.1.0.1:2379", "ran": True,
    }  # fmt: skip


def test_a_member_that_ran_and_lost_its_data_never_founds_a_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its marker says it ran (written once it listened), its data dir is gone, and no other
    member answers: founding would split it from the members that hold Docker's keys. It
    refuses before it starts. A marker from a start that never listened (an interrupted
    first `up`) says nothing of the kind: that member founds, as before."""
    from overlaylab import membership

    monkeypatch.setattr(membership, "LOST_PATIENCE", 0.3)
    seat = Seat(tmp_path)
    seat.marker.write_text(json.dumps({"name": "n1", "token": "t", "ran": True}))
    with pytest.raises(EtcdError, match="n1 lost its data and no other member answers"):
        member.member_up(seat, M)
    assert seat.calls == ["prepare"] and seat.started is None
    seat.marker.write_text(json.dumps({"name": "n1", "token": "t"}))
    member.member_up(seat, M)
    assert seat.started is not None and seat.started.state == "new"


def test_a_member_with_data_restarts_on_it_without_asking_the_cluster(tmp_path: Path) -> None:
    seat = Seat(tmp_path)
    (seat.data / "member").mkdir(parents=True)
    seat.marker.write_text(json.dumps({"name": "n1", "token": "t"}))
    member.member_up(seat, M)
    assert seat.started is not None and seat.started.state == "new"


def test_another_clusters_data_is_refused_before_anything_starts(tmp_path: Path) -> None:
    seat = Seat(tmp_path)
    (seat.data / "member").mkdir(parents=True)
    seat.marker.write_text(json.dumps({"name": "n1", "token": "other"}))
    with pytest.raises(EtcdError, match="belongs to another cluster"):
        member.member_up(seat, M)
    assert seat.calls == []


@pytest.mark.parametrize("clean", [True, False])
def test_a_failed_start_leaves_nothing_where_the_seat_says_so(tmp_path: Path, clean: bool) -> None:
    seat = Seat(tmp_path, listens=False, clean=clean)
    with pytest.raises(LabError):
        member.member_up(seat, M)
    if clean:
        assert seat.calls[-3:] == ["own http://10.1.0.1:2379", "stop", "remove"]
        assert not seat.marker.exists()
    else:
        assert seat.calls == ["prepare", "start"] and seat.marker.exists()


def test_down_leaves_through_its_recorded_client_then_stops_and_removes(tmp_path: Path) -> None:
    seat = Seat(tmp_path)
    (seat.data / "member").mkdir(parents=True)
    seat.marker.write_text(json.dumps({"name": "n1", "token": "t", "client": "http://x:1"}))
    member.member_down(seat, "n1")
    assert seat.calls == ["own http://x:1", "stop", "remove"]
    assert not seat.data.exists() and not seat.marker.exists()


def test_a_member_stopped_by_its_own_removal_before_it_answers_is_removed() -> None:
    """etcd applies a member's removal of itself and stops it, often before the answer is out
    ("etcdserver: server stopped", then refused): the others' member list says it is gone."""
    from overlaylab import membership
    from overlaylab.errors import EtcdError

    listed: dict[str, dict[str, Any]] = {"m1": {"name": "m1", "ID": "1", "clientURLs": ["http://a"]},
              "m2": {"name": "m2", "ID": "2", "clientURLs": ["http://b"]}}  # fmt: skip

    class Own:
        def members(self) -> tuple[str, list[dict[str, Any]]]:
            return "c", list(listed.values())

        def member_remove(self, member_id: str) -> None:
            listed.pop("m1")  # applied by the cluster ...
            raise EtcdError("etcd at http://a: etcdserver: server stopped")  # ... unanswered

        # its mark that it leaves (membership.LEAVING): nobody else leaves
        def v2_put(self, key: str, value: str, ttl: int | None = None) -> None:
            pass

        def v2_get(self, key: str) -> None:
            return None

    class Peer:
        def members(self) -> tuple[str, list[dict[str, Any]]]:
            return "c", list(listed.values())

        def health(self) -> bool:
            return True

        def v2_get(self, key: str) -> None:
            return None

        def v2_delete(self, key: str) -> bool:
            return True

        def v2_rmdir(self, key: str) -> bool:
            return True

    peer: Any = Peer()
    own: Any = Own()
    said = membership.leave(name="m1", own=own, client_for=lambda url: peer, timeout=5)
    assert said == "removed from the cluster; 1 remain healthy: m2", said
