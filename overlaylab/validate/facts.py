"""What the validator saw of the lab while checking it, for the picture (``overlaylab.picture``).

Filled where a check already reads the value: a container's overlay address and MAC (its
inspect), its ``eth0`` MTU (the path-MTU and underlay MTU checks), each host's underlay
``eth0`` MTU (the underlay MTU check), the overlay's id as each daemon lists it (the network
checks). Each round of a converging check overwrites what the one before saw, so the last
round wins. Two more are read once per validation, after the checks, for the page alone
(``overlaylab.validate.run.read_for_page``: no record, no check fails by them): the
overlay's VXLAN ids (VNIs) from the overlay driver's own key, and the etcd leader from one
healthy member. Where that read fails they stay unknown, as ``docker_gwbridge`` always is.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

#: Docker 20.10's overlay driver keeps each overlay network here (v2), by its full id; its value
#: is JSON: ``{"mtu": 0, "secure": false, "subnets": [{"SubnetIP": ..., "Vni": 256}, ...]}``.
OVERLAY_NETWORK_PREFIX = "/docker/network/v1.0/overlay/network/"


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
    vnis: list[int] = field(default_factory=list)  # the overlay's VNIs, one per subnet
    leader: str | None = None  # the etcd leader's member name
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

    def overlay_vnis(self, vnis: list[int]) -> None:
        with self._lock:
            self.vnis = list(vnis)

    def etcd_leader(self, name: str | None) -> None:
        with self._lock:
            self.leader = name

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "containers": {k: asdict(v) for k, v in self.containers.items()},
                "underlay_mtu": dict(self.underlay_mtu),
                "network_ids": dict(self.network_ids),
                "vnis": list(self.vnis),
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
            vnis=[int(v) for v in d.get("vnis") or []],
            leader=d.get("leader"),
        )


def vnis_of(value: str | None) -> list[int]:
    """The VNIs in the overlay driver's value of a network (one per subnet)."""
    subnets = json.loads(value or "{}").get("subnets") or []
    return [int(s["Vni"]) for s in subnets]
