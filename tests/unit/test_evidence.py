"""Evidence on failure: the dump (overlaylab/labdump.write_evidence), ``--dump DIR`` and the dump
a failed validation in `up` leaves beside the stack's state. Docker's keys are read from a real
etcd on 127.0.0.1 (started and removed by the test); the daemons are fakes or absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from overlaylab.config import parse
from overlaylab.errors import LabError
from overlaylab.labdump import write_evidence
from overlaylab.spec import validation_spec
from overlaylab.validate import cli
from overlaylab.validate.records import Lab
from tests.labtools import lab_config, validate_cli
from tests.unit.v2etcd import dead_endpoint, single_etcd

ROOT = Path(__file__).resolve().parents[2]
ABSENT = lab_config(hosts=2, lab_id="absent", segment="192.168.218")


class FakeApi:
    def inspect_network(self, name: str, verbose: bool = False) -> dict[str, Any]:
        return {"Name": name, "Scope": "global", "Id": "ab" * 32, "verbose": verbose}


class FakeDocker:
    api = FakeApi()

    def info(self) -> dict[str, Any]:
        return {"ClusterStore": "etcd://192.168.218.10:2379", "ServerVersion": "20.10.24"}

    def version(self) -> dict[str, Any]:
        return {"Version": "20.10.24", "KernelVersion": "6.1.0"}


def _spec(tmp: Path, etcd: str) -> dict[str, Any]:
    spec = validation_spec(parse(ABSENT))
    spec["lab"]["bridge"] = None  # the test's etcd is on 127.0.0.1, not behind a lab bridge
    for i, h in enumerate(spec["hosts"]):
        d = tmp / "lab" / h["name"]
        d.mkdir(parents=True)
        h["dockerHost"] = f"unix://{d}/docker.sock"
        h["etcdEndpoint"] = dead_endpoint() if i == 0 else etcd  # the first member is down
    return spec


def test_the_dump_holds_each_part_and_each_part_that_fails_holds_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def docker(self: Lab, host: str) -> Any:
        if host == "docker-node1":
            return FakeDocker()
        raise LabError(f"dockerd on {host} is unreachable")

    monkeypatch.setattr(Lab, "docker", docker)
    with single_etcd() as etcd:
        etcd.v2_put("/docker/nodes/192.168.218.10:2376", "192.168.218.10:2376", ttl=60)
        etcd.v2_put("/docker/network/v1.0/network/abc", '{"name": "demo"}')
        spec = _spec(tmp_path, etcd.endpoint)
        host1 = tmp_path / "lab" / "docker-node1"
        (host1 / "docker.log").write_text('level=error msg="joining serf neighbor failed"\n')
        (host1 / "etcd.log").write_text("etcd started\n")
        records = {"results": [{"check": "overlay.ping", "ok": False}], "summary": {"failed": 1}}
        root = write_evidence(tmp_path / "dump", spec, records)
    index = json.loads((root / "index.json").read_text())
    host_parts = ["docker-info.json", "network-inspect.json", "ip-d-link.txt", "sandboxes.txt"]
    host_parts += ["docker.log", "etcd.log", "keeper.log"]
    assert sorted(index) == sorted(
        ["validator.json", "etcd-docker-keys.json", "versions.json"]
        + [f"{h}/{p}" for h in ("docker-node1", "docker-node2") for p in host_parts]
    )
    keys = json.loads((root / "etcd-docker-keys.json").read_text())
    assert keys["member"] == etcd.endpoint  # the first member is down: the next one answered
    leaves = {}

    def walk(n: dict[str, Any]) -> None:
        leaves.update({n["key"]: n.get("value")} if not n.get("dir") else {})
        for c in n.get("nodes", []):
            walk(c)

    walk(keys["node"])
    assert leaves == {
        "/docker/nodes/192.168.218.10:2376": "192.168.218.10:2376",
        "/docker/network/v1.0/network/abc": '{"name": "demo"}',
    }
    assert json.loads((root / "docker-node1/docker-info.json").read_text())["ServerVersion"]
    inspect = json.loads((root / "docker-node1/network-inspect.json").read_text())
    assert inspect["demo"]["Scope"] == "global"
    assert json.loads((root / "docker-node2/docker-info.json").read_text()) == {
        "error": "LabError: dockerd on docker-node2 is unreachable"
    }
    assert index["docker-node2/docker-info.json"].startswith("not collected: LabError")
    assert "joining serf neighbor failed" in (root / "docker-node1/docker.log").read_text()
    assert (root / "docker-node1/keeper.log").read_text().startswith("not collected: ")
    # the lab's namespaces are absent: the command's error stands in its place
    assert (root / "docker-node1/ip-d-link.txt").read_text().startswith("not collected: ")
    versions = json.loads((root / "versions.json").read_text())
    assert versions["docker"]["docker-node1"]["Version"] == "20.10.24"
    assert "error" in versions["docker"]["docker-node2"]
    assert versions["kernel"]["docker-node1"] == os.uname().release  # local: this machine
    assert versions["etcd"]["docker-node2"].startswith("3.")
    assert any(p.startswith("docker==") for p in versions["packages"])
    validator = json.loads((root / "validator.json").read_text())
    assert validator["results"] == records["results"] and validator["spec"] == spec


def test_dump_dir_writes_the_evidence_of_a_failed_run_and_says_where_last(
    tmp_path: Path,
) -> None:
    res = validate_cli(validation_spec(parse(ABSENT)), 0, "--dump", str(tmp_path / "ev"))
    assert res.returncode == 1
    last = res.stderr.splitlines()[-1]
    assert last == f"evidence of this failure in {tmp_path / 'ev'} (its index.json lists each part)"
    index = json.loads((tmp_path / "ev" / "index.json").read_text())
    assert index["validator.json"] == "ok"
    assert index["etcd-docker-keys.json"].startswith("not collected: ")
    validator = json.loads((tmp_path / "ev" / "validator.json").read_text())
    assert validator["summary"]["failed"] == validator["summary"]["count"] > 0


def test_a_failed_validation_in_up_leaves_its_evidence_beside_the_stacks_state(
    tmp_path: Path,
) -> None:
    records = tmp_path / "local.validation.json"
    env = {**os.environ, cli.RECORDS_ENV: str(records)}
    spec = validation_spec(parse(ABSENT))
    argv = [sys.executable, "-m", "overlaylab.validate", "--spec-json", json.dumps(spec)]
    res = subprocess.run(
        [*argv, "--timeout", "0", "--in-up"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert res.returncode == 1
    dumps = sorted(tmp_path.glob("local.dump-*"))
    assert len(dumps) == 1 and (dumps[0] / "index.json").is_file()
    assert res.stderr.splitlines()[-1] == (
        f"evidence of this failure in {dumps[0]} (its index.json lists each part)"
    )


def test_without_the_stacks_state_a_local_labs_dump_goes_under_its_state_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(cli.RECORDS_ENV, raising=False)
    spec = validation_spec(parse(ABSENT))
    at = "2026-12-02T07:40:01Z"
    assert cli.dump_dir(spec, at) == "/var/lib/overlaylab/absent.dumps/20261202T074001Z"
    spec["hosts"][0]["dockerHost"] = "ssh://root@192.168.218.10"
    assert cli.dump_dir(spec, at) == "overlaylab-dump-20261202T074001Z"
