"""etcd's heartbeat and election timeout: a local stack's own, a stack's ``etcd.heartbeatMs``
and ``etcd.electionMs``, and how each reaches the member (its command line in a namespace,
/etc/default/etcd on a systemd host) without changing the commands of a stack that sets none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from overlaylab import verbs
from overlaylab.config import parse
from overlaylab.defaults import LOCAL_ETCD_TIMING
from overlaylab.errors import ConfigError
from overlaylab.hosts import member, systemd
from overlaylab.hosts.netns_daemons import etcd_argv
from tests.unit.test_config import mutate


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_a_stack_that_sets_none_has_none_and_its_member_command_names_none(
    seed_config: dict[str, Any],
) -> None:
    cfg = parse(seed_config)
    assert cfg.etcd_timing is None
    up = verbs.EtcdUp(
        name="n1", address="192.168.205.10", token="t", client_port=2379, peer_port=2380,
        initial_cluster_stdin=True,
    ).argv()  # fmt: skip
    assert not any("heartbeat" in a or "election" in a for a in up), up


def test_both_set_reach_the_verb_and_the_member(seed_config: dict[str, Any]) -> None:
    raw = mutate(mutate(seed_config, "etcd.heartbeatMs", 50), "etcd.electionMs", 600)
    cfg = parse(raw)
    assert cfg.etcd_timing == (50, 600)
    up = verbs.EtcdUp(
        name="n1", address="192.168.205.10", token="t", client_port=2379, peer_port=2380,
        initial_cluster_stdin=True, heartbeat_ms=50, election_ms=600,
    ).argv()  # fmt: skip
    assert (_flag(up, "--heartbeat-ms"), _flag(up, "--election-ms")) == ("50", "600")


@pytest.mark.parametrize(
    ("heartbeat", "election", "says"),
    [
        (25, 100, "etcd.electionMs 100 must be from 5 times etcd.heartbeatMs (125) to 50000"),
        (100, 60000, "etcd.electionMs 60000 must be from 5 times etcd.heartbeatMs (500)"),
        (0, 100, "etcd.heartbeatMs must be 1 or more, got 0"),
        ("fast", 100, "etcd.heartbeatMs 'fast' is not a number"),
    ],
)
def test_values_etcd_would_refuse_are_refused_in_one_line(
    seed_config: dict[str, Any], heartbeat: Any, election: Any, says: str
) -> None:
    raw = mutate(mutate(seed_config, "etcd.heartbeatMs", heartbeat), "etcd.electionMs", election)
    with pytest.raises(ConfigError) as info:
        parse(raw)
    assert says in str(info.value)
    assert "\n" not in str(info.value)


def _start(timing: tuple[int, int] | None) -> member.Start:
    m = member.Member(
        name="n1", address="192.168.205.10", client_port=2379, peer_port=2380, token="t",
        initial_cluster="n1=http://192.168.205.10:2380", timing=timing,
    )  # fmt: skip
    return member.Start(
        member=m, client="http://192.168.205.10:2379", peer="http://192.168.205.10:2380",
        loopback="http://127.0.0.1:2379", initial_cluster=m.initial_cluster, state="new",
    )  # fmt: skip


def test_a_namespace_member_runs_with_the_local_timing_unless_the_stack_sets_one() -> None:
    def argv(timing: tuple[int, int]) -> list[str]:
        return etcd_argv(
            name="n1", data=Path("/d"), client="c", peer="p", loopback="l", token="t",
            initial_cluster="n1=p", tls_dir=None, timing=timing,
        )  # fmt: skip

    default = etcd_argv(
        name="n1", data=Path("/d"), client="c", peer="p", loopback="l", token="t",
        initial_cluster="n1=p", tls_dir=None,
    )  # fmt: skip
    got = (_flag(default, "--heartbeat-interval"), _flag(default, "--election-timeout"))
    assert got == tuple(str(v) for v in LOCAL_ETCD_TIMING)
    set_ = argv((40, 400))
    assert (_flag(set_, "--heartbeat-interval"), _flag(set_, "--election-timeout")) == (
        "40",
        "400",
    )


def test_a_systemd_member_gets_etcds_own_timing_unless_the_stack_sets_one() -> None:
    env = systemd._etcd_env(_start(None))
    assert "ETCD_HEARTBEAT_INTERVAL" not in env and "ETCD_ELECTION_TIMEOUT" not in env
    env = systemd._etcd_env(_start((100, 1500)))
    assert (env["ETCD_HEARTBEAT_INTERVAL"], env["ETCD_ELECTION_TIMEOUT"]) == ("100", "1500")
