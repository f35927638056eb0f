"""The interruption loop's short form (bench/interrupts.py): `up` and `destroy` each stopped 5
times at random moments, and each run again to the end: every `up` after one reaches a
validated lab, every `destroy` after one leaves nothing, and a SIGINT ends its run with one
line and no traceback. Each verb gets SIGINT or SIGKILL; a SIGKILL of `up` in a container's
create leaves a pending create of a container that exists, which the loop imports as the
engine says (interrupts.KNOWN; before, cleared, it failed the next `up` in CI on 2026-12-01:
"The container name /test1 is already in use")."""

from __future__ import annotations

from pathlib import Path

from bench import interrupts
from tests.labtools import LabFixture

KILLS = 5
SEED = 20261201  # fixed: a failure here is reproduced with the same moments


def test_interrupted_ups_and_destroys_converge(tmp_path: Path) -> None:
    lab = interrupts.Lab(tmp_path)  # the loop's lab: its config, its stack's state file
    failure: str | None = None  # the loop's, once it returned

    def destroy() -> list[str]:
        """The loop takes its lab down at the end; after its first failure (or an exception)
        it does not."""
        if failure == "":
            return []
        res = lab.run("destroy")
        return [] if res.returncode == 0 else [f"destroy after the loop: {res.stderr[-3000:]}"]

    # the leftover check: the lab's and the stack's state file (lab.left)
    with LabFixture(interrupts.STACK, raw=lab.cfg, settle=0, left_behind=lab.left) as fixture:
        fixture.destroy_with("destroy", destroy)
        tally, failure = interrupts.loop(KILLS, SEED, tmp_path)
        print("\n" + "\n".join(tally.rounds))
        assert failure == "", failure
        assert len(tally.rounds) == 2 * KILLS, tally.rounds
