"""A member starts behind its etcd door (``netns_daemons.NamespaceEtcd``): its client and peer
ports refuse whatever does not come from its own namespace until its log says its peer port
serves, so that members started together refuse each other's bootstrap check at once instead
of each holding the others' for etcd's 1 s timeout. What is checked here, on real members:

- every member of an up said that its peer port served and its door opened, and no door is
  left shut: each member answers from this machine, the cluster is healthy;
- a shut door refuses this machine (the rule does what it says), and a door left shut (an up
  killed while its member started) is opened by the next run of that member's create, without
  restarting the member.

What the door saves is time, which the benchmark measures (``bench.bench_lab``, the health
gate), not this test."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlaylab.errors import EtcdRefused
from overlaylab.etcd import EtcdClient
from overlaylab.hosts import netns_daemons
from overlaylab.hosts.proc import pid_of, wait_for
from overlaylab.netrule import RouteGuard
from tests.labtools import LabFixture, lab_config

pytestmark = pytest.mark.lab


def test_members_start_behind_their_doors_and_leave_none_shut(tmp_path: Path) -> None:
    with LabFixture("edoor", tmp_path / "edoor.json", lab_config(hosts=3)) as fixture:
        cfg = fixture.cfg
        lab = fixture.up()
        members = {r.name: r for r in lab.records if r.name.startswith("etcd-docker-")}
        assert len(members) == len(cfg.hosts), sorted(members)
        guard = RouteGuard(str(cfg.local_bridge))
        for h in cfg.hosts:
            said = str(members[f"etcd-{h.name}"].outputs.get("stderr", "")) + str(
                members[f"etcd-{h.name}"].outputs.get("stdout", "")
            )
            assert f"etcd {h.name}: its peer port serves; door open" in said, said
            netns = h.netns(cfg.lab_id)
            assert netns_daemons.door_rules(netns, netns_daemons.ETCD_DOOR) == [], h.name
            assert EtcdClient(cfg.client_url(h), guard).health(), f"{h.name} not healthy"

        # A door left shut on the last member, as by an up killed while that member started.
        last = cfg.hosts[-1]
        netns = last.netns(cfg.lab_id)
        ports = f"{cfg.etcd_client_port},{cfg.etcd_peer_port}"
        netns_daemons._shut_door(
            netns,
            netns_daemons.ETCD_DOOR,
            ["!", "-i", "lo", "-p", "tcp", "-m", "multiport", "--dports", ports],
        )
        with pytest.raises(EtcdRefused):
            EtcdClient(cfg.client_url(last), guard, timeout=2).health()
        pid = pid_of(Path(cfg.host_dir(last), "etcd.pid"), "etcd")
        netns_daemons.etcd_up(
            netns=netns,
            name=last.name,
            address=last.address,
            client_port=cfg.etcd_client_port,
            peer_port=cfg.etcd_peer_port,
            token=cfg.etcd_token,
            initial_cluster=cfg.initial_cluster(),
            host_dir=cfg.host_dir(last),
            bridge=str(cfg.local_bridge),
        )
        assert netns_daemons.door_rules(netns, netns_daemons.ETCD_DOOR) == [], "left shut"
        assert pid_of(Path(cfg.host_dir(last), "etcd.pid"), "etcd") == pid, "restarted"
        # While its door was shut its peers could not reach it: the cluster may have elected
        # again meanwhile, and is healthy once it has (the health gate's wait, not an instant).
        wait_for(
            f"{last.name} healthy with its door open",
            lambda: EtcdClient(cfg.client_url(last), guard).health(),
            30,
        )
