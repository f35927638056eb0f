"""The names gate: a container on this host resolves every other container's name.

Docker 20.10 learns the names of the other hosts' containers when its watch on the network's
endpoint count fires: it lists the network's endpoints in etcd (a quorum read). If that list
fails on every member, for instance quorum reads stalled past libkv's 3 s timeout on a loaded
machine, libnetwork logs it at debug level and never retries (store.go, networkWatchLoop,
getEndpointsFromStore). The names then stay unknown until the endpoint count changes again
(`tests/lab/test_faults.py` produces this on demand). This gate finds such a host and makes that
change itself: a container started on the network and gone, after which every daemon with a
container on the network lists the endpoints again.

Standard library only (it runs on real hosts); Docker is reached with its CLI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from overlaylab.errors import DockerError
from overlaylab.hosts.proc import log, run

#: How long names may take to arrive by themselves (the watch event) before a change is made.
SETTLE = 10.0


def missing_names(docker: Sequence[str], container: str, names: Sequence[str]) -> list[str]:
    """The names that do not resolve in ``container`` (busybox's nslookup asks Docker's
    embedded DNS, as the container's own resolver does)."""
    script = 'for n in "$@"; do nslookup "$n" >/dev/null 2>&1 || echo "$n"; done'
    res = run([*docker, "exec", container, "sh", "-c", script, "sh", *names], check=False)
    if res.returncode != 0:
        raise DockerError(f"docker exec in {container} failed: {res.stderr.strip()[-300:]}")
    return res.stdout.split()


def endpoint_change(
    docker: Sequence[str], hostname: str, network: str, image: str, probe: str | None = None
) -> None:
    """A container on ``network`` that starts and is gone: the endpoint count changes twice.
    ``probe`` names it (the gate's by default; the keeper has its own)."""
    probe = probe or f"overlaylab-names-{hostname}"
    res = run([*docker, "run", "--rm", "--network", network, "--name", probe, image, "true"],
              check=False)  # fmt: skip
    if res.returncode != 0:
        run([*docker, "rm", "-f", probe], check=False)
        raise DockerError(f"{hostname}: a container on {network} to refresh its names failed: "
                          f"{res.stderr.strip()[-300:]}")  # fmt: skip


def _missing_after(missing: Callable[[], list[str]], seconds: float) -> list[str]:
    """The names still missing once they all resolve or ``seconds`` are over."""
    deadline = time.monotonic() + seconds
    left = missing()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = missing()
    return left


def settle_names(
    missing: Callable[[], list[str]],
    change: Callable[[int, list[str]], None],
    *,
    changes: int,
    seconds: float,
) -> list[str]:
    """Wait ``seconds`` for ``missing()`` to be empty; then, while it is not, ``change(n,
    missing)`` (at most ``changes`` times), each followed by 5 s for the names to arrive.
    Returns the names still missing (the gate's and the keeper's one loop)."""
    left = _missing_after(missing, seconds)
    for n in range(1, changes + 1):
        if not left:
            break
        change(n, left)
        left = _missing_after(missing, 5)
    return left


def names_settle(
    *,
    hostname: str,
    docker: Sequence[str],
    container: str,
    names: Sequence[str],
    network: str,
    image: str,
    changes: int = 3,
    settle: float = SETTLE,
) -> None:
    """Return once ``container`` resolves every one of ``names``, making an endpoint change
    on ``network`` when they have not arrived within ``settle`` seconds (at most ``changes``
    times)."""

    def change(n: int, missing: list[str]) -> None:
        log(f"{hostname}: {container} does not resolve {', '.join(missing)}: Docker lost a read "
            f"of the network's endpoints; an endpoint change ({n} of {changes}) makes it read "
            f"them again")  # fmt: skip
        endpoint_change(docker, hostname, network, image)

    missing = settle_names(
        lambda: missing_names(docker, container, names), change, changes=changes, seconds=settle
    )
    if missing:
        raise DockerError(
            f"{hostname}: {container} does not resolve {', '.join(missing)} after {changes} "
            f"endpoint changes: run the validator for the layer that is broken"
        )
    log(f"{hostname}: {container} resolves {', '.join(names)}")
