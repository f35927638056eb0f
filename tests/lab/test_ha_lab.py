"""The highly available stack for real: three members, TLS everywhere, one member lost.

stacks/Pulumi.ha.yaml as written: three namespace hosts, etcd with client and peer TLS
(client certificates required), every daemon pointed at every member.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlaylab import spec as out
from overlaylab.config import LabConfig
from overlaylab.errors import LabError
from overlaylab.etcd import EtcdClient
from overlaylab.hosts.pki import client_tls
from overlaylab.netrule import RouteGuard
from overlaylab.stackconfig import raw_from_file
from overlaylab.validate import validate
from tests.labtools import LabFixture, validate_cli

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFixture]:
    """Destroyed at the end, unless test_destroy_* took the lab down already (then its errors)."""
    state = tmp_path_factory.mktemp("ha") / "ha.json"
    with LabFixture("ha", state, raw_from_file("ha")) as lab:
        lab.up()
        yield lab


def _get(url: str, cfg: LabConfig, ctx: ssl.SSLContext | None) -> bytes:
    RouteGuard(cfg.local_bridge).check(url.split("://")[1].split(":")[0])
    with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
        return bytes(r.read())


def test_three_members_with_tls_validate(ha: LabFixture) -> None:
    run, cfg = ha.run, ha.cfg
    report = (run.outputs or {})[out.OUT_VALIDATION_REPORT]
    assert " 0 failed" in report.splitlines()[-1], report
    assert "test3 -> test1 by name (across hosts): reply" in report
    assert (run.outputs or {})[out.OUT_ETCD_ENDPOINTS] == [
        f"https://{h.address}:2379" for h in cfg.hosts
    ]


def test_etcd_refuses_plain_http_and_clients_without_a_certificate(ha: LabFixture) -> None:
    cfg = ha.cfg
    h = cfg.hosts[0]
    assert cfg.pki_dir is not None
    assert (
        json.loads(_get(f"https://{h.address}:2379/health", cfg, client_tls(cfg.pki_dir)))["health"]
        == "true"
    )
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        _get(f"http://{h.address}:2379/health", cfg, None)
    no_cert = ssl.create_default_context(cafile=f"{cfg.pki_dir}/ca.pem")
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError, OSError)):
        _get(f"https://{h.address}:2379/health", cfg, no_cert)


def test_dockerd_uses_every_member_over_tls(ha: LabFixture) -> None:
    cfg = ha.cfg
    h = cfg.hosts[2]
    log = Path(cfg.host_dir(h)) / "docker.log"
    assert log.exists()
    cmdline = next(
        Path(f"/proc/{p.name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        for p in Path("/proc").iterdir()
        if p.name.isdigit()
        and b"dockerd" in (Path(f"/proc/{p.name}/cmdline").read_bytes() or b"")
        and cfg.host_dir(h).encode() in Path(f"/proc/{p.name}/cmdline").read_bytes()
    )
    assert (
        "--cluster-store etcd://192.168.206.12:2379,192.168.206.10:2379,192.168.206.11:2379"
        in cmdline
    )
    assert f"kv.certfile={cfg.pki_dir}/client.pem" in cmdline


def test_losing_one_member_fails_only_that_member(ha: LabFixture) -> None:
    """Quorum is 2 of 3: the overlay, its keys and the name rule all still hold."""
    run, cfg = ha.run, ha.cfg
    lost = cfg.hosts[2]
    pid = int((Path(cfg.host_dir(lost)) / "etcd.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    # The lost member may have been the leader: wait on the fact (a leader among the two
    # left), then give the checks a convergence time that a loaded machine does not exhaust
    # (the lost member's check uses all of it: it never passes).
    left = [h for h in cfg.hosts if h is not lost]
    client = EtcdClient(cfg.client_url(left[0]), RouteGuard(cfg.local_bridge),
                        tls=client_tls(cfg.pki_dir))  # fmt: skip
    deadline = time.monotonic() + 60
    leader = None
    while leader not in {h.name for h in left}:
        assert time.monotonic() < deadline, f"no leader among {[h.name for h in left]} in 60 s"
        time.sleep(0.2)
        with contextlib.suppress(LabError):
            leader = client.leader_name()
    results = validate((run.outputs or {})[out.OUT_VALIDATION_SPEC], timeout=15)
    failed = [(r.check, r.subject) for r in results if not r.ok]
    assert failed == [("etcd.member-healthy", lost.name)], failed
    assert any(r.check == "overlay.ping" and r.ok for r in results)
    res = validate_cli((run.outputs or {})[out.OUT_VALIDATION_SPEC], 1)
    assert res.returncode == 1
    assert res.stdout.splitlines()[0].startswith(f"FAIL etcd.member-healthy    {lost.name}")


def test_destroy_leaves_nothing_even_with_a_member_down(ha: LabFixture) -> None:
    run, cfg = ha.run, ha.cfg
    assert run.destroy() == []
    assert cfg.pki_dir is not None and not Path(cfg.pki_dir).exists()
    assert ha.leftovers() == []
