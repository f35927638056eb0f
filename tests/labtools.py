"""Helpers for tests that bring up a real lab: its config, and what it may have left behind."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from overlaylab.etcd import EtcdClient
    from overlaylab.netrule import RouteGuard
    from standin import Record
    from standin.plan import Step

from overlaylab.config import LabConfig, parse
from overlaylab.config.sample import LAB_ID, SEGMENT, STATE_DIR, lab_config
from overlaylab.leftovers import leftovers
from overlaylab.spec import OUT_VALIDATION_SPEC

__all__ = ["LAB_ID", "SEGMENT", "STATE_DIR", "lab_config", "leftovers"]


def require_root() -> None:
    """Lab tests need root; in CI (as root) they must run, so a missing root fails there."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("lab tests must run as root in CI")
    pytest.skip("lab tests need root (they create namespaces, a bridge and daemons)")


def validate_cli(
    spec: dict[str, Any], timeout: float, *extra: str
) -> subprocess.CompletedProcess[str]:
    """The validator as a person runs it, in a fresh process."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "overlaylab.validate",
            "--spec-json",
            json.dumps(spec),
            "--timeout",
            str(timeout),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )


def failed_first(report: str, tail: int = 2000) -> str:
    """A validator report for an assertion message: its FAIL and diagnosis lines first (a long
    report's tail alone can cut them off), then its end."""
    lines = report.splitlines()
    worst = [ln for ln in lines if ln.startswith(("FAIL", "diagnosis"))]
    return "\n".join([*worst, "...", report[-tail:]])


def parsed(raw: dict[str, Any]) -> LabConfig:
    return parse(raw, "test config")


class LabRun(Protocol):
    """One `up` of a lab, by the stand-in or through the Automation API."""

    outputs: dict[str, Any] | None
    error: BaseException | None

    @property
    def records(self) -> list[Record]: ...

    @property
    def inputs(self) -> dict[str, dict[str, Any]]: ...

    def destroy(self) -> list[str]: ...


class DestroyedOnce:
    """A module fixture's lab run whose ``destroy()`` runs once: a test may take the lab down
    itself (and assert that), after which the fixture's cleanup gets the same errors back
    instead of deleting everything a second time from a state that is gone."""

    def __init__(self, run: LabRun) -> None:
        self.run = run
        self.outputs = run.outputs
        self.error = run.error
        self._errors: list[str] | None = None

    @property
    def records(self) -> list[Record]:
        return self.run.records

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        return self.run.inputs

    def destroy(self) -> list[str]:
        if self._errors is None:
            self._errors = self.run.destroy()
        return self._errors


def run_lab(
    raw_config: dict[str, Any],
    stack: str,
    state_file: Path,
    guard: RouteGuard | None = None,
    secrets: dict[str, str] | None = None,
) -> LabRun:
    """Bring a lab up with the real program: through the Automation API where a ``pulumi``
    CLI is on PATH (tests/automation.py), else through the engine stand-in. The result has
    ``outputs``, ``error``, ``records``, ``inputs`` and ``destroy()`` either way."""
    import standin
    from tests import automation

    if automation.engine() == "automation":
        return automation.run_program(raw_config, stack, secrets)
    return standin.run_program(
        raw_config, stack=stack, state_file=state_file, guard=guard, secrets=secrets
    )


def delete_node_key_after_heartbeat(client: EtcdClient, key: str, timeout: float = 30) -> None:
    """Delete a daemon's ``/docker/nodes`` key just after Docker refreshed it.

    Docker rewrites the key every discovery heartbeat (20 s, TTL 60 s): a key deleted at a
    random moment may be back before a check reads it (a test of its absence then fails about
    one run in fifteen). Deleted while its TTL is fresh, it stays gone for over 15 s."""
    deadline = time.monotonic() + timeout
    while True:
        node = client.v2_get(key, recursive=False)
        if node is not None and node.ttl is not None and node.ttl >= 57:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} was not refreshed within {timeout:g}s: {node}")
        time.sleep(0.2)
    assert client.v2_delete(key), key


class Running:
    """A stack kept up across `up`s, each on the state the last one left, as `pulumi up` on a
    running stack (through the stand-in): its config, state and outputs, and every config
    applied (where to look for leftovers at the end)."""

    def __init__(
        self,
        stack: str,
        state_file: Path,
        guard: RouteGuard,
        cfg: dict[str, Any] | None = None,
        secrets: dict[str, str] | None = None,
    ) -> None:
        self.stack, self.state_file, self.guard, self.secrets = stack, state_file, guard, secrets
        self.cfg: dict[str, Any] = copy.deepcopy(cfg or {})
        self.state: list[Record] = []
        self.outputs: dict[str, Any] = {}
        self.ever: list[dict[str, Any]] = []
        self.error = ""  # the last failed `up`'s, when it was expected to fail

    def up(self, raw: dict[str, Any], fails: bool = False) -> dict[str, Step]:
        """Its steps by resource name. The config and outputs are kept only from an `up` that
        succeeded; ``fails``: this one must not."""
        import standin

        self.ever.append(copy.deepcopy(raw))
        run = standin.run_program(
            raw,
            stack=self.stack,
            state_file=self.state_file,
            guard=self.guard,
            secrets=self.secrets,
            old=self.state,
        )
        self.state = run.engine.state()
        if fails:
            assert run.error is not None, "up succeeded"
            self.error = str(run.error)
        else:
            assert run.error is None, f"up failed: {run.error}"
            self.cfg, self.outputs = copy.deepcopy(raw), run.outputs or {}
        return {st.name: st for st in run.steps}

    def validate(self) -> None:
        """The strict validator, as a person runs it after `up`."""
        res = validate_cli(self.outputs[OUT_VALIDATION_SPEC], 60)
        assert res.returncode == 0, failed_first(res.stdout) + res.stderr[-2000:]

    def destroy(self) -> list[str]:
        import standin

        errors = standin.destroy(self.state, guard=self.guard) if self.state else []
        self.state = []
        return errors

    def leftovers(self) -> list[str]:
        return [x for raw in self.ever for x in leftovers(parsed(raw))]


@contextlib.contextmanager
def kept_up(
    lab: Running, raw: dict[str, Any], validate: bool = True, widest: dict[str, Any] | None = None
) -> Iterator[Running]:
    """A module's running stack: refused if a lab with that id is already up (looked for with
    ``widest``, the largest config the module applies, else ``raw``); brought up with ``raw``
    and validated; destroyed at the end, asserting no error and nothing left, also when a test
    failed."""
    import standin

    require_root()
    standin.become_subreaper()
    there = leftovers(parsed(widest or raw))
    if there:
        pytest.fail(f"a lab with id {lab.stack} is up here: {there[:3]}")
    try:
        lab.up(raw)
        if validate:
            lab.validate()
        yield lab
    finally:
        errors = lab.destroy()
        left = lab.leftovers()
        assert not errors, errors
        assert not left, left
