"""Eight hosts, a container on each (`stacks/Pulumi.scale.yaml` as written): up validates all
56 ordered pairs by IP and by name, and destroy leaves nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from overlaylab import spec as out
from overlaylab.stackconfig import raw_from_file
from standin import become_subreaper
from tests.labtools import failed_first, leftovers, parsed, require_root, run_lab, validate_cli

pytestmark = pytest.mark.lab


def test_eight_hosts_validate_and_leave_nothing(tmp_path: Path) -> None:
    require_root()
    become_subreaper()
    raw = raw_from_file("scale")
    cfg = parsed(raw)
    assert len(cfg.hosts) == 8 and len(cfg.containers) == 8
    if leftovers(cfg):
        pytest.fail(f"the scale stack is up on this machine; take it down: {leftovers(cfg)[:3]}")
    start = time.monotonic()
    run = run_lab(raw, "scale", tmp_path / "scale.json")
    try:
        assert run.error is None, f"up failed after {time.monotonic() - start:.0f}s: {run.error}"
        report = (run.outputs or {})[out.OUT_VALIDATION_REPORT]
        assert " 0 failed" in report.splitlines()[-1], report
        pings = [x for x in report.splitlines() if "overlay.ping" in x and "across hosts" in x]
        assert len(pings) == 8 * 7 * 2, len(pings)  # every ordered pair, by IP and by name
        res = validate_cli((run.outputs or {})[out.OUT_VALIDATION_SPEC], 60)
        assert res.returncode == 0, failed_first(res.stdout)
    finally:
        errors = run.destroy()
    assert not errors, errors
    assert not leftovers(cfg), leftovers(cfg)
