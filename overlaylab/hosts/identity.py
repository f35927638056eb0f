"""The stack's SSH key as a file here, for ssh-based Docker clients and the validator."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from overlaylab.errors import LabError
from overlaylab.hosts.proc import log


def ssh_identity(path: str) -> None:
    """Write the SSH key (from OVERLAYLAB_SSH_KEY) to a 0600 file for ssh-based clients."""
    key = os.environ.get("OVERLAYLAB_SSH_KEY", "")
    if "PRIVATE KEY-----" not in key:
        raise LabError("OVERLAYLAB_SSH_KEY holds no private key")
    f = Path(os.path.expanduser(path))
    f.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key if key.endswith("\n") else key + "\n")
    log(f"ssh identity written to {f} (mode 0600)")


def ssh_identity_remove(path: str) -> None:
    f = Path(os.path.expanduser(path))
    f.unlink(missing_ok=True)
    (f.parent / "known_hosts").unlink(missing_ok=True)
    (f.parent / "known_hosts.old").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        f.parent.rmdir()
        f.parent.parent.rmdir()
    log(f"ssh identity {f} removed")
