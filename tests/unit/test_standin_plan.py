"""The stand-in's planner: steps, delete-first replacements with their dependents, delete waves
through direct dependencies, and the plan's notation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from standin.diff import COMMAND, CONTAINER, DOCKER_PROVIDER, NETWORK, Options
from standin.plan import Planner, Step, delete_waves, render, summary, timeline


@dataclass
class Entry:
    urn: str
    type: str
    name: str = ""
    deps: list[str] = field(default_factory=list)
    parent: str = ""
    provider: str = ""
    custom: bool = True
    inputs: dict[str, Any] = field(default_factory=dict)
    prop_deps: dict[str, list[str]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


NET = {"name": "demo", "driver": "overlay", "ipamConfigs": [{"subnet": "10.0.0.0/24"}]}
CTR = {"name": "test1", "image": "sha256:1", "networksAdvanced": [{"name": "demo"}]}


def lab() -> list[Entry]:
    return [
        Entry("host1", COMMAND, "host1", inputs={"create": "host-up 1"}),
        Entry("etcd1", COMMAND, "etcd1", deps=["host1"], inputs={"create": "etcd-up 1"}),
        Entry("gate", COMMAND, "gate", deps=["etcd1"], inputs={"create": "health 1"}),
        Entry("dockerd1", COMMAND, "dockerd1", deps=["gate"], inputs={"create": "docker-up 1"}),
        Entry("prov1", DOCKER_PROVIDER, "prov1", deps=["dockerd1"], inputs={"host": "unix://1"}),
        Entry("net", NETWORK, "net", deps=["dockerd1"], provider="prov1::id1", inputs=NET),
        Entry(
            "ctr1",
            CONTAINER,
            "ctr1",
            deps=["net"],
            provider="prov1::id1",
            inputs=CTR,
            prop_deps={"networksAdvanced": ["net"]},
        ),
        Entry("validate", COMMAND, "validate", deps=["ctr1"], inputs={"create": "validate"}),
    ]


def test_deletes_of_a_removed_host_are_ordered_by_direct_dependencies_only() -> None:
    """pulumi/pulumi v3.259.0 pkg/resource/deploy/step_generator.go:2768-2776 (ScheduleDeletes:
    ``dg.DependenciesOf(res).Intersect(condemned)``) and pkg/resource/graph/dependency_graph.go:
    207-252 (DependenciesOf: the resource's own dependencies, provider and parent)."""
    old = {e.urn: e for e in lab()}
    gone = [old[u] for u in ("etcd1", "host1", "dockerd1", "ctr1", "prov1")]
    waves = [sorted(e.urn for e in w) for w in delete_waves(gone, old)]
    # dockerd1 depends on etcd1 and host1 only through the gate, which stays: nothing orders
    # them, and host1 goes as soon as etcd1 (its direct dependent) has gone
    assert waves == [["ctr1", "etcd1"], ["host1", "prov1"], ["dockerd1"]]


def test_a_delete_first_replacement_takes_its_dependents_that_would_be_replaced() -> None:
    p = Planner(lab())
    st = p.step("net", NETWORK, "net", True, {**NET, "internal": True}, Options(), "prov1::id1")
    assert (st.kind, st.diff and st.diff.delete_before_replace) == ("replace", True)
    assert [e.urn for e in p.dependents_replaced_with("net")] == ["ctr1"]


def test_a_depends_on_edge_alone_never_replaces_a_dependent() -> None:
    p = Planner(lab())
    # the validate command depends on ctr1 by depends_on only
    assert [e.urn for e in p.dependents_replaced_with("ctr1")] == []


def test_an_updated_provider_keeps_its_dependents_same_a_different_one_replaces() -> None:
    p = Planner(lab())
    st = p.step("prov1", DOCKER_PROVIDER, "prov1", True, {"host": "unix://2"}, Options(), "")
    assert st.kind == "update"
    assert p.step("net", NETWORK, "net", True, NET, Options(), "prov1::id1").kind == "same"
    moved = p.step("ctr1", CONTAINER, "ctr1", True, CTR, Options(), "prov2::id2")
    assert moved.kind == "replace" and moved.diff is not None
    assert moved.diff.replace_reasons == ("provider",)


def test_removed_resources_and_create_first_replacements_are_deleted_after_the_program() -> None:
    p = Planner(lab())
    p.step("host1", COMMAND, "host1", True, {"create": "host-up 1", "triggers": ["x"]},
           Options(), "")  # fmt: skip
    dels = p.deletes(["host1", "gate"])
    assert sorted(e.urn for e in dels) == sorted(
        ["host1", "etcd1", "dockerd1", "prov1", "net", "ctr1", "validate"]
    )
    assert p.steps["etcd1"].kind == "delete" and p.steps["host1"].kind == "replace"


def test_the_plan_reads_like_pulumis() -> None:
    p = Planner(lab())
    p.step("etcd1", COMMAND, "etcd1", True, {"create": "etcd-up 2"}, Options(), "")
    p.step("gate", COMMAND, "gate", True, {"create": "health 1"}, Options(), "")
    p.step("new", COMMAND, "new", True, {"create": "x"}, Options(), "")
    steps: list[Step] = list(p.steps.values())
    lines = render(steps, show_diff=True)
    assert lines[0].startswith("~  command:local:Command") and "[diff: ~create]" in lines[0]
    assert lines[1] == '      ~ create: "etcd-up 1" => "etcd-up 2"'
    assert lines[2].startswith("+  command:local:Command") and " new " in lines[2]
    assert summary(steps) == "1 to create, 1 to update, 0 to replace, 0 to delete, 1 unchanged"


def test_the_timeline_orders_what_ran_by_start_and_leaves_out_what_did_not() -> None:
    a = Step("a", COMMAND, "late", "create", seconds=1.0, started=2.0)
    b = Step("b", COMMAND, "early", "update", seconds=0.5, started=0.25)
    c = Step("c", COMMAND, "kept", "same", started=0.0)
    lines = timeline([a, b, c])
    assert [x.split()[-1] for x in lines] == ["early", "late"]
    assert lines[1].split()[:3] == ["2.00", "3.00", "1.00s"]


def test_a_component_dependency_counts_its_children_registered_before() -> None:
    """pulumi/pulumi v3.259.0 pkg/resource/graph/dependency_graph.go:233-246: a dependency on a
    component is a dependency on its children that precede the resource in the graph."""
    comp = Entry("comp", "overlay-etcd:x:Comp", custom=False)
    child = Entry("child", COMMAND, parent="comp", inputs={"create": "a"})
    user = Entry("user", COMMAND, deps=["comp"], inputs={"create": "b"})
    old = {e.urn: e for e in (comp, child, user)}
    waves = [[e.urn for e in w] for w in delete_waves([child, user], old)]
    assert waves == [["user"], ["child"]]


def test_a_delete_first_chain_deletes_in_reverse_graph_order() -> None:
    """pulumi/pulumi v3.259.0 pkg/resource/deploy/step_generator.go:2081-2083 and 3348: the
    dependents replaced with a delete-first replacement are deleted one after another, in
    reverse order of the old graph, even where no direct edge links two of them."""
    from standin.plan import order_for_delete

    old = {e.urn: e for e in lab()}
    chain = [old[u] for u in ("etcd1", "dockerd1", "net", "ctr1")]
    assert [e.urn for e in order_for_delete(chain, old)] == ["ctr1", "net", "dockerd1", "etcd1"]


def test_on_an_unconfigured_provider_a_preview_plans_an_update_with_a_warning() -> None:
    """pulumi/pulumi v3.259.0: with any provider input unknown in preview the wrapper never
    configures the provider (sdk/go/common/resource/plugin/provider_plugin.go:1059-1075), its
    Diff returns DiffUnavailable without asking the provider (:1303-1310), and the step
    generator plans that as DiffSome, an update, with the message as a warning
    (pkg/resource/deploy/step_generator.go:1928-1932); there is no short-circuit for equal
    inputs (:2882-2930). Only `--replace` (:2889-2891) or a provider change (:2908-2913),
    both decided before any Diff, still replace."""
    p = Planner(lab())
    same = p.step("ctr1", CONTAINER, "ctr1", True, CTR, Options(), "prov1::id1", unconfigured=True)
    assert (same.kind, same.warning.splitlines()[0]) == (
        "update",
        "The provider for this resource has inputs that are not known during preview.",
    )
    assert "diff unavailable" in render([same])[0]
    relabelled = {**CTR, "labels": [{"label": "overlaylab.mend", "value": "mend 1"}]}
    assert p.step("ctr1", CONTAINER, "ctr1", True, relabelled, Options(), "prov1::id1").kind == (
        "replace"
    )  # configured, the provider's Diff says replace (labels are ForceNew)
    blind = p.step("ctr1", CONTAINER, "ctr1", True, relabelled, Options(), "prov1::id1", True)
    assert blind.kind == "update"
    p.replaces.add("ctr1")
    forced = p.step("ctr1", CONTAINER, "ctr1", True, CTR, Options(), "prov1::id1", True)
    assert (forced.kind, forced.warning) == ("replace", "")
    moved = p.step("ctr1", CONTAINER, "ctr1", True, CTR, Options(), "prov2::id2", True)
    assert moved.kind == "replace"
