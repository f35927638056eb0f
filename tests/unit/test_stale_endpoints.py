"""Stale endpoints after a daemon crash (moby/libnetwork#1108): the ones the store locates on
this host that none of this daemon's containers holds are removed through Docker's forced
disconnect; one a container holds, or one on another host, is never touched."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from overlaylab.etcd import V2Node
from overlaylab.hosts.dockerd import ENDPOINTS, clear_stale_endpoints, stale_endpoints

NET = "f" * 64


def _ep(name: str, locator: str) -> V2Node:
    value = json.dumps({"name": name, "locator": locator, "ep_iface": {"addr": "10.0.0.9/24"}})
    return V2Node(f"{ENDPOINTS}/{NET}/{name}-id", value, False, None, ())


class Store:
    def __init__(self, *eps: V2Node) -> None:
        net = V2Node(f"{ENDPOINTS}/{NET}", None, True, None, eps)
        self.root = V2Node(ENDPOINTS, None, True, None, (net,))

    def v2_get(self, key: str, recursive: bool = True) -> V2Node | None:
        assert key == ENDPOINTS
        return self.root


def _fake_docker(tmp_path: Path, names: list[str]) -> tuple[list[str], Path]:
    """A `docker` that lists ``names`` for `ps` and records every other call."""
    calls = tmp_path / "calls"
    script = tmp_path / "docker"
    listing = " ".join(names)
    script.write_text(
        f'#!/bin/sh\nif [ "$1" = ps ]; then printf "%s\\n" {listing}; exit 0; fi\n'
        f'echo "$@" >> {calls}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return [str(script)], calls


def test_only_this_hosts_endpoints_are_candidates() -> None:
    store = Store(_ep("test2", "192.168.205.11"), _ep("test1", "192.168.205.10"))
    assert stale_endpoints(store, "192.168.205.11") == [(NET, "test2")]


def test_an_endpoint_no_container_here_holds_is_force_disconnected(tmp_path: Path) -> None:
    docker, calls = _fake_docker(tmp_path, ["other"])
    store = Store(_ep("test2", "192.168.205.11"), _ep("test1", "192.168.205.10"))
    removed = clear_stale_endpoints(docker, store, "192.168.205.11", "docker-node2")
    assert removed == [f"test2 in {NET[:12]}"]
    assert calls.read_text().split("\n")[:-1] == [f"network disconnect -f {NET} test2"]


def test_an_endpoint_a_container_here_holds_is_never_touched(tmp_path: Path) -> None:
    docker, calls = _fake_docker(tmp_path, ["test2"])
    store = Store(_ep("test2", "192.168.205.11"))
    assert clear_stale_endpoints(docker, store, "192.168.205.11", "docker-node2") == []
    assert not calls.exists()


def test_a_daemon_that_does_not_answer_removes_nothing(tmp_path: Path) -> None:
    script = tmp_path / "docker"
    script.write_text("#!/bin/sh\nexit 1\n")
    os.chmod(script, 0o755)
    store = Store(_ep("test2", "192.168.205.11"))
    assert clear_stale_endpoints([str(script)], store, "192.168.205.11", "n2") == []
