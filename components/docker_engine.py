"""DockerEngine: one host's dockerd with etcd as its cluster store, and a provider on it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.host_commands import HostCommands
from overlaylab import verbs
from overlaylab.mends import Mends


@dataclass(frozen=True)
class DockerEngineArgs:
    hostname: str
    cluster_store: str
    advertise: str
    etcd_endpoint: str
    docker_host: str
    commands: HostCommands
    store_ready: pulumi.Resource
    member: pulumi.Resource
    """This host's etcd member: the daemon depends on it directly, so that it stops before its
    member leaves (the engine orders deletes through direct dependencies only; the gate,
    store_ready, stays when a host is removed)."""
    cluster: pulumi.Input[str]
    """EtcdCluster.cluster: changes only when the cluster is rebuilt, and replaces the daemon."""
    ssh_opts: tuple[str, ...] = ()
    provider_ready: tuple[pulumi.Resource, ...] = ()
    start_after: tuple[tuple[str, str], ...] = ()
    """(host, advertise) of every daemon that starts before this one, in order."""
    mends: Mends = field(default_factory=Mends)
    """A dead daemon is replaced (overlaylab.mends)."""


class DockerEngine(pulumi.ComponentResource):
    """dockerd with --cluster-store/--cluster-advertise, and no TCP listener."""

    daemon: pulumi.CustomResource
    """Configures and starts dockerd; completes once it has registered itself in etcd."""
    provider: docker.Provider
    """A Docker provider bound to this daemon (unix socket, or ssh:// to the host's socket)."""
    docker_host: pulumi.Output[str]
    """The daemon's address, ``unix://...`` or ``ssh://user@host:port``."""
    advertise: pulumi.Output[str]
    """The identity this daemon announces in the cluster store (ip:port, no listener)."""

    def __init__(
        self, name: str, args: DockerEngineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("overlay-etcd:docker:DockerEngine", name, None, opts)
        cmd = args.commands
        where = cmd.placement(args.hostname)
        self.daemon = cmd.command(
            f"{name}-dockerd",
            verbs.DockerUp(
                cluster_store=args.cluster_store,
                hostname=args.hostname,
                advertise=args.advertise,
                etcd_endpoint=args.etcd_endpoint,
            ).argv(where),
            verbs.DockerDown(
                hostname=args.hostname, advertise=args.advertise, etcd_endpoint=args.etcd_endpoint
            ).argv(where),
            host=args.hostname,
            # One daemon after another: Docker 20.10 joins serf once, to one neighbour, when it
            # starts, and never again (libnetwork overlay.go nodeJoin); started together they
            # join each other's not-yet-listening serf and split into groups that never merge
            # (seen in the 8-host soak: {1,2,7} and {3,4,5,6,8}). Started after the one before
            # it has joined, each joins the one cluster there is. The order goes in on stdin,
            # which later changes leave alone (a host added or removed changes no daemon), and
            # not as a dependency: a dependency would also make a destroy stop the daemons one
            # after another, and stopping them together is safe.
            stdin=json.dumps({"start_after": [list(p) for p in args.start_after]}),
            triggers=[args.cluster, *args.mends.triggers(f"{name}-dockerd")],
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[args.store_ready, args.member], ignore_changes=["stdin"]
            ),
        )
        # The seed's `-H tcp://0.0.0.0:2375` gives root to anyone on the network; here the
        # provider uses the daemon's own unix socket, locally or through ssh://.
        # The host through the daemon's id: unknown while the daemon is still to be created,
        # so `pulumi preview` does not configure this provider (the engine configures a
        # provider in preview once its inputs are known, and pulumi-docker's Configure pings a
        # unix:// host, which fails before the daemon exists). Same value, no diff.
        self.provider = docker.Provider(
            f"{name}-docker",
            host=self.daemon.id.apply(lambda _: args.docker_host),
            ssh_opts=list(args.ssh_opts) or None,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.daemon, *args.provider_ready]
            ),
        )
        self.docker_host = pulumi.Output.from_input(args.docker_host)
        self.advertise = pulumi.Output.from_input(args.advertise)
        self.register_outputs({"dockerHost": self.docker_host, "advertise": self.advertise})


@dataclass(frozen=True)
class SerfMeshArgs:
    engines: tuple[DockerEngineArgs, ...]
    """Every host's engine: its name, advertise address and etcd endpoint."""
    daemons: tuple[pulumi.Resource, ...]
    """Every host's dockerd: the check starts once all of them have joined the store."""
    commands: HostCommands
    cluster: pulumi.Input[str]
    """EtcdCluster.cluster: a rebuilt cluster has new daemons, checked again."""
    mends: Mends = field(default_factory=Mends)
    """A dead daemon's check runs again with its new daemon (overlaylab.mends)."""


class SerfMesh(pulumi.ComponentResource):
    """Every daemon's serf knows every host, before any network or container exists.

    Docker 20.10 learns remote containers only through serf, and each daemon joins serf once,
    to one neighbour, without retry; daemons started together can leave one of them alone
    for good (see overlaylab.hosts.serf). Each host's check waits for its serf to have seen every
    other host and re-announces the host in the store until it has."""

    checks: dict[str, pulumi.CustomResource]
    """Per host: completes once that daemon's serf has seen every other host join."""

    def __init__(
        self, name: str, args: SerfMeshArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("overlay-etcd:docker:SerfMesh", name, None, opts)
        cmd = args.commands
        peers = tuple(e.advertise.rsplit(":", 1)[0] for e in args.engines)
        self.checks = {
            e.hostname: cmd.command(
                f"{name}-{e.hostname}",
                verbs.SerfMesh(
                    hostname=e.hostname,
                    advertise=e.advertise,
                    etcd_endpoint=e.etcd_endpoint,
                    peer=peers,
                ).argv(cmd.placement(e.hostname)),
                host=e.hostname,
                triggers=[args.cluster, *args.mends.triggers(f"{name}-{e.hostname}")],
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.daemons)),
            )
            for e in args.engines
        }
        self.register_outputs({})
