"""Reaching a daemon at ``ssh://user@host:port`` from Python, with the ssh options Docker uses.

docker-py's own ssh:// support cannot be given an identity file, so this forwards a local
unix socket to the host's ``/var/run/docker.sock`` over ``ssh -N -L`` (the same ssh binary,
key and known-hosts file as the Docker provider) and hands out ``unix://`` to it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from overlaylab.errors import DockerError
from overlaylab.netrule import RouteGuard

REMOTE_SOCKET = "/var/run/docker.sock"


class SshDockerTunnel:
    """One forwarded socket; ``url`` is usable once constructed, ``close()`` ends it."""

    def __init__(
        self, ssh_url: str, ssh_opts: Sequence[str], guard: RouteGuard | None, timeout: float = 20
    ) -> None:
        u = urlparse(ssh_url)
        if u.scheme != "ssh" or not u.hostname:
            raise DockerError(f"not an ssh:// Docker host: {ssh_url}")
        if guard is not None:
            guard.check(u.hostname)
        self._dir = Path(tempfile.mkdtemp(prefix="ovl-ssh-"))
        sock = self._dir / "docker.sock"
        target = f"{u.username or 'root'}@{u.hostname}"
        argv = [
            "ssh",
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            *ssh_opts,
            "-p",
            str(u.port or 22),
            "-L",
            f"{sock}:{REMOTE_SOCKET}",
            target,
        ]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = self._proc.stderr.read().decode().strip() if self._proc.stderr else ""
                self.close()
                raise DockerError(f"cannot reach Docker at {ssh_url} over ssh: {err or 'timeout'}")
            time.sleep(0.05)
        self.url = f"unix://{sock}"

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stderr:
            self._proc.stderr.close()
        shutil.rmtree(self._dir, ignore_errors=True)
