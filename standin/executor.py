"""Destroy: every recorded resource's delete, in reverse dependency order.

Dependents (by dependency, parent or provider) go before what they depend on; independent
deletes run concurrently. As the engine: with a state file, each delete is a pending operation
in it while it runs and its record leaves the file once it completed (a checkpoint per step);
after a failed delete no new delete starts (those running finish), and the file keeps what was
not deleted, so that the next destroy deletes the rest.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from overlaylab.netrule import RouteGuard
from standin import docker_ops, interrupt, state
from standin.engine import delete
from standin.ops import Context
from standin.plan import Step
from standin.reaper import reap_now
from standin.state import CREATING, DELETING, Operation, Record


def destroy(
    records: list[Record],
    workers: int = 64,  # the engine deletes with unbounded parallelism
    guard: RouteGuard | None = None,
    steps: list[Step] | None = None,
    state_file: Path | None = None,
    pending: Sequence[Operation] = (),
) -> list[str]:
    """Delete in reverse dependency order; returns the errors (empty when all went well).

    ``guard`` checks the route to every lab address a delete contacts (ssh stacks); ``steps``,
    when given, receives one timed delete step per resource (the down's timeline);
    ``state_file``, when given, is checkpointed after every delete, with the pending creates
    of ``pending`` (an interrupted run's operations) kept in it."""
    try:
        ctx = Context(guard)
        for r in records:
            # The providers as the state has them now (an update may have moved one).
            if r.type == docker_ops.DOCKER_PROVIDER and r.id and r.state.get("host"):
                ctx.add_provider(r.id, r.state["host"], list(r.state.get("sshOpts") or []))
        checkpoint = _Checkpoint(state_file, records, pending)
        return _destroy(records, workers, ctx, steps if steps is not None else [], checkpoint)
    finally:
        docker_ops.TUNNELS.close()
        reap_now()


def dependents_of(records: list[Record]) -> dict[str, set[str]]:
    """For each URN, the URNs that must be deleted before it."""
    dependents: dict[str, set[str]] = {r.urn: set() for r in records}
    for r in records:
        for d in [*r.deps, r.parent, r.provider.rsplit("::", 1)[0]]:
            if d in dependents and d != r.urn:
                dependents[d].add(r.urn)
    return dependents


class _Checkpoint:
    """The state file during a destroy (pkg/backend/snapshot.go doDelete / End): the delete as
    a pending operation before it starts; after it, the operation gone and, if it succeeded,
    the record too. Pending creates of an earlier run stay (they need the user)."""

    def __init__(
        self, state_file: Path | None, records: list[Record], pending: Sequence[Operation]
    ) -> None:
        self.state_file = state_file
        self.left = list(records)
        self.carried = [o for o in pending if o.type == CREATING]
        self.operations: dict[int, Operation] = {}
        self.lock = threading.Lock()
        self._save()  # the other operations of an interrupted run are dropped

    def begin(self, rec: Record) -> None:
        with self.lock:
            self.operations[id(rec)] = Operation(DELETING, rec)
            self._save()

    def end(self, rec: Record, deleted: bool) -> None:
        with self.lock:
            self.operations.pop(id(rec), None)
            if deleted:
                self.left = [r for r in self.left if r is not rec]
            self._save()

    def _save(self) -> None:
        if self.state_file is not None:
            state.save(self.state_file, self.left, [*self.carried, *self.operations.values()])


def _destroy(
    records: list[Record], workers: int, ctx: Context, steps: list[Step], checkpoint: _Checkpoint
) -> list[str]:
    start = time.monotonic()

    failed = threading.Event()

    def stopped() -> bool:
        return failed.is_set() or interrupt.STOP.is_set()

    def timed(rec: Record) -> bool:
        if stopped():  # step_executor.go executeChain: not started once canceled
            return False
        began = time.monotonic()
        deleted = False
        checkpoint.begin(rec)
        try:
            delete(ctx, rec)
            deleted = True
        except BaseException:
            failed.set()
            raise
        finally:
            checkpoint.end(rec, deleted)
            ended = time.monotonic()
            steps.append(
                Step(rec.urn, rec.type, rec.name, "delete", seconds=ended - began,
                     started=began - start)
            )  # fmt: skip
        return True

    pending = {r.urn: r for r in records}
    dependents = dependents_of(records)
    done: set[str] = set()
    errors: list[str] = []
    running: dict[cf.Future[bool], str] = {}
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        while pending or running:
            # step_executor.go: after a failed step no new step starts; the running ones finish
            for urn in [u for u in pending if dependents[u] <= done and not stopped()]:
                running[pool.submit(timed, pending.pop(urn))] = urn
            if not running:
                if interrupt.STOP.is_set():
                    errors.append(f"interrupted: {len(pending)} deletes not started")
                elif not failed.is_set():
                    errors.append(f"dependency cycle among {sorted(pending)}")
                break
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for f in finished:
                urn = running.pop(f)
                if f.exception() is not None:
                    errors.append(f"{urn.rsplit('::', 1)[-1]}: {f.exception()}")
                done.add(urn)
    return errors
