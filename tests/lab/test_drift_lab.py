"""Drift on a running local lab, as a user meets it through the stand-in's CLI, mended by a plain
`up` (overlaylab/mends.py): a dockerd killed, then an etcd member killed, then a container
stopped, then one detached from the overlay; a member that lost its data (3 hosts); a reboot.
Each time the next `preview` says what is broken and what `up` will do about it (and succeeds:
a dead daemon's provider is not configured in preview, its daemon being replaced), `up` mends
exactly that and validates, what was fine keeps its pids, ids and addresses, and the next
`preview` finds nothing to do. `destroy` leaves nothing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from overlaylab.config import LabConfig
from overlaylab.config.sample import lab_config
from overlaylab.hosts.proc import pid_of
from overlaylab.stackconfig import write_stack_file
from tests.labtools import LabFixture, untouched

PROJECT = Path(__file__).resolve().parents[2]
STACK = "drift"
SEGMENT = "192.168.231"
NOTHING = "0 to create, 0 to update, 0 to replace, 0 to delete"


@contextlib.contextmanager
def _running(tmp_path: Path, hosts: int) -> Iterator[tuple[LabConfig, Path, Path]]:
    """A validated lab of ``hosts`` hosts brought up through the CLI: its config, stack file
    and state directory; destroyed through the CLI at the end, and nothing of it left."""
    raw: dict[str, Any] = lab_config(hosts, lab_id=STACK, segment=SEGMENT)
    config_file = write_stack_file(tmp_path / f"Pulumi.{STACK}.yaml", raw)
    state = tmp_path / "state"
    with LabFixture(STACK, raw=raw, settle=0) as lab:
        lab.destroy_with("destroy", lambda: _destroy(config_file, state))
        up = _cli("up", config_file, state)
        assert up.returncode == 0 and " 0 failed" in up.stdout, up.stdout[-2000:] + up.stderr
        yield lab.cfg, config_file, state


def _cli(
    verb: str, config_file: Path, state: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "standin", verb, "--stack", STACK,
         "--config-file", str(config_file), "--state-dir", str(state), *extra],
        capture_output=True, text=True, cwd=PROJECT, timeout=600, check=False,
    )  # fmt: skip


def test_a_plain_up_mends_a_dead_dockerd_a_dead_member_a_stopped_and_a_detached_container(
    tmp_path: Path,
) -> None:
    with _running(tmp_path, 2) as (cfg, config_file, state):
        node1, node2 = cfg.hosts
        n1, n2 = node1.name, node2.name

        # 1. host 2's dockerd killed: its daemon, serf check, image and container made anew
        kept = untouched(cfg, {"test1": n1})
        os.kill(_pid(cfg, node2, "docker"), signal.SIGKILL)
        _mend(
            config_file, state,
            finding=f"drift: host {n2}: its dockerd is not running",
            plan=f"drift: up mends: docker-{n2}-dockerd (replace), serf-{n2} (replace), "
                 f"test-{n2}-import (replace), test-{n2}-image (replace), test-test2 (replace)",
            replaced=[f"docker-{n2}-dockerd", f"serf-{n2}", f"test-{n2}-import",
                      f"test-{n2}-image", "test-test2"],
            # on the dead daemon's provider, not configured in preview: the engine cannot diff
            blind=[f"test-{n2}-image", "test-test2"],
        )  # fmt: skip
        assert untouched(cfg, {"test1": n1}) == kept

        # 2. host 1's etcd member killed (its data kept): restarted on its data by an update
        kept = untouched(cfg, {"test2": n2})
        dockerd1 = _pid(cfg, node1, "docker")
        test1 = untouched(cfg, {"test1": n1})["test1"]
        os.kill(_pid(cfg, node1, "etcd"), signal.SIGKILL)
        _mend(
            config_file, state,
            finding=f"drift: host {n1}: its etcd member is not running",
            plan=f"drift: up mends: etcd-{n1} (update)",
            updated=[f"etcd-{n1}"],
        )  # fmt: skip
        assert untouched(cfg, {"test2": n2}) == kept
        assert _pid(cfg, node1, "docker") == dockerd1
        assert untouched(cfg, {"test1": n1})["test1"] == test1

        # 3. test1 stopped: replaced, nothing else
        kept = untouched(cfg, {"test2": n2})
        dockerd1 = _pid(cfg, node1, "docker")
        docker1 = ["docker", "-H", f"unix://{cfg.docker_socket(node1)}"]
        subprocess.run([*docker1, "stop", "-t", "1", "test1"], check=True, capture_output=True)
        _mend(
            config_file, state,
            finding=f"drift: container test1 on {n1} is not running",
            plan="drift: up mends: test-test1 (replace)",
            replaced=["test-test1"],
        )  # fmt: skip
        assert untouched(cfg, {"test2": n2}) == kept
        assert _pid(cfg, node1, "docker") == dockerd1

        # 4. test2 detached from the overlay (the lost attachment a restart once left): replaced
        kept = untouched(cfg, {"test1": n1})
        docker2 = ["docker", "-H", f"unix://{cfg.docker_socket(node2)}"]
        subprocess.run([*docker2, "network", "disconnect", cfg.network_name, "test2"], check=True,
                       capture_output=True)  # fmt: skip
        _mend(
            config_file, state,
            finding=f"drift: container test2 on {n2} is not attached to {cfg.network_name}",
            plan="drift: up mends: test-test2 (replace)",
            replaced=["test-test2"],
        )  # fmt: skip
        assert untouched(cfg, {"test1": n1}) == kept


def _mend(
    config_file: Path,
    state: Path,
    finding: str,
    plan: str,
    replaced: list[str] | None = None,
    updated: list[str] | None = None,
    blind: list[str] | None = None,
) -> None:
    """The preview says what is broken and what `up` does about it; `up` does that (and only
    the validator besides) and validates; the next preview has nothing to do. ``blind``: the
    resources the preview shows as updates with the engine's "diff unavailable" (their
    provider is not configured in preview), which `up` replaces."""
    pre = _cli("preview", config_file, state)
    said = pre.stdout + pre.stderr
    assert pre.returncode == 0 and finding in pre.stderr and plan in pre.stderr, said[-3000:]
    assert " 0 failed" not in pre.stdout and "Traceback" not in said, said[-3000:]
    for name in blind or []:
        line = _planned(pre.stdout, name)
        assert line.split()[3] == "update" and "diff unavailable" in line, pre.stdout[-3000:]
    for name in (n for n in replaced or [] if n not in (blind or [])):
        assert _planned(pre.stdout, name).split()[3] == "replace", pre.stdout[-3000:]
    for name in updated or []:
        assert _planned(pre.stdout, name).split()[3] == "update", pre.stdout[-3000:]
    up = _cli("up", config_file, state)
    said = up.stdout + up.stderr
    assert up.returncode == 0 and " 0 failed" in up.stdout, said[-4000:]
    ran = {_name(line): _kind(line) for line in up.stdout.splitlines() if _kind(line)}
    expected = {
        **dict.fromkeys(replaced or [], "replace"),
        **dict.fromkeys(updated or [], "update"),
    }
    others = {n: k for n, k in ran.items() if n not in expected}
    assert {n: ran.get(n) for n in expected} == expected, up.stdout[-3000:]
    # besides: the validator, the names gates (their triggers are the containers' ids) and
    # the provider of a replaced daemon (its host comes from the daemon's id, same value)
    assert set(others) <= {"validate-run", *(n for n in others if n.endswith("-names"))} | {
        n for n in others if n.endswith("-docker") and others[n] == "update"
    }, others
    after = _cli("preview", config_file, state)
    assert after.returncode == 0 and "drift:" not in after.stderr, after.stderr[-2000:]
    assert NOTHING in after.stdout, after.stdout[-2000:]


def _planned(stdout: str, name: str) -> str:
    """The plan's line for ``name`` (a line that says "same" when the plan does not list it)."""
    for line in stdout.splitlines():
        if _name(line) == name and _kind(line):
            return line
    return f"=  - {name} same"


def _name(line: str) -> str:
    parts = line.split()
    return parts[2] if len(parts) > 3 else ""


def _kind(line: str) -> str:
    parts = line.split()
    ok = len(parts) > 3 and parts[0] in ("+", "~", "+-", "-")
    return parts[3] if ok and parts[3] in ("create", "update", "replace", "delete") else ""


def _pid(cfg: LabConfig, host: Any, what: str) -> int:
    pid = pid_of(Path(cfg.host_dir(host)) / f"{what}.pid", "dockerd" if what == "docker" else what)
    assert pid is not None, f"no {what} on {host.name}"
    return pid


def _destroy(config_file: Path, state: Path) -> list[str]:
    """The CLI's destroy; its errors, if it fails even after a mend (a plain `up`)."""
    down = _cli("destroy", config_file, state)
    if down.returncode != 0:  # a dead daemon fails its containers' deletes: mend, destroy
        _cli("up", config_file, state)
        down = _cli("destroy", config_file, state)
    return [] if down.returncode == 0 else [down.stdout[-2000:] + down.stderr[-3000:]]


def test_a_member_that_lost_its_data_is_removed_and_added_again_by_a_plain_up(
    tmp_path: Path,
) -> None:
    """Three hosts: host 3's member killed and its data dir deleted. A plain `up` updates that
    member, whose create removes it from the cluster and adds it again (never founding): the
    member list holds the three hosts with a new id for host 3, the overlay keeps its id (the
    keys survive), the other members and every daemon keep their pids, and the lab
    validates."""
    from overlaylab.etcd import EtcdClient
    from overlaylab.netrule import RouteGuard

    with _running(tmp_path, 3) as (cfg, config_file, state):
        node1, _, node3 = cfg.hosts
        guard = RouteGuard(cfg.bridge or "")
        etcd1 = EtcdClient(cfg.client_url(node1), guard, timeout=5)
        cluster, listed = etcd1.members()
        ids = {m["name"]: m["ID"] for m in listed}
        network = etcd1.v2_get("/docker/network/v1.0/network/", recursive=False)
        assert network is not None
        kept = untouched(cfg, {c.name: c.host for c in cfg.containers if c.host != node3.name})
        dockerd3 = _pid(cfg, node3, "docker")
        os.kill(_pid(cfg, node3, "etcd"), signal.SIGKILL)
        shutil.rmtree(Path(cfg.host_dir(node3)) / "etcd")
        _mend(
            config_file, state,
            finding=f"drift: host {node3.name}: its etcd member is not running, and its data "
                    "is gone",
            plan=f"drift: up mends: etcd-{node3.name} (update)",
            updated=[f"etcd-{node3.name}"],
        )  # fmt: skip
        now = {m["name"]: m["ID"] for m in etcd1.members()[1]}
        assert set(now) == set(ids) and now[node3.name] != ids[node3.name], (ids, now)
        assert {n: i for n, i in now.items() if n != node3.name} == {
            n: i for n, i in ids.items() if n != node3.name
        }
        etcd3 = EtcdClient(cfg.client_url(node3), guard, timeout=5)
        assert etcd3.members()[0] == etcd1.members()[0] == cluster  # node 3 founded none
        assert untouched(cfg, {c.name: c.host for c in cfg.containers if c.host != node3.name}) == (
            kept
        )
        assert _pid(cfg, node3, "docker") == dockerd3
        after = etcd1.v2_get("/docker/network/v1.0/network/", recursive=False)
        assert after is not None and sorted(after.children()) == sorted(network.children())


def test_a_plain_up_brings_a_rebooted_lab_back_on_its_data_with_its_network(
    tmp_path: Path,
) -> None:
    """The machine rebooted, as the lab sees it: every process of the lab killed (members,
    daemons, containerd, shims, keepers, containers), every mount under the lab's directory
    gone, the namespaces, veths and bridge gone; the files on disk kept. The preview names each
    loss and the mend; a plain `up` makes the bridge and namespaces anew, restarts the members
    on their data (the cluster id and Docker's network key survive, so the overlay keeps its
    id), replaces the daemons and containers, and validates; the next preview has nothing to
    do."""
    from overlaylab.etcd import EtcdClient
    from overlaylab.hosts import netns as hostnet
    from overlaylab.hosts import netns_daemons
    from overlaylab.netrule import RouteGuard

    with _running(tmp_path, 2) as (cfg, config_file, state):
        guard = RouteGuard(cfg.bridge or "")
        cluster = EtcdClient(cfg.client_url(cfg.hosts[0]), guard, timeout=5).members()[0]
        network = json.loads(_cli_outputs(config_file, state))["networkId"]

        for h in cfg.hosts:  # the reboot
            base = Path(cfg.host_dir(h))
            for f, name in (("keeper.pid", "names-keep"), ("etcd.pid", "etcd"),
                            ("docker.pid", "dockerd")):  # fmt: skip
                if (pid := pid_of(base / f, name)) is not None:
                    os.kill(pid, signal.SIGKILL)
            netns_daemons._kill_cgroup(netns_daemons.cgroup_parent(cfg.lab_id, h.name))
            netns_daemons._kill_leftovers(base)
            netns_daemons._unmount_below(base)
            hostnet.host_down(h.netns(cfg.lab_id), h.veth(cfg.lab_id))
        hostnet.bridge_down(cfg.bridge or "")

        n1, n2 = (h.name for h in cfg.hosts)
        chain = [
            f"{k}-{h}{t}" for h in (n1, n2) for k, t in (
                ("docker", "-dockerd"), ("serf", ""), ("test", "-import"), ("test", "-image"))
        ] + ["test-test1", "test-test2"]  # fmt: skip
        _mend(
            config_file, state,
            finding=f"drift: host {n2}: its network namespace {cfg.hosts[1].netns(cfg.lab_id)} "
                    "is gone",
            plan="drift: up mends: lab-bridge (replace), ",
            replaced=["lab-bridge", f"lab-{n1}", f"lab-{n2}", *chain],
            updated=[f"etcd-{n1}", f"etcd-{n2}"],
            blind=[f"test-{n1}-image", f"test-{n2}-image", "test-test1", "test-test2"],
        )  # fmt: skip
        assert EtcdClient(cfg.client_url(cfg.hosts[1]), guard, timeout=5).members()[0] == cluster
        assert json.loads(_cli_outputs(config_file, state))["networkId"] == network


def _cli_outputs(config_file: Path, state: Path) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "standin", "stack", "output", "--json", "--stack", STACK,
         "--config-file", str(config_file), "--state-dir", str(state)],
        capture_output=True, text=True, cwd=PROJECT, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_the_drill_every_members_data_lost_the_cluster_founded_again_the_keys_restored(
    tmp_path: Path,
) -> None:
    """issue 14's drill. Docker's keys saved (`overlaylab.backup save`); every member killed
    and its data dir deleted. The preview says the cluster will be founded again; `up` founds
    it (the same cluster id, which etcd derives from the membership and token, and none of
    Docker's keys) and fails its validation, naming the restore; `overlaylab.backup restore`
    puts the keys back; then the validator passes with the overlay's id, the containers' ids
    and the daemons' pids as before, and the next `up` validates."""
    from overlaylab.etcd import EtcdClient
    from overlaylab.netrule import RouteGuard
    from tests.labtools import assert_valid

    with _running(tmp_path, 2) as (cfg, config_file, state):
        guard = RouteGuard(cfg.bridge or "")
        cluster = EtcdClient(cfg.client_url(cfg.hosts[0]), guard, timeout=5).members()[0]
        outputs = json.loads(_cli_outputs(config_file, state))
        kept = untouched(cfg, {c.name: c.host for c in cfg.containers})
        backup = _backup("save", config_file)
        assert backup.returncode == 0 and "saved" in backup.stdout, backup.stdout + backup.stderr

        for h in cfg.hosts:
            os.kill(_pid(cfg, h, "etcd"), signal.SIGKILL)
        for h in cfg.hosts:
            shutil.rmtree(Path(cfg.host_dir(h)) / "etcd")
        pre = _cli("preview", config_file, state)
        assert "every etcd member lost its data: up founds the cluster again" in pre.stderr, (
            pre.stderr[-3000:]
        )
        up = _cli("up", config_file, state)
        said = up.stdout + up.stderr
        assert "founds it again" in up.stderr and "overlaylab.backup restore" in up.stderr, said
        assert up.returncode != 0 and " 0 failed" not in up.stdout, said[-3000:]
        # founded again: the same cluster id (etcd derives it from the static membership and
        # the token), and none of Docker's keys
        fresh = EtcdClient(cfg.client_url(cfg.hosts[1]), guard, timeout=5)
        assert fresh.members()[0] == cluster
        key = f"/docker/network/v1.0/network/{outputs['networkId']}"
        assert fresh.v2_get(key, recursive=False) is None

        restored = _backup("restore", config_file)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert_valid(outputs["validationSpec"], timeout=90)
        after = untouched(cfg, {c.name: c.host for c in cfg.containers})
        for k, v in kept.items():  # the members restarted; the daemons and containers did not
            assert (after[k][1] if k.endswith(" pids") else after[k]) == (
                v[1] if k.endswith(" pids") else v
            ), k
        assert fresh.v2_get(key, recursive=False) is not None
        again = _cli("up", config_file, state)
        assert again.returncode == 0 and " 0 failed" in again.stdout, again.stdout[-3000:]


def _backup(verb: str, config_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "overlaylab.backup", verb, "--stack", STACK,
         "--config-file", str(config_file)],
        capture_output=True, text=True, cwd=PROJECT, timeout=120, check=False,
    )  # fmt: skip
