"""OverlayNetwork: one global overlay, created once through one daemon, seen by all via etcd."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker


@dataclass(frozen=True)
class OverlayNetworkArgs:
    name: str
    subnet: str
    gateway: str
    mtu: int | None
    docker_host: str  # the daemon the network is managed through (the first host's)
    daemon: pulumi.Resource
    """That daemon's resource: the provider's host goes through its id (see DockerEngine)."""
    engines_joined: Sequence[pulumi.Resource]
    cluster: pulumi.Input[str]  # EtcdCluster.cluster: the network lives in that cluster
    ssh_opts: tuple[str, ...] = ()
    provider_ready: tuple[pulumi.Resource, ...] = ()  # e.g. the ssh identity file
    after: tuple[pulumi.Resource, ...] = ()
    """Networks created before this one: one at a time through the daemon (two creates at once
    in cluster-store mode were refused, "Pool overlaps with other one on this address space",
    once in a lab: libnetwork's IPAM keeps its pools in one store key)."""
    options: tuple[tuple[str, str], ...] = ()  # Docker driver options besides the MTU


class OverlayNetwork(pulumi.ComponentResource):
    """A Docker overlay network with the configured IPAM."""

    provider: docker.Provider
    """The network's own provider, on the first host's daemon."""
    network: docker.Network
    """The network, managed through that provider."""
    network_id: pulumi.Output[str]
    """Docker's id of the network; every daemon reports the same one."""

    def __init__(
        self, name: str, args: OverlayNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("overlay-etcd:network:OverlayNetwork", name, None, opts)
        mtu = {"com.docker.network.driver.mtu": str(args.mtu)} if args.mtu else {}
        # None, not {}, when there is none: a network without options keeps its inputs.
        options = {**dict(args.options), **mtu} or None
        # A provider of its own, not the first host's: when that host leaves the stack, this
        # provider is updated to the next host's daemon (a provider keeps its id when its
        # settings change), and the network, global in etcd, stays as it is. On the first
        # host's provider it would be replaced, with every container on it.
        # The host through its daemon's id: unknown in a preview that still has to create that
        # daemon, so the provider is not configured (and the daemon not pinged) before it
        # exists; see DockerEngine. Only that daemon's: a host added elsewhere changes nothing.
        self.provider = docker.Provider(
            f"{name}-docker",
            host=_id(args.daemon).apply(lambda _: args.docker_host),
            ssh_opts=list(args.ssh_opts) or None,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*args.engines_joined, *args.provider_ready]
            ),
        )
        # Created through one daemon only; the others learn it from etcd. Waiting for every
        # daemon to join the store first means none of them misses the network or its keys.
        self.network = docker.Network(
            f"{name}-network",
            # The name as configured, through the cluster's id: the same value (no diff), but a
            # property dependency on the cluster, so a rebuilt cluster replaces the network
            # (delete-first: the old one's keys go with the old cluster).
            name=pulumi.Output.from_input(args.cluster).apply(lambda _: args.name),
            driver="overlay",
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=args.subnet, gateway=args.gateway)],
            options=options,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=self.provider,
                depends_on=[*args.engines_joined, *args.after],
            ),
        )
        self.network_id = self.network.id
        self.register_outputs({"networkId": self.network_id})


def _id(resource: pulumi.Resource) -> pulumi.Output[str]:
    return resource.id  # type: ignore[attr-defined]
