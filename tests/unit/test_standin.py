"""The engine stand-in refuses what it cannot perform faithfully, instead of dropping it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime.mocks import MockResourceArgs

from standin import (
    COMMAND,
    CONTAINER,
    DOCKER_PROVIDER,
    NETWORK,
    REMOTE_COMMAND,
    RealEngine,
    Record,
    ResourceFailed,
    UnsupportedResource,
    destroy,
)


def _args(typ: str, inputs: dict[str, object], provider: str = "") -> MockResourceArgs:
    return MockResourceArgs(typ=typ, name="x", inputs=inputs, provider=provider, custom=True)


def test_an_unknown_resource_type_is_refused() -> None:
    with pytest.raises(UnsupportedResource, match="aws:ec2/instance:Instance"):
        RealEngine().new_resource(_args("aws:ec2/instance:Instance", {}))


def test_an_input_it_does_not_implement_is_refused() -> None:
    with pytest.raises(UnsupportedResource, match=r"declares inputs .* not implement: interp"):
        RealEngine().new_resource(_args(COMMAND, {"create": "true", "interpreter": ["bash"]}))
    with pytest.raises(UnsupportedResource, match="restart"):
        RealEngine().new_resource(_args(CONTAINER, {"name": "c", "image": "i", "restart": "no"}))


def test_a_connection_field_it_does_not_implement_is_refused() -> None:
    conn = {"host": "127.0.0.1", "proxy": {"host": "jump"}}
    with pytest.raises(UnsupportedResource, match="connection fields \\['proxy'\\]"):
        RealEngine().new_resource(_args(REMOTE_COMMAND, {"connection": conn, "create": "true"}))


def test_a_docker_resource_without_an_explicit_provider_is_refused() -> None:
    with pytest.raises(UnsupportedResource, match="no explicit docker provider"):
        RealEngine().new_resource(_args(CONTAINER, {"name": "c", "image": "i"}))


def test_a_local_command_really_runs(tmp_path: Path) -> None:
    engine = RealEngine()
    rid, outputs = engine.new_resource(_args(COMMAND, {"create": "echo made; echo err >&2"}))
    assert rid and outputs["stdout"] == "made" and outputs["stderr"] == "err"
    _, fed = engine.new_resource(_args(COMMAND, {"create": "tr a-z A-Z", "stdin": "fed"}))
    assert fed["stdout"] == "FED"
    # the provider's Configure pings the daemon: nothing answers there
    with pytest.raises(ResourceFailed, match="failed to connect to any docker daemon"):
        engine.new_resource(_args(DOCKER_PROVIDER, {"host": "unix:///nowhere.sock"}))


def test_destroy_runs_dependents_first_and_stops_at_a_failure(tmp_path: Path) -> None:
    """As the engine: no delete starts after a failed one (base waits for middle)."""
    log = f"{tmp_path}/order"

    def rec(name: str, deps: list[str], delete: str) -> Record:
        return Record(
            urn=name,
            type=COMMAND,
            name=name,
            deps=deps,
            parent="",
            provider="",
            custom=True,
            state={"delete": delete, "environment": {}, "dir": None},
        )

    records = [
        rec("base", [], f"echo base >> {log}"),
        rec("middle", ["base"], "exit 3"),
        rec("top", ["middle"], f"echo top >> {log}"),
    ]
    errors = destroy(records)
    assert len(errors) == 1 and "middle" in errors[0] and "exited 3" in errors[0]
    with open(log) as f:
        assert f.read().split() == ["top"]


def test_a_delete_goes_to_where_its_provider_is_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """An updated provider keeps its id; a later delete of what uses it goes to its new host."""
    from standin import docker_ops

    hosts: list[str] = []

    class Nets:
        def get(self, i: str) -> Any:
            raise docker_errors.NotFound("gone")

    class Client:
        networks = Nets()

    def client(host: str, ssh_opts: Any, guard: Any) -> Client:
        hosts.append(host)
        return Client()

    import docker.errors as docker_errors

    monkeypatch.setattr(docker_ops, "client", client)
    prov = Record("p", DOCKER_PROVIDER, "p", [], "", "", True, id="pid",
                  state={"host": "unix:///now.sock", "sshOpts": []})  # fmt: skip
    net = Record("n", NETWORK, "n", ["p"], "", "p::pid", True,
                 state={"id": "netid", "host": "unix:///then.sock"})  # fmt: skip
    assert destroy([prov, net]) == []
    assert hosts == ["unix:///now.sock"]


def test_an_update_reruns_create_with_the_previous_stdout_and_keeps_the_id() -> None:
    first = RealEngine()
    rid, _ = first.new_resource(_args(COMMAND, {"create": "echo first"}))
    again = RealEngine(old=first.state())
    new_create = 'printf "%s-second" "$PULUMI_COMMAND_STDOUT"'
    rid2, out2 = again.new_resource(_args(COMMAND, {"create": new_create}))
    assert (rid2, out2["stdout"]) == (rid, "first-second")
    assert [s.kind for s in again.planner.steps.values()] == ["update"]


def test_a_delete_gets_the_environment_whose_map_is_secret_as_a_whole() -> None:
    """An environment holding one secret Output arrives as a secret map (the SDK marks the
    whole object): the delete still runs with each of its values (seen on the SSH stacks'
    lab-identity, whose environment holds the private key)."""
    from pulumi.runtime import rpc

    from standin import commands
    from standin.ops import Context
    from standin.state import Record

    env = {"K": "key-text", "P": "plain"}
    secret = {rpc._special_sig_key: rpc._special_secret_sig, "value": env}
    rec = Record("u", commands.COMMAND, "identity", [], "", "", True)
    commands.create_local(
        Context(),
        rec,
        {"create": "true", "delete": 'test "$K" = key-text && test "$P" = plain',
         "environment": secret},
    )  # fmt: skip
    kept = repr({k: rec.state[k] for k in ("environment", "secretEnvironment")})
    assert "key-text" not in kept and "plain" not in kept, kept  # the map is secret
    commands.delete_local(Context(), rec)


def test_refresh_import_pending_creates_completes_the_create_with_the_id_given(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """pulumi refresh --import-pending-creates URN ID (refresh.go:564-590, 631-634: "the
    CREATE succeeded; provide a resource ID and complete the CREATE operation"): the resource
    enters the state with that id and the inputs it was being created with; other pending
    operations stay; an URN of no pending create is a warning."""
    from standin import state
    from standin.cli import _import_pending_creates

    ctr = state.Record("urn:c", "docker:index/container:Container", "test-test1", [], "", "p", True,
                       inputs={"name": "test1", "image": "sha256:1"})  # fmt: skip
    cmd = state.Record("urn:k", "command:local:Command", "etcd-x", [], "", "", True)
    pending = [state.Operation(state.CREATING, ctr), state.Operation(state.CREATING, cmd)]
    old, left = _import_pending_creates([], pending, [["urn:c", "abc123"], ["urn:none", "x"]])
    assert [(r.urn, r.id, r.outputs, r.state["id"]) for r in old] == [
        ("urn:c", "abc123", {"name": "test1", "image": "sha256:1"}, "abc123")
    ]
    assert [o.resource.urn for o in left] == ["urn:k"]
    said = capsys.readouterr()
    assert "urn:none did not correspond to a pending create" in said.err
