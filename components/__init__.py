"""Pulumi component resources of the overlay lab, one family per module."""

from components.docker_engine import DockerEngine, DockerEngineArgs, SerfMesh, SerfMeshArgs
from components.etcd_cluster import EtcdCluster, EtcdClusterArgs, EtcdMemberSpec
from components.host_commands import HostCommands, LocalHostCommands, RemoteHostCommands
from components.local_hosts import LocalHosts, LocalHostsArgs, LocalHostSpec
from components.overlay_network import OverlayNetwork, OverlayNetworkArgs
from components.remote_hosts import RemoteHosts, RemoteHostsArgs
from components.test_containers import (
    ContainerSpec,
    ImageHost,
    TestContainers,
    TestContainersArgs,
)
from components.validation import Validation, ValidationArgs

__all__ = [
    "ContainerSpec",
    "DockerEngine",
    "DockerEngineArgs",
    "EtcdCluster",
    "EtcdClusterArgs",
    "EtcdMemberSpec",
    "HostCommands",
    "ImageHost",
    "LocalHostCommands",
    "LocalHostSpec",
    "LocalHosts",
    "LocalHostsArgs",
    "OverlayNetwork",
    "OverlayNetworkArgs",
    "RemoteHostCommands",
    "RemoteHosts",
    "RemoteHostsArgs",
    "SerfMesh",
    "SerfMeshArgs",
    "TestContainers",
    "TestContainersArgs",
    "Validation",
    "ValidationArgs",
]
