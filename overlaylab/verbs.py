"""The host verbs, one record each: what goes on the wire between the program and the hosts.

Every ``Command`` of the program runs ``python -m overlaylab.hostops <verb> --flags...``. Each
verb is a frozen dataclass here, its fields (and their defaults) written once: the components
build a verb's argv from its record (:meth:`Verb.argv`), ``hostops`` builds its parser from the
same record (:func:`add_parsers`). A field's flag is its name, ``--`` and dashes for
underscores; the fields' order is the flags' order on the wire.

How a value goes on the wire (the argv of a running stack must never change, or every stack
would plan a change of its commands: ``tests/unit/test_commands_unchanged.py``):

- ``None`` and ``False`` are left out, ``True`` is the bare flag;
- a tuple is the flag once per item (argparse ``append``), a ``positional`` one its items;
- ``omit_default``: left out while it is the field's default (which the parser gives back);
- ``absent``: the value the verb takes when the flag is left out, for a field whose record
  default is ``None`` ("not said": ``preflight`` on a namespace host says no ports);
- ``pairs``: a tuple of pairs, each item two flags in turn (``--endpoint e --name n``).

A host verb (``on_host``) also takes the placement flags (:class:`Placement`): where it acts.

Standard library only: real hosts run ``hostops`` with their system python3.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from overlaylab.defaults import ETCD_CLIENT_PORT, ETCD_PEER_PORT, UNDERLAY_MTU

#: How long the health gate waits for every etcd member (``etcd-health --timeout``).
ETCD_HEALTH_TIMEOUT = 60
#: How long docker.service's ExecStartPre waits for its store (``wait-store --timeout``).
STORE_WAIT = 90
#: How long ``serf-mesh`` waits for a daemon's serf to see every host.
SERF_MESH_TIMEOUT = 60


def arg(
    default: Any = dataclasses.MISSING,
    *,
    help: str | None = None,
    omit_default: bool = False,
    absent: Any = None,
    positional: bool = False,
    pairs: tuple[str, str] | None = None,
    exclusive: str | None = None,
) -> Any:
    """A verb's field (see the module's doc); ``exclusive``: one of a required group."""
    meta = {"help": help, "omit_default": omit_default, "absent": absent}
    meta |= {"positional": positional, "pairs": pairs, "exclusive": exclusive}
    return dataclasses.field(default=default, metadata=meta)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True, kw_only=True)
class Verb:
    """One verb's arguments. Subclasses set ``verb`` and fields made with :func:`arg`."""

    verb: ClassVar[str]
    on_host: ClassVar[bool] = False
    help: ClassVar[str | None] = None
    #: The placement flags before the verb's own (preflight's order on the wire), not after.
    placement_first: ClassVar[bool] = False

    def flags(self) -> list[str]:
        """The verb's own flags, in the fields' order."""
        return _flags(self)

    def argv(self, placement: Sequence[str] = ()) -> list[str]:
        """The verb and its flags, as ``hostops`` takes them; ``placement`` for a host verb."""
        if self.placement_first:
            return [self.verb, *placement, *self.flags()]
        return [self.verb, *self.flags(), *placement]

    @classmethod
    def add_parser(
        cls, sub: argparse._SubParsersAction[argparse.ArgumentParser]
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(cls.verb, help=cls.help)
        hints = typing.get_type_hints(cls)
        groups: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            _add_argument(p, f, hints[f.name], groups)
        if cls.on_host:
            Placement.add_arguments(p)
        return p


def _flags(record: Any) -> list[str]:
    out: list[str] = []
    for f in dataclasses.fields(record):
        value, meta = getattr(record, f.name), f.metadata
        if value is None or value is False:
            continue
        if meta.get("omit_default") and value == f.default:
            continue
        if meta.get("pairs"):
            first, second = meta["pairs"]
            out += [a for x, y in value for a in (first, str(x), second, str(y))]
        elif meta.get("positional"):
            out += [str(v) for v in value]
        elif value is True:
            out.append(flag(f.name))
        elif isinstance(value, tuple):
            out += [a for v in value for a in (flag(f.name), str(v))]
        else:
            out += [flag(f.name), str(value)]
    return out


def _add_argument(
    p: argparse.ArgumentParser, f: dataclasses.Field[Any], hint: Any, groups: dict[str, Any]
) -> None:
    meta = f.metadata
    required = f.default is dataclasses.MISSING
    kind = _scalar(hint)
    opts: dict[str, Any] = {"help": meta.get("help")}
    if meta.get("pairs"):
        for name in meta["pairs"]:
            p.add_argument(name, action="append", required=True, **opts)
        return
    if meta.get("positional"):
        p.add_argument(f.name, nargs="+", type=kind, **opts)
        return
    target: Any = p
    if meta.get("exclusive"):
        key = meta["exclusive"]
        if key not in groups:
            groups[key] = p.add_mutually_exclusive_group(required=True)
        target, required = groups[key], False
    if kind is bool:
        target.add_argument(flag(f.name), action="store_true", **opts)
        return
    if _is_tuple(hint):
        opts["action"] = "append"
    if required:
        opts["required"] = True
    else:
        opts["default"] = meta.get("absent") if f.default is None else f.default
    if kind is not str:
        opts["type"] = kind
    target.add_argument(flag(f.name), **opts)


def _is_tuple(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple


def _scalar(hint: Any) -> type:
    """int for ``int``, ``int | None`` and ``tuple[int, ...]``; likewise str, float, bool."""
    args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
    if typing.get_origin(hint) is tuple and args and typing.get_origin(args[0]) is tuple:
        return str  # pairs: flags of their own
    t = args[0] if args else hint
    return t if isinstance(t, type) else str


# --- where a host verb acts --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Placement:
    """A namespace host on this machine (``netns`` and its state), or (``systemd``) the host
    the verb runs on. Not a verb: the flags every host verb takes, after its own."""

    systemd: bool = arg(False, help="act on this systemd-managed host")
    netns: str | None = arg(None)
    host_dir: str | None = arg(None)
    lab_id: str | None = arg(None)
    bridge: str | None = arg(None)
    tls_dir: str | None = arg(None)

    def argv(self) -> list[str]:
        return _flags(self)

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            _add_argument(p, f, hints[f.name], {})


# --- verbs on one host -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Preflight(Verb):
    verb = "preflight"
    on_host = True
    placement_first = True
    client_port: int | None = arg(None, absent=ETCD_CLIENT_PORT)
    peer_port: int | None = arg(None, absent=ETCD_PEER_PORT)
    address: str | None = arg(None, help="the host's lab address: report its interface's MTU")


@dataclass(frozen=True, kw_only=True)
class PkiInstall(Verb):
    verb = "pki-install"
    on_host = True
    name: str = arg()


@dataclass(frozen=True, kw_only=True)
class PkiRemove(Verb):
    verb = "pki-remove"
    on_host = True
    name: str = arg()


@dataclass(frozen=True, kw_only=True)
class EtcdUp(Verb):
    """The founding membership: on the command line, or (as the program passes it, so that a
    change of it is no change of the command) on stdin."""

    verb = "etcd-up"
    on_host = True
    name: str = arg()
    address: str = arg()
    token: str = arg()
    client_port: int = arg()
    peer_port: int = arg()
    initial_cluster: str | None = arg(None, exclusive="initial-cluster")
    initial_cluster_stdin: bool = arg(False, exclusive="initial-cluster")
    #: etcd.heartbeatMs/electionMs; passed only when the stack sets them, so that a stack
    #: that does not keeps its commands
    heartbeat_ms: int | None = arg(None)
    election_ms: int | None = arg(None)


@dataclass(frozen=True, kw_only=True)
class EtcdDown(Verb):
    verb = "etcd-down"
    on_host = True
    name: str = arg()


@dataclass(frozen=True, kw_only=True)
class DockerUp(Verb):
    """The order the daemons start in comes on stdin (``{"start_after": [...]}``)."""

    verb = "docker-up"
    on_host = True
    cluster_store: str = arg()
    hostname: str = arg()
    advertise: str = arg()
    etcd_endpoint: str = arg()


@dataclass(frozen=True, kw_only=True)
class DockerDown(Verb):
    verb = "docker-down"
    on_host = True
    hostname: str = arg()
    advertise: str = arg()
    etcd_endpoint: str = arg()


@dataclass(frozen=True, kw_only=True)
class SerfMesh(Verb):
    verb = "serf-mesh"
    on_host = True
    help = "wait until dockerd's serf knows every host"
    hostname: str = arg()
    advertise: str = arg()
    etcd_endpoint: str = arg()
    peer: tuple[str, ...] = arg(help="every host's address")
    timeout: float = arg(SERF_MESH_TIMEOUT, omit_default=True)


@dataclass(frozen=True, kw_only=True)
class ImageImport(Verb):
    verb = "image-import"
    on_host = True
    hostname: str = arg()
    image: str = arg()


@dataclass(frozen=True, kw_only=True)
class ImageRemove(Verb):
    verb = "image-remove"
    on_host = True
    hostname: str = arg()
    image: str = arg()


@dataclass(frozen=True, kw_only=True)
class NamesSettle(Verb):
    verb = "names-settle"
    on_host = True
    help = "a container resolves every other one's name"
    hostname: str = arg()
    container: str = arg()
    network: str = arg()
    image: str = arg()
    name: tuple[str, ...] = arg(help="every name it must resolve")


# --- verbs with no host ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HostsUnique(Verb):
    verb = "hosts-unique"
    reports: tuple[str, ...] = arg(positional=True)
    mtu: int = arg(UNDERLAY_MTU, omit_default=True, help="lab.mtu: each host's interface's least")


@dataclass(frozen=True, kw_only=True)
class SshIdentity(Verb):
    verb = "ssh-identity"
    file: str = arg()


@dataclass(frozen=True, kw_only=True)
class SshIdentityRemove(Verb):
    verb = "ssh-identity-remove"
    file: str = arg()


@dataclass(frozen=True, kw_only=True)
class PkiUp(Verb):
    verb = "pki-up"
    dir: str = arg()
    member: tuple[str, ...] = arg(help="NAME=IP")


@dataclass(frozen=True, kw_only=True)
class PkiDown(Verb):
    verb = "pki-down"
    dir: str = arg()


@dataclass(frozen=True, kw_only=True)
class PkiBundle(Verb):
    verb = "pki-bundle"
    dir: str = arg()
    member: str = arg()


@dataclass(frozen=True, kw_only=True)
class WaitStore(Verb):
    verb = "wait-store"
    help = "docker.service's ExecStartPre on a systemd host"
    timeout: float = arg(STORE_WAIT)


_KERNEL_MTU = "the underlay's MTU (lab.mtu); the kernel's if unset"


@dataclass(frozen=True, kw_only=True)
class BridgeUp(Verb):
    verb = "bridge-up"
    bridge: str = arg()
    address: str = arg()
    prefixlen: int = arg()
    mtu: int | None = arg(None, help=_KERNEL_MTU)


@dataclass(frozen=True, kw_only=True)
class BridgeDown(Verb):
    verb = "bridge-down"
    bridge: str = arg()


@dataclass(frozen=True, kw_only=True)
class HostUp(Verb):
    verb = "host-up"
    netns: str = arg()
    hostname: str = arg()
    veth: str = arg()
    address: str = arg()
    prefixlen: int = arg()
    bridge: str = arg()
    mtu: int | None = arg(None, help=_KERNEL_MTU)


@dataclass(frozen=True, kw_only=True)
class HostDown(Verb):
    verb = "host-down"
    netns: str = arg()
    veth: str = arg()


@dataclass(frozen=True, kw_only=True)
class EtcdIdentity(Verb):
    verb = "etcd-identity"
    help = "the cluster's token and ports; refuses a change"
    token: str = arg()
    client_port: int = arg()
    peer_port: int = arg()
    generation: int = arg(1, help="etcd.generation, for the message")


@dataclass(frozen=True, kw_only=True)
class EtcdHealth(Verb):
    verb = "etcd-health"
    timeout: float = arg(ETCD_HEALTH_TIMEOUT)
    bridge: str | None = arg(None, help="check routes go through this bridge (local lab)")
    tls_dir: str | None = arg(None, help="the lab's CA and client certificate (TLS lab)")
    member: tuple[tuple[str, str], ...] = arg(pairs=("--endpoint", "--name"))
    """(client URL, name) per member."""


@dataclass(frozen=True, kw_only=True)
class NamesKeep(Verb):
    """Runs for as long as its host's dockerd: started by docker-up, stopped by docker-down."""

    verb = "names-keep"
    help = "the names gate's mend whenever a container joins an overlay (hosts/keeper.py)"
    hostname: str = arg()
    docker_host: str = arg(help="the daemon, as docker -H takes it")
    etcd_endpoint: str = arg(help="the host's own member (client URL)")
    bridge: str | None = arg(None, help="check routes go through this bridge (local lab)")
    tls_dir: str | None = arg(None, help="the lab's CA and client certificate (TLS lab)")


@dataclass(frozen=True, kw_only=True)
class HostSurvey(Verb):
    """Read-only, on a systemd host, by the program's survey over SSH (hosts/hostsurvey.py)."""

    verb = "host-survey"
    help = "what of the lab on this systemd host should be there and is not, as JSON"
    containers: str = arg(
        "", omit_default=True, help="NAME=NET,NET;NAME=NET: the containers expected here"
    )


HOST_VERBS: tuple[type[Verb], ...] = (
    Preflight, PkiInstall, PkiRemove, EtcdUp, EtcdDown, DockerUp, DockerDown, SerfMesh,
    ImageImport, ImageRemove, NamesSettle,
)  # fmt: skip
PLAIN_VERBS: tuple[type[Verb], ...] = (
    HostsUnique, SshIdentity, SshIdentityRemove, PkiUp, PkiDown, PkiBundle, WaitStore,
    BridgeUp, BridgeDown, HostUp, HostDown, EtcdIdentity, EtcdHealth, NamesKeep, HostSurvey,
)  # fmt: skip


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], only: str | None = None
) -> None:
    """One subcommand per verb, from its record; ``only``: that verb's alone, if it is one
    (else all of them, so that a wrong verb's error lists the right ones)."""
    every = (*HOST_VERBS, *PLAIN_VERBS)
    for cls in [c for c in every if c.verb == only] or every:
        cls.add_parser(sub)
