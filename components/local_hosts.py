"""LocalHosts: the lab's "machines" on one Linux box, each a network namespace on one bridge."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_command import local

from components.host_commands import LocalHostCommands
from overlaylab import mends as mend
from overlaylab import verbs
from overlaylab.mends import Mends


@dataclass(frozen=True)
class LocalHostSpec:
    name: str
    address: str
    netns: str
    veth: str


@dataclass(frozen=True)
class LocalHostsArgs:
    bridge: str
    bridge_address: str
    prefixlen: int
    hosts: tuple[LocalHostSpec, ...]
    commands: LocalHostCommands
    pki: tuple[str, ...] = ()  # NAME=IP per etcd member, for a TLS lab
    pki_dir: str | None = None
    mtu: int | None = None  # lab.mtu where it is not the default (the kernel's)
    mends: Mends = field(default_factory=Mends)
    """The bridge or a host's namespace gone (a reboot): made anew (overlaylab.mends)."""


class LocalHosts(pulumi.ComponentResource):
    """A bridge in the root namespace and one namespace per host, joined by veth pairs."""

    preflight: local.Command
    """Checks root, tools and versions before anything is created."""
    bridge: local.Command
    """The lab's L2 segment; holds an address so lab traffic is routed through it."""
    pki: local.Command | None
    """A TLS lab's CA and certificates (members, client), before any host."""
    hosts: dict[str, local.Command]
    """Per host name: its namespace, veth and address."""
    namespaces: pulumi.Output[dict[str, str]]
    """Per host name, the network namespace that is that host."""

    def __init__(
        self, name: str, args: LocalHostsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("overlay-etcd:hosts:LocalHosts", name, None, opts)
        cmd = args.commands
        # --mtu only where lab.mtu is set off the default: a running stack's commands stay the
        # same (args.mtu is None there).
        self.preflight = cmd.command(
            f"{name}-preflight", verbs.Preflight().argv(), opts=pulumi.ResourceOptions(parent=self)
        )
        self.bridge = cmd.command(
            f"{name}-bridge",
            verbs.BridgeUp(
                bridge=args.bridge,
                address=args.bridge_address,
                prefixlen=args.prefixlen,
                mtu=args.mtu,
            ).argv(),
            verbs.BridgeDown(bridge=args.bridge).argv(),
            triggers=args.mends.triggers(mend.BRIDGE) or None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.preflight]),
        )
        before_hosts: list[pulumi.Resource] = [self.bridge]
        self.pki = None
        if args.pki_dir:
            self.pki = cmd.command(
                f"{name}-pki",
                verbs.PkiUp(dir=args.pki_dir, member=args.pki).argv(),
                verbs.PkiDown(dir=args.pki_dir).argv(),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.preflight]),
            )
            before_hosts.append(self.pki)
        self.hosts = {
            h.name: cmd.command(
                f"{name}-{h.name}",
                verbs.HostUp(
                    netns=h.netns,
                    hostname=h.name,
                    veth=h.veth,
                    address=h.address,
                    prefixlen=args.prefixlen,
                    bridge=args.bridge,
                    mtu=args.mtu,
                ).argv(),
                verbs.HostDown(netns=h.netns, veth=h.veth).argv(),
                triggers=args.mends.triggers(mend.host(h.name)) or None,
                opts=pulumi.ResourceOptions(parent=self, depends_on=before_hosts),
            )
            for h in args.hosts
        }
        self.namespaces = pulumi.Output.from_input({h.name: h.netns for h in args.hosts})
        self.register_outputs({"namespaces": self.namespaces, "bridge": args.bridge})
