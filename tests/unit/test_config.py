"""Config validation: every invalid input fails in one line that names the key and the fix."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from overlaylab.config import parse
from overlaylab.errors import ConfigError


def mutate(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    node: Any = out
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return out


def test_seed_stack_parses_to_the_seed_lab(seed_config: dict[str, Any]) -> None:
    cfg = parse(seed_config)
    assert [(h.name, h.address) for h in cfg.hosts] == [
        ("docker-node1", "192.168.205.10"),
        ("docker-node2", "192.168.205.11"),
    ]
    assert cfg.etcd_token == "etcd-cluster"
    assert (cfg.network_name, str(cfg.subnet), cfg.gateway) == ("demo", "10.0.0.0/24", "10.0.0.1")
    assert [(c.name, c.host) for c in cfg.containers] == [
        ("test1", "docker-node1"),
        ("test2", "docker-node2"),
    ]
    assert cfg.initial_cluster() == (
        "docker-node1=http://192.168.205.10:2380,docker-node2=http://192.168.205.11:2380"
    )
    assert cfg.cluster_store(cfg.hosts[1]) == "etcd://192.168.205.11:2379"
    assert cfg.advertise(cfg.hosts[0]) == "192.168.205.10:2375"


def test_two_members_warn_that_etcd_tolerates_no_failure(seed_config: dict[str, Any]) -> None:
    assert any("tolerates no member failure" in w for w in parse(seed_config).warnings)


def test_three_members_do_not_warn(seed_config: dict[str, Any]) -> None:
    seed_config["hosts"].append({"name": "docker-node3", "address": "192.168.205.12"})
    assert parse(seed_config).warnings == ()


def test_host_count_is_config_only(seed_config: dict[str, Any]) -> None:
    seed_config["hosts"] = [
        {"name": f"docker-node{i}", "address": f"192.168.205.{10 + i}"} for i in range(8)
    ]
    cfg = parse(seed_config)
    assert len(cfg.hosts) == 8
    assert len({h.veth(cfg.lab_id) for h in cfg.hosts}) == 8
    assert all(len(h.veth(cfg.lab_id)) <= 15 for h in cfg.hosts)


BAD: list[tuple[str, str, Any, str]] = [
    ("bad CIDR", "network.subnet", "10.0.0.0/33", "network.subnet '10.0.0.0/33' is not a valid"),
    ("host bits in CIDR", "network.subnet", "10.0.0.1/24", "not a valid IPv4 CIDR"),
    ("gateway outside subnet", "network.gateway", "10.0.1.1", "is outside network.subnet"),
    ("overlay overlaps hosts", "network.subnet", "192.168.205.0/25", "overlaps the hosts' segment"),
    ("duplicate host name", "hosts.1.name", "docker-node1", "duplicate host name 'docker-node1'"),
    ("duplicate host address", "hosts.1.address", "192.168.205.10", "duplicate host address"),
    ("host outside segment", "hosts.1.address", "10.9.9.9", "is not a usable address of lab.seg"),
    ("container on unknown host", "containers.1.host", "docker-node9", "unknown host"),
    ("duplicate container", "containers.1.name", "test1", "duplicate container name 'test1'"),
    ("zero hosts", "hosts", [], "hosts is empty"),
    ("bad host name", "hosts.0.name", "Docker_Node1", "is not a valid hostname"),
    ("bad bridge name", "lab.bridge", "a-very-long-bridge-name", "not a valid interface name"),
    ("bridge is a host", "lab.bridgeAddress", "192.168.205.10", "is also a host's address"),
    ("bad port", "etcd.clientPort", 70000, "is not a TCP port"),
    ("same ports", "etcd.peerPort", 2379, "are both 2379"),
    ("bad image source", "image.source", "registry", "must be 'import' or 'pull'"),
    ("unsupported transport", "lab.transport", "winrm", "lab.transport 'winrm' is not supported"),
    ("ssh without a key", "lab.transport", "ssh", "sshPrivateKey is not set: pulumi config set"),
    ("bad ssh port", "ssh.port", 0, "ssh.port 0 is not a TCP port"),
    ("tls not a bool", "etcd.tls", "yes", "etcd.tls must be true or false"),
    ("bad store endpoints", "docker.storeEndpoints", "some", "must be 'own'"),
    ("underlay MTU too small", "lab.mtu", 1279, "lab.mtu 1279 is outside 1280-9000"),
    ("underlay MTU too large", "lab.mtu", 9001, "lab.mtu 9001 is outside 1280-9000"),
    ("underlay MTU not a number", "lab.mtu", "jumbo", "lab.mtu 'jumbo' is not a number"),
    ("overlay MTU above the underlay's", "network.mtu", 1451, "network.mtu 1451 is above what"),
]


@pytest.mark.parametrize(("case", "path", "value", "message"), BAD, ids=[b[0] for b in BAD])
def test_invalid_config_fails_in_one_line_naming_the_problem(
    seed_config: dict[str, Any], case: str, path: str, value: Any, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(mutate(seed_config, path, value), "stacks/Pulumi.local.yaml")
    text = str(info.value)
    assert message in text, f"{case}: {text}"
    assert "\n" not in text
    assert "stacks/Pulumi.local.yaml" in text


def test_ssh_key_must_look_like_a_private_key(seed_config: dict[str, Any]) -> None:
    raw = mutate(seed_config, "lab.transport", "ssh")
    raw["sshPrivateKey"] = "hunter2"
    with pytest.raises(ConfigError, match="does not look like a private key"):
        parse(raw)
    raw["sshPrivateKey"] = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----"
    )
    cfg = parse(raw)
    assert cfg.docker_host(cfg.hosts[0]) == "ssh://root@192.168.205.10:22"
    assert "hunter2" not in repr(cfg) and "PRIVATE" not in repr(cfg)


def test_ha_stack_speaks_tls_and_gives_every_daemon_every_member() -> None:
    from overlaylab.stackconfig import raw_from_file

    cfg = parse(raw_from_file("ha"))
    assert cfg.warnings == ()
    assert cfg.client_url(cfg.hosts[0]) == "https://192.168.206.10:2379"
    assert cfg.peer_url(cfg.hosts[1]) == "https://192.168.206.11:2380"
    assert cfg.pki_dir == "/var/lib/overlaylab/ha/pki"
    assert cfg.cluster_store(cfg.hosts[1]) == (
        "etcd://192.168.206.11:2379,192.168.206.10:2379,192.168.206.12:2379"
    )


def test_overlay_mtu_is_derived_from_the_underlay_by_default(seed_config: dict[str, Any]) -> None:
    cfg = parse(seed_config)
    assert (cfg.underlay_mtu, cfg.mtu, cfg.overlay_mtu) == (1500, None, 1450)
    assert cfg.docker_mtu_option == 1500


def test_jumbo_underlay_gives_a_jumbo_overlay(seed_config: dict[str, Any]) -> None:
    cfg = parse(mutate(seed_config, "lab.mtu", 9000))
    assert (cfg.underlay_mtu, cfg.mtu, cfg.overlay_mtu) == (9000, None, 8950)
    # Docker's overlay driver gives containers its option minus 50 (LAB.md: 8950 showed 8900).
    assert cfg.docker_mtu_option == 9000


@pytest.mark.parametrize(("underlay", "overlay"), [(1500, 1400), (1500, 1450), (9000, 8950)])
def test_explicit_overlay_mtu_is_kept(
    seed_config: dict[str, Any], underlay: int, overlay: int
) -> None:
    raw = mutate(mutate(seed_config, "lab.mtu", underlay), "network.mtu", overlay)
    cfg = parse(raw)
    assert (cfg.underlay_mtu, cfg.mtu, cfg.overlay_mtu) == (underlay, overlay, overlay)
    assert cfg.docker_mtu_option == overlay + 50


@pytest.mark.parametrize("value", [1280, "9000"])
def test_underlay_mtu_range_is_inclusive(seed_config: dict[str, Any], value: Any) -> None:
    assert parse(mutate(seed_config, "lab.mtu", value)).underlay_mtu == int(value)


def test_underlay_mtu_error_names_key_value_range_and_stack(seed_config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        parse(mutate(seed_config, "lab.mtu", 576), "stacks/Pulumi.local.yaml")
    assert str(info.value) == (
        "lab.mtu 576 is outside 1280-9000: set the MTU of the hosts' interfaces on the segment, "
        "e.g. 1500 or 9000 (in stacks/Pulumi.local.yaml)"
    )


def test_overlay_mtu_above_what_the_underlay_carries_is_refused(
    seed_config: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(mutate(seed_config, "network.mtu", 1500), "stacks/Pulumi.local.yaml")
    assert str(info.value) == (
        "network.mtu 1500 is above what the underlay carries: lab.mtu 1500 minus VXLAN's 50 "
        "bytes is 1450; lower network.mtu or raise lab.mtu (in stacks/Pulumi.local.yaml)"
    )
    raw = mutate(mutate(seed_config, "lab.mtu", 9000), "network.mtu", 8951)
    with pytest.raises(ConfigError, match=r"lab\.mtu 9000 minus VXLAN's 50 bytes is 8950;"):
        parse(raw)


def test_a_written_stack_file_reads_back_as_its_config(tmp_path: Path) -> None:
    """What the CLI tests and the interruption loop hand to ``--config-file``."""
    from overlaylab.config.sample import lab_config
    from overlaylab.stackconfig import raw_from_file, write_stack_file

    raw = lab_config(3, lab_id="wsf", segment="192.168.233")
    path = write_stack_file(tmp_path / "Pulumi.wsf.yaml", raw)
    assert path == tmp_path / "Pulumi.wsf.yaml"
    assert json.loads(path.read_text()) == {
        "config": {f"overlay-etcd:{k}": v for k, v in raw.items()}
    }
    assert raw_from_file("wsf", path) == raw
    assert parse(raw_from_file("wsf", path)).lab_id == "wsf"
