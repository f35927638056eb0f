"""One real etcd member (3.4, ``--enable-v2``) on 127.0.0.1, on ports the kernel hands out, with
its data in a temporary directory: started by a test, killed and removed after it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from overlaylab.errors import EtcdError
from overlaylab.etcd import EtcdClient

#: Far above what a loaded 2-core machine needs for one member to answer.
LIMIT = 60.0


def _free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free now: each socket is held until all are picked (picked one after
    another and closed, the kernel may hand out the same port twice, and etcd's client and peer
    listeners would then collide)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


#: How many times a member whose port was taken between the pick and etcd's bind is started
#: again on new ports (any process's outgoing connection may take a free ephemeral port).
ATTEMPTS = 3


@contextmanager
def single_etcd() -> Iterator[EtcdClient]:
    """A client to a fresh one-member cluster; the member and its data are gone afterwards."""
    binary = shutil.which("etcd")
    if binary is None:
        pytest.fail("etcd is not installed: run scripts/setup (as root) first", pytrace=False)
    for attempt in range(1, ATTEMPTS + 1):
        root = Path(tempfile.mkdtemp(prefix="v2etcd-"))
        proc, client = _start(binary, root)
        try:
            said = _wait(proc, client, root)
            if said is None:
                yield client
                return
            if "address already in use" not in said or attempt == ATTEMPTS:
                raise AssertionError(f"etcd on {client.endpoint} never answered: {said}")
        finally:
            proc.kill()
            proc.wait()
            shutil.rmtree(root, ignore_errors=True)


def _start(binary: str, root: Path) -> tuple[subprocess.Popen[bytes], EtcdClient]:
    client_port, peer_port = _free_ports(2)
    url, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    with (root / "etcd.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, "--name", "m", "--data-dir", str(root / "data"),
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"m={peer}", "--initial-cluster-token", uuid.uuid4().hex,
             "--enable-v2=true"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return proc, EtcdClient(url, None, timeout=10)


def _wait(proc: subprocess.Popen[bytes], client: EtcdClient, root: Path) -> str | None:
    """None once the member answers with v2 on; else the tail of its log."""
    deadline = time.monotonic() + LIMIT
    while True:
        try:
            if client.health() and client.v2_enabled():
                return None
        except EtcdError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            return (root / "etcd.log").read_text()[-800:]
        time.sleep(0.1)


def dead_endpoint() -> str:
    """A 127.0.0.1 URL nothing listens on (a cluster that cannot be read)."""
    return f"http://127.0.0.1:{_free_port()}"
