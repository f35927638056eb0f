"""Docker's v2 keys saved and put back (overlaylab.backup), against real etcd 3.4 members on
127.0.0.1 (tests/unit/v2etcd.py): save, list, restore into an empty cluster, the refusal on a
cluster that holds Docker keys, keeping the last five, a cluster that cannot be read; and the
program's backup before a change, which a run that touches nothing skips."""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlaylab import backup
from overlaylab.backup import Backup, Entry, Refused, dump, listing, restore, save, write
from overlaylab.config import parse
from overlaylab.etcd import EtcdClient
from tests.unit.v2etcd import dead_endpoint, single_etcd

NET = "a" * 64
NETWORK_KEY = f"/docker/network/v1.0/network/{NET}"
ENDPOINT_KEY = f"/docker/network/v1.0/endpoint/{NET}/{'e' * 64}"


def _docker_keyspace(c: EtcdClient) -> None:
    """What two daemons and one network leave in etcd, in small: node registrations (TTL'd),
    the network, an endpoint, an endpoint count, an empty directory, one other TTL'd key."""
    c.v2_put("/docker/nodes/192.168.205.10:2375", "192.168.205.10:2375", ttl=60)
    c.v2_put("/docker/nodes/192.168.205.11:2375", "192.168.205.11:2375", ttl=60)
    c.v2_put(NETWORK_KEY, json.dumps({"name": "demo", "networkType": "overlay", "id": NET}))
    c.v2_put(ENDPOINT_KEY, json.dumps({"name": "test1", "locator": "192.168.205.10"}))
    c.v2_put(f"/docker/network/v1.0/endpoint_count/{NET}/", json.dumps({"Count": 1}))
    c.v2_mkdir("/docker/network/v1.0/idm")
    c.v2_put("/docker/network/v1.0/lease/x", "y", ttl=600)


@pytest.fixture
def source() -> Iterator[EtcdClient]:
    with single_etcd() as c:
        _docker_keyspace(c)
        yield c


@pytest.fixture
def target() -> Iterator[EtcdClient]:
    with single_etcd() as c:
        yield c


@pytest.fixture
def directory() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="backups-"))
    yield d / "lab.backups"
    shutil.rmtree(d, ignore_errors=True)


def _keys(c: EtcdClient) -> dict[str, tuple[bool, str | None]]:
    return {e.key: (e.dir, e.value) for e in dump(c)}


def test_save_holds_every_key_dir_value_and_ttl(source: EtcdClient, directory: Path) -> None:
    path, said = save([source], directory, "lab")
    assert path is not None and path.parent == directory and path.stat().st_mode & 0o777 == 0o600
    assert said == f"4 Docker keys saved to {path} (from {source.endpoint})"
    b = Backup.load(path)
    by_key = {e.key: e for e in b.entries}
    assert by_key["/docker/network/v1.0/idm"] == Entry("/docker/network/v1.0/idm", True)
    assert by_key[NETWORK_KEY].value == json.dumps(
        {"name": "demo", "networkType": "overlay", "id": NET}
    )
    node = by_key["/docker/nodes/192.168.205.10:2375"]
    assert node.ttl is not None and 0 < node.ttl <= 60
    assert by_key["/docker/network/v1.0/lease/x"].ttl is not None
    # every directory comes before what it holds
    seen: set[str] = set()
    for e in b.entries:
        parent = e.key.rsplit("/", 1)[0]
        assert parent == "/docker" or parent in seen, (e.key, parent)
        if e.dir:
            seen.add(e.key)
    assert b.networks() == [f"demo ({NET[:12]})"]


def test_an_unchanged_keyspace_is_not_saved_again(source: EtcdClient, directory: Path) -> None:
    first, _ = save([source], directory, "lab")
    again, said = save([source], directory, "lab")
    assert again is None and said == f"Docker's keys are as the newest backup holds them ({first})"
    source.v2_put(ENDPOINT_KEY, json.dumps({"name": "test1", "locator": "192.168.205.11"}))
    changed, _ = save([source], directory, "lab")
    assert changed is not None and listing(directory) == [first, changed]


def test_list_shows_each_backup(
    source: EtcdClient, directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = save([source], directory, "lab")
    assert path is not None
    (directory / "20000101T000000.000Z.json").write_text("not json")
    assert backup.main(["list", "--stack", "local", "--dir", str(directory)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("20000101T000000.000Z.json  unreadable: ")
    assert lines[1].startswith(f"{path.name}  saved ")
    assert lines[1].endswith(f"4 keys, 9 dirs, networks: demo ({NET[:12]})")


def test_restore_into_an_empty_cluster_writes_dirs_then_keys_but_no_node_key(
    source: EtcdClient, target: EtcdClient, directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = save([source], directory, "lab")
    assert path is not None
    argv = ["restore", "--stack", "local", "--dir", str(directory), "--endpoint", target.endpoint]
    assert backup.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    want = {k: v for k, v in _keys(source).items() if not k.startswith("/docker/nodes")}
    assert _keys(target) == want
    lease = target.v2_get("/docker/network/v1.0/lease/x")
    assert lease is not None and lease.ttl is not None and 0 < lease.ttl <= 600
    first_key = next(i for i, line in enumerate(out) if line.startswith("key "))
    assert all(line.startswith("dir ") for line in out[:first_key]), out
    assert f"key  {NETWORK_KEY}" in out
    assert out[-2].startswith("skipped 2 node registrations (/docker/nodes/192.168.205.10:2375")
    assert out[-1] == f"restored {path.name} into {target.endpoint}: 8 dirs, 4 keys"


def test_restore_refuses_a_cluster_that_holds_docker_keys_unless_forced(
    source: EtcdClient, target: EtcdClient, directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = save([source], directory, "lab")
    assert path is not None
    # a daemon's registration alone is no Docker state: a rebuilt cluster with live daemons
    target.v2_put("/docker/nodes/192.168.205.10:2375", "192.168.205.10:2375", ttl=60)
    restore(target, Backup.load(path), say=lambda _: None)
    # now it holds the network: refused, and nothing written
    target.v2_put(NETWORK_KEY, "changed")
    target.v2_delete(ENDPOINT_KEY)
    with pytest.raises(Refused, match=r"already holds 3 Docker keys .* pass --force"):
        restore(target, Backup.load(path), say=lambda _: None)
    assert target.v2_get(ENDPOINT_KEY) is None
    argv = ["restore", "--stack", "local", "--dir", str(directory), "--endpoint", target.endpoint]
    assert backup.main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: refusing to restore {path.name}"), err
    assert backup.main([*argv, "--force"]) == 0
    node = target.v2_get(NETWORK_KEY)
    assert node is not None and node.value != "changed"
    assert target.v2_get(ENDPOINT_KEY) is not None


def test_the_last_five_are_kept(directory: Path) -> None:
    t0 = dt.datetime(2026, 12, 2, 7, 0, tzinfo=dt.UTC)
    made = [
        write(directory, [Entry(f"/docker/k{i}", False, str(i))], "e", "lab", t0.replace(minute=i))
        for i in range(7)
    ]
    assert listing(directory) == made[2:]
    assert [Backup.load(p).entries[0].value for p in listing(directory)] == list("23456")


def test_a_cluster_that_cannot_be_read_is_one_warning_and_changes_no_backup(
    source: EtcdClient, directory: Path, seed_config: dict[str, Any]
) -> None:
    path, _ = save([source], directory, "lab")
    cfg = parse(seed_config, "test")
    dead = EtcdClient(dead_endpoint(), None, timeout=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backup, "backup_dir", lambda _cfg: directory)
        said, ok = backup.before_change(cfg, [dead])
    assert not ok and "\n" not in said
    assert said.startswith("backup: Docker's keys were not saved before this run's changes (")
    assert said.endswith(f"the backups in {directory} are as they were")
    assert listing(directory) == [path]
    argv = ["save", "--stack", "local", "--dir", str(directory), "--endpoint", dead.endpoint]
    assert backup.main(argv) == 1


def test_an_empty_cluster_saves_nothing_and_keeps_the_last(
    source: EtcdClient, target: EtcdClient, directory: Path
) -> None:
    path, _ = save([source], directory, "lab")
    target.v2_put("/docker/nodes/192.168.205.10:2375", "192.168.205.10:2375", ttl=60)
    none, said = save([EtcdClient(dead_endpoint(), None, timeout=2), target], directory, "lab")
    assert none is None and said.endswith(f"nothing saved; the last backup, {path}, is kept")
    assert listing(directory) == [path]


def test_where_backups_live(seed_config: dict[str, Any]) -> None:
    cfg = parse(seed_config, "test")
    assert backup.backup_dir(cfg) == Path("/var/lib/overlaylab/seed.backups")
    lab = backup._config("lab", None)  # an SSH stack: its key is not needed here
    assert lab.transport == "ssh"
    assert backup.backup_dir(lab) == Path(lab.identity_file).expanduser().parent / "backups"


def test_the_program_backs_up_before_a_change_but_not_in_a_run_that_touches_nothing(
    seed_config: dict[str, Any], record_graph: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tempfile.mkdtemp(prefix="bkp-", dir="/tmp")
    try:
        raw = copy.deepcopy(seed_config)
        raw["lab"] = {**raw["lab"], "id": "bkptest", "stateDir": state, "bridge": "ovbr-bkptest"}
        Path(state, "bkptest").mkdir()  # the lab was made here before
        calls: list[str] = []

        def recorded(cfg: Any) -> tuple[str, bool]:
            calls.append(cfg.lab_id)
            return "backup: recorded", True

        monkeypatch.setattr(backup, "before_change", recorded)
        assert record_graph(raw).run.error is None
        assert record_graph(raw, preview=True).run.error is None
        assert calls == []  # record-only and preview: nothing read, nothing saved
        import standin.program

        monkeypatch.setattr(standin.program, "RECORD_ONLY", "OVERLAYLAB_TEST_NOT_SET")
        assert record_graph(raw).run.error is None
        assert calls == ["bkptest"]
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_a_tls_lab_without_its_client_certificate_is_a_warning_not_a_failure(
    seed_config: dict[str, Any], directory: Path
) -> None:
    from dataclasses import replace

    cfg = replace(parse(seed_config, "test"), etcd_tls=True, state_dir=str(directory.parent))
    assert not Path(str(cfg.pki_dir)).exists()
    assert backup.reachable_clients(cfg) == []
    from overlaylab.survey import _nodes

    assert _nodes(cfg) == []  # the survey (preview, up) reads no node key and does not fail
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backup, "backup_dir", lambda _cfg: directory)
        said, ok = backup.before_change(cfg)
    assert not ok and said.startswith("backup: Docker's keys were not saved") and "\n" not in said
    assert listing(directory) == []
