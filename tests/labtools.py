"""Helpers for tests that bring up a real lab: its config, the one fixture every lab module
brings its labs up and tears them down with (``LabFixture``), and what a lab may have left
behind."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest

if TYPE_CHECKING:
    from overlaylab.etcd import EtcdClient
    from overlaylab.netrule import RouteGuard
    from standin import Record
    from standin.plan import Step

from overlaylab import mends
from overlaylab.backup import backup_dir
from overlaylab.config import ConfigError, LabConfig, parse
from overlaylab.config.sample import LAB_ID, SEGMENT, STATE_DIR, lab_config
from overlaylab.leftovers import leftovers
from overlaylab.spec import OUT_VALIDATION_SPEC
from overlaylab.stackconfig import stack_file

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


def untouched(cfg: LabConfig, containers: dict[str, str]) -> dict[str, Any]:
    """What a day-two step must not change on what stays: each of ``containers`` (name ->
    host) by its id and its address on the first network, and each of their hosts' etcd and
    dockerd pids. Facts read from the daemons and the pid files, not the planner's verdict."""
    from overlaylab.hosts.dockerd import docker_api

    got: dict[str, Any] = {}
    for name, host in containers.items():
        h = cfg.host(host)
        c = docker_api(cfg.docker_socket(h)).inspect_container(name)
        nets = c["NetworkSettings"]["Networks"]
        got[name] = (c["Id"], nets[cfg.network_name]["IPAddress"])
        base = Path(cfg.host_dir(h))
        got[f"{host} pids"] = tuple(
            (base / f).read_text().strip() for f in ("etcd.pid", "docker.pid")
        )
    return got


def parsed(raw: dict[str, Any]) -> LabConfig:
    return parse(raw, "test config")


def evidence_digest(root: Path, keep: int = 25) -> str:
    """What a failed validation's dump (``--dump``) holds that a CI log can show: each daemon's
    and keeper's warning and error lines (the last ``keep``), and the endpoint keys by name and
    locator. A flake leaves its mechanism here, not only its symptom."""
    out = [f"evidence (the validator's dump, {root}):"]
    keys = root / "etcd-docker-keys.json"
    try:
        eps: list[str] = []
        stack = [json.loads(keys.read_text()).get("node") or {}]
        while stack:
            n = stack.pop()
            stack.extend(n.get("nodes", []))
            if "/endpoint/" in n.get("key", "") and n.get("value"):
                v = json.loads(n["value"])
                eps.append(f"{v.get('name')}@{v.get('locator')} {n['key'].rsplit('/', 1)[-1][:12]}")
        out.append("  endpoint keys: " + (", ".join(sorted(eps)) or "none"))
    except (OSError, ValueError, AttributeError) as e:
        out.append(f"  endpoint keys: not read ({e})")
    for log in sorted(root.glob("*/*.log")):
        text = log.read_text(errors="replace").splitlines()
        worst = [ln for ln in text if "level=error" in ln or "level=warning" in ln or "mend" in ln]
        if worst:
            out.append(f"  {log.parent.name}/{log.name}, {len(worst)} warning/error lines:")
            out.extend(f"    {ln[:300]}" for ln in worst[-keep:])
    return "\n".join(out)


def assert_valid(spec: dict[str, Any], timeout: float = 60) -> None:
    """The strict validator, as a person runs it after `up`: every check passes. When one
    fails, the assertion carries a digest of the validator's dump (then removed)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="overlaylab-dump-"))
    try:
        res = validate_cli(spec, timeout, "--dump", str(root / "dump"))
        digest = evidence_digest(root / "dump") if res.returncode != 0 else ""
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert res.returncode == 0, failed_first(res.stdout) + res.stderr[-2000:] + "\n" + digest


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
    applied (where a ``LabFixture`` that keeps it looks for leftovers at the end)."""

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

    def preview(self, raw: dict[str, Any]) -> dict[str, Step]:
        """The plan of an `up` of ``raw`` on the running stack, by resource name; nothing is
        changed, the state neither."""
        import standin

        run = standin.run_program(
            raw, stack=self.stack, preview=True, guard=self.guard, secrets=self.secrets,
            old=self.state,
        )  # fmt: skip
        assert run.error is None, f"preview failed: {run.error}"
        return {st.name: st for st in run.steps}

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
        assert_valid(self.outputs[OUT_VALIDATION_SPEC])

    def destroy(self) -> list[str]:
        import standin

        errors = standin.destroy(self.state, guard=self.guard) if self.state else []
        self.state = []
        return errors


_R = TypeVar("_R", bound=Running)


class Cleanup:
    """Undo steps, run last in first out, every one of them even when one before fails; then
    one error naming every step that failed."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], object]]] = []

    def add(self, what: str, step: Callable[[], object]) -> None:
        self.steps.append((what, step))

    def failures(self) -> list[str]:
        """Runs every step (each once: they are taken off the list), and names those that
        raised."""
        steps, self.steps = self.steps, []
        failed: list[str] = []
        for what, step in reversed(steps):
            try:
                step()
            except Exception as e:
                failed.append(f"{what}: {type(e).__name__}: {e}")
        return failed

    def run(self) -> None:
        failed = self.failures()
        if failed:
            raise RuntimeError(f"cleanup incomplete ({len(failed)} failed): {'; '.join(failed)}")


class DestroyErrors(Exception):
    """A destroy that returned errors, as a teardown step's failure."""


_T = TypeVar("_T")


class LabFixture:
    """The lab tests' one fixture: a lab from its raw config to nothing left on the machine.

    Used as a context manager, by a module fixture (``with LabFixture(...) as lab: yield``) or
    by a test itself:

    - entering: root (a skip without it, a failure in CI), this process the reaper of the
      lab's daemons, and a failure if a lab of ``widest`` (else ``raw``) is up here already;
    - ``up()``: a fresh `up` of ``raw`` (or another config) through ``run_lab`` (the
      Automation API or the stand-in), failed unless it succeeds (``fails=True``: unless it
      fails; ``None``: the test judges); its ``destroy()`` runs once, by the test or at the end;
    - ``keep(running)``: a stack kept up across `up`s (``Running``), destroyed at the end;
      ``destroy_with(what, fn)``: what the test brought up itself (a CLI `destroy`);
      ``cleanup(what, fn)``, ``enter(cm)``: more to undo at the end (a directory, VM hosts);
    - ``validate(run)``: the strict validator on a run's spec, as a person runs it;
    - leaving, also when the body failed: every step above undone, last in first out, each
      even when one before failed; then ``leftovers()``, waiting up to ``settle`` seconds
      for the lab's processes to be reaped. Destroy errors, failed steps and anything left
      fail the test, together in one error at the end (when the body failed already, that
      error is a note on the body's).

    ``leftovers()`` looks (overlaylab/leftovers.py) for every config the lab applied: ``raw``,
    each `up`'s config that parses (one that does not is refused before anything exists),
    and each kept stack's; ``left_behind`` replaces that look (e.g. also a stack's state file).
    """

    def __init__(
        self,
        stack: str,
        state_file: Path | None = None,
        raw: dict[str, Any] | None = None,
        *,
        guard: RouteGuard | None = None,
        secrets: dict[str, str] | None = None,
        widest: dict[str, Any] | None = None,
        settle: float = 10.0,
        left_behind: Callable[[], list[str]] | None = None,
    ) -> None:
        self.stack, self.state_file, self.raw = stack, state_file, raw
        self.guard, self.secrets, self.widest = guard, secrets, widest
        self.settle, self.left_behind = settle, left_behind
        self._run: DestroyedOnce | None = None
        self._applied: list[tuple[dict[str, Any], dict[str, str] | None]] = []
        if raw is not None:
            self._applied.append((copy.deepcopy(raw), secrets))
        self._kept: list[Running] = []
        self._undo = Cleanup()

    @property
    def run(self) -> DestroyedOnce:
        """The last ``up()``."""
        assert self._run is not None, "nothing brought up yet"
        return self._run

    @property
    def cfg(self) -> LabConfig:
        assert self.raw is not None, "this lab has no config of its own"
        return _parsed(self.raw, self.secrets)

    def __enter__(self) -> LabFixture:
        import standin

        require_root()
        standin.become_subreaper()
        look = self.widest or self.raw
        there = self._look(look) if look is not None or self.left_behind else []
        if there:
            how = f" (python -m standin down --stack {self.stack})"
            hint = how if stack_file(self.stack).is_file() else ""
            pytest.fail(
                f"stack {self.stack}'s lab is up on this machine, or what it left: take it "
                f"down before the tests{hint}: {there[:3]}"
            )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not isinstance(exc, Exception):  # no failure (or a skip, an interrupt): raise
            self.close()
            return
        try:  # the test's own failure stays the one shown; the teardown's is added to it
            self.close()
        except AssertionError as e:
            exc.add_note(str(e))

    def up(
        self,
        raw: dict[str, Any] | None = None,
        *,
        fails: bool | None = False,
        state_file: Path | None = None,
    ) -> DestroyedOnce:
        """A fresh `up` of ``raw`` (else the lab's own config), destroyed at the end unless the
        test destroys it first (then its errors are asserted again at the end)."""
        raw = self.raw if raw is None else raw
        state = state_file or self.state_file
        assert raw is not None and state is not None, "up() needs a config and a state file"
        try:
            _parsed(raw, self.secrets)
            self._applied.append((copy.deepcopy(raw), self.secrets))
        except ConfigError:
            pass  # refused before any resource exists: nothing of it to look for
        start = time.monotonic()
        run = DestroyedOnce(run_lab(raw, self.stack, state, self.guard, self.secrets))
        self.destroy_with(f"destroy {self.stack} ({state.name})", run.destroy)
        self._run = run
        if fails is None:
            return run
        if fails:
            assert run.error is not None, "up succeeded"
        else:
            took = time.monotonic() - start
            assert run.error is None, f"up failed after {took:.0f}s: {run.error}"
        return run

    def keep(self, running: _R) -> _R:
        """A stack kept up across `up`s: destroyed at the end, every config it applied looked
        for."""
        self._kept.append(running)
        self.destroy_with(f"destroy {running.stack}", running.destroy)
        return running

    def destroy_with(self, what: str, destroy: Callable[[], list[str]]) -> None:
        def step() -> None:
            errors = destroy()
            if errors:
                raise DestroyErrors(errors)

        self._undo.add(what, step)

    def cleanup(self, what: str, step: Callable[[], object]) -> None:
        self._undo.add(what, step)

    def enter(self, what: str, cm: AbstractContextManager[_T]) -> _T:
        """``cm`` entered now and left at the end, after what is added later is undone (the VM
        hosts: every stack on them is destroyed before they go)."""
        stack = contextlib.ExitStack()
        value = stack.enter_context(cm)
        self._undo.add(what, stack.close)
        return value

    @staticmethod
    def validate(run: LabRun, timeout: float = 60) -> None:
        assert_valid((run.outputs or {})[OUT_VALIDATION_SPEC], timeout)

    def leftovers(self) -> list[str]:
        """What the lab left on this machine, once the reaper had up to ``settle`` seconds."""
        deadline = time.monotonic() + self.settle
        while self._look() and time.monotonic() < deadline:
            time.sleep(0.2)
        return self._look()

    def close(self) -> None:
        """The teardown (``__exit__``): undo everything, remove the backups of Docker's keys
        the lab's `up`s made, the evidence of its failed validations and its mend generations
        (all outlive a destroy on purpose: overlaylab/backup.py, validate/cli.py, mends.py),
        then look for what is left."""
        failed = self._undo.failures()
        for raw, secrets in self._every():
            try:
                cfg = _parsed(raw, secrets)
                if cfg.transport == "local":
                    shutil.rmtree(backup_dir(cfg), ignore_errors=True)
                    # and the evidence a failed validation left there (validate/cli.py)
                    shutil.rmtree(f"{cfg.state_dir}/{cfg.lab_id}.dumps", ignore_errors=True)
                    # and its mend generations (overlaylab/mends.py: they outlive a destroy)
                    mends.path(cfg).unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        Path(cfg.state_dir).rmdir()  # only when empty: the labs' shared root
            except ConfigError:
                continue
        try:
            left = self.leftovers()
        except Exception as e:
            failed.append(f"the leftover check: {type(e).__name__}: {e}")
            left = []
        if failed or left:
            lines = [*failed, *(f"left: {x}" for x in left)]
            raise AssertionError(
                f"teardown of stack {self.stack} incomplete ({len(failed)} failed, "
                f"{len(left)} left):\n" + "\n".join(f"  {x}" for x in lines)
            )

    def _look(self, only: dict[str, Any] | None = None) -> list[str]:
        """What is on this machine of ``only``, else of every config applied (or what
        ``left_behind`` finds)."""
        if self.left_behind is not None:
            return self.left_behind()
        configs = [(only, self.secrets)] if only is not None else self._every()
        found = (x for r, secrets in configs for x in leftovers(_parsed(r, secrets)))
        return list(dict.fromkeys(found))

    def _every(self) -> list[tuple[dict[str, Any], dict[str, str] | None]]:
        """Every config applied, each once (a kept stack applies the same one again and
        again)."""
        every = [*self._applied, *((r, k.secrets) for k in self._kept for r in k.ever)]
        configs: list[tuple[dict[str, Any], dict[str, str] | None]] = []
        for c in every:
            if c not in configs:
                configs.append(c)
        return configs


def _parsed(raw: dict[str, Any], secrets: dict[str, str] | None) -> LabConfig:
    return parsed({**raw, **(secrets or {})})


@contextlib.contextmanager
def kept_up(
    lab: Running, raw: dict[str, Any], validate: bool = True, widest: dict[str, Any] | None = None
) -> Iterator[Running]:
    """A module's running stack, in a ``LabFixture``: refused if a lab with that id is already
    up (looked for with ``widest``, the largest config the module applies, else ``raw``);
    brought up with ``raw`` and validated; destroyed at the end, failing on any error and on
    anything left at once (no settling), also when a test failed."""
    fixture = LabFixture(
        lab.stack, lab.state_file, raw, guard=lab.guard, secrets=lab.secrets, widest=widest,
        settle=0,
    )  # fmt: skip
    with fixture:
        fixture.keep(lab)
        lab.up(raw)
        if validate:
            lab.validate()
        yield lab
