"""Drift on a running local lab, as a user meets it through the stand-in's CLI: a dockerd
killed. The next `preview` and `up` say so first, with the `--replace` flags that mend it,
then fail where the engine fails them: the dead daemon's Docker provider is configured (and
pinged) in preview and in up (docs/engine.md §1). Neither reports the last "0 failed". `up`
with those flags brings the lab back validated, with the other host's daemon and container
untouched; `destroy` leaves nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from overlaylab.config import LabConfig
from overlaylab.config.sample import lab_config
from overlaylab.hosts.proc import pid_of
from overlaylab.stackconfig import write_stack_file
from overlaylab.survey import mend_urns, survey
from tests.labtools import LabFixture

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
    raw: dict[str, Any] = lab_config(2, lab_id=STACK, segment=SEGMENT)
    config_file = write_stack_file(tmp_path / f"Pulumi.{STACK}.yaml", raw)
    state = tmp_path / "state"
    with LabFixture(STACK, raw=raw, settle=0) as lab:
        cfg = lab.cfg
        lab.destroy_with("destroy", lambda: _destroy(cfg, config_file, state))
        up = _cli("up", config_file, state)
        assert up.returncode == 0 and " 0 failed" in up.stdout, up.stdout[-2000:] + up.stderr
        node1, node2 = cfg.hosts
        pid = pid_of(Path(cfg.host_dir(node2)) / "docker.pid", "dockerd")
        kept = pid_of(Path(cfg.host_dir(node1)) / "docker.pid", "dockerd")
        assert pid is not None and kept is not None
        test1 = _container_id(cfg.host_dir(node1), "test1")
        os.kill(pid, signal.SIGKILL)

        dead = f"drift: host {node2.name}: its dockerd is not running"
        mend = r"drift: to mend the daemons and containers, run up with (.*)"
        for verb in ("preview", "up"):
            res = _cli(verb, config_file, state)
            said = res.stdout + res.stderr
            assert res.returncode == 1 and dead in res.stderr, said[-3000:]
            assert "failed to connect to any docker daemon" in res.stderr, said[-3000:]
            assert " 0 failed" not in res.stdout and "Traceback" not in said, said[-3000:]
        hint = re.search(mend, res.stderr)
        assert hint is not None, res.stderr[-3000:]
        flags = hint[1].split()
        names = [u.rsplit("::", 1)[1] for u in flags if u != "--replace"]
        n2 = node2.name
        assert names == [f"docker-{n2}-dockerd", f"serf-{n2}", f"test-{n2}-import",
                         f"test-{n2}-image", "test-test2"]  # fmt: skip

        mended = _cli("up", config_file, state, *flags)
        assert mended.returncode == 0 and " 0 failed" in mended.stdout, (
            mended.stdout[-3000:] + mended.stderr[-3000:]
        )
        assert pid_of(Path(cfg.host_dir(node1)) / "docker.pid", "dockerd") == kept
        assert _container_id(cfg.host_dir(node1), "test1") == test1
        assert "drift:" not in _cli("preview", config_file, state).stderr


def _destroy(cfg: LabConfig, config_file: Path, state: Path) -> list[str]:
    """The CLI's destroy; its errors, if it fails even after a mend."""
    down = _cli("destroy", config_file, state)
    if down.returncode != 0:  # a dead daemon fails its containers' deletes: mend, destroy
        urns = mend_urns(survey(cfg), cfg, STACK, "overlay-etcd")
        _cli("up", config_file, state, *(x for u in urns for x in ("--replace", u)))
        down = _cli("destroy", config_file, state)
    return [] if down.returncode == 0 else [down.stdout[-2000:] + down.stderr[-3000:]]


def _container_id(host_dir: str, name: str) -> str:
    from overlaylab.hosts.dockerd import docker_api

    return str(docker_api(f"{host_dir}/docker.sock", timeout=10).inspect_container(name)["Id"])
