"""Registration: the ``Mocks`` that turns each resource the program registers into a Record and
performs its create, and the monitor that hands it what ``MockResourceArgs`` leaves out.

The Pulumi runtime registers a resource only after what it depends on, and independent ones
concurrently from a thread pool, so creates run in the engine's order. Anything not in the
table of resource types (``TYPES``), or any input its type does not implement, is refused:
the stand-in never silently drops what the program declares.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc

from overlaylab.netrule import RouteGuard
from standin import commands, docker_ops, interrupt, state
from standin.diff import Options, has_unknown, options_from_request, with_ignored_changes
from standin.ops import Context, PartialCreate, ResourceFailed, ResourceType, UnsupportedResource
from standin.plan import Planner, Step, delete_waves
from standin.state import (
    CREATING,
    DELETING,
    UPDATING,
    Operation,
    Record,
    contains_secret,
    for_state,
    unwrap,
)
from standin.targets import Targets

#: Every resource type the stand-in performs, by type token.
TYPES: dict[str, ResourceType] = {**commands.TYPES, **docker_ops.TYPES}


@dataclass
class Registration:
    """What a RegisterResource request says beyond ``MockResourceArgs``: the URN, the
    dependency edges, the resource options, and the inputs with unknowns kept as such."""

    urn: str = ""
    deps: list[str] = field(default_factory=list)
    parent: str = ""
    options: Options = field(default_factory=Options)
    prop_deps: dict[str, list[str]] = field(default_factory=dict)
    inputs: dict[str, Any] | None = None
    secret_outputs: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, request: Any, urn: str) -> Registration:
        deps = set(request.dependencies)
        prop_deps = {k: sorted(v.urns) for k, v in request.propertyDependencies.items()}
        for urns in prop_deps.values():
            deps.update(urns)
        if request.deletedWith:
            deps.add(request.deletedWith)
        return cls(
            urn=urn,
            deps=sorted(deps),
            parent=request.parent,
            options=options_from_request(request),
            prop_deps={k: v for k, v in prop_deps.items() if v},
            inputs=rpc.deserialize_properties(request.object, keep_unknowns=True),
            secret_outputs=list(request.additionalSecretOutputs),
        )


class RealEngine(pmocks.Mocks):
    """``Mocks`` that performs each resource for real and records what it did.

    With the state of an earlier run (``old``), each resource gets the engine's step: same
    (nothing runs), update, replace (delete-first where asked, with the dependents replaced
    with it) or create; :meth:`finish` then deletes what left the program. ``perform=False``
    records the graph with placeholder outputs and touches nothing; ``preview=True`` plans
    with unknown outputs, as ``pulumi preview``.

    As the engine: once a step failed no new step starts (registrations after it fail, the
    deletes after the program do not run); each create, update and delete is a pending
    operation in the state file while it runs; ``pending`` are the operations an interrupted
    run left, of which the creates stay in the state."""

    def __init__(
        self,
        preview: bool = False,
        state_file: Path | None = None,
        perform: bool = True,
        guard: RouteGuard | None = None,
        old: list[Record] | None = None,
        pending: list[Operation] | None = None,
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
        self.old = [r for r in old or [] if not r.pending_delete]
        self.pending = [r for r in old or [] if r.pending_delete]
        self.planner = Planner(self.old)
        self.by_urn = {r.urn: r for r in self.old}
        self.gone: set[str] = set()  # urns of old resources deleted in this run
        self.replaced: list[Record] = []  # old copies of create-first replacements
        self.on_step: Callable[[Step], None] | None = None  # `up` prints as it goes
        self.t0 = time.monotonic()
        self.failed: BaseException | None = None  # the first failed step's error
        self.operations: dict[int, Operation] = {}  # id(record) -> its step in flight
        # snapshot.go Snap: pending creates of the base state need the user; they stay
        self.carried = [o for o in pending or [] if o.type == CREATING]
        # (standin-providers) a preview configures providers (perform=False touches nothing);
        # `up --target`
        self.configure_in_preview = perform
        self.targets: Targets | None = None
        # providers whose inputs hold an unknown in preview: never configured (see _register)
        self.unconfigured: set[str] = set()

    def call(
        self, args: pmocks.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise UnsupportedResource(f"function call {args.token} is not implemented by the stand-in")

    def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        with self.lock:
            if self.failed is None and interrupt.STOP.is_set():
                self.failed = interrupt.Interrupted()
            failed = self.failed
        if failed is not None:  # step_executor.go: a cancelled executor starts no new step
            why = (
                "interrupted"
                if isinstance(failed, interrupt.Interrupted)
                else "an earlier step failed"
            )
            raise ResourceFailed(f"{args.name}: not started: {why}")
        try:
            return self._register(args)
        except BaseException as e:
            with self.lock:
                if self.failed is None:
                    self.failed = e
            raise

    def _register(self, args: pmocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        reg: Registration = getattr(self.local, "registration", None) or Registration()
        declared = reg.inputs if reg.inputs is not None else dict(args.inputs)
        rec = Record(
            urn=reg.urn,
            type=args.typ,
            name=args.name,
            deps=reg.deps,
            parent=reg.parent,
            provider=args.provider or "",
            custom=bool(args.custom),
            delete_before_replace=reg.options.delete_before_replace,
            inputs=for_state(declared),
            prop_deps=reg.prop_deps,
            options=reg.options.to_json(),
        )
        with self.lock:
            self.inputs[rec.urn] = dict(args.inputs)
        kind = _implemented(args) if args.custom else None
        if self.targets is not None and not self.targets.targeted(
            rec.urn, rec.type, rec.deps, rec.parent, rec.provider
        ):
            return self._untargeted(rec, args)
        if (
            kind is not None
            and kind.configure is not None
            and self.preview
            and has_unknown(declared)
        ):
            with self.lock:
                self.unconfigured.add(rec.urn)
        blind = bool(rec.provider) and rec.provider.rsplit("::", 1)[0] in self.unconfigured
        step = self.planner.step(
            rec.urn, rec.type, rec.name, rec.custom, rec.inputs, reg.options, rec.provider, blind
        )
        start = time.monotonic()
        step.started = start - self.t0
        if step.kind != "create" and step.diff is not None:
            rec.inputs = step.diff.inputs  # ignore_changes keeps old values in the state
        if kind is not None and kind.configure is not None and self._configures(declared):
            kind.configure(self.context, unwrap(declared))  # a provider, in preview
        try:
            rid, outputs = self._perform(step, kind, rec, args) if kind else ("", {})
        except PartialCreate as e:
            # (standin-providers) the resource exists: recorded with its init error
            rec.id, rec.outputs, rec.init_errors = e.rid, for_state(e.outputs), [str(e)]
            with self.lock:
                self.records.append(rec)
                self._save()
            raise
        rec.seconds = step.seconds = time.monotonic() - start
        rec.id = rid or ""
        rec.outputs = for_state(outputs)
        # step_executor.go: additional secret outputs, and outputs whose input was secret
        secret = {*reg.secret_outputs, *(k for k, v in declared.items() if contains_secret(v))}
        rec.secret_outputs = sorted(k for k in secret if k in rec.outputs)
        with self.lock:
            self.operations.pop(id(rec), None)  # its operation ends with its new state
            self.records.append(rec)
            self._save()
        if self.on_step is not None and step.kind != "same":
            self.on_step(step)
        return rid, outputs

    def _configures(self, declared: dict[str, Any]) -> bool:
        """The engine configures a provider in preview when its inputs are all known
        (provider_plugin.go:1060-1076); in `up`, its create, update or adopt does."""
        return self.preview and self.configure_in_preview and not has_unknown(declared)

    def _untargeted(self, rec: Record, args: pmocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        """Not in --target: it keeps its old state, or, new, it is not created."""
        old = self.by_urn.get(rec.urn)
        if old is None:
            assert self.targets is not None
            self.targets.skipped.add(rec.urn)
            return "", dict(args.inputs)
        kept = Record(**asdict(old))
        with self.lock:
            self.records.append(kept)
            self.planner.steps[rec.urn] = Step(rec.urn, rec.type, rec.name, "same")
            self._save()
        return old.id, dict(old.outputs)

    def _perform(
        self, step: Step, kind: ResourceType, rec: Record, args: pmocks.MockResourceArgs
    ) -> tuple[str, dict[str, Any]]:
        old = self.by_urn.get(rec.urn)
        inputs = dict(args.inputs)
        if old is not None and step.kind in ("update", "replace"):
            # what the provider gets: the ignored paths hold their old values
            ignored = Options.from_json(rec.options).ignore_changes
            inputs = with_ignored_changes(old.inputs, inputs, ignored, rec.name)
        if step.kind == "same" and old is not None:
            rec.state = dict(old.state)
            if self.perform:
                kind.adopt(self.context, old)
            return old.id, dict(old.outputs)
        if step.kind == "replace" and step.diff is not None and step.diff.delete_before_replace:
            self._delete_first(step, old)
        if not self.perform:
            if step.kind == "update" and old is not None:
                return old.id, {**old.outputs, **inputs} if not self.preview else inputs
            return self._pretend(kind, args)
        if step.kind == "update" and old is not None:
            with self._operation(UPDATING, rec):
                return kind.update(self.context, rec, old, inputs)
        if step.kind == "replace" and old is not None and old.urn not in self.gone:
            with self.lock:
                self.replaced.append(old)  # deleted after the program, create-first
        with self._operation(CREATING, rec):
            return kind.create(self.context, rec, inputs)

    @contextlib.contextmanager
    def _operation(self, kind: str, rec: Record) -> Iterator[None]:
        """The step as a pending operation in the state file from before it starts (snapshot.go
        BeginMutation). A failed step's is removed here; a successful one's by the caller, in
        the same save as the step's result (End)."""
        with self.lock:
            self.operations[id(rec)] = Operation(kind, Record(**asdict(rec)))
            self._save()
        try:
            yield
        except BaseException:
            with self.lock:
                self.operations.pop(id(rec), None)
                self._save()
            raise

    def _delete_first(self, step: Step, old: Record | None) -> None:
        """Delete-before-replace: the dependents that would be replaced go first, then the
        old resource itself; the new one is created after."""
        victims = [
            self.by_urn[v.urn]
            for v in self.planner.dependents_replaced_with(step.urn)
            if v.urn not in self.gone
        ]
        step.replaced_with = tuple(v.name for v in victims)
        if old is not None and old.urn not in self.gone:
            victims.append(old)
        for v in victims:
            if self.perform:
                with self._operation(DELETING, v):
                    delete(self.context, v)
            with self.lock:
                self.operations.pop(id(v), None)
                self.gone.add(v.urn)
                self.planner.deleted_early.add(v.urn)
                self._save()

    def finish(self) -> list[str]:
        """After the program: delete what left it and the old copies replaced create-first,
        dependents first, through the old graph. Returns the errors.

        Nothing is deleted after a failed step (deployment_executor.go: the deletes run only
        once the program ended without one), and no new delete starts after a failed one."""
        with self.lock:
            if self.failed is None and interrupt.STOP.is_set():
                self.failed = interrupt.Interrupted()
        if self.failed is not None:
            return []
        registered = [r.urn for r in self.records]
        leaving = [
            self.by_urn[r.urn] for r in self.planner.deletes(registered) if r.urn not in self.gone
        ]
        if self.targets is not None:  # only targeted resources are deleted
            t = self.targets
            kept = [r for r in leaving if not t.may_delete(r.urn, r.deps, r.parent, r.provider)]
            for r in kept:
                self.planner.steps.pop(r.urn, None)
            leaving = [r for r in leaving if r not in kept]
        victims = [r for r in leaving if r.urn not in registered] + self.pending
        old_copies = [r for r in self.replaced if r.urn not in self.gone]
        graph = {r.urn: r for r in [*self.old, *self.pending]}
        errors: list[str] = []
        for wave in delete_waves([*victims, *old_copies], graph):
            if self.failed is not None:
                break
            errors += self._delete_wave(list(wave), {id(r) for r in old_copies})  # type: ignore[arg-type]
        return errors

    def _delete_wave(self, wave: list[Record], copies: set[int]) -> list[str]:
        skip = {r.urn for r in wave}
        with cf.ThreadPoolExecutor(max_workers=64) as pool:  # the engine: unbounded
            results = list(pool.map(lambda r: self._delete_one(r, skip, copies), wave))
        return [e for e in results if e]

    def _delete_one(self, r: Record, skip: set[str], copies: set[int]) -> str:
        start = time.monotonic()
        opts = Options.from_json(r.options)
        with self.lock:
            if self.failed is None and interrupt.STOP.is_set():
                self.failed = interrupt.Interrupted()
            if self.failed is not None:
                return ""  # not started: an earlier step failed, or interrupted
        try:
            # retain_on_delete: out of the state, left on the host; deleted_with: its delete
            # is the one of what it was deleted with
            if self.perform and not opts.retain_on_delete and opts.deleted_with not in skip:
                with self._operation(DELETING, r):
                    delete(self.context, r)
        except Exception as e:  # reported; the deletes running finish, no new one starts
            with self.lock:
                if self.failed is None:
                    self.failed = e
            return f"delete of {r.name}: {e}"
        with self.lock:
            self.operations.pop(id(r), None)
            if id(r) in copies:
                self.replaced = [c for c in self.replaced if c is not r]
            else:
                self.gone.add(r.urn)
            self._save()
        st = self.planner.steps.get(r.urn)
        if st is not None and st.kind == "delete":
            st.started, st.seconds = start - self.t0, time.monotonic() - start
            if self.on_step is not None:
                self.on_step(st)
        return ""

    def state(self) -> list[Record]:
        """The stack as it stands: what this run registered, the old copies still to delete,
        and what of the old state this run has not reached (a failed run keeps it)."""
        registered = {r.urn for r in self.records}
        kept = [r for r in self.old if r.urn not in registered and r.urn not in self.gone]
        copies = [Record(**{**asdict(r), "pending_delete": True}) for r in self.replaced]
        return [*self.records, *copies, *kept, *self.pending]

    def _save(self) -> None:
        if self.state_file is not None and self.perform:
            state.save(self.state_file, self.state(), [*self.carried, *self.operations.values()])

    def _pretend(
        self, kind: ResourceType, args: pmocks.MockResourceArgs
    ) -> tuple[str, dict[str, Any]]:
        """What the engine returns without doing anything: in preview, computed outputs are
        unknown (absent) and ids empty; otherwise they are plausible placeholders."""
        if self.preview:
            return "", dict(args.inputs)
        return f"{args.name}-id", {**args.inputs, **kind.placeholders(args.name)}


def delete(ctx: Context, rec: Record) -> None:
    """One resource's delete, as its type does it (components have none)."""
    kind = TYPES.get(rec.type)
    if kind is not None:
        kind.delete(ctx, rec)


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
