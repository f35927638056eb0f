"""The interruption loop's short form (bench/interrupts.py): `up` and `destroy` each killed 5
times at random moments, with SIGINT or SIGKILL, and each run again to the end: every `up`
after one reaches a validated lab, every `destroy` after one leaves nothing, and a SIGINT
ends its run with one line and no traceback."""

from __future__ import annotations

from pathlib import Path

from bench import interrupts
from tests.labtools import require_root

KILLS = 5
SEED = 20261201  # fixed: a failure here is reproduced with the same moments


def test_interrupted_ups_and_destroys_converge(tmp_path: Path) -> None:
    require_root()
    tally, failure = interrupts.loop(KILLS, SEED, tmp_path)
    print("\n" + "\n".join(tally.rounds))
    try:
        assert failure == "", failure
        assert len(tally.rounds) == 2 * KILLS, tally.rounds
    finally:
        if failure:  # the loop stops at its first failure: take the lab down
            interrupts.Lab(tmp_path).run("destroy")
    assert interrupts.Lab(tmp_path).left() == []
