"""The validator's diagnosis and JUnit report from records alone (no lab), and its DNS parser."""

from __future__ import annotations

import socket
import struct
import xml.etree.ElementTree as ET

from overlaylab.validate import Result, diagnose, junit, summary
from overlaylab.validate.cli import parser
from overlaylab.validate.probes import _checksum, _skip_name


def ok(check: str, subject: str, actual: str = "fine") -> Result:
    return Result(check, subject, actual, actual, True)


def bad(check: str, subject: str, expected: str, actual: str) -> Result:
    return Result(check, subject, expected, actual, False)


PINGS_LOST = [
    bad("overlay.ping", "test1 -> test2 by IP (across hosts)", "reply", "no reply"),
    bad("overlay.ping", "test2 -> test1 by IP (across hosts)", "reply", "no reply"),
]


def test_vxlan_dropped_one_way_is_named_with_its_evidence() -> None:
    results = [
        ok("underlay.ping", "docker-node1 -> docker-node2", "reply"),
        bad(
            "underlay.vxlan",
            "docker-node1 -> docker-node2",
            "UDP 4789 delivered",
            "UDP 4789 not delivered in 1s",
        ),
        ok("underlay.vxlan", "docker-node2 -> docker-node1"),
        *PINGS_LOST,
    ]
    assert diagnose(results) == [
        "diagnosis: VXLAN from docker-node1 to docker-node2 is dropped: underlay ping works, "
        "UDP 4789 does not"
    ]


def test_a_broken_underlay_hides_the_layers_above_it() -> None:
    results = [
        bad("underlay.ping", "docker-node1 -> docker-node2", "reply", "no reply"),
        bad("underlay.vxlan", "docker-node1 -> docker-node2", "delivered", "not delivered"),
        bad("underlay.serf-tcp", "docker-node1 -> docker-node2", "open", "no answer"),
    ]
    assert diagnose(results) == [
        "diagnosis: the underlay from docker-node1 to docker-node2 is broken: docker-node1 "
        "cannot ping docker-node2's address"
    ]


def test_serf_blocked_names_both_protocols() -> None:
    results = [
        bad("underlay.serf-tcp", "a -> b", "TCP 7946 open", "TCP 7946 no answer in 1s"),
        bad("underlay.serf-udp", "a -> b", "UDP 7946 delivered", "not delivered"),
    ]
    assert diagnose(results) == [
        "diagnosis: serf gossip from a to b is blocked: underlay ping works, TCP and UDP 7946 "
        "do not"
    ]


def test_small_underlay_mtu_names_the_host_and_both_mtus() -> None:
    results = [
        bad(
            "underlay.mtu",
            "docker-node2",
            "eth0 MTU >= 1500 (overlay MTU 1450 + 50 for VXLAN)",
            "eth0 MTU 1400",
        ),
        bad("overlay.path-mtu", "test1 -> test2 (across hosts)", "reply", "no reply"),
    ]
    (line,) = diagnose(results)
    assert "docker-node2" in line and "eth0 MTU 1400" in line and "overlay MTU 1450" in line


def test_path_mtu_is_blamed_only_where_small_packets_pass() -> None:
    lost = bad("overlay.path-mtu", "test1 -> test2 (across hosts)", "reply", "no reply")
    small_ok = ok("overlay.ping", "test1 -> test2 by IP (across hosts)", "reply")
    assert "a path MTU problem" in diagnose([lost, small_ok])[0]
    assert not any("path MTU" in x for x in diagnose([lost, *PINGS_LOST]))


def test_etcd_quorum_kept_or_lost() -> None:
    three = [
        ok("etcd.member-healthy", "n1"),
        ok("etcd.member-healthy", "n2"),
        bad("etcd.member-healthy", "n3", "healthy", "unreachable (refused)"),
    ]
    assert diagnose(three) == [
        "diagnosis: etcd member n3 down (n3 unreachable); the cluster keeps its quorum "
        "(2 of 3 healthy, 2 needed)"
    ]
    two = [
        bad("etcd.member-healthy", "n1", "healthy", "unhealthy"),
        bad("etcd.member-healthy", "n2", "healthy", "unreachable (refused)"),
    ]
    assert diagnose(two)[0] == (
        "diagnosis: etcd has lost its quorum: 0 of 2 members healthy, 2 needed (n1 unhealthy, "
        "n2 unreachable); Docker's cluster store cannot be read or written"
    )


def test_a_stopped_container_is_one_line_not_one_per_ping() -> None:
    results = [
        bad("docker.container-running", "test2@n2", "running", "not running (exited)"),
        bad("etcd.endpoint-key", "test2@n2", "1 endpoint key", "0 keys"),
        bad("overlay.ping", "test1 -> test2 by IP (across hosts)", "reply", "target has none"),
    ]
    assert diagnose(results) == [
        "diagnosis: container test2 on n2 is not on the overlay (not running (exited)): every "
        "ping to and from it fails"
    ]


def test_duplicate_names_and_registrations() -> None:
    lines = diagnose(
        [
            bad("etcd.endpoint-key", "test2@n2", "1 endpoint key", "2 keys"),
            bad("etcd.nodes-exact", "/docker/nodes", "only", "['10.9.9.9:2375']"),
            bad("etcd.node-registered", "n2", "/docker/nodes/1.2.3.4:2375", "no such key"),
        ]
    )
    assert any("2 endpoint keys in etcd are named test2" in x for x in lines)
    assert any("hosts not in the stack under /docker/nodes: ['10.9.9.9:2375']" in x for x in lines)
    assert any(x.startswith("diagnosis: n2 is not registered in etcd") for x in lines)


def test_no_failure_no_diagnosis_and_the_count_stays_last() -> None:
    results = [ok("etcd.member-healthy", "n1")]
    assert diagnose(results) == []
    text = summary([*results, *PINGS_LOST], 0.1)
    lines = text.splitlines()
    assert lines[-1] == "3 checks, 2 failed, in 0.1s"
    assert lines[-2].startswith("diagnosis: ")


def test_junit_has_a_testcase_per_record_and_failures_with_their_message() -> None:
    results = [ok("etcd.member-healthy", "n1"), *PINGS_LOST]
    root = ET.fromstring(junit(results, 1.5))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("time")) == ("3", "2", "1.500")
    cases = suite.findall("testcase")
    assert (cases[0].get("classname"), cases[0].get("name")) == ("etcd.member-healthy", "n1")
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == "expected reply, got no reply"
    assert "diagnosis: " in (suite.findtext("system-out") or "")


def test_cli_takes_junit_beside_json() -> None:
    args = parser().parse_args(["--json", "--junit", "out.xml"])
    assert args.json and args.junit == "out.xml"


def test_icmp_checksum_and_dns_name_skipping() -> None:
    header = struct.pack("!BBHHH", 8, 0, 0, 1, 1)
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header), 1, 1)
    assert _checksum(packet) == 0  # a correct checksum sums to zero
    name = b"\x05test2\x00"
    assert _skip_name(name + b"rest", 0) == len(name)
    assert _skip_name(b"\xc0\x0c", 0) == 2  # a compression pointer
    assert socket.inet_ntoa(b"\x0a\x00\x00\x03") == "10.0.0.3"


def test_a_dead_daemon_explains_its_closed_serf_port_and_skipped_checks() -> None:
    unreachable = "dockerd on n2 (unix:///x/docker.sock) is unreachable: refused"
    results = [
        bad("docker.network-global", "n2", "reachable daemon", f"error: {unreachable}"),
        bad("underlay.serf-tcp", "n1 -> n2", "TCP 7946 open", "TCP 7946 Connection refused"),
        bad("name-rule", "lab", "reachable", unreachable),
    ]
    assert diagnose(results) == [
        "diagnosis: dockerd on n2 does not answer at unix:///x/docker.sock"
    ]
    refused = [bad("underlay.serf-tcp", "n1 -> n2", "open", "TCP 7946 Connection refused")]
    assert diagnose(refused) == [
        "diagnosis: serf does not listen on n2: TCP 7946 is refused, so n2's dockerd is not in "
        "the overlay's gossip"
    ]


def test_a_name_that_does_not_resolve_carries_the_daemons_log_history() -> None:
    actual = (
        "ping: bad address 'test1' ('test1' does not resolve in test2: Docker's embedded DNS on "
        "docker-node2 has no record of it; its log: added last at 04:26:34, deleted last at "
        "04:27:09, endpoints read from etcd failed last at 04:27:09)"
    )
    results = [
        ok("overlay.ping", "test2 -> test1 by IP (across hosts)", "reply"),
        bad("overlay.ping", "test2 -> test1 by name (across hosts)", "reply", actual),
    ]
    assert diagnose(results) == [
        "diagnosis: name test1 does not resolve in test2: Docker's embedded DNS on docker-node2 "
        "has no record of it; its log: added last at 04:26:34, deleted last at 04:27:09, "
        "endpoints read from etcd failed last at 04:27:09"
    ]
