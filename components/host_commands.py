"""The Pulumi side of the host seam: a Command that runs one of ``overlaylab.hostops``' verbs.

Every command with a delete manages one thing on a host (a namespace, an etcd member, a
daemon's configuration) that exists once, not per resource. Pulumi replaces by creating the
new resource before deleting the old; here the old one's delete would then tear down what the
new one just set up. So these commands are replaced delete-first.

Components ask this for commands instead of writing shell themselves. Two transports:

- :class:`LocalHostCommands`: every verb runs on this machine (``command:local:Command``); a
  host is a network namespace, named by the verb's placement flags.
- :class:`RemoteHostCommands`: a verb for a host runs *on* that host over SSH
  (``command:remote:Command``, with ``--systemd``); verbs with no host run on this machine.

The component code is the same for both; only this object differs.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import pulumi
from pulumi_command import local, remote

from overlaylab.hosts.systemd_files import REMOTE_LIB
from overlaylab.verbs import Placement

HOSTOPS = "overlaylab.hostops"


class HostCommands(Protocol):
    def placement(self, host: str) -> list[str]: ...

    def command(
        self,
        name: str,
        create: Sequence[str] | pulumi.Output[list[str]],
        delete: Sequence[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
        module: str = HOSTOPS,
        triggers: Sequence[pulumi.Input[object]] | None = None,
        host: str | None = None,
        environment: Mapping[str, pulumi.Input[str]] | None = None,
        stdin: pulumi.Input[str] | None = None,
    ) -> pulumi.CustomResource: ...


@dataclass(frozen=True)
class LocalHostCommands:
    """Runs hostops verbs on this machine with ``python`` and the project on PYTHONPATH."""

    python: str
    project_dir: str
    placements: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    bases: Mapping[str, pulumi.Resource] = field(default_factory=dict)
    """Per host: what the host is made of here (its namespace). Every command on that host
    depends on it directly: the engine orders deletes through direct dependencies only
    (pulumi/pulumi pkg/resource/deploy/step_generator.go ScheduleDeletes), so a dependency
    through a resource that stays (the health gate) would not keep a removed host's namespace,
    or its package over SSH, until the last verb there has run."""

    def with_bases(self, bases: Mapping[str, pulumi.Resource]) -> LocalHostCommands:
        return replace(self, bases={**self.bases, **bases})

    def argv(self, module: str, args: Sequence[str]) -> str:
        return shlex.join([self.python, "-m", module, *args])

    def placement(self, host: str) -> list[str]:
        return list(self.placements.get(host, ()))

    def command(
        self,
        name: str,
        create: Sequence[str] | pulumi.Output[list[str]],
        delete: Sequence[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
        module: str = HOSTOPS,
        triggers: Sequence[pulumi.Input[object]] | None = None,
        host: str | None = None,
        environment: Mapping[str, pulumi.Input[str]] | None = None,
        stdin: pulumi.Input[str] | None = None,
    ) -> local.Command:
        if isinstance(create, pulumi.Output):
            create_cmd: pulumi.Input[str] = create.apply(lambda a: self.argv(module, a))
        else:
            create_cmd = self.argv(module, create)
        return local.Command(
            name,
            create=create_cmd,
            delete=self.argv(module, delete) if delete is not None else None,
            environment={
                "PYTHONPATH": self.project_dir,
                "PYTHONUNBUFFERED": "1",
                **(environment or {}),
            },
            dir=self.project_dir,
            stdin=stdin,
            triggers=list(triggers) if triggers is not None else None,
            opts=_singleton(_on_base(opts, self.bases.get(host) if host else None), delete),
        )


@dataclass(frozen=True)
class RemoteHostCommands:
    """Runs a host's verbs on that host over SSH, with the package copied to REMOTE_LIB."""

    local: LocalHostCommands
    connections: Mapping[str, remote.ConnectionArgs]
    tls_dir: str | None = None  # where each host keeps its certificates (TLS labs)
    bases: Mapping[str, pulumi.Resource] = field(default_factory=dict)
    """Per host: the package its verbs run from (see LocalHostCommands.bases)."""

    def with_bases(self, bases: Mapping[str, pulumi.Resource]) -> RemoteHostCommands:
        return replace(self, bases={**self.bases, **bases})

    def placement(self, host: str) -> list[str]:
        return Placement(systemd=True, tls_dir=self.tls_dir or None).argv()

    def argv(self, module: str, args: Sequence[str]) -> str:
        return f"PYTHONPATH={REMOTE_LIB} python3 -m {module} {shlex.join(args)}"

    def command(
        self,
        name: str,
        create: Sequence[str] | pulumi.Output[list[str]],
        delete: Sequence[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
        module: str = HOSTOPS,
        triggers: Sequence[pulumi.Input[object]] | None = None,
        host: str | None = None,
        environment: Mapping[str, pulumi.Input[str]] | None = None,
        stdin: pulumi.Input[str] | None = None,
    ) -> pulumi.CustomResource:
        if host is None:
            return self.local.command(
                name, create, delete, opts, module, triggers, environment=environment, stdin=stdin
            )
        if isinstance(create, pulumi.Output):
            raise TypeError("remote commands take a fixed argv")
        # sshd passes a client's environment only where AcceptEnv allows it: a variable goes
        # on the command line instead (a change of it is a change of `create`: an update)
        env = "".join(f"{k}={shlex.quote(_fixed(v))} " for k, v in (environment or {}).items())
        return remote.Command(
            name,
            connection=self.connections[host],
            create=env + self.argv(module, create),
            delete=self.argv(module, delete) if delete is not None else None,
            stdin=stdin,
            triggers=list(triggers) if triggers is not None else None,
            opts=_singleton(_on_base(opts, self.bases.get(host)), delete),
        )


def _fixed(value: pulumi.Input[str]) -> str:
    if not isinstance(value, str):
        raise TypeError("a remote command's environment takes fixed strings")
    return value


def _on_base(
    opts: pulumi.ResourceOptions | None, base: pulumi.Resource | None
) -> pulumi.ResourceOptions | None:
    if base is None:
        return opts
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[base]))


def _singleton(
    opts: pulumi.ResourceOptions | None, delete: Sequence[str] | None
) -> pulumi.ResourceOptions | None:
    if delete is None:
        return opts
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True))
