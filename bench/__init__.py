"""The project's benchmarks and soaks (run as root, one lab at a time)."""

from __future__ import annotations

import contextlib
import signal
from types import FrameType
from typing import Any


def stoppable() -> None:
    """A benchmark started in the background (``nohup ... &`` starts it with SIGINT ignored,
    and Python then never raises KeyboardInterrupt) or stopped by a job control's SIGTERM
    still runs its teardown: both signals raise KeyboardInterrupt in the main thread, so its
    ``finally`` destroys the lab it made."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)


def forget_kept(raw: dict[str, Any]) -> None:
    """What outlives a destroy on purpose (the backups of Docker's keys, a failed validation's
    dumps, the mend generations: overlaylab/backup.py, validate/cli.py, mends.py), removed
    once a benchmark's lab is gone: a benchmark leaves nothing behind."""
    import shutil
    from pathlib import Path

    from overlaylab import mends
    from overlaylab.backup import backup_dir
    from overlaylab.config import parse

    cfg = parse(raw, "benchmark config")
    shutil.rmtree(backup_dir(cfg), ignore_errors=True)
    shutil.rmtree(f"{cfg.state_dir}/{cfg.lab_id}.dumps", ignore_errors=True)
    mends.path(cfg).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(cfg.state_dir).rmdir()  # only when empty: the labs' shared root
