"""What the validator checks, as plain JSON-able data derived from the lab's config.

The program exports it (stack output ``validationSpec``) and hands it to the post-deploy
validation step, so the validator run by ``pulumi up`` and the one a person runs by hand check
the same thing.
"""

from __future__ import annotations

from typing import Any

from overlaylab.config import LabConfig
from overlaylab.config.model import Network

#: Stack output names, shared by the program and its tests so they cannot drift apart.
OUT_ETCD_ENDPOINTS = "etcdEndpoints"
OUT_DOCKER_HOSTS = "dockerHosts"
OUT_NETWORK_ID = "networkId"
#: Per network name, its id (only on a stack of more than one network).
OUT_NETWORK_IDS = "networkIds"
OUT_CONTAINERS = "containers"
OUT_VALIDATION_SPEC = "validationSpec"
OUT_VALIDATION_REPORT = "validationReport"


def carries_networks(cfg: LabConfig) -> bool:
    """Whether the spec carries ``networks`` (with each network's MTU) and each container's
    ``networks``: for every stack that lists ``networks`` or sets ``network.mtu`` or options.

    A stack of the seed's single ``network`` section with a derived MTU keeps the spec it had
    (the validator's command would change otherwise: an update on every running stack); the
    validator then reads its network as that section and its expected MTU from the option the
    program gave Docker (see :func:`overlaylab.validate.records.spec_networks`)."""
    first = cfg.all_networks[0]
    return cfg.networks_listed or first.mtu is not None or bool(first.options)


def network_spec(cfg: LabConfig, net: Network) -> dict[str, Any]:
    """A network as the validator expects it; ``mtu`` is the containers' interface MTU."""
    return {
        "name": net.name,
        "subnet": str(net.subnet),
        "gateway": net.gateway,
        "mtu": cfg.mtu_of(net),
    }


def validation_spec(cfg: LabConfig) -> dict[str, Any]:
    lab: dict[str, Any] = {"id": cfg.lab_id, "bridge": cfg.bridge, "transport": cfg.transport}
    if cfg.transport == "ssh":
        lab["sshOpts"] = cfg.ssh_opts()
    if cfg.pki_dir:
        lab["tlsDir"] = cfg.pki_dir
    spec: dict[str, Any] = {
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
        "network": {  # the first network
            "name": cfg.network_name,
            "subnet": str(cfg.subnet),
            "gateway": cfg.gateway,
        },
        "containers": [{"name": c.name, "host": c.host} for c in cfg.containers],
        "image": cfg.image,
    }
    if carries_networks(cfg):
        # "network" stays (the first network, without its MTU) for older consumers.
        spec["networks"] = [network_spec(cfg, n) for n in cfg.all_networks]
        for entry, c in zip(spec["containers"], cfg.containers, strict=True):
            entry["networks"] = list(cfg.networks_of(c))
    return spec
