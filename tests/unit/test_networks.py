"""Networks as a list (issue 16, item 1): the config's rules, one whole line each, the spec the
validator gets, and the plan of each day-two change of networks under the stand-in's rules.

A stack of the seed's single ``network`` section stays as it was: test_commands_unchanged.py,
test_mtu_unchanged.py and test_standin_plan.py hold its inputs; here, the same config written
as a one-item ``networks`` list plans no change either.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from overlaylab import spec as out
from overlaylab.config import parse
from overlaylab.errors import ConfigError
from overlaylab.stackconfig import raw_from_file
from tests.unit.test_day_two import kinds, plan

#: The checks that re-run when a container on their network changes (the validator and the
#: names gates: a command's triggers changed is a replace, its create changed an update).
CHECKS = {
    "validate-run",
    "test-docker-node1-names",
    "test-docker-node2-names",
    "test-docker-node1-backend-names",
    "test-docker-node2-backend-names",
}
DEMO_GATES = {"test-docker-node1-names", "test-docker-node2-names"}

WHERE = "(in the stack file)"
DEMO = {"name": "demo", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}
BACKEND = {"name": "backend", "subnet": "10.0.1.0/24", "gateway": "10.0.1.1"}


def listed(seed: dict[str, Any], *nets: dict[str, Any], **edits: Any) -> dict[str, Any]:
    """The seed's config with ``networks`` instead of its ``network`` section."""
    raw = copy.deepcopy(seed)
    del raw["network"]
    raw["networks"] = [copy.deepcopy(n) for n in nets]
    raw.update(edits)
    return raw


def isolation() -> dict[str, Any]:
    return copy.deepcopy(raw_from_file("isolation"))


# --- the config ------------------------------------------------------------------------------


def test_the_isolation_stack_parses_to_two_networks_and_a_container_on_both() -> None:
    cfg = parse(isolation())
    assert [(n.name, str(n.subnet), n.gateway) for n in cfg.all_networks] == [
        ("demo", "10.0.0.0/24", "10.0.0.1"),
        ("backend", "10.0.1.0/24", "10.0.1.1"),
    ]
    assert {c.name: cfg.networks_of(c) for c in cfg.containers} == {
        "test1": ("demo",),
        "test2": ("demo",),
        "back1": ("backend",),
        "back2": ("backend",),
        "both1": ("demo", "backend"),
    }
    # a container on each network on each host
    for net in ("demo", "backend"):
        assert {c.host for c in cfg.on_network(net)} == {"docker-node1", "docker-node2"}


def test_the_isolation_stack_has_a_lab_of_its_own() -> None:
    iso = parse(isolation())
    for stack in ("local", "ha", "lab", "lab3", "scale"):
        other = parse({**raw_from_file(stack), "sshPrivateKey": "-----BEGIN PRIVATE KEY-----"})
        assert iso.lab_id != other.lab_id, stack
        assert not iso.segment.overlaps(other.segment), stack
        assert iso.bridge != other.bridge, stack


def test_the_seed_network_section_is_one_network(seed_config: dict[str, Any]) -> None:
    cfg = parse(seed_config)
    assert [n.name for n in cfg.all_networks] == ["demo"]
    assert all(cfg.networks_of(c) == ("demo",) for c in cfg.containers)
    assert not cfg.networks_listed


def test_each_network_has_its_own_mtu(seed_config: dict[str, Any]) -> None:
    raw = listed(
        seed_config, {**DEMO, "mtu": 1400}, BACKEND, lab={**seed_config["lab"], "mtu": 9000}
    )
    cfg = parse(raw)
    demo, backend = cfg.all_networks
    assert (cfg.mtu_of(demo), cfg.docker_mtu_option_of(demo)) == (1400, 1450)
    assert (cfg.mtu_of(backend), cfg.docker_mtu_option_of(backend)) == (8950, 9000)


def test_options_are_kept_sorted_as_strings(seed_config: dict[str, Any]) -> None:
    opts = {"com.docker.network.driver.overlay.vxlanid_list": 4100, "encrypted": True}
    cfg = parse(listed(seed_config, {**DEMO, "options": opts}))
    assert cfg.all_networks[0].options == (
        ("com.docker.network.driver.overlay.vxlanid_list", "4100"),
        ("encrypted", "true"),
    )


#: (case, networks, containers (None: the seed's), the whole message without its stack file)
ERRORS: list[tuple[str, Any, Any, str]] = [
    (
        "empty list",
        [],
        None,
        "networks must be a non-empty list of {name, subnet, gateway, mtu, options}",
    ),
    (
        "no name",
        [{"subnet": "10.0.0.0/24"}],
        None,
        "networks[0] needs a name and a subnet, e.g. {name: backend, subnet: 10.0.1.0/24}",
    ),
    (
        "bad name",
        [DEMO, {**BACKEND, "name": "-x"}],
        None,
        "networks[1].name '-x' is not a valid Docker network name",
    ),
    (
        "unknown key",
        [DEMO, {**BACKEND, "mut": 1400}],
        None,
        "networks[1].mut is not a setting (did you mean networks[1].mtu?): use one of name, "
        "subnet, gateway, mtu, options",
    ),
    (
        "subnet not a CIDR",
        [DEMO, {**BACKEND, "subnet": "10.0.1.1/24"}],
        None,
        "networks[1].subnet '10.0.1.1/24' is not a valid IPv4 CIDR (10.0.1.1/24 has host bits "
        "set): write it like 10.0.0.0/24",
    ),
    (
        "subnet too small",
        [DEMO, {"name": "backend", "subnet": "10.0.1.0/30"}],
        None,
        "networks[1].subnet 10.0.1.0/30 is too small for a gateway and containers: use /29 or "
        "larger",
    ),
    (
        "subnet on the segment",
        [DEMO, {"name": "backend", "subnet": "192.168.205.0/25"}],
        None,
        "networks[1].subnet 192.168.205.0/25 overlaps the hosts' segment lab.segment "
        "192.168.205.0/24: the overlay must use its own range",
    ),
    (
        "gateway outside",
        [DEMO, {**BACKEND, "gateway": "10.0.0.1"}],
        None,
        "networks[1].gateway 10.0.0.1 is outside networks[1].subnet 10.0.1.0/24: pick a usable "
        "address inside it, e.g. 10.0.1.1",
    ),
    (
        "mtu out of range",
        [DEMO, {**BACKEND, "mtu": 100}],
        None,
        "networks[1].mtu 100 must be between 576 and 9000",
    ),
    (
        "mtu above the underlay",
        [DEMO, {**BACKEND, "mtu": 1480}],
        None,
        "networks[1].mtu 1480 is above what the underlay carries: lab.mtu 1500 minus VXLAN's 50 "
        "bytes is 1450; lower networks[1].mtu or raise lab.mtu",
    ),
    (
        "mtu as an option",
        [DEMO, {**BACKEND, "options": {"com.docker.network.driver.mtu": "1400"}}],
        None,
        "networks[1].options sets com.docker.network.driver.mtu: set networks[1].mtu instead "
        "(the containers' MTU; the program gives Docker the option that yields it)",
    ),
    (
        "option not plain",
        [DEMO, {**BACKEND, "options": {"a": [1]}}],
        None,
        "networks[1].options.a must be a name with a plain value, e.g. "
        "com.docker.network.driver.overlay.vxlanid_list: '4100'",
    ),
    (
        "duplicate name",
        [DEMO, {**BACKEND, "name": "demo"}],
        None,
        "duplicate network name 'demo': make each networks[].name unique",
    ),
    (
        "overlapping subnets",
        [DEMO, {"name": "backend", "subnet": "10.0.0.128/25"}],
        None,
        "networks[1].subnet 10.0.0.128/25 (backend) overlaps 10.0.0.0/24 of network demo: give "
        "each network its own range",
    ),
    (
        "container on an unknown network",
        [DEMO, BACKEND],
        [{"name": "test1", "host": "docker-node1", "networks": ["front"]}],
        "containers[0] 'test1' joins unknown network 'front': use one of demo, backend",
    ),
    (
        "container networks not a list",
        [DEMO, BACKEND],
        [{"name": "test1", "host": "docker-node1", "networks": "demo"}],
        "containers[0].networks of 'test1' must be a non-empty list of network names, e.g. [demo]",
    ),
    (
        "container on a network twice",
        [DEMO, BACKEND],
        [{"name": "test1", "host": "docker-node1", "networks": ["demo", "demo"]}],
        "duplicate network 'demo': make each containers[0].networks entry unique",
    ),
]


@pytest.mark.parametrize(
    ("case", "nets", "containers", "message"), ERRORS, ids=[e[0] for e in ERRORS]
)
def test_a_networks_error_is_one_whole_line(
    seed_config: dict[str, Any], case: str, nets: Any, containers: Any, message: str
) -> None:
    raw = listed(seed_config, *nets) if nets else listed(seed_config)
    if containers is not None:
        raw["containers"] = containers
    with pytest.raises(ConfigError) as info:
        parse(raw)
    assert str(info.value) == f"{message} {WHERE}", case
    assert "\n" not in str(info.value)


def test_network_and_networks_together_is_refused(seed_config: dict[str, Any]) -> None:
    raw = copy.deepcopy(seed_config)
    raw["networks"] = [DEMO]
    with pytest.raises(ConfigError) as info:
        parse(raw)
    assert str(info.value) == (
        "network and networks are both set: keep one (move the network section into the "
        f"networks list as its first item) {WHERE}"
    )


def test_a_networks_error_registers_nothing(record_graph: Any, seed_config: dict[str, Any]) -> None:
    g = record_graph(listed(seed_config, DEMO, {"name": "backend", "subnet": "10.0.0.0/25"}))
    assert str(g.run.error).startswith("invalid config: networks[1].subnet 10.0.0.0/25 (backend)")
    assert g.resources == []


# --- the spec --------------------------------------------------------------------------------


def test_the_seed_spec_has_no_networks_key(seed_config: dict[str, Any]) -> None:
    spec = out.validation_spec(parse(seed_config))
    assert "networks" not in spec
    assert all("networks" not in c for c in spec["containers"])


def test_the_isolation_spec_carries_each_network_with_its_mtu_and_the_old_network_key() -> None:
    raw = isolation()
    raw["networks"][1]["mtu"] = 1400
    spec = out.validation_spec(parse(raw))
    assert spec["networks"] == [
        {"name": "demo", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "mtu": 1450},
        {"name": "backend", "subnet": "10.0.1.0/24", "gateway": "10.0.1.1", "mtu": 1400},
    ]
    assert spec["network"] == {"name": "demo", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}
    assert {c["name"]: c["networks"] for c in spec["containers"]}["both1"] == ["demo", "backend"]
    assert {c["name"]: c["networks"] for c in spec["containers"]}["test1"] == ["demo"]


def test_a_seed_network_with_its_own_mtu_carries_it(seed_config: dict[str, Any]) -> None:
    seed_config["network"]["mtu"] = 1400
    spec = out.validation_spec(parse(seed_config))
    assert [n["mtu"] for n in spec["networks"]] == [1400]


# --- the program and day two -----------------------------------------------------------------


def test_the_isolation_stack_builds_two_networks_and_attaches_each_container(
    record_graph: Any,
) -> None:
    g = record_graph(isolation())
    assert g.run.error is None, g.run.error
    nets = {r.name: r.inputs for r in g.resources if r.name.endswith("-network")}
    assert {n: i["name"] for n, i in nets.items()} == {
        "overlay-network": "demo",
        "overlay-backend-network": "backend",
    }
    attached = {
        r.name: [n["name"] for n in r.inputs["networksAdvanced"]]
        for r in g.resources
        if r.name.startswith("test-") and "networksAdvanced" in r.inputs
    }
    assert attached == {
        "test-test1": ["demo"],
        "test-test2": ["demo"],
        "test-back1": ["backend"],
        "test-back2": ["backend"],
        "test-both1": ["demo", "backend"],
    }
    gates = {r.name for r in g.resources if r.name.endswith("-names")}
    assert gates == {
        "test-docker-node1-names",
        "test-docker-node2-names",
        "test-docker-node1-backend-names",
        "test-docker-node2-backend-names",
    }


def test_the_seed_as_a_one_item_networks_list_plans_no_change(seed_config: dict[str, Any]) -> None:
    """The same network written as ``networks: [demo]``: the same URNs, the same network and
    containers; only the validator's spec says more (it gains ``networks``), a re-run."""
    after = listed(seed_config, {**DEMO})
    steps = plan(seed_config, after)
    assert {
        n for n, s in steps.items() if s.kind != "same" and not s.type.startswith("overlay-")
    } == {"validate-run"}
    assert steps["validate-run"].kind == "update"


def test_adding_a_network_creates_only_it(seed_config: dict[str, Any]) -> None:
    before = listed(seed_config, DEMO)
    after = listed(seed_config, DEMO, BACKEND)
    after["containers"] = [
        *after["containers"],
        {"name": "back1", "host": "docker-node1", "networks": ["backend"]},
        {"name": "back2", "host": "docker-node2", "networks": ["backend"]},
    ]
    steps = plan(before, after)
    assert kinds(steps, "create") == {
        "overlay-backend-docker",
        "overlay-backend-network",
        "test-back1",
        "test-back2",
        "test-docker-node1-backend-names",
        "test-docker-node2-backend-names",
    }
    # the validator re-runs (a new network id and containers among its triggers)
    assert kinds(steps, "replace") | kinds(steps, "update") == {"validate-run"}
    assert not kinds(steps, "delete")
    for name in ("overlay-network", "overlay-docker", "test-test1", "test-test2", *DEMO_GATES):
        assert steps[name].kind == "same", name


def test_removing_a_network_deletes_only_it_and_its_containers() -> None:
    before = isolation()
    after = isolation()
    after["networks"] = after["networks"][:1]
    after["containers"] = [c for c in after["containers"] if "backend" not in c.get("networks", [])]
    steps = plan(before, after)
    assert kinds(steps, "delete") == {
        "overlay-backend-docker",
        "overlay-backend-network",
        "test-back1",
        "test-back2",
        "test-both1",
        "test-docker-node1-backend-names",
        "test-docker-node2-backend-names",
    }
    assert not kinds(steps, "create")
    # both1 was on demo too: the demo gates re-run, nothing else of demo changes
    assert kinds(steps, "replace") | kinds(steps, "update") == {"validate-run", *DEMO_GATES}
    for name in ("overlay-network", "overlay-docker", "test-test1", "test-test2"):
        assert steps[name].kind == "same", name


@pytest.mark.parametrize(
    ("container", "networks"), [("test1", ["demo", "backend"]), ("both1", ["demo"])]
)
def test_a_container_joining_or_leaving_a_network_touches_only_it_and_that_networks_checks(
    container: str, networks: list[str]
) -> None:
    before = isolation()
    after = isolation()
    for c in after["containers"]:
        if c["name"] == container:
            c["networks"] = networks
    steps = plan(before, after)
    assert kinds(steps, "replace") - CHECKS == {f"test-{container}"}
    assert kinds(steps, "update") - CHECKS == set()
    assert not kinds(steps, "create") and not kinds(steps, "delete")
    # the gates of both networks (the container is, or was, on both) and the validator
    assert kinds(steps, "replace") & CHECKS == CHECKS
    for name in (
        "overlay-network", "overlay-backend-network", "overlay-docker", "overlay-backend-docker",
        *(f"test-{c['name']}" for c in after["containers"] if c["name"] != container),
    ):  # fmt: skip
        assert steps[name].kind == "same", name


def test_a_network_past_the_first_is_created_with_its_options_and_mtu(record_graph: Any) -> None:
    raw = isolation()
    raw["networks"][1]["mtu"] = 1400
    raw["networks"][1]["options"] = {"com.docker.network.driver.overlay.vxlanid_list": "4100"}
    g = record_graph(raw)
    assert g.named("overlay-backend-network").inputs["options"] == {
        "com.docker.network.driver.mtu": "1450",
        "com.docker.network.driver.overlay.vxlanid_list": "4100",
    }
    assert "options" not in g.named("overlay-network").inputs


def test_each_networks_gate_waits_for_that_networks_names_only(record_graph: Any) -> None:
    g = record_graph(isolation())
    argv = {r.name: r.inputs["create"].split() for r in g.resources if r.name.endswith("-names")}

    def arg(name: str, flag: str) -> list[str]:
        a = argv[name]
        return [a[i + 1] for i, x in enumerate(a) if x == flag]

    assert arg("test-docker-node2-names", "--network") == ["demo"]
    assert arg("test-docker-node2-names", "--name") == ["test1", "both1"]
    assert arg("test-docker-node2-backend-names", "--network") == ["backend"]
    assert arg("test-docker-node2-backend-names", "--container") == ["back2"]
    assert arg("test-docker-node2-backend-names", "--name") == ["back1", "both1"]
    assert arg("test-docker-node1-backend-names", "--name") == ["back2"]


def test_a_network_past_the_first_is_created_after_the_one_before(record_graph: Any) -> None:
    """One create at a time through the daemon: two at once in cluster-store mode were refused
    once in a lab ("Pool overlaps with other one on this address space")."""
    g = record_graph(isolation())
    first = g.named("overlay-network")
    assert first.urn in g.named("overlay-backend-network").deps
    assert not [d for d in first.deps if d.endswith("-network") and "overlay" in d]
