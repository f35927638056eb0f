"""The project's benchmarks and soaks (run as root, one lab at a time)."""

from __future__ import annotations

import signal
from types import FrameType


def stoppable() -> None:
    """A benchmark started in the background (``nohup ... &`` starts it with SIGINT ignored,
    and Python then never raises KeyboardInterrupt) or stopped by a job control's SIGTERM
    still runs its teardown: both signals raise KeyboardInterrupt in the main thread, so its
    ``finally`` destroys the lab it made."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)
