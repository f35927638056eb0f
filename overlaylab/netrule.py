"""The network rule: lab traffic only goes where the lab's own bridge takes it.

A lab address (192.168.205.10, say) is only local while the lab's bridge holds an address in
its subnet. Without it the kernel routes the address by the default route, out of the machine.
So before any traffic from this machine's root namespace to a lab address, the route to it is
looked up and must leave through the lab's bridge; otherwise nothing is sent.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass

from overlaylab.errors import NetworkRuleError


def route_device(address: str) -> tuple[str, str]:
    """Return (device, gateway or '') the kernel would use to reach ``address``."""
    proc = subprocess.run(
        ["ip", "-j", "route", "get", address], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise NetworkRuleError(
            f"no route to lab address {address} ({proc.stderr.strip()}): is the lab's bridge up?"
        )
    routes = json.loads(proc.stdout or "[]")
    if not routes:
        raise NetworkRuleError(f"no route to lab address {address}: is the lab's bridge up?")
    return str(routes[0].get("dev", "")), str(routes[0].get("gateway", ""))


@dataclass(frozen=True)
class RouteGuard:
    """Checks, before traffic, that an address is loopback or reached through ``bridge``."""

    bridge: str

    def check(self, address: str) -> None:
        if ipaddress.ip_address(address).is_loopback:
            return
        dev, gateway = route_device(address)
        if dev != self.bridge or gateway:
            via = f"via {gateway} dev {dev}" if gateway else f"dev {dev}"
            raise NetworkRuleError(
                f"refusing to contact {address}: its route goes {via}, not through the lab's "
                f"bridge {self.bridge}; bring the bridge up with its address (pulumi up) first"
            )

    def check_url(self, url: str) -> None:
        host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        self.check(host)
