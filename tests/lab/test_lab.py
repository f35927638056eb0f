"""The real program on the real lab: etcd, dockerd and VXLAN between namespaces, as root.

One lab is brought up for the module by running ``__main__.py`` through the engine stand-in
(which performs every resource for real); the tests then check the seed's facts on it
independently of the validator, break it on purpose to see the validator say what broke, and
finally destroy it and look for anything left behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from overlaylab import spec as out
from overlaylab.config import LabConfig
from overlaylab.etcd import EtcdClient
from overlaylab.netrule import RouteGuard
from overlaylab.stackconfig import raw_from_file
from tests.labtools import (
    STATE_DIR,
    LabFixture,
    LabRun,
    delete_node_key_after_heartbeat,
    lab_config,
    leftovers,
    validate_cli,
)

pytestmark = pytest.mark.lab


@dataclass
class Lab:
    run: LabRun
    cfg: LabConfig
    spec: dict[str, Any]
    fixture: LabFixture

    def docker(self, host: str) -> docker.DockerClient:
        return docker.DockerClient(
            base_url=f"unix://{self.cfg.docker_socket(self.cfg.host(host))}",
            version="1.41",
            timeout=30,
        )

    def etcd_get(self, host: str, path: str) -> Any:
        h = self.cfg.host(host)
        RouteGuard(self.cfg.local_bridge).check(h.address)
        with urllib.request.urlopen(f"{self.cfg.client_url(h)}{path}", timeout=5) as r:
            return json.loads(r.read())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The local stack exactly as stacks/Pulumi.local.yaml describes it: the seed lab."""
    state = tmp_path_factory.mktemp("state") / "local.json"
    # destroyed at the end, unless test_destroy_* took the lab down already (then its errors)
    with LabFixture("local", state, raw_from_file("local")) as fixture:
        run = fixture.up()
        yield Lab(run, fixture.cfg, (run.outputs or {})[out.OUT_VALIDATION_SPEC], fixture)


def test_up_runs_the_validator_last_and_it_passes(lab: Lab) -> None:
    report = (lab.run.outputs or {})[out.OUT_VALIDATION_REPORT]
    made = r"at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"  # a kept report says how old it is
    last = report.splitlines()[-1]
    counts = (
        r"\d+ checks, 0 failed \(\d+ passed, \d+ skipped\); "
        r"\d+ tests, 0 failed \(\d+ passed, \d+ skipped\)"
    )
    assert re.fullmatch(rf"{counts}, in [\d.]+s, {made}", last), report
    performed = [r.name for r in lab.run.records if r.custom]
    assert performed[-1] == "validate-run", performed


def test_validator_cli_passes_with_json_records(lab: Lab) -> None:
    res = validate_cli(lab.spec, 30, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["summary"]["failed"] == 0
    assert doc["summary"]["count"] == len(doc["results"]) >= 20
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["summary"]["at"]), doc["summary"]
    assert {"check", "subject", "expected", "actual", "ok"} == set(doc["results"][0])


def test_v2_keyspace_lists_both_hosts_and_v3_cannot_see_them(lab: Lab) -> None:
    nodes = lab.etcd_get("docker-node2", "/v2/keys/docker/nodes")["node"]["nodes"]
    assert sorted(n["key"] for n in nodes) == [
        f"/docker/nodes/{lab.cfg.advertise(h)}" for h in lab.cfg.hosts
    ]
    h = lab.cfg.host("docker-node1")
    body = json.dumps(
        {
            "key": base64.b64encode(b"/docker").decode(),
            "range_end": base64.b64encode(b"/dockes").decode(),
            "count_only": True,
        }
    ).encode()
    req = urllib.request.Request(f"{lab.cfg.client_url(h)}/v3/kv/range", data=body, method="POST")
    RouteGuard(lab.cfg.local_bridge).check(h.address)
    with urllib.request.urlopen(req, timeout=5) as r:
        assert int(json.loads(r.read()).get("count", 0)) == 0


def test_host2_sees_the_network_created_on_host1_as_global(lab: Lab) -> None:
    net_id = (lab.run.outputs or {})[out.OUT_NETWORK_ID]
    nets = lab.docker("docker-node2").networks.list(names=["demo"])
    assert [(n.id, n.attrs["Scope"], n.attrs["Driver"]) for n in nets] == [
        (net_id, "global", "overlay")
    ]
    key = lab.etcd_get("docker-node2", f"/v2/keys/docker/network/v1.0/network/{net_id}")
    assert json.loads(key["node"]["value"])["name"] == "demo"


def test_test1_pings_test2_by_ip_and_by_name(lab: Lab) -> None:
    test2 = lab.docker("docker-node2").containers.get("test2")
    ip = test2.attrs["NetworkSettings"]["Networks"]["demo"]["IPAddress"]
    assert ip.startswith("10.0.0.")
    test1 = lab.docker("docker-node1").containers.get("test1")
    for target in (ip, "test2"):
        res = test1.exec_run(["ping", "-c", "2", "-W", "2", target])
        assert res.exit_code == 0, f"ping {target}: {res.output.decode()}"
    mtu = test1.exec_run(["cat", "/sys/class/net/eth0/mtu"]).output.decode().strip()
    assert mtu == "1450"


def test_a_second_test1_on_host2_is_refused_and_leaves_nothing(lab: Lab) -> None:
    d2 = lab.docker("docker-node2")
    c = d2.containers.create("busybox:latest", ["sleep", "5"], name="test1", network="demo")
    try:
        with pytest.raises(docker.errors.APIError, match="already exists"):
            c.start()
    finally:
        c.remove(force=True)
    assert d2.containers.list(all=True, filters={"name": "^/test1$"}) == []


def test_running_every_create_again_is_harmless(lab: Lab) -> None:
    """`pulumi up` re-running host steps (e.g. after a partial failure) changes nothing."""
    pids = _daemon_pids(lab)
    for rec in lab.run.records:
        if rec.type == "command:local:Command":
            inputs = lab.run.inputs[rec.urn]
            res = subprocess.run(
                ["/bin/sh", "-c", inputs["create"]],
                env=_env(inputs),
                input=inputs.get("stdin") or "",  # as pulumi-command passes it
                capture_output=True,
                text=True,
                check=False,
            )
            assert res.returncode == 0, f"{rec.name} again: {res.stderr}"
    assert _daemon_pids(lab) == pids


def test_validator_names_the_failed_pairs_when_test2_stops(lab: Lab) -> None:
    test2 = lab.docker("docker-node2").containers.get("test2")
    test2.stop(timeout=1)
    try:
        res = validate_cli(lab.spec, 2)
        assert res.returncode == 1
        failed = [line for line in res.stdout.splitlines() if line.startswith("FAIL")]
        assert any("overlay.ping" in f and "test1 -> test2 by IP" in f for f in failed), res.stdout
        assert any("test1 -> test2 by name" in f for f in failed), res.stdout
        assert any("docker.container-running" in f and "test2@docker-node2" in f for f in failed)
        assert not any("docker-node1:" in f and "etcd" in f for f in failed), res.stdout
        # failures come first, then the passing checks, then the summary
        lines = res.stdout.splitlines()
        assert lines[: len(failed)] == failed
        assert "failed" in lines[-1]
    finally:
        test2.start()
    # A lost read of the endpoints at test2's start is mended by docker-node2's names keeper
    # (overlaylab/hosts/keeper.py), not by a second restart: the validator's wait covers it.
    res = validate_cli(lab.spec, 30)
    assert res.returncode == 0, res.stdout + res.stderr


def test_validator_names_the_host_whose_node_key_is_gone(lab: Lab) -> None:
    adv = lab.cfg.advertise(lab.cfg.host("docker-node2"))
    h1 = lab.cfg.host("docker-node1")
    etcd = EtcdClient(lab.cfg.client_url(h1), RouteGuard(lab.cfg.local_bridge))
    delete_node_key_after_heartbeat(etcd, f"/docker/nodes/{adv}")
    res = validate_cli(lab.spec, 1)
    assert res.returncode == 1
    failed = [line for line in res.stdout.splitlines() if line.startswith("FAIL")]
    assert failed and all("docker-node2" in f for f in failed), res.stdout
    assert any("etcd.node-registered" in f and f"/docker/nodes/{adv}" in f for f in failed)


def test_validator_says_which_name_does_not_resolve(lab: Lab) -> None:
    spec = json.loads(json.dumps(lab.spec))
    spec["containers"].append({"name": "ghost", "host": "docker-node1"})  # never created
    res = validate_cli(spec, 1)
    assert res.returncode == 1
    line = next(x for x in res.stdout.splitlines() if "test2 -> ghost by name" in x)
    assert line.startswith("FAIL"), res.stdout
    assert "ping: bad address 'ghost'" in line, line
    assert (
        "'ghost' does not resolve in test2: Docker's embedded DNS on docker-node2 has no "
        "record of it" in line
    ), line


def test_destroy_removes_everything(lab: Lab) -> None:
    assert leftovers(lab.cfg) != []  # the check can see a running lab at all
    errors = lab.run.destroy()
    assert errors == []
    assert lab.fixture.leftovers() == []


def test_create_after_destroy_works_with_three_hosts(tmp_path: Path) -> None:
    with LabFixture("e2e", tmp_path / "e2e.json", lab_config(hosts=3)) as lab:
        run = lab.up()
        report = (run.outputs or {})[out.OUT_VALIDATION_REPORT]
        assert "test3 -> test1 by name (across hosts): reply" in report
        assert " 0 failed" in report.splitlines()[-1]


def test_stale_etcd_data_dir_is_refused_and_kept(tmp_path: Path) -> None:
    with LabFixture("e2e", tmp_path / "e2e.json", lab_config(hosts=2)) as lab:
        cfg = lab.cfg

        def remove_the_stale_dir() -> None:
            shutil.rmtree(f"{STATE_DIR}/{cfg.lab_id}", ignore_errors=True)
            with contextlib.suppress(OSError):
                Path(STATE_DIR).rmdir()  # only if no other lab lives there

        lab.cleanup("remove the stale dir", remove_the_stale_dir)  # after the destroy
        stale = Path(cfg.host_dir(cfg.hosts[0]))
        (stale / "etcd" / "member").mkdir(parents=True)
        (stale / "etcd-cluster.json").write_text(
            json.dumps({"name": "docker-node1", "token": "old-cluster", "initialCluster": "x=y"})
        )
        run = lab.up(fails=True)
        assert f"etcd data dir {stale}/etcd belongs to another cluster" in str(run.error)
        assert "token 'old-cluster'" in str(run.error)
        assert (stale / "etcd" / "member").is_dir(), "the refused data dir was touched"
        assert not any(r.name == "etcd-healthy" for r in run.records)


def test_invalid_config_creates_nothing_on_the_machine(tmp_path: Path) -> None:
    raw = lab_config(hosts=2)
    raw["containers"][1]["host"] = "docker-node7"
    with LabFixture("e2e", tmp_path / "e2e.json", lab_config(hosts=2)) as lab:
        run = lab.up(raw, fails=True)
        assert "unknown host 'docker-node7'" in str(run.error)
        assert run.records == []
        assert leftovers(lab.cfg) == []


def _daemon_pids(lab: Lab) -> dict[str, str]:
    base = Path(STATE_DIR) / lab.cfg.lab_id
    return {p.parent.name + "/" + p.name: p.read_text().strip() for p in base.glob("*/*.pid")}


def _env(inputs: dict[str, Any]) -> dict[str, str]:
    import os

    return {**os.environ, **(inputs.get("environment") or {})}
