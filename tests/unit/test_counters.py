"""Silent faults (overlaylab/validate/counters.py) on fakes: the commands that read the counters
are answered by a fake runner, the daemons' logs are files in a temporary lab directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import overlaylab.validate.probes as probes
from overlaylab.config import parse
from overlaylab.errors import LabError
from overlaylab.spec import validation_spec
from overlaylab.validate import counters, validate
from overlaylab.validate.records import Lab, Result
from tests.labtools import lab_config

SANDBOX = "1-0123456789"


def _link(name: str, rx_drop: int = 0, tx_drop: int = 0, rx_err: int = 0) -> dict[str, Any]:
    return {
        "ifname": name,
        "stats64": {
            "rx": {"bytes": 10, "packets": 1, "errors": rx_err, "dropped": rx_drop},
            "tx": {"bytes": 10, "packets": 1, "errors": 0, "dropped": tx_drop},
        },
    }


def _snmp(in_errors: int = 0, rcvbuf: int = 0) -> str:
    return (
        "Ip: Forwarding DefaultTTL\nIp: 1 64\n"
        "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n"
        f"Udp: 27 0 {in_errors} 28 {rcvbuf} 0 0\n"
        "UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdpLite: 0 0 9 0 9\n"
    )


class FakeHosts:
    """What each host answers: its sandbox's VXLAN stats and its /proc/net/snmp, by host."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.vxlan: dict[str, list[dict[str, Any]]] = {}
        self.snmp: dict[str, str] = {}
        self.calls: list[list[str]] = []
        self.fail: set[str] = set()  # hosts whose commands fail

    def host_of(self, argv: list[str]) -> str:
        text = " ".join(argv)
        for h in self.lab.hosts:
            name = str(h["name"])
            if f"/{name}/" in text or self.lab.host_netns(name) in text or h["address"] in text:
                return name
        raise AssertionError(f"no host in {argv}")

    def __call__(self, argv: list[str]) -> str:
        self.calls.append(argv)
        host = self.host_of(argv)
        if host in self.fail:
            raise LabError(f"nsenter: cannot open {host}'s namespace: No such file or directory")
        if "/proc/net/snmp" in argv[-1]:
            return self.snmp[host]
        if "date +%s" in argv[-1]:
            return "1764660000\n"
        return json.dumps(self.vxlan.get(host, []))


@pytest.fixture
def local_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    monkeypatch.setattr(probes, "can_enter", lambda: True)
    spec = validation_spec(parse(lab_config(hosts=2, lab_id="silent", segment="192.168.219")))
    for h in spec["hosts"]:
        d = tmp_path / h["name"]
        (d / "x" / "netns" / SANDBOX).mkdir(parents=True)
        (d / "x" / "netns" / "default").mkdir()  # a container's sandbox: not an overlay's
        (d / "docker.log").write_text(
            'time="t0" level=error msg="error reading the kernel parameter gc_thresh1"\n'
        )
        h["dockerHost"] = f"unix://{d}/docker.sock"
    return Lab(spec)


def _by(results: list[Result]) -> dict[tuple[str, str], Result]:
    return {(r.check, r.subject): r for r in results}


def test_a_vxlan_drop_during_the_run_fails_naming_the_counter_the_host_and_the_delta(
    local_lab: Lab,
) -> None:
    fake = FakeHosts(local_lab)
    fake.vxlan = {"docker-node1": [_link("vxlan0")], "docker-node2": [_link("vxlan0", 0, 5)]}
    fake.snmp = {"docker-node1": _snmp(), "docker-node2": _snmp()}
    before = counters.read(local_lab, fake)
    fake.vxlan["docker-node2"] = [_link("vxlan0", 0, 8, rx_err=1)]
    got = _by(counters.compare(local_lab, before, counters.read(local_lab, fake), fake))
    bad = got[(counters.VXLAN, "docker-node2")]
    assert not bad.ok
    assert bad.actual == f"{SANDBOX}/vxlan0 rx_errors +1, {SANDBOX}/vxlan0 tx_dropped +3"
    assert bad.line().startswith("FAIL silent.vxlan-errors")
    assert got[(counters.VXLAN, "docker-node1")].ok
    assert got[(counters.VXLAN, "docker-node1")].actual == "4 counters unchanged"
    # the stats are read inside the overlay sandbox only, not in a container's
    sandboxes = {a[1] for a in fake.calls if a[0] == "nsenter" and "vxlan" in a}
    assert all(s.endswith(f"/x/netns/{SANDBOX}") for s in sandboxes) and len(sandboxes) == 2


def test_udp_receive_errors_in_the_host_namespace_fail_and_udplite_is_not_read(
    local_lab: Lab,
) -> None:
    fake = FakeHosts(local_lab)
    fake.snmp = {"docker-node1": _snmp(), "docker-node2": _snmp()}
    before = counters.read(local_lab, fake)
    fake.snmp["docker-node1"] = _snmp(in_errors=2, rcvbuf=2)
    got = _by(counters.compare(local_lab, before, counters.read(local_lab, fake), fake))
    assert got[(counters.UDP, "docker-node1")].actual == "Udp InErrors +2, Udp RcvbufErrors +2"
    assert not got[(counters.UDP, "docker-node1")].ok
    assert got[(counters.UDP, "docker-node2")].ok
    assert [
        "nsenter",
        f"--net={local_lab.host_netns('docker-node1')}",
        "cat",
        "/proc/net/snmp",
    ] in (fake.calls)


def test_dockerd_error_lines_since_the_start_are_reported_and_the_probes_own_are_expected(
    local_lab: Lab,
) -> None:
    fake = FakeHosts(local_lab)
    fake.snmp = {"docker-node1": _snmp(), "docker-node2": _snmp()}
    before = counters.read(local_lab, fake)
    logs = {h: Path(counters.host_dir(local_lab, h) or "") / "docker.log" for h in before.log_marks}
    with logs["docker-node1"].open("a") as f:
        f.write('time="t1" level=debug msg="Calling POST /v1.41/containers/abc/start"\n')
        f.write(
            'time="t1" level=error msg="abc cleanup: failed to delete container from '
            'containerd: no such container"\n'
        )
        f.write(
            'time="t2" level=error msg="stream copy error: read /proc/self/fd/47: file '
            'already closed"\n'
        )
    with logs["docker-node2"].open("a") as f:
        f.write('time="t3" level=error msg="peerDbAdd transient failure:\\n\\tboom"\n')
        f.write('time="t3" level=error msg="second"\n')
    got = _by(counters.compare(local_lab, before, counters.read(local_lab, fake), fake))
    one, two = got[(counters.DOCKERD, "docker-node1")], got[(counters.DOCKERD, "docker-node2")]
    assert one.ok and one.actual == "no level=error line (2 expected from the validator's probes)"
    # reported, not failed: Docker logs error lines in ordinary operation too
    assert two.ok
    assert (
        two.actual
        == "+2: peerDbAdd transient failure:  boom (and 1 more) (reported, not a failure)"
    )


def test_without_root_the_counters_are_reported_unread_and_a_gone_namespace_fails(
    local_lab: Lab,
) -> None:
    fake = FakeHosts(local_lab)
    fake.snmp = {"docker-node1": _snmp(), "docker-node2": _snmp()}
    fake.fail = {"docker-node2"}
    local_lab.local = False  # what a lab read without root is
    before = counters.read(local_lab, fake)
    got = _by(counters.compare(local_lab, before, counters.read(local_lab, fake), fake))
    unread = got[(counters.VXLAN, "docker-node1")]
    assert unread.ok and unread.actual == (
        "not read: the sandboxes of a local lab are read as root only"
    )
    assert got[(counters.UDP, "docker-node1")].ok
    local_lab.local = True
    before = counters.read(local_lab, fake)
    got = _by(counters.compare(local_lab, before, counters.read(local_lab, fake), fake))
    gone = got[(counters.UDP, "docker-node2")]
    assert not gone.ok and "cannot open docker-node2's namespace" in gone.actual
    assert got[(counters.UDP, "docker-node1")].ok


def test_an_ssh_stack_reads_the_counters_and_the_journal_over_ssh() -> None:
    spec = validation_spec(parse(lab_config(hosts=2, lab_id="silent", segment="192.168.219")))
    spec["lab"] = {"id": "silent", "transport": "ssh", "sshOpts": ["-o", "BatchMode=yes"]}
    for h in spec["hosts"]:
        h["dockerHost"] = f"ssh://root@{h['address']}:2222"
    lab = Lab(spec)
    fake = FakeHosts(lab)
    block = f"== {SANDBOX}\n" + json.dumps([_link("vxlan0")]) + "\n"
    journal: dict[str, str] = {"docker-node1": "", "docker-node2": ""}

    def runner(argv: list[str]) -> str:
        host = fake.host_of(argv)
        assert argv[:6] == ["ssh", "-o", "BatchMode=yes", "-p", "2222", f"root@{lab.address(host)}"]
        if argv[-1].startswith("for f in /var/run/docker/netns/"):
            return block
        if argv[-1].startswith("journalctl -u docker --since @1764660000 "):
            return journal[host]
        return fake(argv)

    fake.snmp = {"docker-node1": _snmp(), "docker-node2": _snmp()}
    before = counters.read(lab, runner)
    assert before.log_marks == {"docker-node1": 1764660000, "docker-node2": 1764660000}
    block = block.replace('"dropped": 0}}', '"dropped": 4}}')
    journal["docker-node2"] = 'level=error msg="joining serf neighbor 192.168.219.10 failed"\n'
    got = _by(counters.compare(lab, before, counters.read(lab, runner), runner))
    vx = got[(counters.VXLAN, "docker-node1")]
    assert vx.ok and vx.actual == f"{SANDBOX}/vxlan0 tx_dropped +4 (drops: reported, not a failure)"
    assert got[(counters.DOCKERD, "docker-node2")].actual == (
        "+1: joining serf neighbor 192.168.219.10 failed (reported, not a failure)"
    )
    assert got[(counters.DOCKERD, "docker-node1")].ok


def test_the_validator_reads_the_counters_around_its_groups_for_every_host() -> None:
    """validate() (run.py) gives a record of each silent check per host, after the groups'."""
    spec = validation_spec(parse(lab_config(hosts=2, lab_id="absent", segment="192.168.218")))
    results = validate(spec, timeout=0)
    silent = [(r.check, r.subject) for r in results if r.check.startswith("silent.")]
    assert sorted(silent) == sorted(
        (c, h) for c in counters.CHECKS for h in ("docker-node1", "docker-node2")
    )
    # absent, the lab's namespaces and logs cannot be read: each says why, as a failure
    assert all(not r.ok and "not read" in r.actual for r in results if r.check in counters.CHECKS)


def test_the_first_reading_precedes_every_group_and_the_second_follows_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import overlaylab.validate.run as run

    order: list[str] = []

    def group(name: str) -> Any:
        def fn(lab: Lab) -> list[Result]:
            order.append(name)
            return [Result(name, "x", "ok", "ok", True)]

        return fn

    def read(lab: Lab, runner: Any = None, marks: bool = True) -> counters.Reading:
        order.append(f"read marks={marks}")
        return counters.Reading()

    def compare(lab: Lab, before: Any, after: Any, runner: Any = None) -> list[Result]:
        order.append("compare")
        return [Result(counters.VXLAN, "docker-node1", "no counter moved", "+1", False)]

    monkeypatch.setattr(run, "CONVERGING", [("a", group("a")), ("b", group("b"))])
    monkeypatch.setattr(run, "check_name_rule", group("name-rule"))
    names_gone = group("names-gone")
    monkeypatch.setattr(run._NamesGone, "check", lambda self, lab: names_gone(lab))
    monkeypatch.setattr(counters, "read", read)
    monkeypatch.setattr(counters, "compare", compare)
    monkeypatch.setattr(Lab, "connect_all", lambda self: None)
    spec = validation_spec(parse(lab_config(hosts=2, lab_id="absent", segment="192.168.218")))
    results = run.validate(spec, timeout=0)
    assert order[0] == "read marks=True"
    assert order[-2:] == ["read marks=False", "compare"]
    assert sorted(order[1:-2]) == ["a", "b", "name-rule", "names-gone"]
    assert [r.check for r in results] == ["a", "b", "names-gone", "name-rule", counters.VXLAN]
