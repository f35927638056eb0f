"""Node keys of hosts not in the stack (overlaylab.nodekeys), against a real etcd 3.4 on
127.0.0.1: one with no TTL is stale, reported by the survey and the validator and deleted by
`up`'s clean-up; a stack host's key, and any key refreshed within its TTL, is never deleted,
nor one written again between the read and the delete."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from overlaylab.config import parse
from overlaylab.config.model import Host
from overlaylab.etcd import EtcdClient, V2Node
from overlaylab.nodekeys import NODES, before_change, clear_stale_nodes, foreign_nodes
from overlaylab.survey import Survey, _nodes
from overlaylab.validate.checks import check_nodes
from tests.unit.v2etcd import dead_endpoint, single_etcd

N1, N2 = "192.168.205.10:2375", "192.168.205.11:2375"
GHOST, LEAVING = "10.9.9.9:2375", "192.168.205.12:2375"
STACK = [N1, N2]


@pytest.fixture
def store() -> Iterator[EtcdClient]:
    """The stack's two daemons (TTL'd keys), one of them also rewritten by hand without a TTL
    (still a stack host), a ghost written by hand (no TTL) and a host leaving the stack whose
    daemon still runs (TTL'd)."""
    with single_etcd() as c:
        c.v2_put(f"{NODES}/{N1}", N1, ttl=60)
        c.v2_put(f"{NODES}/{N2}", N2)
        c.v2_put(f"{NODES}/{GHOST}", GHOST)
        c.v2_put(f"{NODES}/{LEAVING}", LEAVING, ttl=60)
        yield c


def _present(c: EtcdClient) -> set[str]:
    root = c.v2_get(NODES)
    return set(root.children()) if root else set()


def test_only_a_key_of_no_host_with_no_ttl_is_stale(store: EtcdClient) -> None:
    found = {f.address: f.stale for f in foreign_nodes(store, STACK)}
    assert found == {GHOST: True, LEAVING: False}


def test_up_deletes_the_stale_key_and_nothing_else(store: EtcdClient) -> None:
    assert clear_stale_nodes(store, STACK) == [f"{NODES}/{GHOST}"]
    assert _present(store) == {N1, N2, LEAVING}
    assert clear_stale_nodes(store, STACK) == []  # the next run has nothing to do


class Rewritten:
    """The store, with a daemon re-registering the ghost's address between the read and the
    delete (a new modifiedIndex)."""

    def __init__(self, c: EtcdClient) -> None:
        self.c = c

    def v2_get(self, key: str, recursive: bool = True) -> V2Node | None:
        node = self.c.v2_get(key, recursive)
        self.c.v2_put(f"{NODES}/{GHOST}", GHOST)
        return node

    def v2_delete(self, key: str, recursive: bool = False, prev_index: int | None = None) -> bool:
        return self.c.v2_delete(key, recursive, prev_index)


def test_a_key_written_again_since_it_was_read_is_not_deleted(store: EtcdClient) -> None:
    assert clear_stale_nodes(Rewritten(store), STACK) == []
    assert GHOST in _present(store)


def test_the_programs_clean_up_uses_the_first_member_that_answers(store: EtcdClient) -> None:
    dead = EtcdClient(dead_endpoint(), None, timeout=2)
    said = before_change([dead, store], STACK)
    assert said == f"stale node keys deleted (of no host in the stack, no TTL): {NODES}/{GHOST}"
    assert before_change([dead, store], STACK) is None
    assert before_change([dead], STACK) is None  # nobody answers: nothing said, nothing done


def test_the_survey_reports_both_and_only_the_stale_one_is_broken(
    store: EtcdClient, seed_config: dict[str, Any]
) -> None:
    cfg = parse(copy.deepcopy(seed_config), "test")
    port = int(store.endpoint.rsplit(":", 1)[1])
    # one host at 127.0.0.1 (loopback passes the route check): every key is of no host here
    at_loopback = replace(cfg, hosts=(Host("docker-node1", "127.0.0.1"),), etcd_client_port=port)
    found = _nodes(at_loopback)
    assert [(f.kind, f.text.split(" is ")[0]) for f in found] == [
        ("node", f"node key {NODES}/{GHOST}"),
        ("node-owned", f"node key {NODES}/{N1}"),
        ("node", f"node key {NODES}/{N2}"),
        ("node-owned", f"node key {NODES}/{LEAVING}"),
    ]
    assert found[0].text.endswith("`up` deletes it")
    assert found[1].text.endswith("left alone, it expires once nothing refreshes it")
    s = Survey(expected=True, findings=tuple(found))
    assert [f.kind for f in s.broken] == ["node", "node"]
    # nothing answers: no finding (the etcd findings say why)
    assert (
        _nodes(replace(at_loopback, etcd_client_port=int(dead_endpoint().rsplit(":", 1)[1]))) == []
    )


class FakeLab:
    def __init__(self, c: EtcdClient, in_up: bool) -> None:
        self.c = c
        self.in_up = in_up
        self.hosts = [{"name": "n1", "advertise": N1}, {"name": "n2", "advertise": N2}]

    def any_etcd(self) -> EtcdClient:
        return self.c


def _exact(c: EtcdClient, in_up: bool) -> tuple[bool, str]:
    r = next(r for r in check_nodes(FakeLab(c, in_up)) if r.check == "etcd.nodes-exact")  # type: ignore[arg-type]
    return r.ok, r.actual


def test_the_validator_fails_a_stale_key_even_in_up_and_passes_one_leaving(
    store: EtcdClient,
) -> None:
    assert _exact(store, in_up=False) == (False, str([GHOST, LEAVING]))
    assert _exact(store, in_up=True) == (
        False,
        f"{[GHOST]} with no TTL (stale); {[LEAVING]} leaving",
    )
    clear_stale_nodes(store, STACK)
    assert _exact(store, in_up=True) == (
        True,
        f"{[LEAVING]} leaving (deleted after this check by `up`)",
    )
    assert _exact(store, in_up=False) == (False, str([LEAVING]))
