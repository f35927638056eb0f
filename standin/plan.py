"""The plan of an update on an existing stack: one step per resource, as the engine makes it.

The executor asks :class:`Planner` for a step when a resource registers (the engine decides
then, from the old state and the new inputs), and after the program for the deletes: the
resources that left the program and the old copies of create-before-delete replacements, in
reverse-dependency waves. ``render`` prints what ``pulumi preview`` prints, in its notation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from standin.diff import SYMBOLS, UNKNOWN, Diff, Kind, Options, diff, show


class StateEntry(Protocol):
    """What the planner reads of a resource in the stack's state."""

    urn: str
    type: str
    name: str
    deps: list[str]
    parent: str
    provider: str
    custom: bool
    inputs: dict[str, Any]
    prop_deps: dict[str, list[str]]
    options: dict[str, Any]


@dataclass
class Step:
    urn: str
    type: str
    name: str
    kind: Kind
    diff: Diff | None = None
    old_inputs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    started: float = 0.0  # seconds after the run started (the timeline)
    replaced_with: tuple[str, ...] = ()  # dependents deleted first with a delete-first replace
    warning: str = ""  # the engine's warning on this step (a diff it could not make)

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.kind]


#: The engine's warning for a resource whose provider is not configured in preview
#: (provider_plugin.go:1307-1308).
UNAVAILABLE = (
    "The provider for this resource has inputs that are not known during preview.\n"
    "This preview may not correctly represent the changes that will be applied during an update."
)


class Planner:
    """Steps against the old state; it never performs anything itself."""

    def __init__(self, old: Sequence[StateEntry]) -> None:
        self.old: dict[str, StateEntry] = {r.urn: r for r in old}
        self.steps: dict[str, Step] = {}
        self.deleted_early: set[str] = set()  # gone already, by a delete-first replacement
        self.replaces: set[str] = set()  # `up --replace URN`

    # --- registration ---------------------------------------------------------------------

    def step(
        self,
        urn: str,
        typ: str,
        name: str,
        custom: bool,
        inputs: Mapping[str, Any],
        options: Options,
        provider: str,
        unconfigured: bool = False,
    ) -> Step:
        """The step for a registration. ``unconfigured``: its provider's inputs held an unknown
        in this preview, so the provider was never configured; the engine's wrapper then makes
        no Diff (pulumi/pulumi v3.259.0 sdk/go/common/resource/plugin/provider_plugin.go:
        1303-1310, DiffUnavailable) and the step generator plans an update with the wrapper's
        message as a warning (pkg/resource/deploy/step_generator.go:1928-1932); the only
        replace left is the one `--replace` asks for (step_generator.go:2889-2891, before any
        Diff)."""
        old = self.old.get(urn)
        if old is None:
            st = Step(urn, typ, name, "create")
        elif not custom:
            st = Step(urn, typ, name, "same")
        elif urn in self.deleted_early:
            # Its old copy went with a delete-first replacement of what it depends on.
            d = diff(typ, old.inputs, inputs, options, provider_changed=False, name=name)
            st = Step(urn, typ, name, "replace", d, dict(old.inputs))
        else:
            d = diff(
                typ,
                old.inputs,
                inputs,
                options,
                provider_changed=_provider_urn(old.provider) != _provider_urn(provider),
                name=name,
                old_outputs=getattr(old, "outputs", None),
                init_errors=bool(getattr(old, "init_errors", None)),
                force_replace=urn in self.replaces,
            )
            st = Step(urn, typ, name, d.kind, d, dict(old.inputs))
            if unconfigured and urn not in self.replaces and "provider" not in d.replace_reasons:
                blind = Diff("update", (), (), options.delete_before_replace, d.inputs)
                st = Step(urn, typ, name, "update", blind, dict(old.inputs), warning=UNAVAILABLE)
        self.steps[urn] = st
        return st

    def dependents_replaced_with(self, urn: str) -> list[StateEntry]:
        """A delete-first replacement takes with it the dependents that would be replaced:
        those with a *property* dependency on it whose diff, with those properties unknown,
        says replace (transitively). Returned dependents first."""
        found: dict[str, StateEntry] = {}
        frontier = [urn]
        while frontier:
            target = frontier.pop()
            for r in self.old.values():
                if r.urn in found or r.urn == urn or not r.custom:
                    continue
                props = [p for p, urns in r.prop_deps.items() if target in urns]
                if not props or r.type not in _RULED:
                    continue
                unknown = {**r.inputs, **dict.fromkeys(props, UNKNOWN)}
                d = diff(r.type, r.inputs, unknown, Options.from_json(r.options), name=r.name)
                if d.kind == "replace":
                    found[r.urn] = r
                    frontier.append(r.urn)
        return order_for_delete(list(found.values()), self.old)

    # --- after the program ------------------------------------------------------------------

    def deletes(self, registered: Iterable[str]) -> list[StateEntry]:
        """Resources that left the program, and old copies replaced create-before-delete."""
        seen = set(registered)
        out = [
            r
            for r in self.old.values()
            if r.urn not in self.deleted_early
            and (
                r.urn not in seen
                or (
                    self.steps.get(r.urn) is not None
                    and self.steps[r.urn].kind == "replace"
                    and not _dbr(self.steps[r.urn])
                )
            )
        ]
        for r in out:
            if r.urn not in seen:
                self.steps[r.urn] = Step(r.urn, r.type, r.name, "delete")
        # Deleted already, with a delete-first replacement of what they depended on, and not
        # in the program any more: the plan shows them deleted (nothing runs again).
        for urn in self.deleted_early - seen:
            r = self.old[urn]
            self.steps.setdefault(urn, Step(urn, r.type, r.name, "delete"))
        return out


_RULED = {
    "command:local:Command",
    "command:remote:Command",
    "command:remote:CopyToRemote",
    "pulumi:providers:docker",
    "docker:index/remoteImage:RemoteImage",
    "docker:index/network:Network",
    "docker:index/container:Container",
}


def _dbr(st: Step) -> bool:
    return st.diff is not None and st.diff.delete_before_replace


def _provider_urn(ref: str) -> str:
    """``urn::id``: an updated provider keeps both; a different provider changes the urn."""
    return ref.rsplit("::", 1)[0] if ref else ""


def depends_on(r: StateEntry) -> set[str]:
    """Every edge the engine knows: depends_on, property dependencies, parent, provider,
    deleted_with."""
    edges = {*r.deps, r.parent, _provider_urn(r.provider)}
    for urns in r.prop_deps.values():
        edges.update(urns)
    if r.options.get("deletedWith"):
        edges.add(r.options["deletedWith"])
    edges.discard("")
    edges.discard(r.urn)
    return edges


def order_for_delete(
    victims: Sequence[StateEntry], graph: Mapping[str, StateEntry]
) -> list[StateEntry]:
    """The dependents a delete-first replacement deletes, one after another: in reverse order
    of the old state's dependency graph (pulumi/pulumi v3.259.0
    pkg/resource/deploy/step_generator.go:3348 ``depGraph.DependingOn`` lists them in graph
    order, and 2081-2083 delete them iterating in reverse)."""
    index = {u: i for i, u in enumerate(graph)}
    return sorted(victims, key=lambda r: -index.get(r.urn, -1))


def delete_waves(
    victims: Sequence[StateEntry], graph: Mapping[str, StateEntry]
) -> list[list[StateEntry]]:
    """Waves of deletes that may run concurrently, dependents first, as the engine schedules
    them: through each resource's *direct* dependencies only (pulumi/pulumi v3.259.0
    pkg/resource/deploy/step_generator.go:2745-2790 ScheduleDeletes, which intersects
    pkg/resource/graph/dependency_graph.go:207-252 DependenciesOf with the condemned set).
    A dependency that stays orders nothing: if A depends on B and B on C, and A and C are
    deleted while B stays, A and C are deleted in the same wave. DependenciesOf counts the
    parent, the provider, and, for a dependency on a component, its children registered
    before the resource."""
    order = list(graph)
    index = {u: i for i, u in enumerate(order)}
    children: dict[str, list[str]] = {}
    for r in graph.values():
        if r.parent:
            children.setdefault(r.parent, []).append(r.urn)

    def direct(r: StateEntry) -> set[str]:
        out = set(depends_on(r))
        for d in list(out):
            dep = graph.get(d)
            if dep is not None and not dep.custom:
                todo = list(children.get(d, []))
                while todo:
                    c = todo.pop()
                    if index.get(c, len(order)) < index.get(r.urn, len(order)):
                        out.add(c)
                    todo.extend(children.get(c, []))
        return out

    edges = {r.urn: direct(r) for r in victims}
    pending = {r.urn: r for r in victims}
    waves: list[list[StateEntry]] = []
    while pending:
        # deletable: no other pending resource depends on it directly
        ready = [r for u, r in pending.items() if not any(u in edges[o] for o in pending if o != u)]
        if not ready:  # a cycle: never expected; delete the rest together
            ready = list(pending.values())
        waves.append(ready)
        for r in ready:
            pending.pop(r.urn)
    return waves


# --- rendering -------------------------------------------------------------------------------


def summary(steps: Iterable[Step]) -> str:
    counts = {k: 0 for k in ("create", "update", "replace", "delete", "same")}
    for s in steps:
        counts[s.kind] += 1
    return (
        f"{counts['create']} to create, {counts['update']} to update, "
        f"{counts['replace']} to replace, {counts['delete']} to delete, "
        f"{counts['same']} unchanged"
    )


def render(steps: Sequence[Step], show_diff: bool = False, show_same: bool = False) -> list[str]:
    """The plan in Pulumi's notation: ``+``, ``~``, ``+-``, ``-`` with the changed inputs."""
    lines = []
    for s in steps:
        if s.kind == "same" and not show_same:
            continue
        info = ""
        if s.diff is not None and s.diff.changed:
            marks = [f"{'+-' if k in s.diff.replace_reasons else '~'}{k}" for k in s.diff.changed]
            if "provider" in s.diff.replace_reasons:
                marks.append("+-provider")
            info = f"[diff: {' '.join(marks)}]"
        elif s.diff is not None and "provider" in s.diff.replace_reasons:
            info = "[diff: +-provider]"
        if s.kind == "replace" and _dbr(s):
            info = (info + " (delete first)").strip()
        if s.replaced_with:
            info += f" (with {', '.join(s.replaced_with)})"
        if s.warning:
            info = (info + " (diff unavailable: its provider is not configured in preview)").strip()
        lines.append(f"{s.symbol:<3}{s.type:<40} {s.name:<28} {s.kind:<8} {info}".rstrip())
        if show_diff and s.diff is not None:
            for k in s.diff.changed:
                old, new = s.old_inputs.get(k), s.diff.inputs.get(k)
                lines.append(f"      {'~' if k not in s.diff.replace_reasons else '+-'} {k}: "
                             f"{show(old)} => {show(new)}")  # fmt: skip
    return lines


def timeline(steps: Sequence[Step]) -> list[str]:
    """When each step that ran started and ended, from the run's start, earliest first: where
    the time of an `up` goes (independent hosts overlap; the critical path does not)."""
    ran = sorted((s for s in steps if s.kind != "same"), key=lambda s: s.started)
    return [
        f"{s.started:7.2f} {s.started + s.seconds:7.2f} {s.seconds:6.2f}s  {s.kind:<8} "
        f"{s.type.rsplit(':', 1)[-1]:<14} {s.name}"
        for s in ran
    ]
