"""Operations on the lab's hosts: the one seam where side effects happen.

Every Pulumi ``Command`` of the program runs ``python -m overlaylab.hostops <verb> ...``, so a
test that runs the program runs exactly this code. This module is only the command line: it
parses once (the parser is built from the verbs' records, ``overlaylab.verbs``), builds the
transport's ``HostTransport`` from the placement flags (``make_host``), and calls the verb's
method. A verb with no host (the PKI made here, the bridge, the health gate, ...) is a plain
function.
The verbs themselves live in ``overlaylab.hosts``: on the local transport a host is a network
namespace on this machine (``hosts.netns``); on a real host the same verbs run there over SSH
with ``--systemd`` (``hosts.systemd``).

Every verb is idempotent: "up" on something that is up is a no-op, "down" on something that
is gone is a no-op, so ``pulumi up`` twice and ``destroy`` after a failed ``up`` are harmless.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from overlaylab import verbs
from overlaylab.errors import LabError

if TYPE_CHECKING:
    from overlaylab.hosts.base import HostTransport

# Each verb is a process of its own (about fifty in an 8-host up): a verb imports only what it
# runs, inside the functions below, not everything every verb needs (docs/benchmarks.md,
# "the step processes").

Args = argparse.Namespace


def make_host(args: Args) -> HostTransport:
    """The one place a transport is chosen: the placement flags (``_placement``) name it."""
    if args.systemd:
        from overlaylab.hosts.systemd import SystemdHost

        return SystemdHost(tls_dir=args.tls_dir)
    from overlaylab.hosts.netns import NamespaceHost

    return NamespaceHost(
        netns=args.netns,
        host_dir=args.host_dir,
        lab_id=args.lab_id,
        bridge=args.bridge,
        tls_dir=args.tls_dir,
    )


def _initial_cluster(a: Args) -> str:
    text: str = a.initial_cluster or sys.stdin.read().strip()
    if not text:
        raise LabError("etcd-up --initial-cluster-stdin: nothing on stdin (name=peer-url,...)")
    return text


def _start_after() -> list[tuple[str, str]]:
    """docker-up's place in the order the daemons start, from the program on stdin:
    ``{"start_after": [[host, advertise], ...]}``. On stdin (ignored by later changes), so that
    a host added or removed later changes no daemon's command. Nothing there: start now."""
    if sys.stdin is None or sys.stdin.isatty():
        return []
    text = sys.stdin.read().strip()
    if not text:
        return []
    try:
        return [(str(h), str(adv)) for h, adv in json.loads(text)["start_after"]]
    except (ValueError, KeyError, TypeError) as e:
        raise LabError(
            f'docker-up: stdin is not {{"start_after": [[host, advertise], ...]}} ({e})'
        ) from None


def _member(a: Args) -> Any:
    from overlaylab.hosts.member import Member

    return Member(
        name=a.name,
        address=a.address,
        client_port=a.client_port,
        peer_port=a.peer_port,
        token=a.token,
        initial_cluster=_initial_cluster(a),
        timing=(a.heartbeat_ms, a.election_ms)
        if a.heartbeat_ms is not None and a.election_ms is not None
        else None,
    )


def _hosts_unique(a: Args) -> None:
    from overlaylab.hosts.systemd import hosts_unique

    hosts_unique(a.reports, a.mtu)


def _pki(a: Args) -> None:
    from overlaylab.hosts import pki

    if a.verb == "pki-up":
        pki.pki_up(directory=a.dir, members=a.member)
    elif a.verb == "pki-down":
        pki.pki_down(directory=a.dir)
    else:
        pki.pki_bundle(directory=a.dir, member=a.member)


def _identity(a: Args) -> None:
    from overlaylab.hosts import identity

    if a.verb == "ssh-identity":
        identity.ssh_identity(a.file)
    else:
        identity.ssh_identity_remove(a.file)


def _wait_store(a: Args) -> None:
    from overlaylab.hosts.systemd_files import wait_store

    wait_store(a.timeout)


def _host_survey(a: Args) -> None:
    from overlaylab.hosts.hostsurvey import host_survey

    host_survey([c for c in a.containers.split(";") if c])


def _lab_net(a: Args) -> None:
    from overlaylab.hosts import netns

    if a.verb == "bridge-up":
        netns.bridge_up(a.bridge, a.address, a.prefixlen, a.mtu)
    elif a.verb == "bridge-down":
        netns.bridge_down(a.bridge)
    elif a.verb == "host-up":
        netns.host_up(a.netns, a.hostname, a.veth, a.address, a.prefixlen, a.bridge, a.mtu)
    else:
        netns.host_down(a.netns, a.veth)


def _etcd_identity(a: Args) -> None:
    from overlaylab import membership

    print(
        membership.cluster_identity(
            a.token, a.client_port, a.peer_port, membership.previous_output(), a.generation
        )
    )


def _names_keep(a: Args) -> None:
    from overlaylab.etcd import EtcdClient
    from overlaylab.hosts import pki
    from overlaylab.hosts.keeper import names_keep
    from overlaylab.netrule import RouteGuard

    names_keep(
        hostname=a.hostname,
        docker=["docker", "-H", a.docker_host],
        store=EtcdClient(
            a.etcd_endpoint,
            RouteGuard(a.bridge) if a.bridge else None,
            tls=pki.client_tls(a.tls_dir),
        ),
    )


def _etcd_health(a: Args) -> None:
    from overlaylab.hosts.etcdcheck import etcd_health

    etcd_health(
        endpoints=a.endpoint, names=a.name, bridge=a.bridge, timeout=a.timeout, tls_dir=a.tls_dir
    )


#: Verbs that act on one host, whatever its transport.
HOST_VERBS: dict[str, Callable[[HostTransport, Args], None]] = {
    "preflight": lambda h, a: h.preflight(
        client_port=a.client_port, peer_port=a.peer_port, address=a.address
    ),
    "pki-install": lambda h, a: h.pki_install(name=a.name),
    "pki-remove": lambda h, a: h.pki_remove(name=a.name),
    "etcd-up": lambda h, a: h.etcd_up(_member(a)),
    "etcd-down": lambda h, a: h.etcd_down(name=a.name),
    "docker-up": lambda h, a: h.docker_up(
        hostname=a.hostname,
        cluster_store=a.cluster_store,
        advertise=a.advertise,
        etcd_endpoint=a.etcd_endpoint,
        start_after=_start_after(),
    ),
    "docker-down": lambda h, a: h.docker_down(
        hostname=a.hostname, advertise=a.advertise, etcd_endpoint=a.etcd_endpoint
    ),
    "serf-mesh": lambda h, a: h.serf_mesh(
        hostname=a.hostname,
        advertise=a.advertise,
        etcd_endpoint=a.etcd_endpoint,
        peers=a.peer,
        timeout=a.timeout,
    ),
    "image-import": lambda h, a: h.image_import(hostname=a.hostname, image=a.image),
    "image-remove": lambda h, a: h.image_remove(hostname=a.hostname, image=a.image),
    "names-settle": lambda h, a: h.names_settle(
        hostname=a.hostname, container=a.container, names=a.name, network=a.network, image=a.image
    ),
}

#: Verbs with no host: they run where pulumi runs (or, wait-store, as a unit's ExecStartPre).
PLAIN_VERBS: dict[str, Callable[[Args], None]] = {
    "hosts-unique": _hosts_unique,
    "pki-up": _pki,
    "pki-down": _pki,
    "pki-bundle": _pki,
    "ssh-identity": _identity,
    "ssh-identity-remove": _identity,
    "wait-store": _wait_store,
    "host-survey": _host_survey,
    "bridge-up": _lab_net,
    "bridge-down": _lab_net,
    "host-up": _lab_net,
    "host-down": _lab_net,
    "etcd-identity": _etcd_identity,
    "names-keep": _names_keep,
    "etcd-health": _etcd_health,
}


def dispatch(args: Args) -> None:
    """Run one verb: on the host the placement flags name, or a host-less one."""
    from overlaylab.hosts.proc import LIFECYCLE, wait_for_earlier_lifecycle

    if args.verb in LIFECYCLE:
        netns = getattr(args, "netns", None)
        wait_for_earlier_lifecycle(("--netns", netns) if netns else None, args.verb)
    if args.verb in HOST_VERBS:
        HOST_VERBS[args.verb](make_host(args), args)
    else:
        PLAIN_VERBS[args.verb](args)


# --- command line ----------------------------------------------------------------------------


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line; ``only``: just that verb's subcommand (a verb's process parses its
    own flags, not every verb's), if it is one."""
    p = argparse.ArgumentParser(
        prog="python -m overlaylab.hostops", description=__doc__.split("\n")[0]
    )
    verbs.add_parsers(p.add_subparsers(dest="verb", required=True), only=only)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser(argv[0] if argv else None).parse_args(argv)
    try:
        dispatch(args)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except Exception as e:  # a Docker API error: one line, not a traceback
        if type(e).__module__.startswith("docker"):
            print(f"error: Docker API: {e}", file=sys.stderr, flush=True)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
