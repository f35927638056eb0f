"""The cleanup of the VM hosts and of the lab fixture (tests/labtools.py ``Cleanup``): every step
runs, last in first out, even when some fail, and every failure is named in the one error
raised at the end."""

from __future__ import annotations

import functools

import pytest

from tests.labtools import Cleanup


def test_every_step_runs_and_every_failure_is_raised() -> None:
    ran: list[int] = []

    def step(n: int) -> None:
        ran.append(n)
        if n in (1, 3):
            raise OSError(f"step {n} broke")

    cleanup = Cleanup()
    for n in range(5):
        cleanup.add(f"step {n}", functools.partial(step, n))
    with pytest.raises(RuntimeError) as info:
        cleanup.run()
    assert ran == [4, 3, 2, 1, 0]
    assert str(info.value) == (
        "cleanup incomplete (2 failed): step 3: OSError: step 3 broke; "
        "step 1: OSError: step 1 broke"
    )


def test_a_clean_cleanup_raises_nothing() -> None:
    ran: list[str] = []
    cleanup = Cleanup()
    cleanup.add("a", lambda: ran.append("a"))
    cleanup.add("b", lambda: ran.append("b"))
    cleanup.run()
    assert ran == ["b", "a"]
