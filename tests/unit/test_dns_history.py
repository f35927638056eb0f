"""The validator quotes a local daemon's debug log when a name does not resolve."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from overlaylab.validate.overlay import dns_history

ADD = (
    'time="2026-11-29T04:26:34.867344033Z" level=debug msg="3b1e (d0e177c).addSvcRecords('
    'test1, 10.0.0.2, <nil>, true) updateSvcRecord sid:3b1e"'
)
DEL = ADD.replace("04:26:34", "04:27:09").replace("addSvcRecords", "deleteSvcRecords")
FAIL = (
    'time="2026-11-29T04:27:09.1Z" level=debug msg="failed to get endpoints for network demo '
    'scope global: client: etcd cluster is unavailable or misconfigured"'
)


def lab(tmp: Path, lines: list[str], local: bool = True) -> Any:
    (tmp / "docker.log").write_text("\n".join(lines) + "\n")
    hosts = [{"name": "docker-node2", "dockerHost": f"unix://{tmp}/docker.sock"}]
    return SimpleNamespace(hosts=hosts, local=local)


START = 'time="2026-11-29T04:30:00.1Z" level=info msg="Starting up"'


def test_only_the_log_since_the_daemons_last_start_counts(tmp_path: Path) -> None:
    got = dns_history(lab(tmp_path, [ADD, START, FAIL]), "docker-node2", "test1")
    assert got == (
        "; its log since dockerd started at 04:30:00: no record of test1 ever added, "
        "endpoints read from etcd failed last at 04:27:09"
    )


def test_the_last_add_delete_and_failed_read_are_quoted(tmp_path: Path) -> None:
    got = dns_history(lab(tmp_path, [ADD, DEL, FAIL]), "docker-node2", "test1")
    assert got == (
        "; its log: added last at 04:26:34, deleted last at 04:27:09, "
        "endpoints read from etcd failed last at 04:27:09"
    )


def test_a_name_never_added_is_said_so(tmp_path: Path) -> None:
    got = dns_history(lab(tmp_path, [ADD, FAIL]), "docker-node2", "test3")
    assert got == (
        "; its log: no record of test3 ever added, endpoints read from etcd failed last at 04:27:09"
    )


def test_nothing_without_a_debug_log_or_on_an_ssh_stack(tmp_path: Path) -> None:
    info = ADD.replace("level=debug", "level=info")
    assert dns_history(lab(tmp_path, [info]), "docker-node2", "test3") == ""
    assert dns_history(lab(tmp_path, [ADD], local=False), "docker-node2", "test3") == ""
    assert dns_history(lab(tmp_path, [ADD]), "docker-node9", "test1") == ""
