"""Eight hosts, a container on each (`stacks/Pulumi.scale.yaml` as written): up validates all
56 ordered pairs by IP and by name, and destroy leaves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlaylab import spec as out
from overlaylab.stackconfig import raw_from_file
from tests.labtools import LabFixture, parsed

pytestmark = pytest.mark.lab


def test_eight_hosts_validate_and_leave_nothing(tmp_path: Path) -> None:
    raw = raw_from_file("scale")
    cfg = parsed(raw)
    assert len(cfg.hosts) == 8 and len(cfg.containers) == 8
    with LabFixture("scale", tmp_path / "scale.json", raw, settle=0) as lab:
        run = lab.up()
        report = (run.outputs or {})[out.OUT_VALIDATION_REPORT]
        assert " 0 failed" in report.splitlines()[-1], report
        pings = [x for x in report.splitlines() if "overlay.ping" in x and "across hosts" in x]
        assert len(pings) == 8 * 7 * 2, len(pings)  # every ordered pair, by IP and by name
        lab.validate(run)
