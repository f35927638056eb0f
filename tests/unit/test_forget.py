"""Taking an SSH host that is gone out of its stack (overlaylab/forget.py): which resources are
the host's, and the state without them and without any reference to them, in the stand-in's
format and in `pulumi stack export`'s."""

from __future__ import annotations

import copy
from typing import Any

from overlaylab.config import parse
from overlaylab.forget import PULUMI, STANDIN, names_of, without
from overlaylab.stackconfig import raw_from_file
from tests.unit.test_program_ssh import KEY

THIRD = {"name": "docker-node3", "address": "192.168.205.12"}


def test_the_hosts_resources_are_every_one_the_program_makes_for_it(record_graph: Any) -> None:
    raw = copy.deepcopy(raw_from_file("lab"))
    raw["hosts"] = [*raw["hosts"], THIRD]
    raw["containers"] = [*raw["containers"], {"name": "test3", "host": THIRD["name"]}]
    g = record_graph(raw, secrets={"sshPrivateKey": KEY})
    assert g.run.error is None, g.run.error
    cfg = parse({**raw, "sshPrivateKey": KEY}, "test")
    names = names_of(cfg, THIRD["name"])
    registered = {r.name for r in g.records}
    theirs = {n for n in registered if THIRD["name"] in n} | {"test-test3"}
    assert theirs <= names, sorted(theirs - names)
    # and nothing of another host's (a name that merely ends like one)
    assert not any("docker-node1" in n or "docker-node2" in n for n in names & registered)


def _rec(urn: str, deps: list[str], provider: str = "", props: Any = None) -> dict[str, Any]:
    return {"urn": urn, "name": urn.rsplit("::", 1)[-1], "deps": deps, "provider": provider,
            "prop_deps": props or {}}  # fmt: skip


def test_the_state_loses_the_hosts_resources_and_every_reference_to_them() -> None:
    u = "urn:pulumi:lab::overlay-etcd::t::"
    recs = [
        _rec(u + "etcd-h3", []),
        _rec(u + "etcd-healthy", [u + "etcd-h1", u + "etcd-h3"]),
        _rec(u + "docker-h3-docker", []),
        _rec(u + "image-on-h3", [], provider=u + "docker-h3-docker::pid"),
        _rec(u + "net", [u + "etcd-healthy"], props={"x": [u + "etcd-h3", u + "etcd-h1"]}),
    ]
    kept, gone = without(recs, {"etcd-h3", "docker-h3-docker"}, STANDIN)
    assert gone == ["etcd-h3", "docker-h3-docker", "image-on-h3"]
    assert [r["urn"] for r in kept] == [u + "etcd-healthy", u + "net"]
    assert kept[0]["deps"] == [u + "etcd-h1"] and kept[1]["prop_deps"] == {"x": [u + "etcd-h1"]}

    exported: list[dict[str, Any]] = [
        {"urn": u + "etcd-h3", "dependencies": []},
        {"urn": u + "etcd-healthy", "dependencies": [u + "etcd-h3"], "propertyDependencies": {}},
    ]
    kept, gone = without(exported, {"etcd-h3"}, PULUMI)
    assert gone == ["etcd-h3"] and kept[0]["dependencies"] == []
