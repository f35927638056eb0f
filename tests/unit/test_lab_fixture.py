"""The lab tests' fixture (tests/labtools.py ``LabFixture``) with fakes in place of labs: no lab
is brought up, nothing on the machine is touched, root and the reaper are not asked for.

Its teardown destroys every run once (a test's own destroy included, whose errors count again),
runs every undo step last in first out even when one fails, then looks for leftovers (of every
config applied: an `up`'s, a kept stack's), and fails once, naming all of it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import standin
from overlaylab.config import LabConfig
from overlaylab.config.sample import lab_config
from overlaylab.netrule import RouteGuard
from tests import labtools
from tests.labtools import LabFixture, Running


class FakeRun:
    """What ``run_lab`` returns, without a lab."""

    def __init__(self, error: BaseException | None = None, errors: list[str] | None = None):
        self.outputs: dict[str, Any] | None = {} if error is None else None
        self.error = error
        self.records: list[Any] = []
        self.inputs: dict[str, dict[str, Any]] = {}
        self.errors = errors or []
        self.destroyed = 0

    def destroy(self) -> list[str]:
        self.destroyed += 1
        return self.errors


@pytest.fixture
def no_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entering a fixture here asks neither for root nor for the reaper."""
    monkeypatch.setattr(labtools, "require_root", lambda: None)
    monkeypatch.setattr(standin, "become_subreaper", lambda: None)


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[FakeRun]:
    """``run_lab`` made up: each call pops the next of these (queued by the test)."""
    queued: list[FakeRun] = []
    monkeypatch.setattr(labtools, "run_lab", lambda *a, **k: queued.pop(0))
    return queued


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """``leftovers(cfg)`` made up: what is left of each lab id; every look recorded."""
    left: dict[str, list[str]] = {"looked": []}

    def fake(cfg: LabConfig, every_lab: bool = False) -> list[str]:
        left["looked"].append(cfg.lab_id)
        return list(left.get(cfg.lab_id, []))

    monkeypatch.setattr(labtools, "leftovers", fake)
    return left


def test_every_step_runs_last_in_first_out_and_every_failure_fails_once(
    tmp_path: Path, runs: list[FakeRun], machine: dict[str, list[str]]
) -> None:
    ran: list[str] = []

    def broken() -> None:
        ran.append("broken")
        raise OSError("rmdir: busy")

    def cli_destroy() -> list[str]:
        ran.append("cli")
        return ["exit 1"]

    runs.append(FakeRun(errors=["delete etcd-docker-node1: it hung"]))
    lab = LabFixture("t", tmp_path / "t.json", lab_config(2, lab_id="ut"))
    lab.cleanup("first", lambda: ran.append("first"))
    lab.up()
    lab.cleanup("broken", broken)
    lab.destroy_with("cli destroy", cli_destroy)
    machine["ut"] = ["namespace ut-docker-node1"]
    lab.settle = 0
    with pytest.raises(AssertionError) as info:
        lab.close()
    assert ran == ["cli", "broken", "first"]
    assert runs == [] and machine["looked"][-1] == "ut"
    text = str(info.value)
    assert text.splitlines() == [
        "teardown of stack t incomplete (3 failed, 1 left):",
        "  cli destroy: DestroyErrors: ['exit 1']",
        "  broken: OSError: rmdir: busy",
        "  destroy t (t.json): DestroyErrors: ['delete etcd-docker-node1: it hung']",
        "  left: namespace ut-docker-node1",
    ]


def test_a_clean_teardown_raises_nothing_and_looks_after_every_step(
    tmp_path: Path, runs: list[FakeRun], machine: dict[str, list[str]]
) -> None:
    order: list[str] = []
    run = FakeRun()
    runs.append(run)
    lab = LabFixture("t", tmp_path / "t.json", lab_config(2, lab_id="ut"))
    assert lab.up() is lab.run
    lab.cleanup("dir", lambda: order.append(f"dir, looked {len(machine['looked'])}"))
    lab.close()
    assert run.destroyed == 1
    assert order == ["dir, looked 0"] and machine["looked"] == ["ut", "ut"]
    lab.close()  # again: nothing is undone twice
    assert run.destroyed == 1


def test_a_run_the_test_destroyed_is_not_destroyed_again_and_its_errors_count(
    tmp_path: Path, runs: list[FakeRun], machine: dict[str, list[str]]
) -> None:
    run = FakeRun(errors=["delete test-test1: no daemon"])
    runs.append(run)
    lab = LabFixture("t", tmp_path / "t.json", lab_config(2, lab_id="ut"))
    up = lab.up()
    assert up.destroy() == ["delete test-test1: no daemon"]  # the test's own destroy
    with pytest.raises(AssertionError, match="no daemon"):
        lab.close()
    assert run.destroyed == 1


def test_a_failed_up_fails_the_test_and_is_still_destroyed(
    tmp_path: Path, runs: list[FakeRun], machine: dict[str, list[str]]
) -> None:
    failed = FakeRun(error=RuntimeError("etcd-docker-node2: exited at start"))
    runs.append(failed)
    lab = LabFixture("t", tmp_path / "t.json", lab_config(2, lab_id="ut"))
    with pytest.raises(AssertionError, match=r"up failed after \d+s: etcd-docker-node2"):
        lab.up()
    lab.close()
    assert failed.destroyed == 1
    runs.append(FakeRun())
    with pytest.raises(AssertionError, match="up succeeded"):
        lab.up(fails=True)
    runs.append(FakeRun(error=RuntimeError("judged by the test")))
    assert lab.up(fails=None).error is not None


def test_leftovers_are_waited_for_up_to_settle_then_fail(
    tmp_path: Path, machine: dict[str, list[str]]
) -> None:
    looks: list[list[str]] = [["zombie etcd 12"], ["zombie etcd 12"], []]

    def left() -> list[str]:
        return looks.pop(0) if len(looks) > 1 else looks[0]

    LabFixture("t", tmp_path / "t.json", settle=5, left_behind=left).close()
    assert looks == [[]]
    stuck = LabFixture("t", settle=0, left_behind=lambda: ["zombie etcd 12"])
    with pytest.raises(AssertionError, match="left: zombie etcd 12"):
        stuck.close()


def test_every_config_applied_is_looked_for_and_one_that_does_not_parse_is_not(
    tmp_path: Path, runs: list[FakeRun], machine: dict[str, list[str]]
) -> None:
    lab = LabFixture("t", tmp_path / "t.json", lab_config(2, lab_id="ut"), settle=0)
    bad = lab_config(2, lab_id="bad")
    bad["containers"][1]["host"] = "docker-node7"
    runs.append(FakeRun(error=RuntimeError("unknown host 'docker-node7'")))
    lab.up(bad, fails=True)
    runs.append(FakeRun())
    lab.up(lab_config(3, lab_id="ut3"))
    kept = lab.keep(Running("k", tmp_path / "k.json", RouteGuard("ovbr-k")))
    kept.ever += [lab_config(2, lab_id="k2"), lab_config(4, lab_id="k4")]
    machine.update(ut=["link ovbr-ut (bridge)"], k4=["link ovbr-ut (bridge)", "namespace k4-n1"])
    assert lab.leftovers() == ["link ovbr-ut (bridge)", "namespace k4-n1"]
    assert machine["looked"] == ["ut", "ut3", "k2", "k4", "ut", "ut3", "k2", "k4"]


def test_entering_refuses_a_lab_that_is_up_and_names_how_to_take_a_shipped_stack_down(
    no_root: None, machine: dict[str, list[str]]
) -> None:
    machine["ut"] = ["namespace ut-docker-node1"]
    with (
        pytest.raises(pytest.fail.Exception, match="take it down before the tests: "),
        LabFixture("nosuch", raw=lab_config(2, lab_id="ut")),
    ):
        pass
    machine["seed"] = ["namespace seed-docker-node1"]
    with (
        pytest.raises(pytest.fail.Exception, match=r"\(python -m standin down --stack local\)"),
        LabFixture("local", raw=lab_config(2, lab_id="seed"), widest=None),
    ):
        pass
    machine["ut4"] = ["namespace ut4-docker-node4"]
    with (
        pytest.raises(pytest.fail.Exception, match="ut4-docker-node4"),
        LabFixture("t", raw=lab_config(2, lab_id="ut"), widest=lab_config(4, lab_id="ut4")),
    ):
        pass
    with LabFixture("t", raw=lab_config(2, lab_id="free"), settle=0) as lab:
        assert lab.cfg.lab_id == "free"


def test_an_entered_context_is_left_after_what_came_later(
    tmp_path: Path, runs: list[FakeRun], machine: dict[str, list[str]]
) -> None:
    order: list[str] = []

    @contextlib.contextmanager
    def hosts() -> Iterator[str]:
        order.append("hosts up")
        try:
            yield "fleet"
        finally:
            order.append("hosts down")
            raise RuntimeError("a host did not power off")

    lab = LabFixture("t", tmp_path / "t.json", settle=0)
    assert lab.enter("the hosts", hosts()) == "fleet"
    runs.append(FakeRun())
    lab.up(lab_config(2, lab_id="ut"))
    lab.cleanup("stack", lambda: order.append("stack destroyed"))
    with pytest.raises(AssertionError, match="the hosts: RuntimeError: a host did not power off"):
        lab.close()
    assert order == ["hosts up", "stack destroyed", "hosts down"]


def test_a_test_that_failed_keeps_its_own_error_and_gets_the_teardowns_as_a_note(
    no_root: None, tmp_path: Path, runs: list[FakeRun], machine: dict[str, list[str]]
) -> None:
    runs.append(FakeRun(errors=["delete test-test2: no daemon"]))
    with (
        pytest.raises(AssertionError, match="the test's own") as info,
        LabFixture("t", tmp_path / "t.json", lab_config(2, lab_id="ut"), settle=0) as lab,
    ):
        lab.up()
        machine["ut"] = ["namespace ut-docker-node1"]
        raise AssertionError("the test's own")
    assert runs == [] and len(info.value.__notes__) == 1
    note = info.value.__notes__[0]
    assert "delete test-test2: no daemon" in note and "left: namespace ut-docker-node1" in note
    runs.append(FakeRun(errors=["delete test-test2: no daemon"]))
    with (
        pytest.raises(AssertionError, match="teardown of stack t incomplete"),
        LabFixture("t", tmp_path / "t.json", lab_config(2, lab_id="ok"), settle=0) as lab,
    ):
        lab.up()
        pytest.skip("a skip does not hide the teardown's failure")
