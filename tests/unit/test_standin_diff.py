"""The stand-in's diff rules, one row per resource type and input, from ENGINE.md's tables."""

from __future__ import annotations

from typing import Any

import pytest

from standin.diff import (
    COMMAND,
    CONTAINER,
    COPY_TO_REMOTE,
    DOCKER_PROVIDER,
    NETWORK,
    REMOTE_COMMAND,
    REMOTE_IMAGE,
    UNKNOWN,
    Options,
    UnmodeledChange,
    apply_ignore_changes,
    diff,
)

BASE: dict[str, dict[str, Any]] = {
    COMMAND: {"create": "a", "delete": "d", "environment": {"A": "1"}, "dir": "/x"},
    REMOTE_COMMAND: {"create": "a", "delete": "d", "connection": {"host": "h"}},
    COPY_TO_REMOTE: {"source": "s", "remotePath": "/r", "connection": {"host": "h"}},
    DOCKER_PROVIDER: {"host": "unix:///a.sock"},
    REMOTE_IMAGE: {"name": "busybox:latest", "keepLocally": True},
    NETWORK: {
        "name": "demo",
        "driver": "overlay",
        "ipamConfigs": [{"subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}],
        "options": {"com.docker.network.driver.mtu": "1450"},
        "attachable": False,
        "internal": False,
    },
    CONTAINER: {
        "name": "test1",
        "image": "sha256:1",
        "hostname": "test1",
        "command": ["sh"],
        "networksAdvanced": [{"name": "demo"}],
        "mustRun": True,
    },
}

# (type, input, new value, expected kind)
TABLE = [
    (COMMAND, "triggers", ["x"], "replace"),
    (COMMAND, "create", "b", "update"),
    (COMMAND, "update", "u", "update"),
    (COMMAND, "delete", "e", "update"),
    (COMMAND, "environment", {"A": "2"}, "update"),
    (COMMAND, "stdin", "in", "update"),
    (COMMAND, "dir", "/y", "update"),
    (COMMAND, "addPreviousOutputInEnv", False, "update"),
    (REMOTE_COMMAND, "triggers", ["x"], "replace"),
    (REMOTE_COMMAND, "create", "b", "update"),
    (REMOTE_COMMAND, "delete", "e", "update"),
    (REMOTE_COMMAND, "connection", {"host": "h2"}, "update"),
    (REMOTE_COMMAND, "stdin", "in", "update"),
    (COPY_TO_REMOTE, "triggers", ["x"], "replace"),
    (COPY_TO_REMOTE, "source", "t", "update"),
    (COPY_TO_REMOTE, "remotePath", "/q", "update"),
    (COPY_TO_REMOTE, "connection", {"host": "h2"}, "update"),
    (DOCKER_PROVIDER, "host", "unix:///b.sock", "update"),
    (DOCKER_PROVIDER, "sshOpts", ["-p", "2"], "update"),
    (REMOTE_IMAGE, "name", "busybox:2", "replace"),
    (REMOTE_IMAGE, "keepLocally", False, "update"),
    (NETWORK, "name", "demo2", "replace"),
    (NETWORK, "driver", "bridge", "replace"),
    (NETWORK, "ipamConfigs", [{"subnet": "10.1.0.0/24", "gateway": "10.1.0.1"}], "replace"),
    (NETWORK, "options", {"com.docker.network.driver.mtu": "1400"}, "replace"),
    (NETWORK, "attachable", True, "replace"),
    (NETWORK, "internal", True, "replace"),
    (CONTAINER, "name", "test9", "replace"),
    (CONTAINER, "image", "sha256:2", "replace"),
    (CONTAINER, "hostname", "h", "replace"),
    (CONTAINER, "command", ["sleep"], "replace"),
    (CONTAINER, "networksAdvanced", [{"name": "other"}], "replace"),
    (CONTAINER, "mustRun", False, "update"),
]


@pytest.mark.parametrize(("typ", "key", "value", "kind"), TABLE)
def test_a_change_of_one_input_gives_the_providers_step(
    typ: str, key: str, value: Any, kind: str
) -> None:
    old = BASE[typ]
    d = diff(typ, old, {**old, key: value}, Options(), name="r")
    assert (d.kind, d.changed) == (kind, (key,)), f"{typ}.{key}: {d}"


@pytest.mark.parametrize("typ", sorted(BASE))
def test_identical_inputs_are_same(typ: str) -> None:
    d = diff(typ, BASE[typ], dict(BASE[typ]), Options())
    assert (d.kind, d.changed) == ("same", ())


@pytest.mark.parametrize("typ", sorted(BASE))
def test_an_unknown_value_is_a_change(typ: str) -> None:
    key = next(iter(BASE[typ]))
    d = diff(typ, BASE[typ], {**BASE[typ], key: UNKNOWN}, Options())
    assert d.kind != "same" and d.changed == (key,)


def test_replace_is_delete_first_for_containers_named_networks_and_when_asked() -> None:
    c = BASE[CONTAINER]
    assert diff(CONTAINER, c, {**c, "name": "x"}, Options()).delete_before_replace
    n = BASE[NETWORK]
    assert diff(NETWORK, n, {**n, "internal": True}, Options()).delete_before_replace
    cmd = BASE[COMMAND]
    assert not diff(COMMAND, cmd, {**cmd, "triggers": [1]}, Options()).delete_before_replace
    dbr = Options(delete_before_replace=True)
    assert diff(COMMAND, cmd, {**cmd, "triggers": [1]}, dbr).delete_before_replace


def test_a_changed_provider_replaces_even_with_equal_inputs() -> None:
    c = BASE[CONTAINER]
    d = diff(CONTAINER, c, dict(c), Options(), provider_changed=True)
    assert (d.kind, d.replace_reasons) == ("replace", ("provider",))


def test_replace_on_changes_turns_an_update_into_a_replace() -> None:
    cmd = BASE[COMMAND]
    d = diff(COMMAND, cmd, {**cmd, "create": "b"}, Options(replace_on_changes=("create",)))
    assert (d.kind, d.replace_reasons) == ("replace", ("create",))
    d = diff(COMMAND, cmd, {**cmd, "dir": "/z"}, Options(replace_on_changes=("create",)))
    assert d.kind == "update"


def test_ignore_changes_keeps_the_old_value_top_level_and_nested() -> None:
    cmd = BASE[COMMAND]
    d = diff(COMMAND, cmd, {**cmd, "stdin": "new"}, Options(ignore_changes=("stdin",)))
    assert d.kind == "same" and "stdin" not in d.inputs
    new = {**cmd, "environment": {"A": "9", "B": "2"}}
    d = diff(COMMAND, cmd, new, Options(ignore_changes=("environment.A",)))
    assert d.kind == "update" and d.inputs["environment"] == {"A": "1", "B": "2"}
    assert apply_ignore_changes({"e": {"A": "1"}}, {"e": {"A": "2"}}, ['e["A"]']) == {
        "e": {"A": "1"}
    }


def test_an_input_without_a_rule_is_refused_not_guessed() -> None:
    c = BASE[CONTAINER]
    with pytest.raises(UnmodeledChange, match="sysctls"):
        diff(CONTAINER, c, {**c, "sysctls": {"a": "b"}}, Options())
    with pytest.raises(UnmodeledChange, match="no diff rules"):
        diff("aws:s3:Bucket", {}, {"a": 1}, Options())
