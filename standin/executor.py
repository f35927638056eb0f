"""Destroy: every recorded resource's delete, in reverse dependency order.

Dependents (by dependency, parent or provider) go before what they depend on; independent
deletes run concurrently. A failed delete is reported and the rest goes on, so nothing that
can be removed is left behind.
"""

from __future__ import annotations

import concurrent.futures as cf
import time

from overlaylab.netrule import RouteGuard
from standin import docker_ops
from standin.engine import delete
from standin.ops import Context
from standin.plan import Step
from standin.state import Record


def destroy(
    records: list[Record],
    workers: int = 64,  # the engine deletes with unbounded parallelism
    guard: RouteGuard | None = None,
    steps: list[Step] | None = None,
) -> list[str]:
    """Delete in reverse dependency order; returns the errors (empty when all went well).

    ``guard`` checks the route to every lab address a delete contacts (ssh stacks); ``steps``,
    when given, receives one timed delete step per resource (the down's timeline)."""
    try:
        ctx = Context(guard)
        for r in records:
            # The providers as the state has them now (an update may have moved one).
            if r.type == docker_ops.DOCKER_PROVIDER and r.id and r.state.get("host"):
                ctx.add_provider(r.id, r.state["host"], list(r.state.get("sshOpts") or []))
        return _destroy(records, workers, ctx, steps if steps is not None else [])
    finally:
        docker_ops.TUNNELS.close()


def dependents_of(records: list[Record]) -> dict[str, set[str]]:
    """For each URN, the URNs that must be deleted before it."""
    dependents: dict[str, set[str]] = {r.urn: set() for r in records}
    for r in records:
        for d in [*r.deps, r.parent, r.provider.rsplit("::", 1)[0]]:
            if d in dependents and d != r.urn:
                dependents[d].add(r.urn)
    return dependents


def _destroy(records: list[Record], workers: int, ctx: Context, steps: list[Step]) -> list[str]:
    start = time.monotonic()

    def timed(rec: Record) -> None:
        began = time.monotonic()
        try:
            delete(ctx, rec)
        finally:
            ended = time.monotonic()
            steps.append(
                Step(rec.urn, rec.type, rec.name, "delete", seconds=ended - began,
                     started=began - start)
            )  # fmt: skip

    pending = {r.urn: r for r in records}
    dependents = dependents_of(records)
    done: set[str] = set()
    errors: list[str] = []
    running: dict[cf.Future[None], str] = {}
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        while pending or running:
            for urn in [u for u in pending if dependents[u] <= done]:
                running[pool.submit(timed, pending.pop(urn))] = urn
            if not running:
                errors.append(f"dependency cycle among {sorted(pending)}")
                break
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for f in finished:
                urn = running.pop(f)
                if f.exception() is not None:
                    # Go on: what depends on a failed delete is already gone, and leaving the
                    # rest (namespaces, processes) behind would be worse than a partial error.
                    errors.append(f"{urn.rsplit('::', 1)[-1]}: {f.exception()}")
                done.add(urn)
    return errors
