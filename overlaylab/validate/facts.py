"""What the validator saw of the lab while checking it, for the picture (``overlaylab.picture``).

Filled only where a check already reads the value (no extra request to the lab): a
container's overlay address and MAC (its inspect), its ``eth0`` MTU (the path-MTU and underlay
MTU checks), each host's underlay ``eth0`` MTU (the underlay MTU check), the overlay's id as
each daemon lists it (the network checks). Nothing is read for the VXLAN id (VNI), the
etcd leader or ``docker_gwbridge``: the picture draws them as unknown. Each round of a
converging check overwrites what the one before saw, so the last round wins.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ContainerFacts:
    host: str
    ip: str | None = None
    mac: str | None = None
    mtu: int | None = None  # of its eth0, the overlay interface
    error: str = ""  # why its daemon gave no address (not running, not attached, ...)


@dataclass
class Facts:
    containers: dict[str, ContainerFacts] = field(default_factory=dict)
    underlay_mtu: dict[str, int] = field(default_factory=dict)  # host -> its eth0's MTU
    network_ids: dict[str, str] = field(default_factory=dict)  # host -> the overlay's id there
    vni: int | None = None  # not read today (see the module's doc)
    leader: str | None = None  # not read today
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def container(
        self, name: str, host: str, ip: str | None, mac: str | None, error: str = ""
    ) -> None:
        with self._lock:
            old = self.containers.get(name)
            mtu = old.mtu if old is not None and ip is not None else None
            self.containers[name] = ContainerFacts(host, ip, mac, mtu, error)

    def container_mtu(self, name: str, host: str, mtu: int | None) -> None:
        if mtu is None:
            return
        with self._lock:
            self.containers.setdefault(name, ContainerFacts(host)).mtu = mtu

    def host_mtu(self, host: str, mtu: int) -> None:
        with self._lock:
            self.underlay_mtu[host] = mtu

    def network_id(self, host: str, net_id: str) -> None:
        with self._lock:
            self.network_ids[host] = net_id

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "containers": {k: asdict(v) for k, v in self.containers.items()},
                "underlay_mtu": dict(self.underlay_mtu),
                "network_ids": dict(self.network_ids),
                "vni": self.vni,
                "leader": self.leader,
            }

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Facts:
        d = d or {}
        return cls(
            containers={
                str(k): ContainerFacts(**v) for k, v in (d.get("containers") or {}).items()
            },
            underlay_mtu={str(k): int(v) for k, v in (d.get("underlay_mtu") or {}).items()},
            network_ids={str(k): str(v) for k, v in (d.get("network_ids") or {}).items()},
            vni=d.get("vni"),
            leader=d.get("leader"),
        )
