"""TestContainers: the busybox image on each host and the seed's containers on the overlays."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.host_commands import HostCommands
from overlaylab import mends, verbs
from overlaylab.mends import Mends

#: The seed's container command: a shell that lives forever and ignores nothing.
KEEPALIVE = ["sh", "-c", "while true; do sleep 3600; done"]


@dataclass(frozen=True)
class ImageHost:
    hostname: str
    provider: docker.Provider


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    host: str
    networks: tuple[str, ...]
    """The networks it joins, in order: its first interface (eth0) is on the first."""


@dataclass(frozen=True)
class TestContainersArgs:
    image: str
    image_source: str  # "import" (from busybox-static, no registry) or "pull"
    hosts: tuple[ImageHost, ...]
    containers: tuple[ContainerSpec, ...]
    networks: dict[str, docker.Network]
    """Per network name, in the stack's order: the network (the first is the seed's)."""
    commands: HostCommands
    cluster: pulumi.Input[str]
    """EtcdCluster.cluster: a rebuilt cluster has new daemons, with empty data-roots."""
    mends: Mends = field(default_factory=Mends)
    """A dead daemon's image and containers, a container gone, stopped or detached: made
    anew (overlaylab.mends)."""


class TestContainers(pulumi.ComponentResource):
    """One image per host, one container per configured placement, all on the overlay."""

    __test__ = False  # not a pytest class

    image_imports: dict[str, pulumi.CustomResource]
    """Per host: imports the image from busybox-static (only with image source 'import')."""
    images: dict[str, docker.RemoteImage]
    """Per host: the image as the Docker provider sees it."""
    containers: dict[str, docker.Container]
    """Per container name: the container."""
    names: dict[str, pulumi.CustomResource]
    """Per host with a container (``<host>``, or ``<host>-<network>`` past the first network):
    the names gate (a container there resolves every other
    container's name; ``overlaylab.hosts.names``)."""

    def __init__(
        self, name: str, args: TestContainersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("overlay-etcd:containers:TestContainers", name, None, opts)
        self.image_imports = {}
        self.images = {}
        for h in args.hosts:
            deps: list[pulumi.Resource] = []
            if args.image_source == "import":
                # No registry is reachable from the lab: build the image from the host's own
                # busybox-static, so the RemoteImage below finds it locally and never pulls.
                placement = args.commands.placement(h.hostname)
                imp = args.commands.command(
                    f"{name}-{h.hostname}-import",
                    verbs.ImageImport(hostname=h.hostname, image=args.image).argv(placement),
                    verbs.ImageRemove(hostname=h.hostname, image=args.image).argv(placement),
                    host=h.hostname,
                    triggers=[args.cluster, *args.mends.triggers(f"{name}-{h.hostname}-import")],
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[h.provider]),
                )
                self.image_imports[h.hostname] = imp
                deps.append(imp)
            image = f"{name}-{h.hostname}-image"
            self.images[h.hostname] = docker.RemoteImage(
                image,
                name=args.image,
                keep_locally=True,
                # The image is in the daemon's data-root, which a rebuild empties: the image is
                # looked up again there (its id changes with it), and the containers after it.
                triggers={"cluster": args.cluster, **args.mends.keyed(image)},
                opts=pulumi.ResourceOptions(parent=self, provider=h.provider, depends_on=deps),
            )
        providers = {h.hostname: h.provider for h in args.hosts}
        self.containers = {
            c.name: docker.Container(
                f"{name}-{c.name}",
                name=c.name,
                hostname=c.name,
                image=self.images[c.host].image_id,
                command=KEEPALIVE,
                networks_advanced=[
                    docker.ContainerNetworksAdvancedArgs(name=args.networks[n].name)
                    for n in c.networks
                ],
                must_run=True,
                labels=[
                    docker.ContainerLabelArgs(label=mends.LABEL, value=t)
                    for t in args.mends.triggers(f"{name}-{c.name}")
                ]
                or None,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=providers[c.host],
                    depends_on=[args.networks[n] for n in c.networks],
                ),
            )
            for c in args.containers
        }
        self.names = self._names(name, args)
        self.register_outputs({"containers": {n: c.id for n, c in self.containers.items()}})

    def _names(self, name: str, args: TestContainersArgs) -> dict[str, pulumi.CustomResource]:
        """Docker 20.10 can lose the other hosts' names for good when one read of the store
        fails (``overlaylab.hosts.names``): per network, each host with a container on it
        checks that it resolves every other one on that network, and makes Docker read them
        again where it does not. It runs again whenever a container on that network changes
        (their ids are its triggers). The first network's gates keep the seed's names
        (``<host>-names``), the others are ``<host>-<network>-names``."""
        gates: dict[str, pulumi.CustomResource] = {}
        first = next(iter(args.networks))
        for net in args.networks:
            on = [c for c in args.containers if net in c.networks]
            ids = [self.containers[c.name].id for c in on]
            for h in args.hosts:
                here = [c.name for c in on if c.host == h.hostname]
                others = [c.name for c in on if c.host != h.hostname]
                if not here or not others:
                    continue
                key = h.hostname if net == first else f"{h.hostname}-{net}"
                gates[key] = args.commands.command(
                    f"{name}-{key}-names",
                    verbs.NamesSettle(
                        hostname=h.hostname,
                        container=here[0],
                        network=net,
                        image=args.image,
                        name=tuple(others),
                    ).argv(args.commands.placement(h.hostname)),
                    host=h.hostname,
                    triggers=ids,
                    opts=pulumi.ResourceOptions(
                        parent=self, depends_on=[self.containers[c.name] for c in on]
                    ),
                )
        return gates
