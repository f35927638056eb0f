"""The serf gate's logic, offline: which members a dockerd log shows, and when it re-announces."""

from __future__ import annotations

import pytest

from overlaylab.errors import DockerError
from overlaylab.etcd import V2Node
from overlaylab.hosts import serf


def _line(event: str, node: str, ip: str) -> str:
    return (
        f'time="2026-11-28T22:11:36Z" level=info msg="2026/11/28 22:11:36 [INFO] serf: '
        f'{event}: {node} {ip}\\n"\n'
    )


def test_serf_members_follow_the_last_event_of_each_member() -> None:
    log = (
        _line("EventMemberJoin", "docker-node1", "192.168.205.10")
        + _line("EventMemberJoin", "docker-node2", "192.168.205.11")
        + _line("EventMemberFailed", "docker-node2", "192.168.205.11")
        + _line("EventMemberJoin", "docker-node3", "192.168.205.12")
        + 'time="x" level=error msg="joining serf neighbor 192.168.205.13 failed"\n'
    )
    assert serf.serf_members(log) == {"192.168.205.10", "192.168.205.12"}


class FakeEtcd:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def v2_get(self, key: str, recursive: bool = True) -> V2Node:
        self.calls.append(("get", key))
        return V2Node(key=key, value="192.168.205.12:2375", dir=False, ttl=40, nodes=())

    def v2_delete(self, key: str, recursive: bool = False) -> bool:
        self.calls.append(("delete", key))
        return True

    def v2_put(self, key: str, value: str, ttl: int | None = None) -> None:
        self.calls.append(("set", f"{key}={value} ttl={ttl}"))


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serf.time, "sleep", lambda s: None)


def test_a_lone_serf_is_re_announced_until_it_knows_every_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    etcd = FakeEtcd()
    logs = [_line("EventMemberJoin", "docker-node3", "192.168.205.12")]
    clock = [0.0]
    monkeypatch.setattr(serf.time, "monotonic", lambda: clock[0])

    def read_log() -> str:
        clock[0] += 1.0
        # The second re-announcement is followed by the joins it caused.
        if sum(1 for c in etcd.calls if c[0] == "set") >= 2:
            logs.append(_line("EventMemberJoin", "docker-node1", "192.168.205.10"))
            logs.append(_line("EventMemberJoin", "docker-node2", "192.168.205.11"))
        return "".join(logs)

    serf.serf_mesh(
        hostname="docker-node3",
        advertise="192.168.205.12:2375",
        peers=["192.168.205.10", "192.168.205.11", "192.168.205.12"],
        etcd=etcd,  # type: ignore[arg-type]
        read_log=read_log,
        timeout=60,
    )
    key = "/docker/nodes/192.168.205.12:2375"
    assert etcd.calls == [
        ("get", key),
        ("delete", key),
        ("set", f"{key}=192.168.205.12:2375 ttl=60"),
        ("get", key),
        ("delete", key),
        ("set", f"{key}=192.168.205.12:2375 ttl=60"),
    ]


def test_a_whole_mesh_passes_without_touching_the_store() -> None:
    etcd = FakeEtcd()
    log = "".join(
        _line("EventMemberJoin", f"docker-node{i}", f"192.168.205.1{i - 1}") for i in (1, 2)
    )
    serf.serf_mesh(
        hostname="docker-node1",
        advertise="192.168.205.10:2375",
        peers=["192.168.205.10", "192.168.205.11"],
        etcd=etcd,  # type: ignore[arg-type]
        read_log=lambda: log,
    )
    assert etcd.calls == []


def test_a_serf_that_never_joins_fails_naming_the_missing_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]

    def tick() -> float:
        clock[0] += 0.5
        return clock[0]

    monkeypatch.setattr(serf.time, "monotonic", tick)
    with pytest.raises(DockerError, match=r"docker-node2's serf never saw 192\.168\.205\.10 join"):
        serf.serf_mesh(
            hostname="docker-node2",
            advertise="192.168.205.11:2375",
            peers=["192.168.205.10", "192.168.205.11"],
            etcd=FakeEtcd(),  # type: ignore[arg-type]
            read_log=lambda: _line("EventMemberJoin", "docker-node2", "192.168.205.11"),
            timeout=20,
        )
