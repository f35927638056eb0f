"""The program's graph under Pulumi mocks: no root, no network, nothing touched on the machine."""

from __future__ import annotations

import io
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.output import Unknown

from overlaylab import spec as out
from overlaylab.membership import Bootstrap
from standin import COMMAND, CONTAINER, DOCKER_PROVIDER, NETWORK, REMOTE_IMAGE
from tests.conftest import Graph

NODE1, NODE2 = "docker-node1", "docker-node2"


def component_type(g: Graph, urn: str) -> str:
    return next(r.type for r in g.records if r.urn == urn)


def test_seed_stack_declares_the_whole_lab(record_graph: Any, seed_config: dict[str, Any]) -> None:
    g: Graph = record_graph(seed_config)
    assert g.run.error is None, g.run.error
    counts = {
        t: len(g.of_type(t)) for t in (COMMAND, DOCKER_PROVIDER, NETWORK, REMOTE_IMAGE, CONTAINER)
    }
    # preflight, bridge, 2 namespaces, identity, 2 etcd members, health gate, 2 dockerd, 2 serf
    # checks, 2 imports, 2 names gates, validator; a provider per daemon, and the network's own
    assert counts == {COMMAND: 17, DOCKER_PROVIDER: 3, NETWORK: 1, REMOTE_IMAGE: 2, CONTAINER: 2}
    components = sorted({r.type for r in g.records if not r.custom})
    assert components == [
        "overlay-etcd:containers:TestContainers",
        "overlay-etcd:docker:DockerEngine",
        "overlay-etcd:docker:SerfMesh",
        "overlay-etcd:etcd:EtcdCluster",
        "overlay-etcd:hosts:LocalHosts",
        "overlay-etcd:network:OverlayNetwork",
        "overlay-etcd:validation:Validation",
    ]


def test_every_resource_belongs_to_its_component(
    record_graph: Any, seed_config: dict[str, Any]
) -> None:
    g: Graph = record_graph(seed_config)
    expected_parent = {
        "lab-preflight": "overlay-etcd:hosts:LocalHosts",
        f"lab-{NODE1}": "overlay-etcd:hosts:LocalHosts",
        f"etcd-{NODE2}": "overlay-etcd:etcd:EtcdCluster",
        "etcd-healthy": "overlay-etcd:etcd:EtcdCluster",
        f"docker-{NODE1}-dockerd": "overlay-etcd:docker:DockerEngine",
        f"docker-{NODE2}-docker": "overlay-etcd:docker:DockerEngine",
        "overlay-network": "overlay-etcd:network:OverlayNetwork",
        "test-test1": "overlay-etcd:containers:TestContainers",
        "validate-run": "overlay-etcd:validation:Validation",
    }
    for name, typ in expected_parent.items():
        rec = g.named(name)
        assert component_type(g, rec.parent) == typ, f"{rec.urn} has parent {rec.parent}"


def _etcd_started_by(
    inputs: dict[str, Any], host_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The etcd command line a member's create command starts on its host: the command is
    parsed and dispatched by overlaylab.hostops as the engine's run of it would be, with the
    machine left out (no other member answers, so it founds the cluster; nothing is spawned)."""
    from overlaylab import hostops
    from overlaylab.hosts import member, netns_daemons

    argv = shlex.split(inputs["create"])
    assert argv[1:4] == ["-m", "overlaylab.hostops", "etcd-up"], argv
    args = hostops.parser().parse_args(argv[3:])
    args.host_dir = str(host_dir)
    started: list[list[str]] = []

    class Spawned(Exception):
        pass

    def spawn(cmd: list[str], logfile: Path) -> int:
        started.append(cmd)
        raise Spawned

    def founding(**kw: Any) -> Bootstrap:
        return Bootstrap("new", inputs["stdin"], "founding the cluster")

    monkeypatch.setattr(netns_daemons, "spawn", spawn)
    monkeypatch.setattr(member.membership, "bootstrap", founding)
    monkeypatch.setattr(sys, "stdin", io.StringIO(inputs["stdin"]))
    with pytest.raises(Spawned):
        hostops.dispatch(args)
    return started[0]


def test_etcd_members_are_bootstrapped_statically_with_v2(
    record_graph: Any, seed_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g: Graph = record_graph(seed_config)
    from standin import RealEngine  # noqa: F401 - the inputs below are what it would run

    founding = "docker-node1=http://192.168.205.10:2380,docker-node2=http://192.168.205.11:2380"
    for node, other, ip in (
        (NODE1, "192.168.205.11", "192.168.205.10"),
        (NODE2, "192.168.205.10", "192.168.205.11"),
    ):
        inputs = _inputs(g, f"etcd-{node}")
        create = inputs["create"]
        # The founding membership goes in on stdin, and later changes of it are ignored, so
        # a host added or removed later leaves this member unchanged.
        assert inputs["stdin"] == founding and "--initial-cluster-stdin" in create
        assert other not in create, f"etcd-{node}'s create names another host: {create}"
        assert g.named(f"etcd-{node}").options["ignoreChanges"] == ["stdin"]
        assert "--token etcd-cluster" in create
        assert f"--address {ip}" in create
        assert f"--host-dir /var/lib/overlaylab/seed/{node}" in create
        assert "etcd-down" in _inputs(g, f"etcd-{node}")["delete"]
        assert g.waits_for(f"etcd-{node}", "etcd-identity")  # a new token is refused first
        # With v2 (Docker's libkv writes through it), and statically: the founding membership.
        etcd = _etcd_started_by(inputs, tmp_path / node, monkeypatch)
        assert "--enable-v2=true" in etcd, etcd
        at = {flag: i for i, flag in enumerate(etcd)}
        assert etcd[at["--initial-cluster"] + 1] == founding
        assert etcd[at["--initial-cluster-state"] + 1] == "new"
        assert etcd[at["--initial-cluster-token"] + 1] == "etcd-cluster"
        assert etcd[at["--name"] + 1] == node


def test_dockerd_uses_etcd_store_and_no_tcp_listener(
    record_graph: Any, seed_config: dict[str, Any]
) -> None:
    g: Graph = record_graph(seed_config)
    for node, ip in ((NODE1, "192.168.205.10"), (NODE2, "192.168.205.11")):
        create = _inputs(g, f"docker-{node}-dockerd")["create"]
        assert f"--cluster-store etcd://{ip}:2379" in create
        assert f"--advertise {ip}:2375" in create
        provider = _inputs(g, f"docker-{node}-docker")
        assert provider["host"] == f"unix:///var/lib/overlaylab/seed/{node}/docker.sock"
    for r in g.of_type(COMMAND):
        assert "tcp://" not in _inputs(g, r.name)["create"], r.urn


def test_network_waits_for_every_daemon_in_the_store(
    record_graph: Any, seed_config: dict[str, Any]
) -> None:
    g: Graph = record_graph(seed_config)
    for node in (NODE1, NODE2):
        assert g.waits_for("overlay-network", f"docker-{node}-dockerd"), node
        # and for every daemon's serf to know every host (overlaylab/hosts/serf.py)
        assert g.waits_for("overlay-network", f"serf-{node}"), node
        serf = _inputs(g, f"serf-{node}")["create"]
        assert "--peer 192.168.205.10 --peer 192.168.205.11" in serf
        for other in (NODE1, NODE2):
            assert g.waits_for(f"serf-{node}", f"docker-{other}-dockerd")
        assert g.waits_for(f"docker-{node}-dockerd", "etcd-healthy"), node
    assert g.waits_for("etcd-healthy", f"etcd-{NODE1}") and g.waits_for(
        "etcd-healthy", f"etcd-{NODE2}"
    )
    net = g.named("overlay-network")
    # Its own provider, on the first host's daemon: that host may leave the stack without
    # the network being replaced.
    assert net.provider.rsplit("::", 1)[0] == g.named("overlay-docker").urn
    assert _inputs(g, "overlay-docker")["host"] == _inputs(g, f"docker-{NODE1}-docker")["host"]
    inputs = _inputs(g, "overlay-network")
    assert inputs["driver"] == "overlay"
    assert inputs["name"] == "demo"
    assert inputs["ipamConfigs"] == [{"subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}]


def test_hosts_are_provisioned_in_parallel(record_graph: Any, seed_config: dict[str, Any]) -> None:
    g: Graph = record_graph(seed_config)
    for a, b in ((f"etcd-{NODE1}", f"etcd-{NODE2}"), (f"lab-{NODE1}", f"lab-{NODE2}")):
        assert not g.waits_for(a, b) and not g.waits_for(b, a), f"{a} and {b} are serialised"


def test_daemons_start_one_after_another_and_stop_together(
    record_graph: Any, seed_config: dict[str, Any]
) -> None:
    """Started together, Docker 20.10's daemons can split serf into groups that never merge
    (each joins one neighbour, once): each daemon's docker-up gets, on stdin, the daemons that
    start before it, and waits for the last of them. No dependency between daemons, so a
    destroy stops them all at once; stdin is ignored later, so adding a host changes none."""
    seed_config["hosts"].append({"name": "docker-node3", "address": "192.168.205.12"})
    g: Graph = record_graph(seed_config)
    daemons = [f"docker-{n}-dockerd" for n in (NODE1, NODE2, "docker-node3")]
    for a in daemons:
        for b in daemons:
            assert a == b or not g.waits_for(a, b), f"{a} depends on {b}"
    order = [json.loads(g.named(d).inputs["stdin"])["start_after"] for d in daemons]
    assert order == [
        [],
        [[NODE1, "192.168.205.10:2375"]],
        [[NODE1, "192.168.205.10:2375"], [NODE2, "192.168.205.11:2375"]],
    ]
    for d in daemons:
        assert "stdin" in g.named(d).options.get("ignoreChanges", []), d


def test_containers_wait_for_network_and_their_hosts_image(
    record_graph: Any, seed_config: dict[str, Any]
) -> None:
    g: Graph = record_graph(seed_config)
    for name, node in (("test1", NODE1), ("test2", NODE2)):
        c = g.named(f"test-{name}")
        assert g.waits_for(c.name, "overlay-network")
        assert g.waits_for(c.name, f"test-{node}-image")
        assert g.waits_for(f"test-{node}-image", f"test-{node}-import")
        assert c.provider.rsplit("::", 1)[0] == g.named(f"docker-{node}-docker").urn
        inputs = _inputs(g, c.name)
        assert inputs["name"] == name
        assert inputs["networksAdvanced"] == [{"name": "demo"}]
        assert inputs["command"] == ["sh", "-c", "while true; do sleep 3600; done"]
        assert inputs["image"] == f"sha256:test-{node}-image"


def test_validation_runs_last(record_graph: Any, seed_config: dict[str, Any]) -> None:
    g: Graph = record_graph(seed_config)
    validate = g.named("validate-run")
    for r in g.resources:
        if r is not validate:
            assert (
                r.urn in g.upstream(validate) or r.type == DOCKER_PROVIDER or "import" in r.name
            ), f"validation does not wait for {r.urn}"
            assert validate.urn not in g.upstream(r), f"{r.urn} waits for validation"
    assert "-m overlaylab.validate --spec-json" in _inputs(g, "validate-run")["create"]


def test_outputs_use_the_shared_names(record_graph: Any, seed_config: dict[str, Any]) -> None:
    g: Graph = record_graph(seed_config)
    outs = g.run.outputs or {}
    assert set(outs) == {
        out.OUT_ETCD_ENDPOINTS,
        out.OUT_DOCKER_HOSTS,
        out.OUT_NETWORK_ID,
        out.OUT_CONTAINERS,
        out.OUT_VALIDATION_SPEC,
        out.OUT_VALIDATION_REPORT,
    }
    assert outs[out.OUT_ETCD_ENDPOINTS] == [
        "http://192.168.205.10:2379",
        "http://192.168.205.11:2379",
    ]
    assert outs[out.OUT_CONTAINERS]["test2"] == {"host": NODE2, "id": "test-test2-id"}
    assert outs[out.OUT_NETWORK_ID] == "overlay-network-id"
    assert outs[out.OUT_VALIDATION_REPORT] == "validate-run done"
    assert [h["advertise"] for h in outs[out.OUT_VALIDATION_SPEC]["hosts"]] == [
        "192.168.205.10:2375",
        "192.168.205.11:2375",
    ]


def test_preview_leaves_computed_outputs_unknown(
    record_graph: Any, seed_config: dict[str, Any]
) -> None:
    g: Graph = record_graph(seed_config, preview=True)
    assert g.run.error is None, g.run.error
    assert len(g.resources) == 25
    outs = g.run.outputs or {}
    assert isinstance(outs[out.OUT_NETWORK_ID], Unknown)
    assert isinstance(outs[out.OUT_VALIDATION_REPORT], Unknown)
    assert outs[out.OUT_ETCD_ENDPOINTS] == [
        "http://192.168.205.10:2379",
        "http://192.168.205.11:2379",
    ]


def test_four_hosts_is_a_config_change(record_graph: Any, seed_config: dict[str, Any]) -> None:
    seed_config["hosts"] = [
        {"name": f"docker-node{i}", "address": f"192.168.205.{9 + i}"} for i in range(1, 5)
    ]
    seed_config["containers"] = [
        {"name": f"test{i}", "host": f"docker-node{i}"} for i in range(1, 5)
    ]
    g: Graph = record_graph(seed_config)
    assert g.run.error is None
    assert len([r for r in g.of_type(COMMAND) if r.name.startswith("etcd-docker-node")]) == 4
    assert len(g.of_type(DOCKER_PROVIDER)) == 5  # four daemons and the network's
    assert len(g.of_type(NETWORK)) == 1
    assert len(g.of_type(CONTAINER)) == 4
    for i in range(1, 5):
        assert g.waits_for("overlay-network", f"docker-docker-node{i}-dockerd")


def test_mtu_option_reaches_the_network(record_graph: Any, seed_config: dict[str, Any]) -> None:
    seed_config["lab"]["mtu"] = 9000  # an overlay MTU of 8950 needs a jumbo underlay
    seed_config["network"]["mtu"] = 8950
    g: Graph = record_graph(seed_config)
    # Docker's overlay option is the VXLAN packets' MTU; the containers get 50 less: 8950.
    assert _inputs(g, "overlay-network")["options"] == {"com.docker.network.driver.mtu": "9000"}
    # the underlay itself: the bridge and every veth at lab.mtu
    assert _inputs(g, "lab-bridge")["create"].endswith("--mtu 9000")
    assert _inputs(g, f"lab-{NODE1}")["create"].endswith("--mtu 9000")


def test_the_default_mtu_changes_no_command(record_graph: Any, seed_config: dict[str, Any]) -> None:
    """A running stack written before lab.mtu existed plans no change for it."""
    g: Graph = record_graph(seed_config)
    assert (
        "options" not in _inputs(g, "overlay-network")
        or not _inputs(g, "overlay-network")["options"]
    )
    assert "--mtu" not in _inputs(g, "lab-bridge")["create"]
    assert "--mtu" not in _inputs(g, f"lab-{NODE1}")["create"]


def test_invalid_config_registers_nothing(record_graph: Any, seed_config: dict[str, Any]) -> None:
    seed_config["network"]["gateway"] = "10.0.1.1"
    g: Graph = record_graph(seed_config)
    assert isinstance(g.run.error, pulumi.RunError)
    assert str(g.run.error).startswith("invalid config: network.gateway 10.0.1.1 is outside")
    assert g.resources == []


def _inputs(g: Graph, name: str) -> dict[str, Any]:
    return g.run.engine.inputs[g.named(name).urn]


def test_host_state_commands_are_replaced_delete_first(
    record_graph: Any, seed_config: dict[str, Any]
) -> None:
    """A replacement created first would have its own state torn down by the old delete."""
    g: Graph = record_graph(seed_config)
    with_delete = [r for r in g.of_type(COMMAND) if _inputs(g, r.name).get("delete")]
    assert len(with_delete) == 9  # bridge, 2 namespaces, 2 etcd, 2 dockerd, 2 image imports
    for r in with_delete:
        assert r.delete_before_replace, r.urn
    assert not g.named("validate-run").delete_before_replace


def test_ha_stack_makes_certificates_before_any_host(record_graph: Any) -> None:
    from overlaylab.stackconfig import raw_from_file

    g: Graph = record_graph(raw_from_file("ha"))
    assert g.run.error is None, g.run.error
    for i in (1, 2, 3):
        assert g.waits_for(f"lab-docker-node{i}", "lab-pki")
        create = _inputs(g, f"etcd-docker-node{i}")["create"]
        assert "--tls-dir /var/lib/overlaylab/ha/pki" in create
        assert "https://192.168.206.10:2380" in _inputs(g, f"etcd-docker-node{i}")["stdin"]
    assert "--tls-dir /var/lib/overlaylab/ha/pki" in _inputs(g, "etcd-healthy")["create"]
    assert "--endpoint https://192.168.206.12:2379" in _inputs(g, "etcd-healthy")["create"]
    assert "pki-down" in _inputs(g, "lab-pki")["delete"]
