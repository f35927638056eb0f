"""A stack brought up by the version before this layout, structure and real-engine work
(commit 9614f86) plans no change under today's code, and today's destroy removes all of it.

An upgrade in place, as a user makes it: the old version (`git archive` of that commit) in a
checkout directory brings the stack up; that directory then gets today's tree, whose
stand-in previews and destroys the same stack from the state the old one wrote (the format
before pending operations). The directory matters: every local command runs there."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlaylab.config.sample import lab_config
from overlaylab.stackconfig import write_stack_file
from tests.labtools import LabFixture, require_root

PROJECT = Path(__file__).resolve().parents[2]
BEFORE = "9614f86"  # main before this session's changes (its stand-in was tests.standin)
STACK = "upg"
SEGMENT = "192.168.229"


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=600, check=False)


@pytest.fixture
def old_tree(tmp_path: Path) -> Iterator[Path]:
    require_root()
    archive = subprocess.run(
        ["git", "-C", str(PROJECT), "archive", BEFORE], capture_output=True, check=False
    )
    assert archive.returncode == 0, f"git archive {BEFORE}: {archive.stderr.decode()[-500:]}"
    tree = tmp_path / "checkout"
    tree.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    yield tree


def _upgrade(tree: Path) -> None:
    """The checkout gets today's tree in place of the old one (a `git pull`)."""
    for p in tree.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    skip = shutil.ignore_patterns("venv", ".venv", ".git", "__pycache__", ".*_cache")
    shutil.copytree(PROJECT, tree, ignore=skip, dirs_exist_ok=True)


def test_a_stack_up_before_plans_no_change_and_destroys_clean(
    old_tree: Path, tmp_path: Path
) -> None:
    raw: dict[str, Any] = lab_config(2, lab_id=STACK, segment=SEGMENT)
    write_stack_file(old_tree / "stacks" / f"Pulumi.{STACK}.yaml", raw)
    config_file = write_stack_file(tmp_path / f"Pulumi.{STACK}.yaml", raw)
    state = tmp_path / "state"
    common = ["--stack", STACK, "--state-dir", str(state)]
    now = [sys.executable, "-m", "standin"]
    upgraded = False

    def destroy() -> list[str]:
        """Today's destroy, from the upgraded checkout (upgraded now if the test did not get
        that far)."""
        if not upgraded:
            _upgrade(old_tree)
        down = _run([*now, "destroy", *common, "--config-file", str(config_file)], old_tree)
        return [] if down.returncode == 0 else [down.stdout[-2000:] + down.stderr[-3000:]]

    with LabFixture(STACK, raw=raw, settle=0) as lab:
        lab.destroy_with("destroy", destroy)
        up = _run([sys.executable, "-m", "tests.standin", "up", *common], old_tree)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert " 0 failed" in up.stdout, up.stdout[-2000:]

        _upgrade(old_tree)
        upgraded = True
        plan = _run([*now, "preview", *common, "--config-file", str(config_file)], old_tree)
        assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
        summary = re.search(r"Resources: (.*)", plan.stdout)
        assert summary is not None, plan.stdout[-2000:]
        assert re.fullmatch(
            r"0 to create, 0 to update, 0 to replace, 0 to delete, \d+ unchanged", summary[1]
        ), plan.stdout[-3000:]
    assert not (state / f"{STACK}.json").exists()
