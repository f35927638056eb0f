"""``overlay.name-gone`` (issue 16, item 2): a name that left resolves nowhere on that network.

The checks' logic on the fake wire of ``test_validate_networks`` (Docker's embedded DNS there
answers a name from the containers' own networks); what `up` keeps for the next validation, on
a real etcd member (v2).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from overlaylab.errors import LabError
from overlaylab.validate import gone
from overlaylab.validate.records import Lab, _r
from overlaylab.validate.run import _NamesGone
from tests.unit.test_validate_networks import Iface, _lab, _wire, failed, isolation_spec
from tests.unit.v2etcd import single_etcd

ISO = {"test1": ["demo"], "test2": ["demo"], "back1": ["backend"], "back2": ["backend"],
       "both1": ["demo", "backend"]}  # fmt: skip


def test_the_names_that_left_are_those_no_longer_on_a_network_the_stack_has() -> None:
    assert gone.gone_pairs(ISO, ISO) == []
    now = {k: v for k, v in ISO.items() if k != "test2"}
    assert gone.gone_pairs(ISO, now) == [("test2", "demo")]
    # both1 leaves backend but stays on demo: only that network
    moved = {**ISO, "both1": ["demo"]}
    assert gone.gone_pairs(ISO, moved) == [("both1", "backend")]
    # a network removed with its containers: nothing on it is left to ask
    only_demo = {"test1": ["demo"], "test2": ["demo"], "both1": ["demo"]}
    assert gone.gone_pairs(ISO, only_demo) == []
    assert gone.gone_pairs({}, ISO) == []  # a stack's first up


def _stale(wire: Any, name: str, ip: str, net: str) -> None:
    """A record Docker's DNS still holds for ``name``: the fake DNS answers from namespaces."""
    wire.netns[f"/ns/{name}"] = {"eth0": Iface(ip, 1450, net)}


def _lab_with_stale(monkeypatch: pytest.MonkeyPatch, **stale: str) -> Lab:
    """The isolation stack's lab on the fake wire, with a stale record on demo for each
    name -> address of ``stale``."""
    spec = isolation_spec()
    wire = _wire(spec)
    for name, ip in stale.items():
        _stale(wire, name, ip, "demo")
    return _lab(spec, wire, monkeypatch)


def strict(pairs: list[tuple[str, str]]) -> gone.Gone:
    return gone.Gone(pairs, frozenset())


def test_a_removed_name_that_still_resolves_fails_naming_who_resolves_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = _lab_with_stale(monkeypatch, ghost="10.0.0.99")
    results = gone.check_names_gone(lab, strict([("ghost", "demo"), ("old", "demo")]))
    # asked from every container on demo: test1, test2 and both1
    assert {r.subject for r in results} == {
        f"{n} (left the stack) from {c} ({h}) on demo"
        for n in ("ghost", "old")
        for c, h in (
            ("test1", "docker-node1"),
            ("test2", "docker-node2"),
            ("both1", "docker-node1"),
        )
    }
    bad = failed(results)
    assert {r.subject.split(" from ")[0] for r in bad} == {"ghost (left the stack)"}
    assert bad[0].actual.startswith("resolves to 10.0.0.99: Docker's embedded DNS on docker-node")
    assert all(r.actual == "does not resolve (NXDOMAIN)" for r in results if r.ok)


def test_a_name_that_left_one_network_is_asked_only_where_it_shares_no_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = isolation_spec()
    # both1 left backend (the spec now has it on demo only); its old record stays on backend
    for c in spec["containers"]:
        if c["name"] == "both1":
            c["networks"] = ["demo"]
    wire = _wire(spec)
    wire.netns["/ns/both1"]["eth3"] = Iface("10.0.1.50", 1450, "backend")
    lab = _lab(spec, wire, monkeypatch)
    results = gone.check_names_gone(lab, strict([("both1", "backend")]))
    assert {r.subject for r in results} == {
        "both1 (left backend) from back1 (docker-node1) on backend",
        "both1 (left backend) from back2 (docker-node2) on backend",
    }
    assert {r.ok for r in results} == {False}
    wire.netns["/ns/both1"].pop("eth3")
    assert all(r.ok for r in gone.check_names_gone(lab, strict([("both1", "backend")])))


def test_inside_up_a_name_leaving_in_that_up_is_reported_and_kept_for_the_next_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = _lab_with_stale(monkeypatch, ghost="10.0.0.99", stale="10.0.0.98")
    now = gone.current(lab)
    # ghost and old were in the stack at the last up; stale left before and still resolved
    former = gone.Former({**now, "ghost": ["demo"], "old": ["demo"]}, {"stale": ["demo"]})
    in_up = gone.to_check(former, now, in_up=True)
    assert in_up.pairs == [("ghost", "demo"), ("old", "demo"), ("stale", "demo")]
    assert in_up.leaving == {("ghost", "demo"), ("old", "demo")}
    results = gone.check_names_gone(lab, in_up)
    ghost = [r for r in results if r.subject.startswith("ghost")]
    assert ghost and all(
        r.ok and "leaving (its container is deleted after" in r.actual for r in ghost
    )
    assert {r.subject.split(" (")[0] for r in failed(results)} == {"stale"}
    # only what was shown not to resolve is forgotten; the next validation checks the rest
    assert gone.proven(in_up.pairs, results) == [("old", "demo")]
    by_hand = gone.to_check(former, now, in_up=False)  # after up: strict
    assert by_hand.leaving == frozenset()
    assert {r.subject.split(" (")[0] for r in failed(gone.check_names_gone(lab, by_hand))} == {
        "ghost", "stale",
    }  # fmt: skip


def test_a_container_that_cannot_be_probed_fails_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = isolation_spec()
    wire = _wire(spec)
    wire.host_of["test2"] = "elsewhere"  # its daemon does not know it
    lab = _lab(spec, wire, monkeypatch)
    results = gone.check_names_gone(lab, strict([("ghost", "demo")]))
    bad = failed(results)
    assert [r.subject for r in bad] == ["ghost (left the stack) from test2 (docker-node2) on demo"]
    assert bad[0].actual == "not probed: no such container"


def _lab_on(client: Any, monkeypatch: pytest.MonkeyPatch) -> Lab:
    spec = isolation_spec()
    lab = _lab(spec, _wire(spec), monkeypatch)
    lab.etcd = {"docker-node1": client}
    return lab


def test_up_keeps_the_stack_and_the_names_not_shown_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with single_etcd() as client:
        lab = _lab_on(client, monkeypatch)
        lab.in_up = True
        try:
            assert gone.read_former(lab) == gone.Former({}, {})
            assert _NamesGone().keep(lab, []) == []
            assert gone.read_former(lab) == gone.Former(ISO, {})
            # the next up: test2 left in the stack's config (still resolving: the engine
            # deletes it after the validation)
            smaller = {k: v for k, v in ISO.items() if k != "test2"}
            lab.all_containers = [c for c in lab.all_containers if c["name"] != "test2"]
            names = _NamesGone()
            assert names.read(lab) == gone.Gone([("test2", "demo")], frozenset({("test2", "demo")}))
            said = "resolves to 10.0.0.3: leaving (...)"
            leaving = [_r(gone.CHECK, "test2 (left the stack) from test1 (docker-node1) on demo",
                          "does not resolve", said, True)]  # fmt: skip
            assert names.keep(lab, leaving) == []
            assert gone.read_former(lab) == gone.Former(smaller, {"test2": ["demo"]})
            # the run after it: strict for test2, and forgotten once it does not resolve
            nxt = _NamesGone()
            assert nxt.read(lab) == gone.Gone([("test2", "demo")], frozenset())
            shown = [_r(gone.CHECK, "test2 (left the stack) from test1 (docker-node1) on demo",
                        "does not resolve", "does not resolve (NXDOMAIN)", True)]  # fmt: skip
            assert nxt.keep(lab, shown) == []
            assert gone.read_former(lab) == gone.Former(smaller, {})
            # not checked (the test not selected): kept for a run that checks it
            client.v2_put(gone.KEY, json.dumps({"containers": smaller, "left": {"x": ["demo"]}}))
            assert _NamesGone().keep(lab, None) == []
            assert gone.read_former(lab).left == {"x": ["demo"]}
        finally:
            lab.pool.shutdown()


def test_a_key_that_is_not_the_validators_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with single_etcd() as client:
        lab = _lab_on(client, monkeypatch)
        try:
            client.v2_put(gone.KEY, "not json")
            with pytest.raises(LabError, match="is not what the validator keeps there"):
                gone.read_former(lab)
            # `up` then writes nothing over it and adds no record: etcd's own checks speak
            assert _NamesGone().keep(lab, []) == []
            assert client.v2_get(gone.KEY, recursive=False).value == "not json"  # type: ignore[union-attr]
        finally:
            lab.pool.shutdown()
