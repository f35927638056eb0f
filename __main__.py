"""Multi-host Docker overlay networking with an external etcd cluster store.

This file only turns the stack's validated config into components and exports outputs.
"""

from __future__ import annotations

import sys

import pulumi

from components import (
    ContainerSpec,
    DockerEngine,
    DockerEngineArgs,
    EtcdCluster,
    EtcdClusterArgs,
    EtcdMemberSpec,
    ImageHost,
    LocalHostCommands,
    LocalHosts,
    LocalHostsArgs,
    LocalHostSpec,
    OverlayNetwork,
    OverlayNetworkArgs,
    TestContainers,
    TestContainersArgs,
    Validation,
    ValidationArgs,
)
from overlaylab import spec as out
from overlaylab.errors import ConfigError
from overlaylab.stackconfig import PROJECT_DIR, from_pulumi

try:
    cfg = from_pulumi(pulumi.get_stack())
except ConfigError as e:
    # One line, no traceback, and nothing has been registered yet.
    raise pulumi.RunError(f"invalid config: {e}") from None
for warning in cfg.warnings:
    pulumi.log.warn(warning)

commands = LocalHostCommands(python=sys.executable, project_dir=str(PROJECT_DIR))

hosts = LocalHosts(
    "lab",
    LocalHostsArgs(
        bridge=cfg.bridge,
        bridge_address=cfg.bridge_address,
        prefixlen=cfg.prefixlen,
        hosts=tuple(
            LocalHostSpec(h.name, h.address, h.netns(cfg.lab_id), h.veth(cfg.lab_id))
            for h in cfg.hosts
        ),
        commands=commands,
    ),
)

etcd = EtcdCluster(
    "etcd",
    EtcdClusterArgs(
        members=tuple(
            EtcdMemberSpec(h.name, h.address, h.netns(cfg.lab_id), cfg.host_dir(h))
            for h in cfg.hosts
        ),
        token=cfg.etcd_token,
        client_port=cfg.etcd_client_port,
        peer_port=cfg.etcd_peer_port,
        bridge=cfg.bridge,
        commands=commands,
        host_ready=dict(hosts.hosts),
    ),
)

engines = {
    h.name: DockerEngine(
        f"docker-{h.name}",
        DockerEngineArgs(
            hostname=h.name,
            netns=h.netns(cfg.lab_id),
            host_dir=cfg.host_dir(h),
            cluster_store=cfg.cluster_store(h),
            advertise=cfg.advertise(h),
            etcd_endpoint=cfg.client_url(h),
            lab_id=cfg.lab_id,
            bridge=cfg.bridge,
            commands=commands,
            store_ready=etcd.healthy,
        ),
    )
    for h in cfg.hosts
}

first = engines[cfg.hosts[0].name]
overlay = OverlayNetwork(
    "overlay",
    OverlayNetworkArgs(
        name=cfg.network_name,
        subnet=str(cfg.subnet),
        gateway=cfg.gateway,
        mtu=cfg.mtu,
        provider=first.provider,
        engines_joined=[e.daemon for e in engines.values()],
    ),
)

containers = TestContainers(
    "test",
    TestContainersArgs(
        image=cfg.image,
        image_source=cfg.image_source,
        hosts=tuple(
            ImageHost(h.name, cfg.docker_socket(h), engines[h.name].provider) for h in cfg.hosts
        ),
        containers=tuple(ContainerSpec(c.name, c.host) for c in cfg.containers),
        network=overlay.network,
        commands=commands,
    ),
)

validation_spec = out.validation_spec(cfg)
validation = Validation(
    "validate",
    ValidationArgs(
        spec=validation_spec,
        after=[*containers.containers.values(), overlay.network],
        triggers=[overlay.network_id, *(c.id for c in containers.containers.values())],
        commands=commands,
    ),
)

pulumi.export(out.OUT_ETCD_ENDPOINTS, etcd.endpoints)
pulumi.export(out.OUT_DOCKER_HOSTS, {n: e.docker_host for n, e in engines.items()})
pulumi.export(out.OUT_NETWORK_ID, overlay.network_id)
pulumi.export(
    out.OUT_CONTAINERS,
    {
        n: {"host": spec.host, "id": containers.containers[n].id}
        for n, spec in ((c.name, c) for c in cfg.containers)
    },
)
pulumi.export(out.OUT_VALIDATION_SPEC, validation_spec)
pulumi.export(out.OUT_VALIDATION_REPORT, validation.report)
