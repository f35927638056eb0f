"""The first SIGINT as the Pulumi CLI takes it: the steps in flight finish, no new step starts,
and the run ends with one line; a second SIGINT stops at once (Python's KeyboardInterrupt).

pulumi/pulumi v3.259.0 pkg/cmd/pulumi/... (cancellation: the first interrupt cancels the
deployment gracefully, the second terminates) and pkg/resource/deploy/step_executor.go (a
cancelled executor starts no new chain)."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

#: Set by the first SIGINT: the engine and the destroy start no new step once it is.
STOP = threading.Event()


class Interrupted(Exception):
    """The run was interrupted; the steps in flight were let finish."""

    def __init__(self) -> None:
        super().__init__("interrupted: the steps in flight finished, no new step started")


def install() -> None:
    """The first SIGINT sets STOP and says so on stderr; the next one is Python's default."""

    def first(signum: int, frame: FrameType | None) -> None:
        STOP.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(
            "^C received: letting the steps in flight finish, no new step starts "
            "(press ^C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    signal.signal(signal.SIGINT, first)
