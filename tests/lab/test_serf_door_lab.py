"""The daemons start together, each but the first behind its serf door (docs/design.md, "The
daemons' start order"): a daemon's TCP 7946 refuses every host but the first until its serf
has joined the first one's, so every join lands in one serf cluster however the starts
interleave. What is checked here, on real daemons in namespaces:

- the daemons' starts overlapped (the order is no longer one after another), and each one
  after the first said it joined the first host's serf through its door;
- no door is left shut after an `up`, and every daemon's serf knows every host;
- a door left shut (an `up` killed while a daemon waited behind it) is opened by the next run
  of that daemon's create, without restarting the daemon.

Whether the door keeps serf in one piece is a matter of many starts: the 8-host soak
(``bench.soak``) counts them; here one start is checked for what it did."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from overlaylab.hosts import netns_daemons
from overlaylab.hosts.proc import pid_of
from overlaylab.hosts.serf import serf_members
from tests.labtools import LabFixture, lab_config

pytestmark = pytest.mark.lab


def _started(pidfile: Path) -> float:
    """When the process in ``pidfile`` started, in seconds since boot (/proc stat field 22)."""
    pid = pid_of(pidfile, "dockerd")
    assert pid is not None, f"no dockerd in {pidfile}"
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def test_daemons_start_together_behind_their_doors_and_leave_none_shut(tmp_path: Path) -> None:
    with LabFixture("door", tmp_path / "door.json", lab_config(hosts=3)) as fixture:
        cfg = fixture.cfg
        lab = fixture.up()
        first, *rest = cfg.hosts
        daemons = {r.name: r for r in lab.records if r.name.endswith("-dockerd")}
        assert len(daemons) == len(cfg.hosts), sorted(daemons)
        # Together: the daemons' processes started within less than one daemon's create
        # (one after another, each started only once the one before had joined).
        starts = [_started(Path(cfg.host_dir(h), "docker.pid")) for h in cfg.hosts]
        one_create = min(r.seconds for r in daemons.values())
        assert max(starts) - min(starts) < one_create, (starts, one_create)
        out = {
            h.name: str(daemons[f"docker-{h.name}-dockerd"].outputs.get("stdout", ""))
            + str(daemons[f"docker-{h.name}-dockerd"].outputs.get("stderr", ""))
            for h in cfg.hosts
        }
        for h in rest:
            said = out[h.name]
            assert f"serf joined the first host's ({first.address}); door open" in said, said
        assert "door" not in out[first.name], out[first.name]
        for h in cfg.hosts:
            netns = h.netns(cfg.lab_id)
            assert netns_daemons.serf_door_rules(netns) == [], f"{h.name}'s door left shut"
            seen = serf_members(Path(cfg.host_dir(h), "docker.log").read_text())
            assert seen >= {o.address for o in cfg.hosts if o != h}, (h.name, seen)

        # A door left shut on the last host, as by an up killed while that daemon waited.
        last = rest[-1]
        netns = last.netns(cfg.lab_id)
        netns_daemons.shut_serf_door(netns, first.address)
        assert len(netns_daemons.serf_door_rules(netns)) == 1
        pid = pid_of(Path(cfg.host_dir(last), "docker.pid"), "dockerd")
        netns_daemons.docker_up(
            netns=netns,
            hostname=last.name,
            host_dir=cfg.host_dir(last),
            cluster_store=cfg.cluster_store(last),
            advertise=f"{last.address}:{cfg.advertise_port}",
            etcd_endpoint=cfg.client_url(last),
            lab_id=cfg.lab_id,
            bridge=str(cfg.local_bridge),
            anchor=f"{first.address}:{cfg.advertise_port}",
        )
        assert netns_daemons.serf_door_rules(netns) == [], "the next run left the door shut"
        assert pid_of(Path(cfg.host_dir(last), "docker.pid"), "dockerd") == pid
