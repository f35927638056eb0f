"""A new token or port on a running stack, on the real lab: refused as it is, rebuilt with a
raised `etcd.generation`.

Through the stand-in (the engine's rules, delete-first chains included), on a running 2-host
lab:
- a new `etcd.clusterToken` alone: `up` fails in its first command, naming the setting and
  the way to rebuild, and changes nothing (same processes, containers, network; it validates);
- the new token, a new client port and `etcd.generation: 2`: `up` rebuilds the lab. A new
  etcd cluster (new cluster id) on the new port only, the members and `/docker/nodes` equal to
  the hosts, a new network and new containers, and the strict validator passes;
- the next `up` with no change runs nothing; the destroy leaves nothing behind.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlaylab import spec as out
from overlaylab.errors import EtcdError
from overlaylab.etcd import EtcdClient
from overlaylab.hosts.dockerd import docker_api
from overlaylab.netrule import RouteGuard
from standin.plan import summary
from tests.labtools import Running, kept_up, lab_config, parsed

pytestmark = pytest.mark.lab

LAB_ID = "rb"
SEGMENT = "192.168.228"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    state = tmp_path_factory.mktemp("rb") / "state.json"
    lab = Running(LAB_ID, state, RouteGuard(f"ovbr-{LAB_ID}"))
    with kept_up(lab, lab_config(2, lab_id=LAB_ID, segment=SEGMENT)):
        yield lab


def facts(lab: Running) -> dict[str, Any]:
    """The etcd cluster's id and members, the network's id, and per host the container's id
    and the etcd and dockerd pids."""
    cfg = parsed(lab.cfg)
    cluster, members = EtcdClient(cfg.client_url(cfg.hosts[0]), lab.guard).members()
    got: dict[str, Any] = {
        "cluster": cluster,
        "members": sorted(str(m.get("name")) for m in members),
        "network": lab.outputs[out.OUT_NETWORK_ID],
    }
    for h in cfg.hosts:
        api = docker_api(cfg.docker_socket(h))
        name = f"test{h.name[-1]}"
        got[name] = api.inspect_container(name)["Id"]
        base = Path(cfg.host_dir(h))
        got[f"{h.name} pids"] = tuple(
            (base / f).read_text().strip() for f in ("etcd.pid", "docker.pid")
        )
    return got


def with_etcd(raw: dict[str, Any], **etcd: Any) -> dict[str, Any]:
    new = copy.deepcopy(raw)
    new["etcd"] = {**new.get("etcd", {}), **etcd}
    return new


def test_a_new_token_alone_is_refused_and_changes_nothing(lab: Running) -> None:
    before = facts(lab)
    steps = lab.up(with_etcd(lab.cfg, clusterToken="etcd-rb-2"), fails=True)
    first = lab.error.splitlines()[0] if lab.error else ""
    print(f"\nrefused: {first}")
    assert (
        "etcd-identity" in lab.error and "etcd.clusterToken 'etcd-rb' -> 'etcd-rb-2'" in lab.error
    )
    assert "set etcd.generation to 2 to rebuild" in lab.error
    ran = {n for n, s in steps.items() if s.kind != "same" and not s.type.startswith("overlay-")}
    assert ran == {"etcd-identity"}, ran  # the members wait for it: none was touched
    assert facts(lab) == before
    lab.validate()


def test_a_raised_generation_rebuilds_the_lab_on_the_new_token_and_port(lab: Running) -> None:
    before = facts(lab)
    old_port = parsed(lab.cfg).etcd_client_port
    steps = lab.up(with_etcd(lab.cfg, clusterToken="etcd-rb-2", clientPort=2479, generation=2))
    replaced = {n for n, s in steps.items() if s.kind == "replace"}
    print(f"\nrebuild: {summary(list(steps.values()))}; replaced: {sorted(replaced)}")
    assert {"etcd-identity", "etcd-docker-node1", "docker-docker-node1-dockerd",
            "overlay-network", "test-test1", "test-test2"} <= replaced  # fmt: skip
    assert not {n for n, s in steps.items() if s.kind in ("create", "delete")}
    after = facts(lab)
    assert after["cluster"] != before["cluster"], "the same etcd cluster: not rebuilt"
    assert after["members"] == before["members"] == ["docker-node1", "docker-node2"]
    for key in ("network", "test1", "test2", "docker-node1 pids", "docker-node2 pids"):
        assert after[key] != before[key], f"{key} did not change: {after[key]}"
    cfg = parsed(lab.cfg)
    assert cfg.etcd_client_port == 2479
    for h in cfg.hosts:  # nothing answers on the old port any more
        with pytest.raises(EtcdError):
            EtcdClient(cfg.client_url(h).replace(":2479", f":{old_port}"), lab.guard).members()
    lab.validate()  # strict: members and /docker/nodes equal the hosts, the overlay works


def test_the_next_up_with_no_change_runs_nothing(lab: Running) -> None:
    before = facts(lab)
    steps = lab.up(copy.deepcopy(lab.cfg))
    ran = [f"{s.name} {s.kind}" for s in steps.values() if s.kind != "same"]
    assert ran == [], ran
    assert facts(lab) == before
