"""A lab's stack config made from a few numbers: how the tests, the soak and the benchmark
describe the labs they bring up (the shape of stacks/Pulumi.local.yaml)."""

from __future__ import annotations

from typing import Any

LAB_ID = "e2e"
SEGMENT = "192.168.213"  # not the local stack's 192.168.205: a developer's lab may be up
STATE_DIR = "/var/lib/overlaylab"


def lab_config(
    hosts: int = 2, lab_id: str = LAB_ID, containers_per_host: int = 1, segment: str = SEGMENT
) -> dict[str, Any]:
    names = [f"docker-node{i}" for i in range(1, hosts + 1)]
    return {
        "lab": {
            "id": lab_id,
            "segment": f"{segment}.0/24",
            "bridge": f"ovbr-{lab_id}",
            "bridgeAddress": f"{segment}.1",
            "stateDir": STATE_DIR,
        },
        "hosts": [{"name": n, "address": f"{segment}.{10 + i}"} for i, n in enumerate(names)],
        "etcd": {"clusterToken": f"etcd-{lab_id}"},
        "network": {"name": "demo", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1"},
        "containers": [
            {"name": f"test{i * containers_per_host + k + 1}", "host": n}
            for i, n in enumerate(names)
            for k in range(containers_per_host)
        ],
        "image": {"name": "busybox:latest", "source": "import"},
    }
