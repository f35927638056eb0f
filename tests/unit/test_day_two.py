"""Day two under the engine's rules: the plan of a change to a running stack, per resource.

Each test records the stack as one config left it (under mocks, nothing touched), then
previews another config against that state, as ``pulumi preview`` would, and states what
must happen to each resource. The rules are ENGINE.md's, applied by the stand-in's planner.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from standin import Run, run_program
from standin.plan import Step, summary
from tests.conftest import Graph

NODE3 = {"name": "docker-node3", "address": "192.168.205.12"}
#: The checks that re-run when a container changes (their triggers hold the container ids):
#: the validator and each host's names gate (none runs a delete).
CHECKS = {"validate-run", "test-docker-node1-names", "test-docker-node2-names",
          "test-docker-node3-names"}  # fmt: skip


def plan(before: dict[str, Any], after: dict[str, Any], stack: str = "local") -> dict[str, Step]:
    return {s.name: s for s in preview(before, after, stack).steps}


def preview(before: dict[str, Any], after: dict[str, Any], stack: str = "local") -> Run:
    """The preview of ``after`` against the state a run of ``before`` left."""
    first = run_program(before, stack, perform=False)
    assert first.error is None, first.error
    # perform=False: plan only; a performing preview would configure (ping) each provider
    second = run_program(after, stack, preview=True, old=first.engine.state(), perform=False)
    assert second.error is None, second.error
    return second


def kinds(steps: dict[str, Step], kind: str) -> set[str]:
    """Custom resources whose step is ``kind`` (components have no steps of their own)."""
    return {n for n, s in steps.items() if s.kind == kind and not s.type.startswith("overlay-")}


def changed(cfg: dict[str, Any], **edits: Any) -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    out.update(edits)
    return out


def test_the_same_config_plans_nothing(seed_config: dict[str, Any]) -> None:
    steps = plan(seed_config, seed_config)
    assert {s.kind for s in steps.values()} == {"same"}, summary(steps.values())


def test_adding_a_host_creates_it_and_leaves_every_member_daemon_network_container_same(
    seed_config: dict[str, Any],
) -> None:
    after = changed(
        seed_config,
        hosts=[*seed_config["hosts"], NODE3],
        containers=[*seed_config["containers"], {"name": "test3", "host": "docker-node3"}],
    )
    steps = plan(seed_config, after)
    assert kinds(steps, "create") >= {
        "lab-docker-node3",
        "etcd-docker-node3",
        "docker-docker-node3-dockerd",
        "docker-docker-node3-docker",
        "test-docker-node3-import",
        "test-docker-node3-image",
        "test-test3",
        "serf-docker-node3",
    }
    for name in (
        "lab-docker-node1", "lab-docker-node2", "etcd-docker-node1", "etcd-docker-node2",
        "docker-docker-node1-dockerd", "docker-docker-node2-dockerd",
        "docker-docker-node1-docker", "docker-docker-node2-docker",
        "overlay-docker", "overlay-network", "test-test1", "test-test2", "lab-bridge",
    ):  # fmt: skip
        assert steps[name].kind == "same", f"{name}: {steps[name]}"
    # What checks the whole lab re-runs with the new membership: the gate and the validator.
    assert steps["etcd-healthy"].kind == "update"
    assert steps["validate-run"].kind in ("update", "replace")
    assert steps["serf-docker-node1"].kind == "update"  # the serf check lists every host
    assert kinds(steps, "delete") == set()


@pytest.mark.parametrize("leaving", [0, 1])
def test_removing_a_host_deletes_what_was_on_it_and_keeps_the_network(
    seed_config: dict[str, Any], leaving: int
) -> None:
    three = changed(
        seed_config,
        hosts=[*seed_config["hosts"], NODE3],
        containers=[*seed_config["containers"], {"name": "test3", "host": "docker-node3"}],
    )
    gone = three["hosts"][leaving]["name"]
    gone_container = three["containers"][leaving]["name"]
    after = changed(
        three,
        hosts=[h for h in three["hosts"] if h["name"] != gone],
        containers=[c for c in three["containers"] if c["host"] != gone],
    )
    steps = plan(three, after)
    assert kinds(steps, "delete") == {
        f"lab-{gone}",
        f"etcd-{gone}",
        f"docker-{gone}-dockerd",
        f"docker-{gone}-docker",
        f"test-{gone}-import",
        f"test-{gone}-image",
        f"test-{gone_container}",
        f"serf-{gone}",
        f"test-{gone}-names",
    }
    # The first host managed the network: its provider moves to the next daemon in place.
    assert steps["overlay-docker"].kind == ("update" if leaving == 0 else "same")
    assert steps["overlay-network"].kind == "same"
    for h in after["hosts"]:
        assert steps[f"etcd-{h['name']}"].kind == "same"
        assert steps[f"docker-{h['name']}-dockerd"].kind == "same"
    assert kinds(steps, "replace") <= CHECKS


def test_moving_a_container_replaces_only_that_container(seed_config: dict[str, Any]) -> None:
    after = changed(
        seed_config,
        containers=[{"name": "test1", "host": "docker-node1"},
                    {"name": "test2", "host": "docker-node1"}],
    )  # fmt: skip
    steps = plan(seed_config, after)
    moved = steps["test-test2"]
    assert moved.kind == "replace" and moved.diff is not None
    assert "provider" in moved.diff.replace_reasons and moved.diff.delete_before_replace
    assert kinds(steps, "replace") - CHECKS == {"test-test2"}
    assert kinds(steps, "update") - CHECKS == set()
    # both containers on one host: no host has another host's name to resolve, no names gate
    assert kinds(steps, "create") == set()
    assert kinds(steps, "delete") == {"test-docker-node1-names", "test-docker-node2-names"}


def test_adding_and_removing_a_container_touches_only_it(seed_config: dict[str, Any]) -> None:
    after = changed(
        seed_config,
        containers=[{"name": "test1", "host": "docker-node1"},
                    {"name": "test9", "host": "docker-node2"}],
    )  # fmt: skip
    steps = plan(seed_config, after)
    assert kinds(steps, "create") == {"test-test9"}
    assert kinds(steps, "delete") == {"test-test2"}
    assert kinds(steps, "replace") | kinds(steps, "update") <= CHECKS


@pytest.mark.parametrize(
    "network",
    [
        {"subnet": "10.1.0.0/24", "gateway": "10.1.0.1"},
        {"gateway": "10.0.0.254"},
        {"mtu": 1400},
    ],
)
def test_changing_the_overlay_replaces_it_delete_first_with_its_containers(
    seed_config: dict[str, Any], network: dict[str, Any]
) -> None:
    after = changed(seed_config, network={**seed_config.get("network", {}), **network})
    steps = plan(seed_config, after)
    net = steps["overlay-network"]
    assert net.kind == "replace" and net.diff is not None and net.diff.delete_before_replace
    # the validator's run goes too: its triggers hold the network's id (no delete to run)
    assert set(net.replaced_with) == {"test-test1", "test-test2"} | (CHECKS - {
        "test-docker-node3-names"})  # fmt: skip
    assert {"test-test1", "test-test2"} <= kinds(steps, "replace")
    assert kinds(steps, "replace") - CHECKS == {
        "overlay-network", "test-test1", "test-test2"
    }  # fmt: skip
    for n in ("etcd-docker-node1", "docker-docker-node1-dockerd", "overlay-docker"):
        assert steps[n].kind == "same", n


def test_a_new_token_plans_the_identity_check_before_any_member(
    seed_config: dict[str, Any],
) -> None:
    after = changed(seed_config, etcd={**seed_config["etcd"], "clusterToken": "other"})
    run = preview(seed_config, after)
    steps = {s.name: s for s in run.steps}
    # The identity command runs first and refuses (tests/unit/test_membership_identity.py); the
    # members wait for it.
    assert steps["etcd-identity"].kind == "update"
    g = Graph(run)
    members = [f"etcd-{h['name']}" for h in seed_config["hosts"]]
    for member in members:
        assert steps[member].kind == "update", member
        assert g.waits_for(member, "etcd-identity"), f"{member} does not wait for etcd-identity"
    assert not g.waits_for("etcd-identity", members[0])
    assert steps["overlay-network"].kind == "same"


def test_a_new_token_with_a_raised_generation_plans_the_whole_rebuild_old_lab_first(
    seed_config: dict[str, Any],
) -> None:
    """etcd.generation raised: the identity command is replaced delete-first, and with it,
    deleted before it in one chain, everything that holds the old cluster's state. Nothing of
    the new lab can start before the whole old one is gone, on every host."""
    etcd = {**seed_config["etcd"], "clusterToken": "other", "generation": 2}
    steps = plan(seed_config, changed(seed_config, etcd=etcd))
    ident = steps["etcd-identity"]
    assert ident.kind == "replace" and ident.diff is not None
    assert ident.diff.delete_before_replace
    chain = list(ident.replaced_with)
    rebuilt = {
        *(f"etcd-docker-node{i}" for i in (1, 2)),
        *(f"docker-docker-node{i}-dockerd" for i in (1, 2)),
        *(f"serf-docker-node{i}" for i in (1, 2)),
        *(f"test-docker-node{i}-import" for i in (1, 2)),
        *(f"test-docker-node{i}-image" for i in (1, 2)),
        "etcd-healthy", "overlay-network", "test-test1", "test-test2", "validate-run",
        "test-docker-node1-names", "test-docker-node2-names",
    }  # fmt: skip
    assert set(chain) == rebuilt
    assert kinds(steps, "replace") == rebuilt | {"etcd-identity"}
    # The hosts stay. The providers' host goes through their daemon's id, unknown in the
    # preview while that daemon is to be replaced: the engine shows them as updates (and, the
    # host being the same value once known, `up` leaves them the same).
    assert kinds(steps, "create") == kinds(steps, "delete") == set()
    providers = {"docker-docker-node1-docker", "docker-docker-node2-docker", "overlay-docker"}
    assert kinds(steps, "update") == providers
    assert steps["lab-docker-node1"].kind == "same"
    # Dependents first: containers, then the network and images, then daemons, then members.
    at = {n: chain.index(n) for n in chain}
    for i in (1, 2):
        assert at[f"test-test{i}"] < at["overlay-network"] < at[f"docker-docker-node{i}-dockerd"]
        assert at[f"test-test{i}"] < at[f"test-docker-node{i}-image"]
        assert at[f"test-docker-node{i}-import"] < at[f"docker-docker-node{i}-dockerd"]
        assert at[f"serf-docker-node{i}"] < at[f"docker-docker-node{i}-dockerd"]
        assert at[f"docker-docker-node{i}-dockerd"] < at["etcd-healthy"]
        assert at["etcd-healthy"] < at[f"etcd-docker-node{i}"]


def test_a_raised_generation_alone_rebuilds_and_the_next_preview_is_same(
    seed_config: dict[str, Any],
) -> None:
    etcd = {**seed_config["etcd"], "generation": 2}
    after = changed(seed_config, etcd=etcd)
    steps = plan(seed_config, after)
    assert steps["etcd-identity"].kind == "replace"
    assert "etcd-docker-node1" in steps["etcd-identity"].replaced_with
    # The rebuild itself (`up`, under mocks) on the first config's state, then the next
    # preview on the state the rebuild left.
    first = run_program(seed_config, perform=False)
    assert first.error is None, first.error
    rebuild = run_program(after, perform=False, old=first.engine.state())
    assert rebuild.error is None, rebuild.error
    assert {s.name for s in rebuild.steps if s.kind == "replace"} >= {
        "etcd-identity", "etcd-docker-node1", "etcd-docker-node2"
    }  # fmt: skip
    # perform=False: a performing preview would configure (ping) each provider
    nxt = run_program(after, preview=True, old=rebuild.engine.state(), perform=False)
    assert nxt.error is None, nxt.error
    assert {s.kind for s in nxt.steps} == {"same"}, summary(nxt.steps)


def test_a_misspelt_generation_is_refused_in_one_line(seed_config: dict[str, Any]) -> None:
    from overlaylab.config import ConfigError, parse

    closest = r"\(did you mean etcd\.generation\?\)"
    with pytest.raises(ConfigError, match=rf"^etcd\.generaton is not a setting {closest}: use one"):
        parse(changed(seed_config, etcd={**seed_config["etcd"], "generaton": 2}))
    with pytest.raises(ConfigError, match=r"^etcd\.generation must be a whole number from 1"):
        parse(changed(seed_config, etcd={**seed_config["etcd"], "generation": 0}))


def test_on_an_ssh_stack_adding_a_host_reruns_only_the_checks() -> None:
    from overlaylab.stackconfig import raw_from_file
    from tests.unit.test_program_ssh import KEY

    before = raw_from_file("lab")
    after = changed(
        before,
        hosts=[*before["hosts"], NODE3],
        containers=[*before["containers"], {"name": "test3", "host": "docker-node3"}],
    )
    secrets = {"sshPrivateKey": KEY}
    first = run_program(before, "lab", perform=False, secrets=secrets)
    second = run_program(after, "lab", preview=True, old=first.engine.state(), secrets=secrets)
    assert second.error is None, second.error
    steps = {s.name: s for s in second.steps}
    # the cross-host checks list every host; nothing that runs on an existing host changes
    assert kinds(steps, "update") == {
        "lab-unique", "etcd-healthy", "serf-docker-node1", "serf-docker-node2"
    }  # fmt: skip
    assert kinds(steps, "replace") == CHECKS - {"test-docker-node3-names"}
    assert kinds(steps, "delete") == set()
    assert "etcd-docker-node3" in kinds(steps, "create")


def test_on_an_ssh_stack_a_raised_generation_rebuilds_on_the_hosts_and_keeps_their_setup() -> None:
    from overlaylab.stackconfig import raw_from_file
    from tests.unit.test_program_ssh import KEY

    before = raw_from_file("lab")
    after = changed(before, etcd={**before["etcd"], "generation": 2})
    secrets = {"sshPrivateKey": KEY}
    first = run_program(before, "lab", perform=False, secrets=secrets)
    second = run_program(after, "lab", preview=True, old=first.engine.state(), secrets=secrets)
    assert second.error is None, second.error
    steps = {s.name: s for s in second.steps}
    chain = steps["etcd-identity"].replaced_with
    for name in ("etcd-docker-node1", "docker-docker-node2-dockerd", "overlay-network"):
        assert name in chain, name
    # the hosts' preparation (package copy, preflight, keys) is not part of the cluster
    assert not {n for n in chain if n.startswith("lab-")}, chain
    assert kinds(steps, "create") == kinds(steps, "delete") == set()
