"""Drift on a running local lab, as a user meets it through the stand-in's CLI: a dockerd
killed, then the next `preview` names it and plans the validator again, `up` fails with the
validator's findings instead of the last report's "0 failed" and prints the `--replace` flags
that mend it; `up` with them brings the lab back validated, with the other host's daemon and
container untouched; `destroy` leaves nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from overlaylab.config import parse
from overlaylab.config.sample import lab_config
from overlaylab.hosts.proc import pid_of
from overlaylab.leftovers import leftovers
from tests.labtools import require_root

PROJECT = Path(__file__).resolve().parents[2]
STACK = "drift"
SEGMENT = "192.168.231"


def _cli(
    verb: str, config_file: Path, state: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "standin", verb, "--stack", STACK,
         "--config-file", str(config_file), "--state-dir", str(state), *extra],
        capture_output=True, text=True, cwd=PROJECT, timeout=600, check=False,
    )  # fmt: skip


def test_a_dead_dockerd_is_seen_by_preview_and_up_fails_with_the_validators_findings(
    tmp_path: Path,
) -> None:
    require_root()
    raw: dict[str, Any] = lab_config(2, lab_id=STACK, segment=SEGMENT)
    config_file = tmp_path / f"Pulumi.{STACK}.yaml"
    config_file.write_text(json.dumps({"config": {f"overlay-etcd:{k}": v for k, v in raw.items()}}))
    state = tmp_path / "state"
    cfg = parse(raw, "drift test")
    try:
        up = _cli("up", config_file, state)
        assert up.returncode == 0 and " 0 failed" in up.stdout, up.stdout[-2000:] + up.stderr
        node1, node2 = cfg.hosts
        pid = pid_of(Path(cfg.host_dir(node2)) / "docker.pid", "dockerd")
        kept = pid_of(Path(cfg.host_dir(node1)) / "docker.pid", "dockerd")
        assert pid is not None and kept is not None
        test1 = _container_id(cfg.host_dir(node1), "test1")
        os.kill(pid, signal.SIGKILL)

        plan = _cli("preview", config_file, state)
        assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
        assert f"drift: host {node2.name}: its dockerd is not running" in plan.stderr, plan.stderr
        assert "container test2 on" not in plan.stderr  # not read through a dead daemon
        line = next(ln for ln in plan.stdout.splitlines() if " validate-run " in ln)
        assert "replace" in line, plan.stdout

        again = _cli("up", config_file, state)
        assert again.returncode != 0, again.stdout[-2000:]
        assert "FAIL" in again.stdout + again.stderr, again.stdout[-3000:] + again.stderr[-3000:]
        assert " 0 failed" not in again.stdout
        hint = re.search(
            r"drift: to mend the daemons and containers, run up with (.*)", again.stderr
        )
        assert hint is not None, again.stderr[-3000:]
        flags = hint[1].split()
        assert [f for f in flags if f != "--replace"] and all(
            u.endswith(("docker-node2-dockerd", "serf-docker-node2", "test-test2"))
            for u in flags if u != "--replace"
        ), flags  # fmt: skip

        mended = _cli("up", config_file, state, *flags)
        assert mended.returncode == 0 and " 0 failed" in mended.stdout, (
            mended.stdout[-3000:] + mended.stderr[-3000:]
        )
        assert pid_of(Path(cfg.host_dir(node1)) / "docker.pid", "dockerd") == kept
        assert _container_id(cfg.host_dir(node1), "test1") == test1
        assert "drift:" not in _cli("preview", config_file, state).stderr
    finally:
        down = _cli("destroy", config_file, state)
        left = leftovers(cfg)
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-3000:]
    assert left == [], left


def _container_id(host_dir: str, name: str) -> str:
    from overlaylab.hosts.dockerd import docker_api

    return str(docker_api(f"{host_dir}/docker.sock", timeout=10).inspect_container(name)["Id"])
