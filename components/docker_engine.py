"""DockerEngine: one host's dockerd with etcd as its cluster store, and a provider on it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
from pulumi_command import local

from components.host_commands import LocalHostCommands


@dataclass(frozen=True)
class DockerEngineArgs:
    hostname: str
    netns: str
    host_dir: str
    cluster_store: str
    advertise: str
    etcd_endpoint: str
    lab_id: str
    bridge: str
    commands: LocalHostCommands
    store_ready: pulumi.Resource


class DockerEngine(pulumi.ComponentResource):
    """dockerd with --cluster-store/--cluster-advertise, on a unix socket only (no TCP)."""

    daemon: local.Command
    """Starts dockerd; completes once the daemon has registered itself in etcd."""
    provider: docker.Provider
    """A Docker provider bound to this daemon's socket."""
    docker_host: pulumi.Output[str]
    """The daemon's address, ``unix://...``."""
    advertise: pulumi.Output[str]
    """The identity this daemon announces in the cluster store (ip:port, no listener)."""

    def __init__(
        self, name: str, args: DockerEngineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("overlay-etcd:docker:DockerEngine", name, None, opts)
        common = [
            "--hostname",
            args.hostname,
            "--host-dir",
            args.host_dir,
            "--advertise",
            args.advertise,
            "--etcd-endpoint",
            args.etcd_endpoint,
            "--lab-id",
            args.lab_id,
            "--bridge",
            args.bridge,
        ]
        self.daemon = args.commands.command(
            f"{name}-dockerd",
            ["docker-up", "--netns", args.netns, "--cluster-store", args.cluster_store, *common],
            ["docker-down", *common],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.store_ready]),
        )
        host = f"unix://{args.host_dir}/docker.sock"
        self.provider = docker.Provider(
            f"{name}-docker",
            host=host,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.daemon]),
        )
        self.docker_host = pulumi.Output.from_input(host)
        self.advertise = pulumi.Output.from_input(args.advertise)
        self.register_outputs({"dockerHost": self.docker_host, "advertise": self.advertise})
