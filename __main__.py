"""Multi-host Docker overlay networking with an external etcd cluster store.

This file only turns the stack's validated config into components and exports outputs.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import pulumi
from pulumi_command import remote

from components import (
    ContainerSpec,
    DockerEngine,
    DockerEngineArgs,
    EtcdCluster,
    EtcdClusterArgs,
    EtcdMemberSpec,
    HostCommands,
    ImageHost,
    LocalHostCommands,
    LocalHosts,
    LocalHostsArgs,
    LocalHostSpec,
    OverlayNetwork,
    OverlayNetworkArgs,
    RemoteHostCommands,
    RemoteHosts,
    RemoteHostsArgs,
    SerfMesh,
    SerfMeshArgs,
    TestContainers,
    TestContainersArgs,
    Validation,
    ValidationArgs,
)
from overlaylab import nodekeys
from overlaylab import spec as out
from overlaylab.backup import RECORD_ONLY, before_change, lab_exists, reachable_clients
from overlaylab.config.model import Network
from overlaylab.defaults import DOCKER_OVERLAY_MTU, UNDERLAY_MTU
from overlaylab.errors import ConfigError
from overlaylab.mends import VALIDATE, every_member_lost, refound
from overlaylab.mends import advance as advance_mends
from overlaylab.stackconfig import PROJECT_DIR, from_pulumi, package_hash
from overlaylab.survey import survey
from overlaylab.verbs import Placement

try:
    cfg, ssh_key = from_pulumi(pulumi.get_stack())
except ConfigError as e:
    # One line, no traceback, and nothing has been registered yet.
    raise pulumi.RunError(f"invalid config: {e}") from None
for warning in cfg.warnings:
    pulumi.log.warn(warning)
# The lab as it is (a Command has no Read): what should be there and is not. What is broken is
# mended by this run through each broken resource's mend generation (overlaylab/mends.py), an
# input the engine plans as a replace or an update; the validator runs again, so that `up`
# says what it finds, not what it last found.
drift = survey(cfg)
for finding in drift.findings:
    pulumi.log.warn(f"drift: {finding}")
dry_run = pulumi.runtime.is_dry_run()
changing = not dry_run and not os.environ.get(RECORD_ONLY)  # may change something: writes
mends = advance_mends(cfg, drift, write=changing)
if mends.raised:
    pulumi.log.warn(f"drift: {'up mends' if dry_run else 'mending'}: {mends.said()}")
if every_member_lost(drift, cfg):
    if changing:
        pulumi.log.warn(f"drift: {refound(cfg)}")
    else:
        pulumi.log.warn("drift: every etcd member lost its data: up founds the cluster again")
# Before this run changes anything, and only in a run that may change something (not a
# preview): Docker's keys saved beside the stack's state, then the node keys of no host that no
# daemon owns deleted. Here, in the program, because under both engines it runs before any
# resource is registered, so before any step (overlaylab/backup.py, nodekeys.py;
# docs/design.md).
if changing and lab_exists(cfg):
    said, saved = before_change(cfg)
    (pulumi.log.info if saved else pulumi.log.warn)(said)
    advertises = [cfg.advertise(h) for h in cfg.hosts]
    if cleaned := nodekeys.before_change(reachable_clients(cfg), advertises):
        pulumi.log.warn(f"drift: {cleaned}")

here = LocalHostCommands(
    python=sys.executable,
    project_dir=str(PROJECT_DIR),
    placements={
        h.name: tuple(
            Placement(
                netns=h.netns(cfg.lab_id),
                host_dir=cfg.host_dir(h),
                lab_id=cfg.lab_id,
                bridge=cfg.bridge or "",
                tls_dir=cfg.host_pki_dir or None,
            ).argv()
        )
        for h in cfg.hosts
    },
)
commands: HostCommands
provider_ready: tuple[pulumi.Resource, ...] = ()
if cfg.transport == "local":
    local_hosts = LocalHosts(
        "lab",
        LocalHostsArgs(
            bridge=cfg.bridge or "",
            bridge_address=cfg.bridge_address,
            prefixlen=cfg.prefixlen,
            hosts=tuple(
                LocalHostSpec(h.name, h.address, h.netns(cfg.lab_id), h.veth(cfg.lab_id))
                for h in cfg.hosts
            ),
            commands=here,
            pki=tuple(f"{h.name}={h.address}" for h in cfg.hosts) if cfg.pki_dir else (),
            pki_dir=cfg.pki_dir,
            mtu=cfg.underlay_mtu if cfg.underlay_mtu != UNDERLAY_MTU else None,
            mends=mends,
        ),
    )
    commands = here.with_bases(local_hosts.hosts)  # every verb on a host waits for its netns
    host_ready: dict[str, pulumi.Resource] = dict(local_hosts.hosts)
    health_host = None
else:
    remote_commands = RemoteHostCommands(
        local=here,
        connections={
            h.name: remote.ConnectionArgs(
                host=h.address, user=cfg.ssh_user, port=cfg.ssh_port, private_key=ssh_key
            )
            for h in cfg.hosts
        },
        tls_dir=cfg.host_pki_dir,
    )
    commands = remote_commands
    remote_hosts = RemoteHosts(
        "lab",
        RemoteHostsArgs(
            hosts=tuple(h.name for h in cfg.hosts),
            client_port=cfg.etcd_client_port,
            peer_port=cfg.etcd_peer_port,
            package_dir=str(PROJECT_DIR / "overlaylab"),
            package_hash=package_hash(),
            identity_file=cfg.identity_file,
            private_key=ssh_key,
            commands=remote_commands,
            pki_dir=cfg.pki_dir,
            addresses=tuple(h.address for h in cfg.hosts),
            mtu=cfg.underlay_mtu,
        ),
    )
    commands = remote_hosts.commands  # every verb on a host waits for its package there
    host_ready = dict(remote_hosts.ready)
    health_host = cfg.hosts[0].name
    provider_ready = (remote_hosts.identity,)

etcd = EtcdCluster(
    "etcd",
    EtcdClusterArgs(
        members=tuple(EtcdMemberSpec(h.name, h.address) for h in cfg.hosts),
        token=cfg.etcd_token,
        client_port=cfg.etcd_client_port,
        peer_port=cfg.etcd_peer_port,
        bridge=cfg.bridge if cfg.transport == "local" else None,
        commands=commands,
        host_ready=host_ready,
        health_host=health_host,
        tls_dir=cfg.host_pki_dir,
        generation=cfg.etcd_generation,
        timing=cfg.etcd_timing,
        mends=mends,
    ),
)

engine_args = {
    h.name: DockerEngineArgs(
        hostname=h.name,
        cluster_store=cfg.cluster_store(h),
        advertise=cfg.advertise(h),
        etcd_endpoint=cfg.client_url(h),
        docker_host=cfg.docker_host(h),
        commands=commands,
        store_ready=etcd.healthy,
        member=etcd.members[h.name],
        cluster=etcd.cluster,
        ssh_opts=tuple(cfg.ssh_opts()) if cfg.transport == "ssh" else (),
        provider_ready=provider_ready,
        mends=mends,
    )
    for h in cfg.hosts
}
engines: dict[str, DockerEngine] = {}
for n, a in engine_args.items():
    before = tuple((b.hostname, b.advertise) for b in list(engine_args.values())[: len(engines)])
    engines[n] = DockerEngine(f"docker-{n}", replace(a, start_after=before))
# Joined the store is not joined to each other: serf between the daemons must be whole before
# any container is announced (see SerfMesh).
serf = SerfMesh(
    "serf",
    SerfMeshArgs(
        engines=tuple(engine_args.values()),
        daemons=tuple(e.daemon for e in engines.values()),
        commands=commands,
        cluster=etcd.cluster,
        mends=mends,
    ),
)


def _overlay(net: Network, after: tuple[pulumi.Resource, ...]) -> OverlayNetwork:
    # The first network keeps the seed's name ("overlay"), every other is "overlay-<name>".
    first = net.name == cfg.all_networks[0].name
    option = cfg.docker_mtu_option_of(net)
    return OverlayNetwork(
        "overlay" if first else f"overlay-{net.name}",
        OverlayNetworkArgs(
            name=net.name,
            subnet=str(net.subnet),
            gateway=net.gateway,
            # Docker's option is the VXLAN packets' MTU, the containers get 50 less; left unset
            # where Docker's own default gives the overlay MTU, as on an underlay at the default.
            mtu=option if option != DOCKER_OVERLAY_MTU else None,
            docker_host=cfg.docker_host(cfg.hosts[0]),
            daemon=engines[cfg.hosts[0].name].daemon,
            engines_joined=[*(e.daemon for e in engines.values()), *serf.checks.values()],
            ssh_opts=tuple(cfg.ssh_opts()) if cfg.transport == "ssh" else (),
            provider_ready=provider_ready,
            cluster=etcd.cluster,
            options=net.options,
            after=after,
        ),
    )


overlays: dict[str, OverlayNetwork] = {}
for _net in cfg.all_networks:  # one after another (OverlayNetworkArgs.after)
    overlays[_net.name] = _overlay(_net, tuple(o.network for o in overlays.values())[-1:])
overlay = overlays[cfg.all_networks[0].name]

containers = TestContainers(
    "test",
    TestContainersArgs(
        image=cfg.image,
        image_source=cfg.image_source,
        hosts=tuple(ImageHost(h.name, engines[h.name].provider) for h in cfg.hosts),
        containers=tuple(ContainerSpec(c.name, c.host, cfg.networks_of(c)) for c in cfg.containers),
        networks={n: o.network for n, o in overlays.items()},
        commands=commands,
        cluster=etcd.cluster,
        mends=mends,
    ),
)

validation_spec = out.validation_spec(cfg)
validation = Validation(
    "validate",
    ValidationArgs(
        spec=validation_spec,
        after=[
            *containers.containers.values(),
            *containers.names.values(),
            *(o.network for o in overlays.values()),
            *provider_ready,
        ],
        triggers=[
            overlay.network_id,
            *(c.id for c in containers.containers.values()),
            *(o.network_id for o in overlays.values() if o is not overlay),
            # raised by every run that finds the lab broken, kept after: a stack that never
            # drifted keeps its inputs, and the run after a mend validates no more
            *mends.triggers(VALIDATE),
        ],
        commands=commands,
        tests=cfg.validate_tests,
    ),
)

pulumi.export(out.OUT_ETCD_ENDPOINTS, etcd.endpoints)
pulumi.export(out.OUT_DOCKER_HOSTS, {n: e.docker_host for n, e in engines.items()})
pulumi.export(out.OUT_NETWORK_ID, overlay.network_id)
if len(overlays) > 1:  # a stack of one network keeps its outputs as they were
    pulumi.export(out.OUT_NETWORK_IDS, {n: o.network_id for n, o in overlays.items()})
pulumi.export(
    out.OUT_CONTAINERS,
    {
        n: {"host": spec.host, "id": containers.containers[n].id}
        for n, spec in ((c.name, c) for c in cfg.containers)
    },
)
pulumi.export(out.OUT_VALIDATION_SPEC, validation_spec)
pulumi.export(out.OUT_VALIDATION_REPORT, validation.report)
