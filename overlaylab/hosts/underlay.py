"""A real host's underlay MTU: read by its preflight, compared across hosts by ``hosts-unique``.

On a local stack the program makes the underlay (the bridge and every veth get ``lab.mtu``). A
real host's interface is what it is; the overlay needs every host's interface on the segment
to carry ``lab.mtu`` (the overlay MTU plus VXLAN's 50 bytes), and all of them the same, or
full-size packets between some pairs of hosts are lost while pings pass.

The interface is the one that holds the host's lab address: ``ip route get`` to a host's own
address answers ``dev lo`` (the local table), so it is found in ``ip -j -4 addr show``.
Standard library only: real hosts run this with their own python3.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from overlaylab.errors import PreflightError
from overlaylab.hosts.proc import run


def lab_interface(addr_json: str, address: str) -> tuple[str, int] | None:
    """The interface holding ``address`` and its MTU, from ``ip -j -4 addr show``'s output."""
    for link in json.loads(addr_json or "[]"):
        if any(a.get("local") == address for a in link.get("addr_info", ())):
            return str(link["ifname"]), int(link["mtu"])
    return None


def read_underlay(hostname: str, address: str) -> dict[str, Any]:
    """This host's interface for ``address`` and its MTU, for the preflight report."""
    found = lab_interface(run(["ip", "-j", "-4", "addr", "show"]).stdout, address)
    if found is None:
        raise PreflightError(
            f"{hostname}: no interface holds the lab address {address}: give the host that "
            f"address on the segment, or fix hosts[].address"
        )
    interface, mtu = found
    return {"address": address, "interface": interface, "mtu": mtu}


def check_underlay_mtus(reports: Sequence[Mapping[str, Any]], lab_mtu: int) -> str:
    """Refuse, in one line, a host whose lab interface is below ``lab_mtu``, or hosts whose
    interfaces disagree; return a summary for the log. A report without ``mtu`` (a preflight
    run without ``--address``) is not judged."""
    judged = [r for r in reports if "mtu" in r]
    for r in judged:
        if r["mtu"] < lab_mtu:
            raise PreflightError(
                f"host {r['hostname']}'s interface {r['interface']} for {r['address']} has MTU "
                f"{r['mtu']}, below lab.mtu {lab_mtu}: raise that interface's MTU to {lab_mtu} "
                f"or set lab.mtu to {r['mtu']} (the overlay gets lab.mtu minus 50)"
            )
    for r in judged[1:]:
        first = judged[0]
        if r["mtu"] != first["mtu"]:
            raise PreflightError(
                f"hosts {first['hostname']} and {r['hostname']} disagree on the underlay MTU "
                f"({first['interface']} {first['mtu']}, {r['interface']} {r['mtu']}): give every "
                f"host's interface on the segment the same MTU, lab.mtu {lab_mtu}"
            )
    if not judged:
        return "underlay MTU not reported"
    return f"underlay MTU {judged[0]['mtu']} on every host (lab.mtu {lab_mtu})"
