"""The SSH stack's graph under mocks: secrets stay secret, nothing changes before preflight."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pulumi.runtime import rpc

from overlaylab import spec as out
from overlaylab.stackconfig import raw_from_file
from standin import COPY_TO_REMOTE, DOCKER_PROVIDER, REMOTE_COMMAND
from tests.conftest import Graph

KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "c2VjcmV0LWtleS1tYXRlcmlhbA==\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
NODES = ("docker-node1", "docker-node2")


@pytest.fixture
def lab_graph(record_graph: Any) -> Graph:
    g: Graph = record_graph(copy.deepcopy(raw_from_file("lab")), secrets={"sshPrivateKey": KEY})
    assert g.run.error is None, g.run.error
    return g


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def without_secrets(value: Any) -> Any:
    if is_secret(value):
        return "<secret>"
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def test_the_private_key_is_only_ever_a_secret(lab_graph: Graph) -> None:
    g = lab_graph
    remote = [r for r in g.resources if r.type in (REMOTE_COMMAND, COPY_TO_REMOTE)]
    # per host: copy, lib, preflight, etcd, dockerd, serf check, image import, names gate; and
    # the health gate on host 1
    assert len(remote) == 2 * 8 + 1
    for r in remote:
        conn = g.run.engine.inputs[r.urn]["connection"]
        assert is_secret(conn) or is_secret(conn.get("privateKey")), f"{r.urn}: key not secret"
    identity = g.run.engine.inputs[g.named("lab-identity").urn]["environment"]
    assert is_secret(identity) or is_secret(identity["OVERLAYLAB_SSH_KEY"])
    secret_free = json.dumps(without_secrets(g.run.engine.inputs), default=str)
    assert "c2VjcmV0LWtleS1tYXRlcmlhbA" not in secret_free
    assert "c2VjcmV0LWtleS1tYXRlcmlhbA" not in json.dumps(g.run.outputs, default=str)


def test_nothing_changes_on_any_host_before_every_preflight_passed(lab_graph: Graph) -> None:
    g = lab_graph
    for h in NODES:
        assert g.waits_for(f"lab-{h}-lib", f"lab-{h}-copy")
        assert g.waits_for(f"lab-{h}-preflight", f"lab-{h}-lib")
        assert g.waits_for("lab-unique", f"lab-{h}-preflight")
        assert g.waits_for(f"etcd-{h}", "lab-unique")
    create = g.run.engine.inputs[g.named("lab-unique").urn]["create"]
    assert (
        "hosts-unique 'lab-docker-node1-preflight done' 'lab-docker-node2-preflight done'" in create
    )


def test_host_steps_run_on_their_host_with_systemd(lab_graph: Graph) -> None:
    g = lab_graph
    for h, ip in zip(NODES, ("192.168.205.10", "192.168.205.11"), strict=True):
        for name in (f"etcd-{h}", f"docker-{h}-dockerd", f"test-{h}-import"):
            r = g.named(name)
            assert r.type == REMOTE_COMMAND, name
            inputs = g.run.engine.inputs[r.urn]
            conn = inputs["connection"]
            conn = conn["value"] if is_secret(conn) else conn
            assert (conn["host"], conn["user"]) == (ip, "root")
            assert inputs["create"].startswith("PYTHONPATH=/usr/local/lib/overlaylab python3 -m")
            assert "--systemd" in inputs["create"] and "--systemd" in inputs["delete"]
        # every later step on a host waits for the package, so the package is removed last
        for name in (f"etcd-{h}", f"docker-{h}-dockerd", f"test-{h}-import"):
            assert g.waits_for(name, f"lab-{h}-lib"), name


def test_docker_is_reached_over_ssh_with_no_tcp_listener(lab_graph: Graph) -> None:
    g = lab_graph
    for h, ip in zip(NODES, ("192.168.205.10", "192.168.205.11"), strict=True):
        p = g.run.engine.inputs[g.named(f"docker-{h}-docker").urn]
        assert p["host"] == f"ssh://root@{ip}:22"
        assert json.loads(p["sshOpts"])[:2] == ["-i", "~/.overlaylab/lab/id_ssh"]
        assert g.waits_for(f"docker-{h}-docker", "lab-identity")
        create = g.run.engine.inputs[g.named(f"docker-{h}-dockerd").urn]["create"]
        assert f"--cluster-store etcd://{ip}:2379" in create and "tcp://" not in create
    assert len(g.of_type(DOCKER_PROVIDER)) == 3  # two daemons and the network's
    net = g.run.engine.inputs[g.named("overlay-docker").urn]
    assert net["host"] == "ssh://root@192.168.205.10:22"
    assert g.waits_for("overlay-docker", "lab-identity")


def test_health_gate_runs_on_the_first_host(lab_graph: Graph) -> None:
    r = lab_graph.named("etcd-healthy")
    assert r.type == REMOTE_COMMAND
    assert "--bridge" not in lab_graph.run.engine.inputs[r.urn]["create"]


def test_validation_spec_reaches_daemons_over_ssh(lab_graph: Graph) -> None:
    spec = (lab_graph.run.outputs or {})[out.OUT_VALIDATION_SPEC]
    assert [h["dockerHost"] for h in spec["hosts"]] == [
        "ssh://root@192.168.205.10:22",
        "ssh://root@192.168.205.11:22",
    ]
    assert spec["lab"]["sshOpts"][:2] == ["-i", "~/.overlaylab/lab/id_ssh"]
    assert spec["lab"]["bridge"] is None


def test_three_host_example_stack(record_graph: Any) -> None:
    g: Graph = record_graph(raw_from_file("lab3"), secrets={"sshPrivateKey": KEY})
    assert g.run.error is None, g.run.error
    assert len([r for r in g.resources if r.type == COPY_TO_REMOTE]) == 3


def test_ssh_stack_without_its_key_creates_nothing(record_graph: Any) -> None:
    g: Graph = record_graph(raw_from_file("lab"))
    assert "sshPrivateKey is not set" in str(g.run.error)
    assert g.resources == []


def test_remote_host_state_is_replaced_delete_first_but_the_package_link_create_first(
    lab_graph: Graph,
) -> None:
    """Host state exists once per host: replaced delete-first. The package is one directory per
    version: its link is replaced create-first, so the old version's delete (its own
    directory only) runs after the new one is linked and checked."""
    seen = set()
    for r in lab_graph.resources:
        if r.type == REMOTE_COMMAND and lab_graph.run.engine.inputs[r.urn].get("delete"):
            is_lib = r.name.endswith("-lib")
            seen.add(is_lib)
            assert r.delete_before_replace is not is_lib, r.urn
    assert seen == {True, False}


def test_tls_over_ssh_installs_certificates_before_etcd(record_graph: Any) -> None:
    raw = copy.deepcopy(raw_from_file("lab"))
    raw["etcd"]["tls"] = True
    g: Graph = record_graph(raw, secrets={"sshPrivateKey": KEY})
    assert g.run.error is None, g.run.error
    for h in NODES:
        install = g.named(f"lab-{h}-pki")
        assert install.type == REMOTE_COMMAND
        assert g.waits_for(f"lab-{h}-pki", "lab-unique")
        assert g.waits_for(f"lab-{h}-pki", f"lab-{h}-pki-bundle")
        assert g.waits_for(f"lab-{h}-pki-bundle", "lab-pki")
        assert g.waits_for(f"etcd-{h}", f"lab-{h}-pki")
        inputs = g.run.engine.inputs[install.urn]
        assert inputs["stdin"] == f"lab-{h}-pki-bundle done"  # the bundle's stdout
        create = g.run.engine.inputs[g.named(f"etcd-{h}").urn]["create"]
        assert "--systemd --tls-dir /etc/overlaylab/pki" in create
        assert (
            "https://192.168.205.10:2380" in g.run.engine.inputs[g.named(f"etcd-{h}").urn]["stdin"]
        )
    pki = g.run.engine.inputs[g.named("lab-pki").urn]
    assert "pki-up --dir '~/.overlaylab/lab/pki'" in pki["create"]
    spec = (g.run.outputs or {})[out.OUT_VALIDATION_SPEC]
    assert spec["lab"]["tlsDir"] == "~/.overlaylab/lab/pki"
