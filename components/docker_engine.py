"""DockerEngine: one host's dockerd with etcd as its cluster store, and a provider on it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.host_commands import HostCommands


@dataclass(frozen=True)
class DockerEngineArgs:
    hostname: str
    cluster_store: str
    advertise: str
    etcd_endpoint: str
    docker_host: str
    commands: HostCommands
    store_ready: pulumi.Resource
    ssh_opts: tuple[str, ...] = ()
    provider_ready: tuple[pulumi.Resource, ...] = ()


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
        common = [
            "--hostname",
            args.hostname,
            "--advertise",
            args.advertise,
            "--etcd-endpoint",
            args.etcd_endpoint,
            *cmd.placement(args.hostname),
        ]
        self.daemon = cmd.command(
            f"{name}-dockerd",
            ["docker-up", "--cluster-store", args.cluster_store, *common],
            ["docker-down", *common],
            host=args.hostname,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.store_ready]),
        )
        # The seed's `-H tcp://0.0.0.0:2375` gives root to anyone on the network; here the
        # provider uses the daemon's own unix socket, locally or through ssh://.
        self.provider = docker.Provider(
            f"{name}-docker",
            host=args.docker_host,
            ssh_opts=list(args.ssh_opts) or None,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.daemon, *args.provider_ready]
            ),
        )
        self.docker_host = pulumi.Output.from_input(args.docker_host)
        self.advertise = pulumi.Output.from_input(args.advertise)
        self.register_outputs({"dockerHost": self.docker_host, "advertise": self.advertise})
