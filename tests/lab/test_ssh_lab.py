"""The SSH stack for real: the program deploys over SSH to VM-like hosts and restores them.

Two Debian 12 hosts boot under systemd-nspawn on a bridge of this machine, with systemd,
sshd, Debian's docker.io and etcd-server (whose packaged single-member etcd starts at boot),
exactly as fresh VMs. The program runs through the engine stand-in: remote commands and
copies over real SSH, Docker resources over ssh:// to each host's own socket.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from overlaylab import spec as out
from overlaylab.hosts import proc
from overlaylab.netrule import RouteGuard
from tests import vmhosts
from tests.labtools import LabFixture, LabRun, require_root, validate_cli

pytestmark = pytest.mark.lab

LAB_ID = "sshlab"
BRIDGE = "ovbr-sshlab"
SEGMENT = "192.168.217"
NODES = ("docker-node1", "docker-node2")
ORIGINAL_DAEMON_JSON = '{\n    "debug": true,\n    "labels": ["seed=kept"]\n}\n'


@dataclass
class SshLab(vmhosts.Fleet):
    fixture: LabFixture

    def config(self) -> dict[str, Any]:
        return self.stack_config(LAB_ID, NODES)

    def up(self, state: str, config: dict[str, Any] | None = None) -> LabRun:
        """A stack on the hosts, judged by the test; destroyed once, by the test or before the
        hosts go."""
        return self.fixture.up(config or self.config(), fails=None, state_file=self.tmp / state)


@pytest.fixture(scope="module")
def vms() -> Iterator[SshLab]:
    """The hosts, in the lab fixture: every stack brought up on them is destroyed before they
    go, and nothing of either is left on this machine after."""
    with LabFixture(LAB_ID, guard=RouteGuard(BRIDGE)) as fixture:
        f = fixture.enter("the VM hosts", vmhosts.fleet(LAB_ID, BRIDGE, SEGMENT, NODES))
        fixture.secrets = {"sshPrivateKey": f.key.read_text()}
        lab = SshLab(f.hosts, f.key, f.tmp, f.guard, fixture)
        # what a real host has before we come: other daemon.json keys, Debian's own etcd
        lab.ssh(NODES[0], f"cat > /etc/docker/daemon.json <<'EOF'\n{ORIGINAL_DAEMON_JSON}EOF")
        yield lab


@pytest.fixture(scope="module")
def deployed(vms: SshLab) -> Iterator[tuple[SshLab, LabRun, dict[str, str]]]:
    before = vms.snapshot(vmhosts.HOST_CONFIG)
    assert "started, docker-node1, http://localhost:2380" in before[NODES[0]]
    run = vms.up("up.json")
    try:
        assert run.error is None, f"up over SSH failed: {run.error}"
        yield vms, run, before
    finally:
        errors = run.destroy()  # once: test_destroy_* may have done it (then its errors)
        assert errors == [], errors


def test_up_over_ssh_validates(deployed: tuple[SshLab, LabRun, dict[str, str]]) -> None:
    _, run, _ = deployed
    report = (run.outputs or {})[out.OUT_VALIDATION_REPORT]
    assert " 0 failed" in report.splitlines()[-1], report
    assert "test1 -> test2 by name (across hosts): reply" in report
    assert "refused (endpoint with name test1 already exists" in report


def test_validator_cli_reaches_the_daemons_over_ssh(
    deployed: tuple[SshLab, LabRun, dict[str, str]],
) -> None:
    _, run, _ = deployed
    res = validate_cli((run.outputs or {})[out.OUT_VALIDATION_SPEC], 30)
    assert res.returncode == 0, res.stdout + res.stderr


def test_daemon_json_keeps_the_hosts_own_keys(
    deployed: tuple[SshLab, LabRun, dict[str, str]],
) -> None:
    lab, _, _ = deployed
    conf = json.loads(lab.ssh(NODES[0], "cat /etc/docker/daemon.json"))
    assert conf == {
        "debug": True,
        "labels": ["seed=kept"],
        "cluster-store": f"etcd://{SEGMENT}.10:2379",
        "cluster-advertise": f"{SEGMENT}.10:2375",
    }
    # no TCP listener: dockerd listens on no TCP port but serf's 7946
    listening = lab.ssh(NODES[0], "ss -Hltnp | grep dockerd || true")
    assert "2375" not in listening


def test_debians_single_member_etcd_was_replaced_by_the_cluster(
    deployed: tuple[SshLab, LabRun, dict[str, str]],
) -> None:
    lab, _, _ = deployed
    lab.guard.check(f"{SEGMENT}.10")
    req = urllib.request.Request(
        f"http://{SEGMENT}.10:2379/v3/cluster/member/list", data=b"{}", method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        members = sorted(m["name"] for m in json.loads(r.read())["members"])
    assert members == list(NODES)
    assert lab.ssh(NODES[0], "systemctl is-enabled etcd").strip() == "enabled"


OVERLAY_STATE = (
    "date +%T.%N; docker ps -a --format '{{.Names}} {{.Status}}'; "
    'for ns in /var/run/docker/netns/1-*; do echo "== $ns"; '
    "nsenter --net=$ns ip -d link show; nsenter --net=$ns bridge fdb show; "
    "nsenter --net=$ns ip neigh show; done; "
    "journalctl -b -o short-precise -u etcd -u docker --no-pager"
    " | grep -E 'systemd|error|ready to serve|serf: Event|bind' | grep -v grpc | head -40"
)


def overlay_state(lab: SshLab) -> str:
    """What each host's overlay data plane knows, for a failed connectivity check."""
    return "\n".join(f"### {n}\n{lab.ssh(n, OVERLAY_STATE, check=False)}" for n in NODES)


# What a host whose address comes late at boot does (systemd-networkd without wait-online, as
# on these hosts): etcd exits at its first start ("bind: cannot assign requested address") and
# systemd starts it again. The marker names the boot, so this fails exactly once per boot.
ETCD_FAILS_ONCE = "/etc/systemd/system/etcd.service.d/00-test-fails-once-per-boot.conf"
ETCD_FAILS_ONCE_TEXT = (
    "[Service]\nExecStart=\nExecStart=/bin/sh -c '"
    "m=/tmp/etcd-failed-at-$$(cat /proc/sys/kernel/random/boot_id); "
    "test -e $$m || { touch $$m; echo injected: etcd exits at its first start; exit 1; }; "
    "rm -f $$m; exec /usr/bin/etcd'\n"
)
# `systemctl is-active a b` succeeds when any one is active
BOTH_ACTIVE = "systemctl is-active docker && systemctl is-active etcd"


def test_the_setting_survives_a_reboot(deployed: tuple[SshLab, LabRun, dict[str, str]]) -> None:
    """Unlike the seed's hand-started dockerd: systemd brings etcd and Docker back configured,
    even when etcd's first start at boot fails."""
    lab, run, _ = deployed
    host = next(h for h in lab.hosts if h.name == NODES[1])
    lab.ssh(host.name, f"cat > {ETCD_FAILS_ONCE} <<'EOF'\n{ETCD_FAILS_ONCE_TEXT}EOF")
    try:
        vmhosts.power_off(host)
        vmhosts.boot(host, BRIDGE)
        vmhosts.wait_ssh(host, lab.guard)
        lab.ssh(host.name, "systemctl is-system-running --wait", check=False)

        def both_active() -> bool:
            return lab.ssh(host.name, BOTH_ACTIVE, check=False).split() == ["active"] * 2

        proc.wait_for("docker and etcd active after the reboot", both_active, 60, 0.5)
        # the fault happened: etcd's first start at this boot failed and systemd restarted it
        assert lab.ssh(host.name, "systemctl show -P NRestarts etcd").strip() == "1"
        # and Docker held its start until its store answered
        journal = lab.ssh(host.name, "journalctl -b -u docker --no-pager")
        assert f"the cluster store http://{host.address}:2379 is healthy after" in journal
    finally:
        lab.ssh(host.name, f"rm -f {ETCD_FAILS_ONCE} && systemctl daemon-reload", check=False)
    info = lab.ssh(host.name, "docker info -f '{{.ClusterStore}} {{.ClusterAdvertise}}'")
    assert info.split() == [f"etcd://{host.address}:2379", f"{host.address}:2375"]

    def overlay_listed() -> bool:
        fmt = "'{{.Name}}/{{.Driver}}/{{.Scope}}'"
        return "demo/overlay/global" in lab.ssh(host.name, f"docker network ls --format {fmt}")

    # the daemon reads global networks from the store a moment after it starts
    try:
        proc.wait_for("the overlay to be listed on the rebooted host", overlay_listed, 60, 0.5)
    except Exception:
        print(overlay_state(lab))
        raise
    # The containers have no restart policy; started again, test2 must rejoin the overlay.
    # Without Docker ordered after etcd at boot this failed with "could not get network
    # sandbox (oper true)" (moby/libnetwork#2322); with Docker started while etcd waited to
    # restart, test2 was announced with no VTEP and test1 never reached it.
    lab.ssh(host.name, "docker start test2")
    res = validate_cli((run.outputs or {})[out.OUT_VALIDATION_SPEC], 60)
    if res.returncode != 0:
        print(overlay_state(lab))
    assert res.returncode == 0, res.stdout + res.stderr


def test_destroy_restores_every_host_as_it_was(
    deployed: tuple[SshLab, LabRun, dict[str, str]],
) -> None:
    lab, run, before = deployed
    assert run.destroy() == []
    for n in NODES:
        after = lab.ssh(n, vmhosts.HOST_CONFIG)
        assert after == before[n], f"{n} not restored:\n{after}\n---\n{before[n]}"
        assert lab.ssh(n, f"ls {vmhosts.LAB_PATHS} 2>&1 || true").count("No such file") == 5
    assert lab.ssh(NODES[0], "cat /etc/docker/daemon.json") == ORIGINAL_DAEMON_JSON
    assert vmhosts.identity_gone(lab.tmp) == []


def test_preflight_refuses_docker_24_and_changes_nothing(vms: SshLab) -> None:
    node = NODES[1]
    fake = (
        "printf '#!/bin/sh\\necho Docker version 24.0.7, build afdd53b\\n' > /usr/local/bin/dockerd"
    )
    vms.ssh(node, f"{fake} && chmod +x /usr/local/bin/dockerd")
    before = vms.ssh(node, "cat /etc/default/etcd; ls /etc/docker; systemctl is-active etcd")
    try:
        run = vms.up("docker24.json")
        errors = run.destroy()
        assert run.error is not None
        assert "Docker 24.0 has no --cluster-store (removed in 23.0)" in str(run.error)
        assert not any(r.name.startswith("etcd-docker") for r in run.records)
        assert errors == []
        assert (
            vms.ssh(node, "cat /etc/default/etcd; ls /etc/docker; systemctl is-active etcd")
            == before
        )
    finally:
        vms.ssh(node, "rm -f /usr/local/bin/dockerd")


def test_preflight_refuses_cloned_docker_engine_ids(vms: SshLab) -> None:
    """Cloned VMs share /etc/docker/key.json, hence Docker's engine ID."""
    cloned = vms.ssh(NODES[0], "base64 -w0 /etc/docker/key.json")
    original = vms.ssh(NODES[1], "base64 -w0 /etc/docker/key.json")
    vms.ssh(NODES[1], f"echo {cloned} | base64 -d > /etc/docker/key.json")
    try:
        run = vms.up("cloned.json")
        errors = run.destroy()
        assert "share the Docker engine ID" in str(run.error), run.error
        assert "remove /etc/docker/key.json on one host" in str(run.error)
        assert not any(r.name.startswith("etcd-docker") for r in run.records)
        assert errors == []
    finally:
        vms.ssh(NODES[1], f"echo {original} | base64 -d > /etc/docker/key.json")


def test_preflight_refuses_underlay_mtus_below_lab_mtu_or_unlike(vms: SshLab) -> None:
    """Each host's interface holding its lab address is read on the host; a host below lab.mtu,
    or hosts that disagree, stop `up` before any host is changed."""
    node, address = NODES[1], vms.hosts[1].address
    vms.ssh(node, "ip link set host0 mtu 1400")
    try:
        run = vms.up("mtu-low.json")
        errors = run.destroy()
        assert f"host {node}'s interface host0 for {address} has MTU 1400, below lab.mtu 1500" in (
            str(run.error)
        ), run.error
        assert not any(r.name.startswith("etcd-docker") for r in run.records)
        assert errors == []
        config = vms.config()
        config["lab"]["mtu"] = 1400
        run = vms.up("mtu-unlike.json", config)
        errors = run.destroy()
        assert f"hosts {NODES[0]} and {node} disagree on the underlay MTU (host0 1500, host0 " in (
            str(run.error)
        ), run.error
        assert not any(r.name.startswith("etcd-docker") for r in run.records)
        assert errors == []
    finally:
        vms.ssh(node, "ip link set host0 mtu 1500")


def test_preflight_refuses_a_host_without_systemd() -> None:
    """This machine is such a host (its PID 1 is not systemd): the same verb, run here."""
    require_root()
    if Path("/run/systemd/system").is_dir():
        pytest.fail("this machine runs systemd: the test needs a host without it")
    res = subprocess.run(
        [sys.executable, "-m", "overlaylab.hostops", "preflight", "--systemd"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert res.returncode == 1
    assert "systemd is not running (no /run/systemd/system)" in res.stderr


def test_tls_over_ssh_deploys_validates_and_restores(vms: SshLab) -> None:
    """etcd over mutual TLS on real hosts: certificates made here, installed on each host."""
    snapshot = f"{vmhosts.HOST_CONFIG}; ls /etc/overlaylab 2>&1 || true"
    before = vms.snapshot(snapshot)
    raw = vms.config()
    raw["etcd"]["tls"] = True
    raw["docker"] = {"storeEndpoints": "all"}
    run = vms.up("tls.json", raw)
    try:
        assert run.error is None, f"up with TLS over SSH failed: {run.error}"
        report = (run.outputs or {})[out.OUT_VALIDATION_REPORT]
        assert " 0 failed" in report.splitlines()[-1], report
        assert (run.outputs or {})[out.OUT_ETCD_ENDPOINTS][0] == f"https://{SEGMENT}.10:2379"
        conf = json.loads(vms.ssh(NODES[1], "cat /etc/docker/daemon.json"))
        assert conf["cluster-store"] == f"etcd://{SEGMENT}.11:2379,{SEGMENT}.10:2379"
        assert conf["cluster-store-opts"]["kv.certfile"] == "/etc/overlaylab/pki/client.pem"
        plain = vms.ssh(
            NODES[0],
            "python3 -c 'import urllib.request as u; "
            'print(u.urlopen("http://127.0.0.1:2379/health", timeout=2).read())\' 2>&1',
            check=False,
        )
        assert '"health":"true"' not in plain
    finally:
        errors = run.destroy()
    assert errors == []
    for n in NODES:
        assert vms.ssh(n, snapshot) == before[n], n
    assert vmhosts.identity_gone(vms.tmp) == []


def test_a_host_without_etcd_gets_the_distributions_and_loses_it_on_destroy(
    vms: SshLab,
) -> None:
    """etcd missing: preflight checks apt's version, etcd-up installs Debian's etcd-server
    (from the host's apt cache here: the test hosts have no mirror), destroy purges it.
    Last in this module: it leaves the host without etcd."""
    node = NODES[1]
    vms.ssh(node, "apt-get purge -y etcd-server >/dev/null && rm -rf /var/lib/etcd")
    snapshot = (
        "dpkg-query -W -f='${Status}\\n' etcd-server 2>&1; "
        "ls /etc/default/etcd /var/lib/etcd /etc/systemd/system/etcd.service.d 2>&1; "
        "cat /etc/docker/daemon.json 2>&1; systemctl is-active docker"
    )
    before = vms.ssh(node, snapshot)
    assert "etcd-server" in before and "install ok installed" not in before, before
    # apt offering an etcd without the v2 API: refused before any host changes
    fake = "printf '#!/bin/sh\\necho \"  Candidate: 3.6.5-1\"\\n' > /usr/local/bin/apt-cache"
    vms.ssh(node, f"{fake} && chmod +x /usr/local/bin/apt-cache")
    try:
        refused = vms.up("install36.json")
        assert refused.destroy() == []
        assert "apt's etcd-server 3.6.5-1: etcd 3.6 is not supported" in str(refused.error)
        assert not any(r.name.startswith("etcd-docker") for r in refused.records)
        assert vms.ssh(node, snapshot) == before
    finally:
        vms.ssh(node, "rm -f /usr/local/bin/apt-cache")
    run = vms.up("install.json")
    try:
        assert run.error is None, f"up failed: {run.error}"
        report = (run.outputs or {})[out.OUT_VALIDATION_REPORT]
        assert " 0 failed" in report.splitlines()[-1], report
        status = vms.ssh(node, "dpkg-query -W -f='${Status}' etcd-server")
        assert status == "install ok installed"
    finally:
        errors = run.destroy()
    assert errors == []
    assert vms.ssh(node, snapshot) == before
