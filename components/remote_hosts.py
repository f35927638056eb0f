"""RemoteHosts: real machines reached over SSH, checked before anything on them changes."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.host_commands import REMOTE_LIB, RemoteHostCommands
from overlaylab import verbs
from overlaylab.defaults import UNDERLAY_MTU


@dataclass(frozen=True)
class RemoteHostsArgs:
    hosts: tuple[str, ...]
    client_port: int
    peer_port: int
    package_dir: str
    package_hash: str
    identity_file: str
    private_key: pulumi.Input[str]
    commands: RemoteHostCommands
    pki_dir: str | None = None  # TLS: certificates are made here ...
    addresses: tuple[str, ...] = ()  # each host's lab address (same order as hosts)
    mtu: int = UNDERLAY_MTU  # lab.mtu: what each host's interface on the segment must carry


class RemoteHosts(pulumi.ComponentResource):
    """The project's package on every host, every host's preflight, then one gate."""

    copies: dict[str, remote.CopyToRemote]
    """Per host: the project's package copied to REMOTE_LIB."""
    libs: dict[str, pulumi.CustomResource]
    """Per host: links the copied version as the one to import and checks it imports; its
    delete removes that version (all of REMOTE_LIB once it is the current one)."""
    preflights: dict[str, pulumi.CustomResource]
    """Per host: OS, systemd, VXLAN, versions, ports; prints the host's identity."""
    gate: pulumi.CustomResource
    """Completes only when every host passed preflight with a unique hostname and engine ID."""
    identity: pulumi.CustomResource
    """The SSH key as a 0600 file here, for Docker's ssh:// connections and the validator."""
    commands: RemoteHostCommands
    """The host commands, each depending directly on its host's package (use these)."""
    ready: dict[str, pulumi.Resource]
    """Per host: what its first change waits for (the gate, and its certificates if TLS)."""

    def __init__(
        self, name: str, args: RemoteHostsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("overlay-etcd:hosts:RemoteHosts", name, None, opts)
        self.copies, self.libs, self.preflights = {}, {}, {}
        for h in args.hosts:
            self._package(name, args, h)
        self.commands = args.commands.with_bases(self.libs)
        cmd = self.commands
        address = dict(zip(args.hosts, args.addresses, strict=False))
        for h in args.hosts:
            self.preflights[h] = cmd.command(
                f"{name}-{h}-preflight",
                # The MTU of the interface holding the address goes into the report.
                verbs.Preflight(
                    client_port=args.client_port, peer_port=args.peer_port, address=address.get(h)
                ).argv(verbs.Placement(systemd=True).argv()),
                host=h,
                opts=pulumi.ResourceOptions(parent=self),
            )
        reports = pulumi.Output.all(*(_stdout(p) for p in self.preflights.values()))
        # Unique hostnames and engine IDs, and one underlay MTU of at least lab.mtu, can only be
        # judged across hosts: one step here, on every host's preflight report, before any host
        # is changed. --mtu only where lab.mtu is not the verb's default (HostsUnique.mtu).
        self.gate = cmd.local.command(
            f"{name}-unique",
            reports.apply(lambda rs: verbs.HostsUnique(reports=tuple(rs), mtu=args.mtu).argv()),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.preflights.values())),
        )
        self.identity = cmd.local.command(
            f"{name}-identity",
            verbs.SshIdentity(file=args.identity_file).argv(),
            verbs.SshIdentityRemove(file=args.identity_file).argv(),
            environment={"OVERLAYLAB_SSH_KEY": args.private_key},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ready = {h: self.gate for h in args.hosts}
        if args.pki_dir and cmd.tls_dir:
            self._pki(name, args, args.pki_dir)
        self.register_outputs({"hosts": list(args.hosts)})

    def _package(self, name: str, args: RemoteHostsArgs, h: str) -> None:
        """The project's package on host ``h``: copied, then made the one its verbs import."""
        connection = args.commands.connections[h]
        version = args.package_hash
        # Each version in a directory of its own, REMOTE_LIB/<hash>/overlaylab: the provider
        # copies a directory whose path has no trailing "/" *into* remotePath (pulumi-command
        # v1.2.1 remote/copyController.go:224-239). A code change copies the new version beside
        # the old one (a new copy, created before the old is deleted).
        self.copies[h] = remote.CopyToRemote(
            f"{name}-{h}-copy",
            connection=connection,
            source=pulumi.FileArchive(args.package_dir),
            remote_path=f"{REMOTE_LIB}/{version}",
            triggers=[version],
            opts=pulumi.ResourceOptions(parent=self),
        )
        # REMOTE_LIB/overlaylab, what PYTHONPATH=REMOTE_LIB imports (and docker's drop-in
        # runs), is a link to the current version, switched in one rename. Replaced create-first:
        # the new version is linked and checked before the old one's delete, which removes only
        # its own directory while the link points elsewhere, and everything once it is the
        # current one (a destroy, or the host leaving the stack). Every verb on the host depends
        # on this resource directly (RemoteHostCommands.bases), so it goes after them.
        self.libs[h] = remote.Command(
            f"{name}-{h}-lib",
            connection=connection,
            create=link_package(version),
            delete=remove_package(version),
            triggers=[version],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.copies[h]]),
        )

    def _pki(self, name: str, args: RemoteHostsArgs, pki_dir: str) -> None:
        """TLS: certificates made here, each host's bundle installed there after the gate."""
        cmd = self.commands
        members = tuple(f"{h}={ip}" for h, ip in zip(args.hosts, args.addresses, strict=True))
        pki = cmd.local.command(
            f"{name}-pki",
            verbs.PkiUp(dir=pki_dir, member=members).argv(),
            verbs.PkiDown(dir=pki_dir).argv(),
            opts=pulumi.ResourceOptions(parent=self),
        )
        for h in args.hosts:
            # The bundle holds private keys: its stdout stays a secret in state.
            bundle = cmd.local.command(
                f"{name}-{h}-pki-bundle",
                verbs.PkiBundle(dir=pki_dir, member=h).argv(),
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[pki], additional_secret_outputs=["stdout"]
                ),
            )
            self.ready[h] = cmd.command(
                f"{name}-{h}-pki",
                verbs.PkiInstall(name=h).argv(cmd.placement(h)),
                verbs.PkiRemove(name=h).argv(cmd.placement(h)),
                host=h,
                stdin=_stdout(bundle),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.gate]),
            )


def link_package(version: str, root: str = REMOTE_LIB) -> str:
    """Shell: make ``root/<version>/overlaylab`` the package ``PYTHONPATH=root`` imports."""
    lib, link = shlex.quote(root), shlex.quote(f"{root}/overlaylab")
    return (
        "set -e; "
        # a directory there is the layout of a version before this one: the link replaces it
        f"if [ -d {link} ] && [ ! -L {link} ]; then rm -rf {link}; fi; "
        f"ln -sfn {shlex.quote(version)}/overlaylab {lib}/.overlaylab.new; "
        f"mv -Tf {lib}/.overlaylab.new {link}; "
        f"PYTHONPATH={lib} python3 -c 'import overlaylab.hostops'"
    )


def remove_package(version: str, root: str = REMOTE_LIB) -> str:
    """Shell: remove that version; all of ``root`` when it is the one linked."""
    lib, link = shlex.quote(root), shlex.quote(f"{root}/overlaylab")
    current = shlex.quote(f"{version}/overlaylab")
    return (
        f'if [ "$(readlink {link})" = {current} ]; then rm -rf {lib}; '
        f"else rm -rf {shlex.quote(f'{root}/{version}')}; fi"
    )


def _stdout(command: pulumi.CustomResource) -> pulumi.Output[str]:
    return command.stdout  # type: ignore[attr-defined]
