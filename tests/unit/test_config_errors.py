"""Every one-line config error, whole: the key, the value, how to fix it, the stack file; and
the program registers nothing before it (the config is parsed before any resource).

tests/unit/test_config.py checks other errors by a part of their text; each message here is
compared in full, through the program as the engine runs it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pulumi
import pytest

from overlaylab import stackconfig
from overlaylab.config.model import KEYS
from overlaylab.errors import ConfigError
from tests.conftest import Graph
from tests.unit.test_config import mutate

WHERE = "(in stacks/Pulumi.local.yaml)"
LAB_KEYS = "id, transport, segment, bridge, bridgeAddress, stateDir, mtu"
LONG_DIR = "/var/lib/" + "x" * 32  # 41 characters

#: (case, key path, value, the whole message without its stack file)
ERRORS: list[tuple[str, str, Any, str]] = [
    (
        "lab.id invalid",
        "lab.id",
        "Seed_Lab",
        "lab.id 'Seed_Lab' is invalid: use 1-16 lowercase letters, digits or '-'",
    ),
    (
        "lab.id too long",
        "lab.id",
        "a" * 17,
        f"lab.id '{'a' * 17}' is invalid: use 1-16 lowercase letters, digits or '-'",
    ),
    (
        "bridgeAddress outside the segment",
        "lab.bridgeAddress",
        "10.1.1.1",
        "lab.bridgeAddress 10.1.1.1 is outside lab.segment 192.168.205.0/24: the lab's bridge "
        "needs an address in the hosts' segment",
    ),
    (
        "bridgeAddress not an address",
        "lab.bridgeAddress",
        "bridge",
        "lab.bridgeAddress 'bridge' is not a valid IPv4 address: write it like 192.168.205.10",
    ),
    (
        "stateDir relative",
        "lab.stateDir",
        "var/lib/overlaylab",
        "lab.stateDir 'var/lib/overlaylab' must be an absolute path of at most 40 characters "
        "(sockets below it have a 108-byte limit)",
    ),
    (
        "stateDir too long",
        "lab.stateDir",
        LONG_DIR,
        f"lab.stateDir '{LONG_DIR}' must be an absolute path of at most 40 characters "
        "(sockets below it have a 108-byte limit)",
    ),
    ("ssh.user invalid", "ssh.user", "Root User", "ssh.user 'Root User' is not a valid user name"),
    (
        "network.name invalid",
        "network.name",
        "-demo",
        "network.name '-demo' is not a valid Docker network name",
    ),
    (
        "subnet too small",
        "network.subnet",
        "10.0.0.0/30",
        "network.subnet 10.0.0.0/30 is too small for a gateway and containers: use /29 or larger",
    ),
    (
        "network.mtu below the range",
        "network.mtu",
        575,
        "network.mtu 575 must be between 576 and 9000",
    ),
    (
        "network.mtu above the range",
        "network.mtu",
        9001,
        "network.mtu 9001 must be between 576 and 9000",
    ),
    ("network.mtu not a number", "network.mtu", "big", "network.mtu 'big' is not a number"),
    (
        "container name invalid",
        "containers.0.name",
        "test 1",
        "containers[0].name 'test 1' is not a valid name",
    ),
    # (a section set to a bare string never gets here: Pulumi's Config.get_object refuses it)
    ("a section not a mapping", "lab", ["local"], "lab must be a mapping, got list"),
    ("ssh not a mapping", "ssh", 22, "ssh must be a mapping, got int"),
    ("a host not a mapping", "hosts.1", "docker-node2", "hosts[1] must be a mapping, got str"),
    ("a container not a mapping", "containers.0", 7, "containers[0] must be a mapping, got int"),
    ("segment IPv6", "lab.segment", "fd00::/64", "lab.segment 'fd00::/64' must be IPv4"),
    ("subnet IPv6", "network.subnet", "fd00:1::/64", "network.subnet 'fd00:1::/64' must be IPv4"),
    (
        "host address IPv6",
        "hosts.0.address",
        "fd00::10",
        "hosts[0].address 'fd00::10' must be IPv4",
    ),
    (
        "host address not an address",
        "hosts.0.address",
        "node1",
        "hosts[0].address 'node1' is not a valid IPv4 address: write it like 192.168.205.10",
    ),
    (
        "unknown lab key, close to one",
        "lab.segmnt",
        "192.168.205.0/24",
        f"lab.segmnt is not a setting (did you mean lab.segment?): use one of {LAB_KEYS}",
    ),
    (
        "unknown lab key, close to none",
        "lab.colour",
        "blue",
        f"lab.colour is not a setting: use one of {LAB_KEYS}",
    ),
    (
        "unknown ssh key",
        "ssh.usr",
        "root",
        "ssh.usr is not a setting (did you mean ssh.user?): use one of user, port, identityFile",
    ),
    (
        "unknown host key",
        "hosts.0.adress",
        "192.168.205.10",
        "hosts[0].adress is not a setting (did you mean hosts[0].address?): use one of name, "
        "address",
    ),
    (
        "unknown etcd key",
        "etcd.clientport",
        2379,
        "etcd.clientport is not a setting (did you mean etcd.clientPort?): use one of "
        "clusterToken, clientPort, peerPort, tls, generation, heartbeatMs, electionMs",
    ),
    (
        "etcd heartbeat without its election timeout",
        "etcd.heartbeatMs",
        25,
        "etcd.heartbeatMs is set but etcd.electionMs is not: set both, or neither for the "
        "transport's own",
    ),
    (
        "etcd election timeout without its heartbeat",
        "etcd.electionMs",
        250,
        "etcd.electionMs is set but etcd.heartbeatMs is not: set both, or neither for the "
        "transport's own",
    ),
    (
        "unknown docker key",
        "docker.advertisePrt",
        2375,
        "docker.advertisePrt is not a setting (did you mean docker.advertisePort?): use one of "
        "advertisePort, storeEndpoints",
    ),
    (
        "unknown network key",
        "network.subet",
        "10.0.0.0/24",
        "network.subet is not a setting (did you mean network.subnet?): use one of name, subnet, "
        "gateway, mtu",
    ),
    (
        "unknown container key",
        "containers.1.hots",
        "docker-node2",
        "containers[1].hots is not a setting (did you mean containers[1].host?): use one of name, "
        "host, networks",
    ),
    (
        "unknown image key",
        "image.sourse",
        "pull",
        "image.sourse is not a setting (did you mean image.source?): use one of name, source",
    ),
    (
        "unknown key of the project",
        "host",
        [],
        "overlay-etcd:host is not a key of this project (did you mean overlay-etcd:hosts?): use "
        f"one of {', '.join((*KEYS, 'sshPrivateKey'))}",
    ),
]


@pytest.mark.parametrize(("case", "path", "value", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_a_config_error_is_one_whole_line_and_nothing_is_registered(
    record_graph: Any,
    seed_config: dict[str, Any],
    case: str,
    path: str,
    value: Any,
    message: str,
) -> None:
    g: Graph = record_graph(mutate(seed_config, path, value))
    # __main__.py turns the ConfigError into the engine's one-line RunError
    assert isinstance(g.run.error, pulumi.RunError), f"{case}: {g.run.error!r}"
    assert str(g.run.error) == f"invalid config: {message} {WHERE}"
    assert g.resources == []


def test_a_missing_stack_file_names_the_stacks_there() -> None:
    here = sorted(p.name.split(".")[1] for p in (stackconfig.PROJECT_DIR / "stacks").iterdir())
    assert "local" in here
    with pytest.raises(ConfigError) as info:
        stackconfig.raw_from_file("nosuch")
    assert str(info.value) == (
        f"no stack 'nosuch': stacks/Pulumi.nosuch.yaml does not exist; the stacks in stacks/ are "
        f"{', '.join(here)}"
    )


def _stack_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """A project whose only stack file, stacks/Pulumi.bad.yaml, holds ``text``."""
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.bad.yaml").write_text(text)
    monkeypatch.setattr(stackconfig, "PROJECT_DIR", tmp_path)


def test_malformed_yaml_in_a_stack_file_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stack_dir(tmp_path, monkeypatch, "config:\n  overlay-etcd:lab: {id: seed\n  other: 1\n")
    with pytest.raises(ConfigError) as info:
        stackconfig.raw_from_file("bad")
    assert str(info.value) == (
        "stacks/Pulumi.bad.yaml is not valid YAML at line 3, column 8: expected ',' or '}', but "
        "got ':'"
    )


@pytest.mark.parametrize("text", ["", "config: 3\n", "- a\n- b\n"])
def test_a_stack_file_without_a_config_mapping_says_how_to_write_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    _stack_dir(tmp_path, monkeypatch, text)
    with pytest.raises(ConfigError) as info:
        stackconfig.raw_from_file("bad")
    assert str(info.value) == (
        "stacks/Pulumi.bad.yaml has no config mapping: write the settings under config:, each "
        "as overlay-etcd:<key>"
    )


@pytest.mark.parametrize("stack", ["nosuch", "bad"])
def test_a_stack_file_error_stops_the_standin_before_the_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stack: str
) -> None:
    """`python -m standin up` reads the stack file first: a bad one runs no program at all,
    and says why in one line, exit 2."""
    import standin.cli

    _stack_dir(tmp_path, monkeypatch, "config: [\n")
    ran: list[Any] = []
    monkeypatch.setattr(standin.cli, "run_program", lambda *a, **k: ran.append(a))
    state_dir = tmp_path / "state"
    assert standin.cli.main(["up", "--stack", stack, "--state-dir", str(state_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert re.match(rf"^error: (no stack '{stack}'|stacks/Pulumi\.{stack}\.yaml)", err[0]), err
    assert ran == [] and not state_dir.exists()


def test_the_seed_config_itself_parses(record_graph: Any, seed_config: dict[str, Any]) -> None:
    """The cases above differ from a config that registers the lab by their one mistake."""
    g: Graph = record_graph(copy.deepcopy(seed_config))
    assert g.run.error is None, g.run.error
    assert g.resources != []
