"""Registration: the ``Mocks`` that turns each resource the program registers into a Record and
performs its create, and the monitor that hands it what ``MockResourceArgs`` leaves out.

The Pulumi runtime registers a resource only after what it depends on, and independent ones
concurrently from a thread pool, so creates run in the engine's order. Anything not in the
table of resource types (``TYPES``), or any input its type does not implement, is refused:
the stand-in never silently drops what the program declares.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi.runtime import mocks as pmocks

from overlaylab.netrule import RouteGuard
from tests.standin import commands, docker_ops, state
from tests.standin.ops import Context, ResourceType, UnsupportedResource
from tests.standin.state import Record

#: Every resource type the stand-in performs, by type token.
TYPES: dict[str, ResourceType] = {**commands.TYPES, **docker_ops.TYPES}


@dataclass
class Registration:
    """What a RegisterResource request says beyond ``MockResourceArgs``: the URN, the
    dependency edges and the resource options."""

    urn: str = ""
    deps: list[str] = field(default_factory=list)
    parent: str = ""
    delete_before_replace: bool = False

    @classmethod
    def of(cls, request: Any, urn: str) -> Registration:
        deps = set(request.dependencies)
        for pd in request.propertyDependencies.values():
            deps.update(pd.urns)
        return cls(
            urn=urn,
            deps=sorted(deps),
            parent=request.parent,
            delete_before_replace=bool(request.deleteBeforeReplace),
        )


class RealEngine(pmocks.Mocks):
    """``Mocks`` that performs each resource for real and records what it did.

    ``perform=False`` records the graph with placeholder outputs and touches nothing;
    ``preview=True`` does the same with unknown outputs, as ``pulumi preview``."""

    def __init__(
        self,
        preview: bool = False,
        state_file: Path | None = None,
        perform: bool = True,
        guard: RouteGuard | None = None,
    ) -> None:
        self.guard = guard
        self.preview = preview
        self.perform = perform and not preview
        self.state_file = state_file
        self.records: list[Record] = []
        self.inputs: dict[str, dict[str, Any]] = {}  # urn -> declared inputs
        self.context = Context(guard)
        self.lock = threading.Lock()
        self.local = threading.local()  # the Registration of the request this thread serves

    def call(
        self, args: pmocks.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise UnsupportedResource(f"function call {args.token} is not implemented by the stand-in")

    def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        reg: Registration = getattr(self.local, "registration", None) or Registration()
        rec = Record(
            urn=reg.urn,
            type=args.typ,
            name=args.name,
            deps=reg.deps,
            parent=reg.parent,
            provider=args.provider or "",
            custom=bool(args.custom),
            delete_before_replace=reg.delete_before_replace,
        )
        with self.lock:
            self.inputs[rec.urn] = dict(args.inputs)
        if not args.custom:
            with self.lock:
                self.records.append(rec)
            return "", {}
        kind = _implemented(args)
        start = time.monotonic()
        if self.perform:
            rid, outputs = kind.create(self.context, rec, dict(args.inputs))
        else:
            rid, outputs = self._pretend(kind, args)
        rec.seconds = time.monotonic() - start
        with self.lock:
            self.records.append(rec)
            if self.state_file is not None and self.perform:
                state.save(self.state_file, self.records)
        return rid, outputs

    def _pretend(
        self, kind: ResourceType, args: pmocks.MockResourceArgs
    ) -> tuple[str, dict[str, Any]]:
        """What the engine returns without doing anything: in preview, computed outputs are
        unknown (absent) and ids empty; otherwise they are plausible placeholders."""
        if self.preview:
            return "", dict(args.inputs)
        return f"{args.name}-id", {**args.inputs, **kind.placeholders(args.name)}


def _implemented(args: pmocks.MockResourceArgs) -> ResourceType:
    """The resource's type, if the stand-in performs it with every input it declares."""
    kind = TYPES.get(args.typ)
    if kind is None:
        raise UnsupportedResource(f"{args.typ} ({args.name}) is not implemented by the stand-in")
    unknown = sorted(set(args.inputs) - kind.inputs)
    if unknown:
        raise UnsupportedResource(
            f"{args.typ} ({args.name}) declares inputs the stand-in does not implement: "
            f"{', '.join(unknown)}"
        )
    return kind


class RecordingMonitor(pmocks.MockMonitor):
    """Passes each registration's URN, edges and options to the engine's ``new_resource``
    (``MockResourceArgs`` carries none of them)."""

    def __init__(self, engine: RealEngine) -> None:
        super().__init__(engine)
        self.engine = engine

    def RegisterResource(self, request: Any) -> Any:
        urn = self.make_urn(request.parent, request.type, request.name)
        self.engine.local.registration = Registration.of(request, urn)
        try:
            return super().RegisterResource(request)
        finally:
            self.engine.local.registration = None
