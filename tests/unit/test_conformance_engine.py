"""The stand-in does what the Pulumi engine does: each test encodes one engine behaviour, cited
by repository, tag, file and lines (pulumi/pulumi v3.259.0, the newest tag of the mirror; the
brief's v3.272.0 does not exist there).

The resources are of a fake type (put in the engine's table for the test), so that every
create, update and delete is a Python function that can fail on demand and look at the state
file while it runs.
"""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockResourceArgs

from standin import engine as engine_mod
from standin import state
from standin.diff import RULES, TypeRules
from standin.engine import RealEngine, Registration
from standin.executor import destroy
from standin.ops import Context, ResourceFailed, ResourceType
from standin.state import Operation, Record

FAKE = "test:index:Thing"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"


class Fake:
    """The fake type's provider: what it did, and the state file as each operation saw it."""

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self.created: list[str] = []
        self.updated: list[str] = []
        self.deleted: list[str] = []
        self.seen: dict[str, Any] = {}  # name -> the state file's JSON during its operation
        self.gates: dict[str, threading.Event] = {}  # name -> released when set
        self.fail_delete: set[str] = set()

    def _look(self, name: str) -> None:
        if self.state_file.exists():
            self.seen[name] = json.loads(self.state_file.read_text())
        if name in self.gates:
            assert self.gates[name].wait(10)

    def create(self, ctx: Context, rec: Record, inputs: dict[str, Any]) -> tuple[str, Any]:
        self._look(rec.name)
        if inputs.get("fail"):
            raise ResourceFailed(f"create of {rec.name} failed")
        self.created.append(rec.name)
        rec.state = {"stdout": inputs.get("stdout", "")}
        return f"{rec.name}-id", {**inputs}

    def update(self, ctx: Context, rec: Record, old: Record, inputs: dict[str, Any]) -> Any:
        self._look(rec.name)
        self.updated.append(rec.name)
        rec.state = dict(old.state)
        return old.id, {**old.outputs, **inputs}

    def delete(self, ctx: Context, rec: Record) -> None:
        self._look(rec.name)
        if rec.name in self.fail_delete:
            raise ResourceFailed(f"delete of {rec.name} failed")
        self.deleted.append(rec.name)
        self.seen[f"{rec.name}:state"] = dict(rec.state)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Fake:
    f = Fake(tmp_path / "stack.json")
    kind = ResourceType(
        FAKE,
        frozenset({"fail", "value", "stdout"}),
        f.create,
        delete=f.delete,
        update=f.update,
    )
    monkeypatch.setitem(engine_mod.TYPES, FAKE, kind)
    monkeypatch.setitem(RULES, FAKE, TypeRules(frozenset(), frozenset({"value", "stdout"})))
    return f


def _urn(name: str) -> str:
    return f"urn:pulumi:test::p::{FAKE}::{name}"


def register(
    engine: RealEngine, name: str, declared: dict[str, Any] | None = None, **inputs: Any
) -> tuple[str | None, dict[str, Any]]:
    """One RegisterResource as the monitor passes it (``declared``: with secrets wrapped)."""
    secret_outputs = inputs.pop("secret_outputs", [])
    engine.local.registration = Registration(
        urn=_urn(name), inputs=declared, secret_outputs=secret_outputs
    )
    try:
        args = MockResourceArgs(typ=FAKE, name=name, inputs=inputs, provider="", custom=True)
        return engine.new_resource(args)
    finally:
        engine.local.registration = None


def rec(name: str, deps: tuple[str, ...] = ()) -> Record:
    return Record(
        urn=_urn(name),
        type=FAKE,
        name=name,
        deps=[_urn(d) for d in deps],
        parent="",
        provider="",
        custom=True,
        id=f"{name}-id",
    )


def names(doc: dict[str, Any]) -> list[str]:
    return sorted(r["name"] for r in doc["resources"])


def ops(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(o["type"], o["resource"]["name"]) for o in doc["pending_operations"]]


# --- 5. stop at the first failure -------------------------------------------------------------


def test_no_new_step_starts_after_a_failed_step_and_running_ones_finish(fake: Fake) -> None:
    """pulumi/pulumi v3.259.0 pkg/resource/deploy/step_executor.go:404-433 (executeChain: a
    failed step calls cancelDueToError; a step is not started once se.ctx is done), :435-462
    (cancelDueToError: se.cancel() unless ContinueOnError), :144-162 (ExecuteSerial: a chain
    submitted after the cancellation is not executed). A step already running finishes."""
    engine = RealEngine(state_file=fake.state_file)
    fake.gates["slow"] = threading.Event()
    slow: dict[str, Any] = {}
    t = threading.Thread(target=lambda: slow.update(r=register(engine, "slow", value="s")))
    t.start()
    while "slow" not in fake.seen:  # slow's create is running
        threading.Event().wait(0.01)
    with pytest.raises(ResourceFailed, match="create of bad failed"):
        register(engine, "bad", fail=True)
    with pytest.raises(ResourceFailed, match="later: not started: an earlier step failed"):
        register(engine, "later", value="l")
    fake.gates["slow"].set()
    t.join(10)
    assert fake.created == ["slow"]  # later never reached its provider
    assert slow["r"][0] == "slow-id"
    assert names(json.loads(fake.state_file.read_text())) == ["slow"]


def test_no_deletes_after_the_program_when_a_step_failed(fake: Fake) -> None:
    """pulumi/pulumi v3.259.0 pkg/resource/deploy/deployment_executor.go:318-345: the deletes
    of what left the program (performPostSteps) run only once the source ended (seenNil) with
    no cancellation; a failed step cancels the context (case <-ctx.Done(), :318) and the loop
    returns before them."""
    gone = rec("gone")
    engine = RealEngine(state_file=fake.state_file, old=[gone])
    with pytest.raises(ResourceFailed):
        register(engine, "bad", fail=True)
    assert engine.finish() == []
    assert fake.deleted == []
    assert [r.name for r in engine.state()] == ["gone"]  # kept in the state


# --- 6. a checkpoint per step; a failed delete stops a destroy -------------------------------


def test_a_failed_delete_stops_destroy_and_the_state_keeps_what_was_not_deleted(
    fake: Fake,
) -> None:
    """pulumi/pulumi v3.259.0 pkg/backend/snapshot.go:500-540 (doDelete marks the delete
    pending; End marks it complete and, only if it succeeded, the resource done, i.e. out of
    the snapshot) and :932-962 (defaultServiceLoop: every mutation saves the snapshot);
    pkg/resource/deploy/deployment_executor.go:515-551 (each antichain of deletes after the
    previous one) with step_executor.go:404-462 (no step starts after a failed one). A second
    destroy deletes the rest."""
    # b depends on a, c on b, d on a: c and d go first, then b (fails), then a (never).
    records = [rec("a"), rec("b", ("a",)), rec("c", ("b",)), rec("d", ("a",))]
    state.save(fake.state_file, records)
    fake.fail_delete = {"b"}
    errors = destroy(state.load(fake.state_file), state_file=fake.state_file)
    assert len(errors) == 1 and "delete of b failed" in errors[0]
    assert sorted(fake.deleted) == ["c", "d"]
    left = json.loads(fake.state_file.read_text())
    assert names(left) == ["a", "b"] and ops(left) == []
    # b's delete saw c's already checkpointed out of the file, and itself pending
    assert "c" not in names(fake.seen["b"]) and ("deleting", "b") in ops(fake.seen["b"])
    fake.fail_delete = set()
    assert destroy(state.load(fake.state_file), state_file=fake.state_file) == []
    assert fake.deleted[2:] == ["b", "a"]
    assert json.loads(fake.state_file.read_text())["resources"] == []


# --- 7. pending operations --------------------------------------------------------------------


def test_each_create_update_and_delete_is_pending_in_the_state_while_it_runs(
    fake: Fake,
) -> None:
    """pulumi/pulumi v3.259.0 pkg/backend/snapshot.go:426-441 (doCreate: markOperationPending
    creating, saved before the step runs), :443-468 (End: markOperationComplete), :470-498
    (updating), :500-540 (deleting); pkg/resource/operation.go:22-30 (the type names)."""
    engine = RealEngine(state_file=fake.state_file, old=[rec("moved"), rec("dropped")])
    register(engine, "new", value="1")
    register(engine, "moved", value="2")  # an update: its old inputs were {}
    assert engine.finish() == []  # deletes "dropped"
    assert ops(fake.seen["new"]) == [("creating", "new")]
    assert ops(fake.seen["moved"]) == [("updating", "moved")]
    assert ops(fake.seen["dropped"]) == [("deleting", "dropped")]
    assert fake.updated == ["moved"] and fake.deleted == ["dropped"]
    assert ops(json.loads(fake.state_file.read_text())) == []


def test_an_interrupted_create_stays_pending_and_is_reported_other_operations_are_dropped(
    fake: Fake,
) -> None:
    """pulumi/pulumi v3.259.0 pkg/backend/snapshot.go:749-765 (Snap: only this run's
    unfinished operations are written, plus the pending CREATE operations of the base
    snapshot, which 'must require user intervention'); pkg/resource/deploy/
    deployment_executor.go:90-114 and :183-188 (printPendingOperationsWarning, on an update or
    destroy, not a preview: 'Attempting to deploy or update resources with N pending
    operations from previous deployment.' and '* <urn>, interrupted while <type>')."""
    interrupted = [
        Operation(state.CREATING, rec("half")),
        Operation(state.DELETING, rec("old")),
        Operation(state.UPDATING, rec("kept")),
    ]
    state.save(fake.state_file, [rec("kept"), rec("old")], interrupted)
    pending = state.load_pending(fake.state_file)
    warning = state.pending_warning(pending)
    assert "\n" not in warning
    assert warning.startswith(
        "warning: Attempting to deploy or update resources with 3 pending operations from "
        "previous deployment"
    )
    assert f"{_urn('half')}, interrupted while creating" in warning
    assert f"{_urn('old')}, interrupted while deleting" in warning
    engine = RealEngine(
        state_file=fake.state_file, old=state.load(fake.state_file), pending=pending
    )
    register(engine, "half", value="again")  # created again: it is not in the state
    assert ops(json.loads(fake.state_file.read_text())) == [("creating", "half")]
    # a destroy keeps it too
    assert destroy(state.load(fake.state_file), state_file=fake.state_file, pending=pending) == []
    assert ops(json.loads(fake.state_file.read_text())) == [("creating", "half")]


# --- 11. secrets stay secret in the state -----------------------------------------------------


def test_secret_outputs_never_reach_the_state_file_and_later_runs_see_them(fake: Fake) -> None:
    """pulumi/pulumi v3.259.0 pkg/resource/deploy/step_executor.go:520-566 (outputs named in
    additionalSecretOutputs, and outputs whose input is secret, are made secret) and
    pkg/resource/stack/deployment.go:844-880 (a secret is written to the checkpoint only as
    ciphertext from the stack's encrypter). The stand-in keeps the value in a 0600 file next
    to the state and only a reference in it; load restores it for the next run and destroy."""
    wrapped = {rpc._special_sig_key: rpc._special_secret_sig, "value": "hunter2"}
    engine = RealEngine(state_file=fake.state_file)
    register(engine, "bundle", stdout=KEY, secret_outputs=["stdout"])
    register(engine, "user", {"value": wrapped}, value="hunter2")
    text = fake.state_file.read_text()
    assert "PRIVATE KEY" not in text and "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in text
    assert "hunter2" not in text
    sfile = state.secrets_file(fake.state_file)
    assert stat.S_IMODE(sfile.stat().st_mode) == 0o600
    old = state.load(fake.state_file)
    by_name = {r.name: r for r in old}
    assert by_name["bundle"].outputs["stdout"] == KEY and by_name["bundle"].state["stdout"] == KEY
    assert by_name["user"].outputs["value"] == "hunter2"
    # a second run gets the value back (a same step returns the old outputs)
    second = RealEngine(state_file=fake.state_file, old=old)
    _, outputs = register(second, "bundle", stdout=KEY, secret_outputs=["stdout"])
    assert outputs["stdout"] == KEY and fake.created == ["bundle", "user"]
    assert KEY not in fake.state_file.read_text()
    # and so does the delete of a destroy
    assert destroy(state.load(fake.state_file), state_file=fake.state_file) == []
    assert fake.seen["bundle:state"] == {"stdout": KEY}


def test_the_program_marks_the_tls_bundles_stdout_secret() -> None:
    """pulumi/pulumi v3.259.0 pkg/resource/deploy/source_eval.go:1482-1485: the engine takes
    additionalSecretOutputs from the RegisterResource request (the program's
    ``additional_secret_outputs=["stdout"]`` in components/remote_hosts.py)."""
    from overlaylab.stackconfig import raw_from_file
    from standin import run_program
    from tests.unit.test_mtu_unchanged import KEY as SSH_KEY

    raw = raw_from_file("lab")
    raw["etcd"]["tls"] = True  # as tests/unit/test_program_ssh.py's TLS-over-ssh stack
    run = run_program(raw, "lab", perform=False, secrets={"sshPrivateKey": SSH_KEY})
    assert run.error is None, run.error
    bundles = [r for r in run.records if r.name.endswith("-pki-bundle")]
    assert bundles and all(r.secret_outputs == ["stdout"] for r in bundles)
