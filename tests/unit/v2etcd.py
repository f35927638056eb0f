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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def single_etcd() -> Iterator[EtcdClient]:
    """A client to a fresh one-member cluster; the member and its data are gone afterwards."""
    binary = shutil.which("etcd")
    if binary is None:
        pytest.fail("etcd is not installed: run scripts/setup (as root) first", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="v2etcd-"))
    client_port, peer_port = _free_port(), _free_port()
    url, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    log = (root / "etcd.log").open("wb")
    proc = subprocess.Popen(
        [binary, "--name", "m", "--data-dir", str(root / "data"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", f"m={peer}", "--initial-cluster-token", uuid.uuid4().hex,
         "--enable-v2=true"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        client = EtcdClient(url, None, timeout=10)
        deadline = time.monotonic() + LIMIT
        while True:
            try:
                if client.health() and client.v2_enabled():
                    break
            except EtcdError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                said = (root / "etcd.log").read_text()[-800:]
                raise AssertionError(f"etcd on {url} never answered: {said}")
            time.sleep(0.1)
        yield client
    finally:
        proc.kill()
        proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def dead_endpoint() -> str:
    """A 127.0.0.1 URL nothing listens on (a cluster that cannot be read)."""
    return f"http://127.0.0.1:{_free_port()}"
