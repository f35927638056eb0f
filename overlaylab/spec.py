"""What the validator checks, as plain JSON-able data derived from the lab's config.

The program exports it (stack output ``validationSpec``) and hands it to the post-deploy
validation step, so the validator run by ``pulumi up`` and the one a person runs by hand check
the same thing.
"""

from __future__ import annotations

from typing import Any

from overlaylab.config import LabConfig

#: Stack output names, shared by the program and its tests so they cannot drift apart.
OUT_ETCD_ENDPOINTS = "etcdEndpoints"
OUT_DOCKER_HOSTS = "dockerHosts"
OUT_NETWORK_ID = "networkId"
OUT_CONTAINERS = "containers"
OUT_VALIDATION_SPEC = "validationSpec"
OUT_VALIDATION_REPORT = "validationReport"


def validation_spec(cfg: LabConfig) -> dict[str, Any]:
    lab: dict[str, Any] = {"id": cfg.lab_id, "bridge": cfg.bridge, "transport": cfg.transport}
    if cfg.transport == "ssh":
        lab["sshOpts"] = cfg.ssh_opts()
    if cfg.pki_dir:
        lab["tlsDir"] = cfg.pki_dir
    return {
        "lab": lab,
        "hosts": [
            {
                "name": h.name,
                "address": h.address,
                "dockerHost": cfg.docker_host(h),
                "advertise": cfg.advertise(h),
                "etcdEndpoint": cfg.client_url(h),
            }
            for h in cfg.hosts
        ],
        "network": {
            "name": cfg.network_name,
            "subnet": str(cfg.subnet),
            "gateway": cfg.gateway,
        },
        "containers": [{"name": c.name, "host": c.host} for c in cfg.containers],
        "image": cfg.image,
    }
