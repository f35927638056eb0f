"""EtcdCluster: one etcd member per host, bootstrapped statically, behind a health gate."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.host_commands import HostCommands
from overlaylab import verbs
from overlaylab.etcd import etcd_url
from overlaylab.mends import Mends


@dataclass(frozen=True)
class EtcdMemberSpec:
    name: str
    address: str


@dataclass(frozen=True)
class EtcdClusterArgs:
    members: tuple[EtcdMemberSpec, ...]
    token: str
    client_port: int
    peer_port: int
    bridge: str | None
    commands: HostCommands
    host_ready: dict[str, pulumi.Resource]
    health_host: str | None = None  # where the gate runs: here (None) or on that host
    health_timeout: float = verbs.ETCD_HEALTH_TIMEOUT
    tls_dir: str | None = None  # the lab's CA and client certificate: the gate speaks TLS
    generation: int = 1  # etcd.generation: raised, the cluster is rebuilt
    timing: tuple[int, int] | None = None  # etcd.heartbeatMs/electionMs, or the transport's
    mends: Mends = field(default_factory=Mends)
    """A member found not running is updated: its create restarts it (overlaylab.mends)."""


class EtcdCluster(pulumi.ComponentResource):
    """A static etcd cluster with the v2 API on, as Docker's libkv needs."""

    members: dict[str, pulumi.CustomResource]
    """Per host name, the command that runs that host's member."""
    healthy: pulumi.CustomResource
    """Gate: completes only when every member is healthy, in one cluster, v2 API on."""
    endpoints: pulumi.Output[list[str]]
    """Client URLs, one per member."""
    identity: pulumi.CustomResource
    """The cluster's token and ports; on an update it refuses a change of them."""
    cluster: pulumi.Output[str]
    """Changes only when the cluster is rebuilt (the identity command's id): everything that
    holds the cluster's state puts it in an input whose change replaces it."""
    initial_cluster: pulumi.Output[str]
    """The membership as configured now (a member added later joined the one it found)."""

    def __init__(
        self, name: str, args: EtcdClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("overlay-etcd:etcd:EtcdCluster", name, None, opts)
        cmd = args.commands
        tls = bool(args.tls_dir)
        initial = ",".join(
            f"{m.name}={etcd_url(m.address, args.peer_port, tls)}" for m in args.members
        )
        endpoints = [etcd_url(m.address, args.client_port, tls) for m in args.members]
        # Runs before any member: a new token or port is a new cluster, refused here before a
        # member is touched (each would otherwise refuse its data dir half-way).
        #
        # Unless etcd.generation is raised: then this command is replaced, delete-first, and
        # the engine first deletes every resource that would be replaced with it, dependents
        # first: those whose `cluster` input (a property dependency on this command's id)
        # replaces them. That is the containers, the network, the images, the daemons and the
        # members: the whole old lab stops, on every host, before the new identity exists and
        # so before any new member starts. A new member can then never find an old one still
        # running on the same port and join it (`member add` does not check the token).
        self.identity = cmd.command(
            f"{name}-identity",
            verbs.EtcdIdentity(
                token=args.token,
                client_port=args.client_port,
                peer_port=args.peer_port,
                generation=args.generation,
            ).argv(),
            triggers=[str(args.generation)],
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.cluster = self.identity.id
        self.members = {m.name: self._member(name, m, args, initial) for m in args.members}
        health = verbs.EtcdHealth(
            timeout=args.health_timeout,
            bridge=args.bridge or None,
            tls_dir=args.tls_dir or None,
            member=tuple(zip(endpoints, (m.name for m in args.members), strict=True)),
        )
        self.healthy = cmd.command(
            f"{name}-healthy",
            health.argv(),
            host=args.health_host,
            triggers=[self.cluster],  # a rebuilt cluster is checked again
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.members.values())),
        )
        self.endpoints = pulumi.Output.from_input(endpoints)
        self.initial_cluster = pulumi.Output.from_input(initial)
        self.register_outputs({"endpoints": self.endpoints, "initialCluster": self.initial_cluster})

    def _member(
        self, name: str, m: EtcdMemberSpec, args: EtcdClusterArgs, initial: str
    ) -> pulumi.CustomResource:
        """One member. Members start independently and in parallel: a static cluster only
        gets a quorum once enough of them run, so no member may wait for its own health.

        A member's inputs name only itself: a host added or removed later must leave every
        other member "same". The membership it founds with (or joins with, when it finds the
        cluster running) goes in on stdin, and later changes of it are ignored: etcd reads
        --initial-cluster only to bootstrap an empty data dir, never again."""
        cmd = args.commands
        return cmd.command(
            f"{name}-{m.name}",
            verbs.EtcdUp(
                name=m.name,
                address=m.address,
                token=args.token,
                client_port=args.client_port,
                peer_port=args.peer_port,
                initial_cluster_stdin=True,
                heartbeat_ms=args.timing[0] if args.timing else None,
                election_ms=args.timing[1] if args.timing else None,
            ).argv(cmd.placement(m.name)),
            verbs.EtcdDown(name=m.name).argv(cmd.placement(m.name)),
            host=m.name,
            environment=args.mends.environment(f"{name}-{m.name}"),
            stdin=initial,
            triggers=[self.cluster],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[args.host_ready[m.name], self.identity],
                ignore_changes=["stdin"],
            ),
        )
