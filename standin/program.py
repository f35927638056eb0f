"""Running the project's ``__main__.py`` under the stand-in: a fresh Pulumi runtime per run,
the stack's config, and the result (outputs, error, records) as a ``Run``."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import json
import os
import runpy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import settings as psettings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from overlaylab.backup import RECORD_ONLY
from overlaylab.netrule import RouteGuard
from overlaylab.stackconfig import PROJECT
from standin import docker_ops
from standin.engine import RealEngine, RecordingMonitor
from standin.executor import destroy
from standin.ops import ResourceFailed, UnsupportedResource
from standin.plan import Step
from standin.state import Operation, Record
from standin.targets import Targets

PROJECT_DIR = Path(__file__).resolve().parents[1]


def stack_config(raw: dict[str, Any]) -> dict[str, str]:
    """Config as the engine passes it to a program: objects JSON-encoded."""
    return {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


@dataclass
class Run:
    engine: RealEngine
    outputs: dict[str, Any] | None
    error: BaseException | None
    seconds: float

    @property
    def records(self) -> list[Record]:
        """Every resource the program registered, in registration order."""
        return self.engine.records

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        """Each resource's declared inputs, by URN."""
        return self.engine.inputs

    @property
    def steps(self) -> list[Step]:
        """The plan: a step per registered resource in registration order, then the deletes."""
        return list(self.engine.planner.steps.values())

    def destroy(self) -> list[str]:
        return destroy(self.engine.state(), guard=self.engine.guard)


def run_program(
    raw_config: dict[str, Any],
    stack: str = "local",
    preview: bool = False,
    state_file: Path | None = None,
    perform: bool = True,
    guard: RouteGuard | None = None,
    secrets: dict[str, str] | None = None,
    old: list[Record] | None = None,
    on_step: Callable[[Step], None] | None = None,
    pending: list[Operation] | None = None,
    targets: list[str] | None = None,
    target_dependents: bool = False,
    replaces: list[str] | None = None,
) -> Run:
    """Run ``__main__.py`` with this config; never raises for the program's own errors.

    ``old`` is the stack's state from an earlier run: the run is then an update (or, with
    ``preview``, its plan). ``perform=False`` records the graph without touching the machine
    (unit tests); ``pending``: the operations in flight an interrupted run left in the state.
    ``targets``, ``target_dependents``, ``replaces``: `up --target`, `--target-dependents`,
    `--replace` (standin.targets)."""
    engine = RealEngine(
        preview=preview, state_file=state_file, perform=perform, guard=guard, old=old,
        pending=pending,
    )  # fmt: skip
    engine.on_step = on_step
    if targets:
        engine.targets = Targets(frozenset(targets), target_dependents)
    engine.planner.replaces = set(replaces or ())
    _fresh_runtime(engine, stack, preview, raw_config, secrets or {})
    holder: dict[str, Any] = {}

    def body() -> None:
        runpy.run_path(str(PROJECT_DIR / "__main__.py"), run_name="__main__")
        holder["outputs"] = _exported_outputs()

    start = time.monotonic()
    error: BaseException | None = None
    _quiet_reported_failures()
    # A run that records the graph touches nothing: the program's own reads and writes before
    # any step (its backup of Docker's keys, its clean-up of stale node keys) are skipped too.
    record_only = not perform and not preview
    if record_only:
        os.environ[RECORD_ONLY] = "1"
    try:
        _engine_parallelism()
        _sync_await(run_pulumi_func(body))
        # The engine deletes what left the program only once the program has finished.
        errors = engine.finish()
        if errors:
            error = ResourceFailed("; ".join(errors))
    except BaseException as e:
        # The first failed step's error, not that of a registration it kept from starting.
        error = engine.failed if engine.failed is not None else e
    finally:
        docker_ops.TUNNELS.close()
        if record_only:
            os.environ.pop(RECORD_ONLY, None)
    return Run(engine, holder.get("outputs"), error, time.monotonic() - start)


# The real CLI's language host sizes the program's default executor from `--parallel` (its
# default is unbounded; pulumi/pulumi#11122, x4 since #20362): every blocking RegisterResource
# RPC holds one thread until its resource is done. Python's own default is min(32, cores + 4),
# 6 on this 2-core machine, which would run at most 6 resource operations at once: a limit the
# engine does not have (it started 6 of 8 etcd members and made the other two wait).
PARALLEL_THREADS = 128


_EXECUTOR = cf.ThreadPoolExecutor(max_workers=PARALLEL_THREADS, thread_name_prefix="register")


def _engine_parallelism() -> None:
    _ensure_event_loop().set_default_executor(_EXECUTOR)


def _fresh_runtime(
    engine: RealEngine,
    stack: str,
    preview: bool,
    raw_config: dict[str, Any],
    secrets: dict[str, str],
) -> None:
    # Each run is a fresh program: no root stack, RPCs or errors left from an earlier run.
    psettings.ROOT.set(None)
    psettings.SETTINGS.rpc_manager.clear()
    psettings.SETTINGS.outputs.clear()
    pmocks.set_mocks(
        engine, project=PROJECT, stack=stack, preview=preview, monitor=RecordingMonitor(engine)
    )
    config = stack_config(raw_config)
    config.update({f"{PROJECT}:{k}": v for k, v in secrets.items()})
    pulumi.runtime.set_all_config(config, [f"{PROJECT}:{k}" for k in secrets])


def _exported_outputs() -> dict[str, Any]:
    root = psettings.get_root_resource()
    exported: dict[str, Any] = getattr(root, "outputs", {}) if root is not None else {}
    # Key by key, so that in preview one unknown output does not hide the known ones.
    return {
        k: _sync_await(pulumi.Output.from_input(v).future(with_unknowns=True))
        for k, v in exported.items()
    }


def _quiet_reported_failures() -> None:
    """A failed resource reaches the caller as ``Run.error``; the runtime's other futures that
    carry the same exception would each be logged again at exit as "never retrieved"."""
    loop = asyncio.get_event_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), ResourceFailed | UnsupportedResource):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
