"""Mend generations (overlaylab/mends.py): what the survey finds broken is raised, kept in the
lab's file by a run that may change something, and becomes an input of exactly the broken
resources; the next run with nothing broken plans those inputs as they are (it runs nothing)."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import overlaylab.survey
from overlaylab import mends
from overlaylab.config import parse
from overlaylab.survey import Finding, Survey


@pytest.fixture
def raw(seed_config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    state = tempfile.mkdtemp(prefix="mnd-", dir="/tmp")
    out = copy.deepcopy(seed_config)
    out["lab"] = {**out["lab"], "id": "mndtest", "stateDir": state, "bridge": "ovbr-mndtest"}
    yield out
    shutil.rmtree(state, ignore_errors=True)


def _broken(cfg: Any) -> Survey:
    n1, n2 = (h.name for h in cfg.hosts)
    return Survey(
        True,
        (
            Finding("dockerd", "its dockerd is not running", n2),
            Finding("etcd", "its etcd member is not running", n1),
            Finding("netns", "its namespace is gone", n1),
        ),
    )


def test_a_broken_resource_gets_its_generation_raised_once_per_run_and_kept(
    raw: dict[str, Any],
) -> None:
    cfg = parse(raw, "test")
    n1, n2 = (h.name for h in cfg.hosts)
    broken = _broken(cfg)
    expected = [
        f"docker-{n2}-dockerd", f"serf-{n2}", f"test-{n2}-import", f"test-{n2}-image",
        "test-test2", f"etcd-{n1}:update", f"lab-{n1}", "validate-run",
    ]  # fmt: skip
    seen = mends.advance(cfg, broken, write=False)  # a preview
    assert list(seen.raised) == expected
    assert seen.triggers(f"docker-{n2}-dockerd") == ["mend 1"]
    assert seen.environment(f"etcd-{n1}") == {mends.ENV: "1"}
    assert seen.triggers(f"docker-{n1}-dockerd") == [] and seen.environment(f"etcd-{n2}") == {}
    assert not mends.path(cfg).exists()  # a preview writes nothing

    mends.advance(cfg, broken, write=True)
    assert json.loads(mends.path(cfg).read_text()) == dict.fromkeys(expected, 1)
    healthy = mends.advance(cfg, Survey(True), write=True)  # the next run: nothing broken
    assert healthy.raised == () and healthy.triggers(f"docker-{n2}-dockerd") == ["mend 1"]
    assert json.loads(mends.path(cfg).read_text()) == dict.fromkeys(expected, 1)
    again = mends.advance(cfg, broken, write=True)  # broken again (or the mend never ran)
    assert again.of(f"docker-{n2}-dockerd") == 2 and again.of(f"docker-{n1}-dockerd") == 0


def test_an_ssh_labs_generations_are_kept_beside_its_identity_file(raw: dict[str, Any]) -> None:
    cfg = parse(raw, "test")
    key = Path(cfg.state_dir) / "ssh" / "id_ssh"
    ssh = dataclasses.replace(cfg, transport="ssh", identity_file=str(key))
    assert mends.path(ssh) == key.parent / "mndtest.mends.json"
    mends.advance(ssh, _broken(cfg), write=True)
    assert json.loads(mends.path(ssh).read_text())["test-test2"] == 1
    assert not mends.path(cfg).exists()


def test_the_program_puts_the_generations_into_the_broken_resources_only_and_keeps_them(
    raw: dict[str, Any], record_graph: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The survey (monkeypatched: nothing runs here) finds host 2's dockerd dead and host 1's
    member down and namespace gone. Host 1's namespace gets a mend trigger; host 2's daemon,
    serf check, image import and image get a mend trigger, its
    container a label (a replace each); host 1's member an environment variable (an update:
    its create restarts it). Nothing else changes. With the file written and nothing broken,
    the next run's inputs are the mended ones: it plans nothing."""
    cfg = parse(raw, "test")
    n1, n2 = (h.name for h in cfg.hosts)
    clean = record_graph(raw)
    monkeypatch.setattr(overlaylab.survey, "survey", lambda c: _broken(cfg))
    mended = record_graph(raw)
    assert mended.run.error is None, mended.run.error
    before = {r.name: r.inputs for r in clean.resources}
    after = {r.name: r.inputs for r in mended.resources}
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {
        f"docker-{n2}-dockerd", f"serf-{n2}", f"test-{n2}-import", f"test-{n2}-image",
        "test-test2", f"etcd-{n1}", f"lab-{n1}", "validate-run",
    }, changed  # fmt: skip
    assert after[f"lab-{n1}"]["triggers"] == ["mend 1"] and "triggers" not in before[f"lab-{n1}"]
    assert after[f"docker-{n2}-dockerd"]["triggers"][-1] == "mend 1"
    assert after[f"serf-{n2}"]["triggers"][-1] == "mend 1"
    assert after[f"test-{n2}-import"]["triggers"][-1] == "mend 1"
    assert after[f"test-{n2}-image"]["triggers"]["mend"] == "mend 1"
    assert after["test-test2"]["labels"] == [{"label": mends.LABEL, "value": "mend 1"}]
    assert after[f"etcd-{n1}"]["environment"][mends.ENV] == "1"
    assert {k: v for k, v in after[f"etcd-{n1}"].items() if k != "environment"} == {
        k: v for k, v in before[f"etcd-{n1}"].items() if k != "environment"
    }

    mends.advance(cfg, _broken(cfg), write=True)  # what that `up` wrote
    monkeypatch.setattr(overlaylab.survey, "survey", lambda c: Survey(True))
    settled = record_graph(raw)
    later = {r.name: r.inputs for r in settled.resources}
    assert later == after  # the validator's trigger too: the run after a mend validates no more
    assert later["validate-run"]["triggers"][-1] == "mend 1"


def test_the_names_mended_are_the_programs_own_resources(
    raw: dict[str, Any], record_graph: Any
) -> None:
    cfg = parse(raw, "test")
    registered = {r.name for r in record_graph(raw).resources}
    everything = Survey(
        True,
        tuple(Finding(k, k, h.name, c.name) for k in mends.MENDED for h in cfg.hosts for c in
              cfg.containers if k != "node"),
    )  # fmt: skip
    names = [n.partition(":")[0] for n in mends.broken(everything, cfg)]
    assert names and set(names) <= registered, sorted(set(names) - registered)


def test_only_every_member_lost_lets_the_cluster_be_founded_again(raw: dict[str, Any]) -> None:
    """One member's data lost: it must rejoin (never found). Every member's: nothing is left to
    split from, and the markers forget that their members ran, so each founds again."""
    cfg = parse(raw, "test")
    n1, n2 = (h.name for h in cfg.hosts)
    one = Survey(True, (Finding("etcd", "x", n1, data_lost=True), Finding("etcd", "y", n2)))
    both = Survey(True, tuple(Finding("etcd", "x", n, data_lost=True) for n in (n1, n2)))
    assert not mends.every_member_lost(one, cfg) and mends.every_member_lost(both, cfg)
    for h in cfg.hosts:
        marker = Path(cfg.host_dir(h)) / "etcd-cluster.json"
        marker.parent.mkdir(parents=True)
        marker.write_text(json.dumps({"name": h.name, "token": "t", "ran": True}))
    said = mends.refound(cfg)
    assert "founds it again" in said and "overlaylab.backup restore" in said
    for h in cfg.hosts:
        record = json.loads((Path(cfg.host_dir(h)) / "etcd-cluster.json").read_text())
        assert record == {"name": h.name, "token": "t"}
