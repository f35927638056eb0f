"""The validator on a lab that is not there: it fails, and says what it could not reach."""

from __future__ import annotations

import json
import time

import pytest

from overlaylab.config import parse
from overlaylab.spec import validation_spec
from overlaylab.validate import summary, validate
from tests.labtools import lab_config, validate_cli

ABSENT = lab_config(hosts=2, lab_id="absent", segment="192.168.218")


def test_a_missing_lab_fails_every_check_naming_the_cause() -> None:
    spec = validation_spec(parse(ABSENT))
    results = validate(spec, timeout=0)
    assert results and not any(r.ok for r in results)
    text = summary(results, 0.0)
    # no traffic was sent: the route to the lab does not go through its (absent) bridge
    assert "refusing to contact 192.168.218.10" in text
    assert "not through the lab's bridge ovbr-absent" in text
    assert (
        "dockerd on docker-node1 (unix:///var/lib/overlaylab/absent/docker-node1/docker.sock)"
        " is unreachable" in text
    )
    assert text.splitlines()[-1].startswith(f"{len(results)} checks, {len(results)} failed")


def test_cli_exits_1_with_json_records() -> None:
    res = validate_cli(validation_spec(parse(ABSENT)), 0, "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["summary"]["failed"] == doc["summary"]["count"] > 0
    assert all(set(r) == {"check", "subject", "expected", "actual", "ok"} for r in doc["results"])
    assert "validation failed" in res.stderr


def test_cli_reports_an_unreadable_spec_in_one_line() -> None:
    """docs/validator.md: exit 2 when the spec cannot be read; the reason on one line."""
    res = validate_cli({"not": "a spec"}, 0)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.splitlines() == [
        "error: cannot load the validation spec: 'lab' is missing or not a dict"
    ]


class _Lab:
    """What ``_converge`` asks of a lab between tries."""

    refreshed = 0

    def refresh(self) -> None:
        self.refreshed += 1


def test_a_group_that_passes_late_says_so_with_its_first_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from overlaylab.validate.records import Result
    from overlaylab.validate.run import _converge

    tries: list[int] = []

    def group(_lab: object) -> list[Result]:
        tries.append(1)
        ok = len(tries) >= 3
        return [
            Result("overlay.ping", "test1 -> test2", "a reply", "a reply" if ok else "no reply", ok)
        ]

    lab = _Lab()
    out = _converge(lab, "connectivity", group, time.monotonic() + 30, 0.01)  # type: ignore[arg-type]
    assert [r.ok for r in out] == [True] and len(tries) == 3 and lab.refreshed == 2
    said = capsys.readouterr().err
    assert "validate: connectivity passed on try 3" in said, said
    assert "first try: overlay.ping test1 -> test2: no reply" in said, said

    # a group that passes at once, or never, says nothing of tries (its records say it all)
    tries.clear()
    tries.extend([1, 1])
    _converge(lab, "connectivity", group, time.monotonic() + 30, 0.01)  # type: ignore[arg-type]
    assert capsys.readouterr().err == ""
