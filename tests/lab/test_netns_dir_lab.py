"""The /run/netns bind mount goes with a lab's last namespace, however its hosts' teardowns
interleave with whatever lists the directory.

`ip netns add` bind-mounts /run/netns on itself and never undoes it; ``host-down`` unmounts
it once no namespace is left. A plain umount fails with EBUSY while any process has the
directory open (``os.listdir``, `ip netns list`: the other hosts' ``host-down`` verbs look at
it at the same moment), and the soak's cycle 26 (2026-12-03, 8 hosts) ended with "mount
/run/netns (empty)" left behind. Here 8 namespaces are torn down side by side, each by its own
``host-down`` process, while a thread keeps listing the directory: the mount must be gone
after every round.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

from overlaylab.hosts.netns import NETNS_DIR

ROUNDS = 10
HOSTS = 8


def _mounted() -> bool:
    return any(
        line.split()[4] == NETNS_DIR
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )


def _names() -> list[str]:
    return sorted(os.listdir(NETNS_DIR)) if os.path.isdir(NETNS_DIR) else []


def test_parallel_host_downs_release_the_netns_mount_while_it_is_listed() -> None:
    before = _names()
    assert not before, f"{NETNS_DIR} holds namespaces this test did not make: {before}"
    names = [f"ndt-ns{i}" for i in range(HOSTS)]
    stop = threading.Event()

    def lister() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                os.listdir(NETNS_DIR)

    thread = threading.Thread(target=lister, daemon=True)
    left: list[int] = []
    try:
        for rnd in range(ROUNDS):
            for ns in names:
                subprocess.run(["ip", "netns", "add", ns], check=True)
            if not thread.is_alive():
                thread.start()
            downs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "overlaylab.hostops",
                        "host-down",
                        "--netns",
                        ns,
                        "--veth",
                        f"ndt-v{i}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for i, ns in enumerate(names)
            ]
            for p in downs:
                _, err = p.communicate(timeout=60)
                assert p.returncode == 0, err
            assert not _names(), _names()
            if _mounted():
                left.append(rnd)
                subprocess.run(["umount", NETNS_DIR], check=False)
    finally:
        stop.set()
        thread.join(timeout=5)
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        if _mounted() and not _names():
            subprocess.run(["umount", NETNS_DIR], check=False)
    assert not left, f"the empty {NETNS_DIR} mount was left after rounds {left} of {ROUNDS}"
