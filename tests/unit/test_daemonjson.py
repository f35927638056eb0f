"""The daemon.json merge: ours set, everything else kept, bad input refused."""

from __future__ import annotations

import json

import pytest

from overlaylab.daemonjson import merge, store_endpoints, tcp_listeners
from overlaylab.errors import ConfigError

STORE, ADV = "etcd://192.168.205.10:2379", "192.168.205.10:2375"
OURS = {"cluster-store": STORE, "cluster-advertise": ADV}

CASES = [
    ("no file", None, OURS),
    ("empty file", "", OURS),
    ("whitespace", "  \n", OURS),
    ("empty object", "{}", OURS),
    (
        "other keys kept",
        '{"log-driver": "journald", "insecure-registries": ["r:5000"], "debug": true}',
        {"log-driver": "journald", "insecure-registries": ["r:5000"], "debug": True, **OURS},
    ),
    (
        "an old cluster store replaced",
        '{"cluster-store": "consul://old:8500", "cluster-advertise": "eth0:2376", "mtu": 1400}',
        {"mtu": 1400, **OURS},
    ),
    (
        "stale TLS opts dropped when none are asked for",
        '{"cluster-store-opts": {"kv.cacertfile": "/x"}}',
        OURS,
    ),
]


@pytest.mark.parametrize(("case", "before", "after"), CASES, ids=[c[0] for c in CASES])
def test_merge_sets_ours_and_keeps_the_rest(case: str, before: str | None, after: dict) -> None:
    assert json.loads(merge(before, STORE, ADV)) == after


def test_merge_is_idempotent() -> None:
    once = merge('{"debug": true}', STORE, ADV)
    assert merge(once, STORE, ADV) == once


def test_tls_opts_are_all_or_nothing() -> None:
    tls = {"kv.cacertfile": "/ca", "kv.certfile": "/c", "kv.keyfile": "/k"}
    assert json.loads(merge(None, STORE, ADV, tls))["cluster-store-opts"] == tls
    with pytest.raises(
        ConfigError, match=r"needs all of kv\.cacertfile, kv\.certfile, kv\.keyfile"
    ):
        merge(None, STORE, ADV, {"kv.cacertfile": "/ca"})


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", '"a string"'])
def test_invalid_existing_file_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"/etc/docker/daemon\.json"):
        merge(bad, STORE, ADV)


def test_tcp_listeners_are_found() -> None:
    text = '{"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"]}'
    assert tcp_listeners(text) == ["tcp://0.0.0.0:2375"]
    assert tcp_listeners(merge(None, STORE, ADV)) == []


TLS = {"kv.cacertfile": "/t/ca.pem", "kv.certfile": "/t/c.pem", "kv.keyfile": "/t/c-key.pem"}


@pytest.mark.parametrize(
    ("conf", "urls", "tls"),
    [
        (None, [], None),
        ({"debug": True}, [], None),
        ({"cluster-store": "consul://a:8500"}, [], None),
        ({"cluster-store": "etcd://10.0.0.1:2379"}, ["http://10.0.0.1:2379"], None),
        (
            {"cluster-store": "etcd://10.0.0.1:2379,10.0.0.2:2379/prefix"},
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"],
            None,
        ),
        (
            {"cluster-store": "etcd://10.0.0.1:2379", "cluster-store-opts": TLS},
            ["https://10.0.0.1:2379"],
            TLS,
        ),
    ],
)
def test_store_endpoints_are_read_back(
    conf: dict | None, urls: list[str], tls: dict[str, str] | None
) -> None:
    text = None if conf is None else json.dumps(conf)
    assert store_endpoints(text) == (urls, tls)


def test_store_endpoints_of_what_merge_writes() -> None:
    text = merge('{"debug": true}', "etcd://10.0.0.1:2379,10.0.0.2:2379", "10.0.0.1:2375", TLS)
    assert store_endpoints(text) == (["https://10.0.0.1:2379", "https://10.0.0.2:2379"], TLS)
