"""One definition per host verb (``overlaylab.verbs``): what a record puts on the wire is what
``hostops`` parses back, field for field, and a flag left out parses to the record's default."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import MISSING
from typing import Any

import pytest

from overlaylab import hostops, verbs
from overlaylab.defaults import ETCD_CLIENT_PORT

ALL = (*verbs.HOST_VERBS, *verbs.PLAIN_VERBS)


def _sample(cls: type[Any], only_required: bool = False) -> dict[str, Any]:
    """A value for every field of ``cls`` that is not its default (one of an exclusive group);
    ``only_required``: for the fields without a default only (and one of each group)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    groups: set[str] = set()
    for f in dataclasses.fields(cls):
        hint, group = hints[f.name], f.metadata.get("exclusive")
        if group in groups or (only_required and not group and f.default is not MISSING):
            continue
        if group:
            groups.add(group)
        if f.metadata.get("pairs"):
            out[f.name] = (("http://a:1", "a"), ("http://b:1", "b"))
            continue
        one: Any = {int: 7, float: 1.5, bool: True, str: f"v-{f.name}"}[verbs._scalar(hint)]
        out[f.name] = (one, one) if typing.get_origin(hint) is tuple else one
    return out


def _parsed(argv: list[str]) -> argparse.Namespace:
    return hostops.parser().parse_args(argv)


def _as_parsed(record: Any, ns: argparse.Namespace) -> dict[str, Any]:
    got: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        if f.metadata.get("pairs"):
            a, b = (n.removeprefix("--") for n in f.metadata["pairs"])
            got[f.name] = tuple(zip(getattr(ns, a), getattr(ns, b), strict=True))
        else:
            v = getattr(ns, f.name)
            got[f.name] = tuple(v) if isinstance(v, list) else v
    return got


def test_the_parser_has_exactly_the_records_verbs() -> None:
    sub = next(a for a in hostops.parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == sorted(c.verb for c in ALL)
    assert {c.verb for c in verbs.HOST_VERBS} == set(hostops.HOST_VERBS)
    assert all(c.on_host for c in verbs.HOST_VERBS)
    assert not any(c.on_host for c in verbs.PLAIN_VERBS)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.verb)
def test_a_records_argv_parses_back_to_the_record(cls: type[verbs.Verb]) -> None:
    record = cls(**_sample(cls))
    where = verbs.Placement(netns="n", host_dir="/h", lab_id="l", bridge="b", tls_dir="/t")
    argv = record.argv(where.argv() if cls.on_host else ())
    ns = _parsed(argv)
    assert ns.verb == cls.verb
    assert _as_parsed(record, ns) == dataclasses.asdict(record)
    if cls.on_host:
        assert _as_parsed(where, ns) == dataclasses.asdict(where)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.verb)
def test_a_flag_left_out_parses_to_the_records_default(cls: type[verbs.Verb]) -> None:
    required = _sample(cls, only_required=True)
    record = cls(**required)
    ns = _parsed(record.argv())
    for f in dataclasses.fields(cls):
        if f.name in required:
            continue
        want = f.metadata["absent"] if f.default is None else f.default
        assert getattr(ns, f.name) == want, f.name


def test_defaults_are_left_out_only_where_the_wire_always_left_them_out() -> None:
    assert verbs.HostsUnique(reports=("r",)).argv() == ["hosts-unique", "r"]
    assert verbs.HostsUnique(reports=("r",), mtu=9000).argv() == [
        "hosts-unique",
        "r",
        "--mtu",
        "9000",
    ]
    assert verbs.Preflight().argv() == ["preflight"]
    assert verbs.Preflight(client_port=2379, peer_port=2380).argv(["--systemd"]) == [
        "preflight", "--systemd", "--client-port", "2379", "--peer-port", "2380",
    ]  # fmt: skip
    assert _parsed(["preflight"]).client_port == ETCD_CLIENT_PORT
    assert verbs.EtcdHealth(member=(("e", "n"),)).argv() == [
        "etcd-health", "--timeout", "60", "--endpoint", "e", "--name", "n",
    ]  # fmt: skip
