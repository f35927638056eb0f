"""What the page alone shows, read from etcd with no lab: ``EtcdClient.status()`` and
``leader_name()`` against a tiny HTTP server on 127.0.0.1 answering as etcd 3.4's v3 JSON
gateway and v2 API do, and ``read_for_page`` (the VNIs and the leader into the facts), which
leaves them unknown, raising nothing, when etcd does not answer as expected."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from overlaylab.errors import EtcdError, EtcdRefused, NetworkRuleError
from overlaylab.etcd import EtcdClient, MemberStatus
from overlaylab.netrule import RouteGuard
from overlaylab.validate import validate
from overlaylab.validate.facts import OVERLAY_NETWORK_PREFIX, Facts
from overlaylab.validate.records import Lab
from overlaylab.validate.run import read_for_page
from tests import picture_samples as samples

NODE1, NODE2 = "12571644217116806144", "3111142119218893231"
#: etcd 3.4.23's answers (their shape as a real member gives them; ids are decimal strings)
STATUS = {
    "header": {"cluster_id": "8584647228689244623", "member_id": NODE1, "raft_term": "2"},
    "version": "3.4.23",
    "leader": NODE2,
    "raftIndex": "4",
}
MEMBERS = {
    "header": {"cluster_id": "8584647228689244623", "member_id": NODE1},
    "members": [
        {"ID": NODE1, "name": "docker-node1", "peerURLs": ["http://192.168.232.10:2380"]},
        {"ID": NODE2, "name": "docker-node2", "peerURLs": ["http://192.168.232.11:2380"]},
    ],
}
OVERLAY_KEY = OVERLAY_NETWORK_PREFIX + samples.NET_ID
OVERLAY_VALUE = {
    "mtu": 0,
    "secure": False,
    "subnets": [{"SubnetIP": "10.0.0.0/24", "GwIP": "10.0.0.1/24", "Vni": 256}],
}


def v2(key: str, value: Any) -> dict[str, Any]:
    return {"action": "get", "node": {"key": key, "value": json.dumps(value), "modifiedIndex": 9}}


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakeEtcd

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        self.server.seen.append((self.command, path, body, self.headers.get("Content-Type")))
        code, answer = self.server.answers.get(
            (self.command, path), (404, {"errorCode": 100, "message": "Key not found"})
        )
        raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


class FakeEtcd(http.server.ThreadingHTTPServer):
    """One etcd member on 127.0.0.1: fixed answers by (method, path), every request kept."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str, bytes, str | None]] = []
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {
            ("GET", "/health"): (200, {"health": "true"}),
            ("POST", "/v3/maintenance/status"): (200, STATUS),
            ("POST", "/v3/cluster/member/list"): (200, MEMBERS),
            ("GET", "/v2/keys" + OVERLAY_KEY): (200, v2(OVERLAY_KEY, OVERLAY_VALUE)),
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def paths(self) -> list[str]:
        return [f"{m} {p}" for m, p, _, _ in self.seen]


@pytest.fixture
def etcd() -> Iterator[FakeEtcd]:
    srv = FakeEtcd()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_status_is_the_members_id_and_its_leaders(etcd: FakeEtcd) -> None:
    got = EtcdClient(etcd.url, None).status()
    assert got == MemberStatus(member_id=NODE1, leader=NODE2, version="3.4.23")
    assert etcd.seen == [("POST", "/v3/maintenance/status", b"{}", "application/json")]


def test_the_leaders_name_comes_from_the_member_list(etcd: FakeEtcd) -> None:
    assert EtcdClient(etcd.url, None).leader_name() == "docker-node2"
    assert etcd.paths() == ["POST /v3/maintenance/status", "POST /v3/cluster/member/list"]


@pytest.mark.parametrize(
    "status",
    [
        {**STATUS, "leader": "0"},  # no leader (an election)
        {k: v for k, v in STATUS.items() if k != "leader"},  # the gateway omits a zero
        {**STATUS, "leader": "42"},  # a leader not in the list
    ],
)
def test_no_leader_or_an_unlisted_one_is_none(etcd: FakeEtcd, status: dict[str, Any]) -> None:
    etcd.answers["POST", "/v3/maintenance/status"] = (200, status)
    assert EtcdClient(etcd.url, None).leader_name() is None


def test_a_wrong_answer_a_stopped_member_and_the_route_rule(etcd: FakeEtcd) -> None:
    etcd.answers["POST", "/v3/maintenance/status"] = (503, {"error": "etcdserver: no leader"})
    with pytest.raises(EtcdError, match="answered maintenance/status with 503"):
        EtcdClient(etcd.url, None).status()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(EtcdRefused):
        EtcdClient(closed, None).status()

    class Refusing(RouteGuard):
        def check(self, address: str) -> None:
            raise NetworkRuleError(f"refusing to contact {address}")

    before = len(etcd.seen)
    with pytest.raises(NetworkRuleError):
        EtcdClient(etcd.url, Refusing("ovbr-test")).status()
    assert len(etcd.seen) == before  # checked first: nothing sent


def _lab(etcd: FakeEtcd, net_id: str | None = samples.NET_ID) -> Lab:
    """A lab whose members are the fake; the checks found the overlay's id (or did not)."""
    lab = Lab(samples.spec(2))
    lab.etcd = {name: EtcdClient(etcd.url, None) for name in lab.etcd}
    if net_id:
        lab.facts.network_id("docker-node1", net_id)
    return lab


def test_read_for_page_records_the_vni_and_the_leader(etcd: FakeEtcd) -> None:
    lab = _lab(etcd)
    try:
        read_for_page(lab)
    finally:
        lab.close()
    assert (lab.facts.vnis, lab.facts.leader) == ([256], "docker-node2")
    # one healthy member, each read once: the driver's key, the status, the member list
    assert etcd.paths() == [
        "GET /health",
        f"GET /v2/keys{OVERLAY_KEY}",
        "POST /v3/maintenance/status",
        "POST /v3/cluster/member/list",
    ]


def test_a_network_of_two_subnets_has_two_vnis(etcd: FakeEtcd) -> None:
    two = {**OVERLAY_VALUE, "subnets": [{"SubnetIP": "10.0.0.0/24", "Vni": 256}, {"Vni": 257}]}
    etcd.answers["GET", "/v2/keys" + OVERLAY_KEY] = (200, v2(OVERLAY_KEY, two))
    lab = _lab(etcd)
    try:
        read_for_page(lab)
    finally:
        lab.close()
    assert lab.facts.vnis == [256, 257]


@pytest.mark.parametrize(
    "broken",
    [
        {("GET", "/v2/keys" + OVERLAY_KEY): (404, {"errorCode": 100})},  # no driver key
        {("GET", "/v2/keys" + OVERLAY_KEY): (200, v2(OVERLAY_KEY, {"subnets": [{}]}))},
        {("GET", "/v2/keys" + OVERLAY_KEY): (200, b"not json")},
        {("POST", "/v3/maintenance/status"): (404, b"404 page not found")},  # no gateway
        {("POST", "/v3/cluster/member/list"): (500, {"error": "x"})},
        {("GET", "/health"): (503, {"health": "false"})},  # no healthy member
    ],
)
def test_what_etcd_does_not_answer_stays_unknown(
    etcd: FakeEtcd, broken: dict[tuple[str, str], tuple[int, Any]]
) -> None:
    etcd.answers.update(broken)
    lab = _lab(etcd)
    try:
        read_for_page(lab)  # raises nothing
    finally:
        lab.close()
    key_ok = not any("/v2/keys" in p or p == "/health" for _, p in broken)
    leader_ok = not any(p.startswith("/v3/") or p == "/health" for _, p in broken)
    assert lab.facts.vnis == ([256] if key_ok else [])
    assert lab.facts.leader == ("docker-node2" if leader_ok else None)


def test_no_network_id_no_vni_read(etcd: FakeEtcd) -> None:
    lab = _lab(etcd, net_id=None)
    try:
        read_for_page(lab)
    finally:
        lab.close()
    assert lab.facts.vnis == [] and lab.facts.leader == "docker-node2"
    assert not any("/v2/keys" in p for p in etcd.paths())


def test_validate_reads_the_leader_once_and_only_for_a_picture(etcd: FakeEtcd) -> None:
    """The real validator with the fake as both members (the daemons are not there): the
    leader is in the facts, read once; no record is about it; without facts nothing is read."""
    sp = samples.spec(2, lab_id="absent", segment="192.168.218")
    for h in sp["hosts"]:
        h["etcdEndpoint"] = etcd.url
    facts = Facts()
    results = validate(sp, timeout=0, facts=facts)
    assert facts.leader == "docker-node2" and facts.vnis == []  # no daemon, no network id
    assert etcd.paths().count("POST /v3/maintenance/status") == 1
    assert not [r for r in results if "leader" in r.line() or "maintenance" in r.line()]
    etcd.seen.clear()
    again = validate(sp, timeout=0)
    assert [(r.check, r.subject, r.ok) for r in again] == [
        (r.check, r.subject, r.ok) for r in results
    ]
    assert "POST /v3/maintenance/status" not in etcd.paths()
