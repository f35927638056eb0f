"""The survey of a local lab (overlaylab.survey), on a lab directory made here: a new lab has
no findings; one whose directory exists with nothing running has one per missing thing; the
program then validates again (a mend trigger on validate-run) and says so."""

from __future__ import annotations

import copy
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlaylab import mends
from overlaylab.config import parse
from overlaylab.stackconfig import raw_from_file
from overlaylab.survey import Survey, container_state, survey


@pytest.fixture
def raw(seed_config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    state = tempfile.mkdtemp(prefix="svy-", dir="/tmp")
    out = copy.deepcopy(seed_config)
    # its own lab id: a seed lab running on this machine has the seed's namespaces
    out["lab"] = {**out["lab"], "id": "svytest", "stateDir": state, "bridge": "ovbr-svytest"}
    yield out
    shutil.rmtree(state, ignore_errors=True)


def test_a_new_lab_has_nothing_to_report(raw: dict[str, Any]) -> None:
    s = survey(parse(raw, "test"))
    assert (s.expected, s.findings) == (False, ())


def test_a_lab_whose_directory_outlived_it_reports_each_missing_part(raw: dict[str, Any]) -> None:
    cfg = parse(raw, "test")
    (Path(cfg.host_dir(cfg.hosts[0])) / "etcd" / "member").mkdir(parents=True)
    Path(cfg.host_dir(cfg.hosts[1])).mkdir(parents=True)
    (Path(cfg.host_dir(cfg.hosts[1])) / "etcd.pid").write_text("1")  # alive, but not etcd
    s = survey(cfg)
    assert s.expected
    n1, n2 = (h.name for h in cfg.hosts)
    assert tuple(map(str, s.findings)) == (
        "bridge ovbr-svytest is gone (the machine rebooted, or it was deleted)",
        f"host {n1}: its network namespace svytest-{n1} is gone",
        f"host {n1}: its etcd member is not running",
        f"host {n1}: its dockerd is not running",
        f"host {n2}: its network namespace svytest-{n2} is gone",
        f"host {n2}: its etcd member is not running, and its data is gone",
        f"host {n2}: its dockerd is not running",
    ), s.findings


def test_a_daemon_without_its_names_keeper_is_found_and_mended_by_its_daemons_create(
    raw: dict[str, Any],
) -> None:
    """A live dockerd with no names keeper beside it (a lab made before the keeper existed,
    or a keeper that died) is a finding; it is not one that validation must look at again
    (`broken`, the mend trigger of validate-run) nor one a run mends: an upgraded stack plans
    no change (tests/lab/test_upgrade_lab.py)."""
    cfg = parse(raw, "test")
    base = Path(cfg.host_dir(cfg.hosts[0]))
    base.mkdir(parents=True)
    (base / "docker.sock").touch()
    dockerd = subprocess.Popen(["bash", "-c", "exec -a dockerd sleep 60"])
    try:
        time.sleep(0.2)
        (base / "docker.pid").write_text(f"{dockerd.pid}\n")
        s = survey(cfg)
    finally:
        dockerd.kill()
        dockerd.wait()
    keepers = [f for f in s.findings if f.kind == "keeper"]
    assert [str(f) for f in keepers] == [
        f"host {cfg.hosts[0].name}: its names keeper is not running (a container restarted "
        "by hand may lose the other hosts' names)"
    ]
    only = Survey(expected=True, findings=tuple(keepers))
    assert only.broken == () and mends.broken(only, cfg) == []  # reported, not mended


def test_the_program_validates_again_while_the_lab_has_drifted(
    raw: dict[str, Any], record_graph: Any
) -> None:
    """A host's directory with nothing running in it: the validator runs again (a mend
    trigger), and the host's resources get their mend generations (tests/unit/test_mends.py
    holds which); the other host's resources are planned as they were."""
    clean = record_graph(raw)
    assert clean.run.error is None, clean.run.error
    triggers = clean.named("validate-run").inputs["triggers"]
    assert not any(str(t).startswith("mend ") for t in triggers), triggers
    cfg = parse(raw, "test")
    Path(cfg.host_dir(cfg.hosts[0])).mkdir(parents=True)
    drifted = record_graph(raw)
    assert drifted.run.error is None, drifted.run.error
    again = drifted.named("validate-run").inputs["triggers"]
    assert again[-1] == "mend 1", again
    n2 = cfg.hosts[1].name
    stays = [f"etcd-{n2}", f"docker-{n2}-dockerd", f"serf-{n2}", f"test-{n2}-image", "test-test2"]
    for name in stays:
        assert clean.named(name).inputs == drifted.named(name).inputs, name


def _inspected(*networks: str, running: bool = True) -> dict[str, Any]:
    return {
        "State": {"Running": running},
        "NetworkSettings": {"Networks": {n: {} for n in networks}},
    }


def test_a_container_detached_from_one_of_its_networks_is_found() -> None:
    cfg = parse(copy.deepcopy(raw_from_file("isolation")), "test")
    both = next(c for c in cfg.containers if c.name == "both1")
    back = next(c for c in cfg.containers if c.name == "back1")
    assert container_state(cfg, both, _inspected("demo", "backend")) == ""
    assert container_state(cfg, both, _inspected("demo")) == "is not attached to backend"
    assert container_state(cfg, both, _inspected()) == "is not attached to demo, backend"
    # a container that names one network is not expected on the first
    assert container_state(cfg, back, _inspected("backend")) == ""
    assert container_state(cfg, back, _inspected("demo")) == "is not attached to backend"
    assert container_state(cfg, back, _inspected("backend", running=False)) == "is not running"


def test_a_seed_container_is_expected_on_the_seed_network(raw: dict[str, Any]) -> None:
    cfg = parse(raw, "test")
    assert container_state(cfg, cfg.containers[0], _inspected("demo")) == ""
    assert container_state(cfg, cfg.containers[0], _inspected("other")) == (
        "is not attached to demo"
    )
