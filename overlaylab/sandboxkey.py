"""The names Docker 20.10 gives an overlay network's sandbox namespace on a host.

libnetwork's ``osl.GenerateKey`` (moby v20.10.24,
``vendor/github.com/docker/libnetwork/osl/namespace_linux.go:153-189``) keeps the first 12
characters of what it is given, and the overlay driver gives it ``"<initEpoch>-<network id>"``
(``drivers/overlay/ov_network.go:752``), the epoch counting the sandbox's re-creations on that
host. So the network id's part shrinks as the epoch grows: ``1-1a1a7c2cfe``, then after the
tenth re-creation (a host's only container on the network restarted ten times)
``10-1a1a7c2cf``. Matching ``*-<id[:10]>`` misses every sandbox from then on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

#: osl.GenerateKey's maxLen
KEY_LENGTH = 12
_NAME = re.compile(r"^(\d+)-([0-9a-f]+)$")


def key(epoch: int, network_id: str) -> str:
    """The sandbox's name for ``epoch`` of network ``network_id``."""
    return f"{epoch}-{network_id}"[:KEY_LENGTH]


def parse(name: str) -> tuple[int, str] | None:
    """(epoch, the network id's first characters) of an overlay sandbox's name, or None for
    any other name (a container's sandbox is named by its id: no dash)."""
    m = _NAME.match(name)
    if m is None or len(name) != KEY_LENGTH:
        return None
    return int(m.group(1)), m.group(2)


def of_network(name: str, network_id: str) -> bool:
    """Whether ``name`` (a file name) is a sandbox of network ``network_id``."""
    found = parse(name)
    return found is not None and key(found[0], network_id) == name


def of_network_in(paths: Iterable[str], network_id: str) -> list[str]:
    """The sandboxes of ``network_id`` among ``paths``, oldest epoch first."""
    mine = [p for p in paths if of_network(os.path.basename(p), network_id)]
    return sorted(mine, key=lambda p: (parse(os.path.basename(p)) or (0, ""))[0])


def in_dir(where: str, network_id: str) -> list[str]:
    """The sandboxes of ``network_id`` in directory ``where``, oldest epoch first."""
    try:
        names = os.listdir(where)
    except OSError:
        return []
    return of_network_in((os.path.join(where, n) for n in names), network_id)
