"""The validator's catalogue, silent faults and evidence on a running 2-host lab: a selection
runs only its tests; a VXLAN drop counter and a dockerd error moved on purpose during a run
fail `silent-faults` naming the host and the counter; an injected fault (test2 stopped) leaves
a dump that holds Docker's keys, every daemon's view and the validator's own records."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlaylab import spec as out
from overlaylab.hosts.dockerd import docker_api
from overlaylab.netrule import RouteGuard
from tests.labtools import LabFixture, LabRun, failed_first, lab_config, parsed

pytestmark = pytest.mark.lab

RAW = lab_config(2, lab_id="ev", segment="192.168.234")
CFG = parsed(RAW)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    state = tmp_path_factory.mktemp("ev") / "ev.json"
    with LabFixture("ev", state, RAW, guard=RouteGuard(CFG.local_bridge), settle=0) as lab:
        yield lab.up()


def validator(run: LabRun, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    spec = json.dumps((run.outputs or {})[out.OUT_VALIDATION_SPEC])
    return subprocess.run(
        [sys.executable, "-m", "overlaylab.validate", "--spec-json", spec,
         "--timeout", str(timeout), *argv],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def checks_of(stdout: str) -> set[str]:
    return {ln.split()[1] for ln in stdout.splitlines() if ln[:4] in ("ok  ", "FAIL")}


def test_a_selection_runs_only_its_tests_and_lists_the_rest_as_not_selected(run: LabRun) -> None:
    res = validator(run, "--test", "underlay-vxlan")
    assert res.returncode == 0, failed_first(res.stdout)
    assert checks_of(res.stdout) == {"underlay.vxlan"}, res.stdout
    assert "skip (not selected)" in res.stdout, res.stdout
    every = validator(run, "--test", "!name-unique")
    assert every.returncode == 0, failed_first(every.stdout)
    assert "overlay.name-unique" not in checks_of(every.stdout)
    assert {"etcd.member-healthy", "overlay.ping", "silent.vxlan-errors"} <= checks_of(
        every.stdout
    ), every.stdout
    # no probe container was made: the name rule did not run
    for h in CFG.hosts:
        names = [c["Names"][0] for c in docker_api(CFG.docker_socket(h)).containers(all=True)]
        assert not [n for n in names if "overlaylab-" in n], names


def _sandbox(host: Any) -> Path:
    found = sorted(Path(CFG.host_dir(host), "x", "netns").glob("*-*"))
    assert found, f"no overlay sandbox on {host.name}"
    return found[-1]


def test_counters_moved_on_purpose_during_the_run_are_named_and_udp_errors_fail(
    run: LabRun,
) -> None:
    """During one validation: datagrams with a bad UDP checksum from docker-node1 to
    docker-node2's VXLAN port (docker-node2's kernel counts Udp InErrors), frames to a MAC
    that docker-node1's VXLAN device has no fdb entry for (it drops them: tx_dropped), and an
    exec of a program that does not exist in test1 (dockerd logs it at error level). The run
    fails silent-faults on docker-node2's UDP errors only; the VXLAN drops and the daemon's
    error lines are named, reported and not failed (both move in ordinary operation); the next
    run, with nothing moving, passes."""
    h1, h2 = CFG.hosts
    RouteGuard(CFG.local_bridge).check(h2.address)  # only to the lab's own host
    sb = _sandbox(h1)
    vx = subprocess.run(
        ["nsenter", f"--net={sb}", "ip", "-o", "link", "show", "type", "vxlan"],
        capture_output=True, text=True, check=True,
    ).stdout.split(": ")[1].split("@")[0]  # fmt: skip
    frames = (
        "import socket, time\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
        f"s.bind(({vx!r}, 0))\n"
        "for _ in range(200):\n"
        "    s.send(bytes.fromhex('02aabbccddee02aabbccddff0800') + bytes(46))\n"
        "    time.sleep(0.05)\n"
    )
    bad_udp = (
        "import socket, struct, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)\n"
        "bad = struct.pack('!HHHH', 40000, 4789, 12, 0xbeef) + b'oops'\n"
        "for _ in range(200):\n"
        f"    s.sendto(bad, ({h2.address!r}, 0))\n"
        "    time.sleep(0.05)\n"
    )
    stop = threading.Event()

    def errors() -> None:
        api = docker_api(CFG.docker_socket(h1))
        while not stop.wait(0.05):
            with contextlib.suppress(Exception):  # the error is the point: dockerd logs it
                api.exec_start(api.exec_create("test1", ["/nonexistent"]))

    senders = [
        subprocess.Popen(["nsenter", f"--net={sb}", sys.executable, "-c", frames]),
        subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{h1.netns(CFG.lab_id)}", sys.executable, "-c", bad_udp]
        ),
    ]
    worker = threading.Thread(target=errors, daemon=True)
    worker.start()
    try:
        res = validator(run, timeout=10)
    finally:
        stop.set()
        for p in senders:
            p.kill()
            p.wait()
        worker.join(timeout=10)
    lines = res.stdout.splitlines()
    failed = [ln for ln in lines if ln.startswith("FAIL")]
    print("\n" + "\n".join(ln for ln in lines if "silent." in ln))
    assert [ln.split()[1:3] for ln in failed] == [["silent.udp-errors", "docker-node2:"]], failed
    assert "Udp InErrors +" in failed[0], failed
    assert res.returncode == 1

    def record(check: str, host: str) -> str:
        (ln,) = [x for x in lines if x.split()[1:3] == [check, f"{host}:"]]
        return ln

    drops = record("silent.vxlan-errors", "docker-node1")
    assert drops.startswith("ok") and "tx_dropped +" in drops and "reported" in drops, drops
    said = record("silent.dockerd-errors", "docker-node1")
    assert said.startswith("ok") and "(reported, not a failure)" in said, said
    again = validator(run)
    assert again.returncode == 0, failed_first(again.stdout)


def test_an_injected_fault_leaves_a_dump_that_explains_it(run: LabRun, tmp_path: Path) -> None:
    api = docker_api(CFG.docker_socket(CFG.hosts[1]))
    api.stop("test2", timeout=1)
    try:
        res = validator(run, "--dump", str(tmp_path / "ev"), timeout=5)
    finally:
        api.start("test2")
    assert res.returncode == 1, res.stdout
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"evidence of this failure in {tmp_path / 'ev'}"), res.stderr
    root = tmp_path / "ev"
    index = json.loads((root / "index.json").read_text())
    broken = {k: v for k, v in index.items() if str(v).startswith("not collected")}
    assert not broken, broken
    keys = (root / "etcd-docker-keys.json").read_text()
    assert "/docker/network/v1.0/endpoint/" in keys and "test1" in keys, keys[:300]
    records = json.loads((root / "validator.json").read_text())
    assert any(not r["ok"] and "test2" in r["subject"] for r in records["results"])
    for h in CFG.hosts:
        d = next(p for p in root.iterdir() if p.is_dir() and p.name == h.name)
        for f in ("docker-info.json", "network-inspect.json", "ip-d-link.txt", "docker.log"):
            assert (d / f).is_file() and (d / f).stat().st_size > 0, f"{h.name}/{f}"
    versions = json.loads((root / "versions.json").read_text())
    assert "etcd" in json.dumps(versions) and "docker" in json.dumps(versions).lower()
    again = validator(run)
    assert again.returncode == 0, failed_first(again.stdout)
