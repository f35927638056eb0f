"""An SSH host gone for good, taken out of its stack: the cluster and Docker's keys first, then
the stack's state; the stack file and a plain `up` after.

    python -m overlaylab.forget --stack lab --host docker-node3 --ssh-key ~/.ssh/id_ed25519
        [--state-dir DIR]        # the stand-in's state (default /var/lib/overlaylab/.standin)
        [--state-file FILE]      # or that state file itself
        [--export FILE]          # or a `pulumi stack export` file: FILE.forgot.json to import

Taking a host out of the stack file and running `up` tears it down there, over SSH: a host that
no longer answers fails those deletes, and the `up` with them. This command does what the
teardown would have done for the rest of the lab, from this machine, and nothing on the host:

1. it refuses a host that still answers over SSH (remove that one the usual way);
2. its etcd member is removed through a member that answers healthy (`member remove`): the
   cluster shrinks its quorum; no member healthy (a 2-member cluster has no quorum with one
   gone) is refused, changing nothing;
3. its containers' endpoints are removed through another host's daemon (Docker's forced
   disconnect, which keeps the endpoint count right), and its node key is deleted: no daemon
   owns either any more;
4. its resources leave the stack's state without their deletes (the stand-in's state file, or
   a `pulumi stack export` file for `pulumi stack import`), and every dependency on them.

Then take the host (and its containers) out of the stack file and run `up`: the other hosts'
serf checks, the health gate and the validator run again, nothing else changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from overlaylab.config import Host, LabConfig
from overlaylab.errors import LabError


def names_of(cfg: LabConfig, host: str) -> set[str]:
    """The names of the resources the program makes for ``host`` (components included)."""
    from overlaylab import mends

    lab = {f"{mends.host(host)}-{k}" for k in ("preflight", "copy", "lib", "pki-bundle", "pki")}
    mine = {mends.member(host), mends.daemon(host), mends.serf(host)}
    mine |= {mends.image_import(host), mends.image(host)}
    mine |= {f"docker-{host}", f"docker-{host}-docker", f"test-{host}-names"}  # its component,
    mine |= {f"test-{host}-{n.name}-names" for n in cfg.all_networks}  # provider, names gates
    mine |= {mends.container(c.name) for c in cfg.containers if c.host == host}
    return lab | mine


def without(
    resources: list[dict[str, Any]], names: set[str], keys: dict[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """``resources`` (state records as dicts) without those named, or on the provider of one
    of them, and with every reference to them dropped. ``keys``: the field names of this
    format (urn, name, dependencies, propertyDependencies, provider, parent)."""
    gone = {r[keys["urn"]] for r in resources if _name(r, keys) in names}
    providers = {u for u in gone}
    gone |= {
        r[keys["urn"]]
        for r in resources
        if str(r.get(keys["provider"]) or "").rsplit("::", 1)[0] in providers
    }
    kept = []
    for r in resources:
        if r[keys["urn"]] in gone:
            continue
        r = dict(r)
        r[keys["deps"]] = [d for d in r.get(keys["deps"]) or [] if d not in gone]
        props = r.get(keys["prop_deps"]) or {}
        r[keys["prop_deps"]] = {p: [d for d in ds if d not in gone] for p, ds in props.items()}
        kept.append(r)
    order = [_name(r, keys) for r in resources if r[keys["urn"]] in gone]
    return kept, order


def _name(r: dict[str, Any], keys: dict[str, str]) -> str:
    return str(r.get(keys["name"]) or str(r[keys["urn"]]).rsplit("::", 1)[-1])


#: The stand-in's state file (standin/state.py) and Pulumi's checkpoint (`stack export`).
STANDIN = {"urn": "urn", "name": "name", "deps": "deps", "prop_deps": "prop_deps",
           "provider": "provider"}  # fmt: skip
PULUMI = {"urn": "urn", "name": "", "deps": "dependencies", "prop_deps": "propertyDependencies",
          "provider": "provider"}  # fmt: skip


def refuse_if_it_answers(cfg: LabConfig, gone: Host) -> None:
    from overlaylab.survey import survey_host

    found = survey_host(cfg, gone.name, gone.address)
    if not any(f.kind == "ssh" for f in found):
        raise LabError(
            f"host {gone.name} answers over SSH: take it out of the stack file and run up (its "
            "teardown runs there); this command is for a host that is gone"
        )


def leave_cluster(cfg: LabConfig, gone: Host) -> list[str]:
    """Its member removed and its node key deleted, through a member that answers healthy."""
    from overlaylab.etcd import EtcdClient
    from overlaylab.hosts.dockerd import node_key
    from overlaylab.hosts.pki import client_tls

    errors = []
    for h in (h for h in cfg.hosts if h.name != gone.name):
        client = EtcdClient(cfg.client_url(h), None, timeout=5, tls=client_tls(cfg.pki_dir))
        try:
            if not client.health():
                raise LabError(f"{client.endpoint} is not healthy")
            said = []
            for m in client.members()[1]:
                if m.get("name") == gone.name:
                    client.member_remove(str(m["ID"]))
                    said.append(f"etcd: member {gone.name} removed through {client.endpoint}")
            if not said:
                said.append(f"etcd: {gone.name} was not a member any more")
            if client.v2_delete(node_key(cfg.advertise(gone))):
                said.append(f"docker: node key {node_key(cfg.advertise(gone))} deleted")
            return said
        except LabError as e:
            errors.append(str(e))
    raise LabError(
        "no other etcd member answers healthy, so the member cannot be removed (a cluster of "
        f"two has no quorum with one gone): {'; '.join(errors)}; see "
        "docs/troubleshooting.md#an-etcd-members-data-is-lost"
    )


def drop_endpoints(cfg: LabConfig, gone: Host) -> list[str]:
    """Its containers' endpoints, through another host's daemon: Docker's forced disconnect of a
    container it does not know deletes the endpoint by name (moby v20.10.24
    daemon/network.go:459, container_operations.go:877-889)."""
    import docker

    from overlaylab.hosts.dockerd import docker_api
    from overlaylab.sshdocker import SshDockerTunnel

    other = next(h for h in cfg.hosts if h.name != gone.name)
    tunnel = SshDockerTunnel(cfg.docker_host(other), cfg.ssh_opts(), None)
    said = []
    try:
        api = docker_api(tunnel.url.removeprefix("unix://"), timeout=30)
        for c in (c for c in cfg.containers if c.host == gone.name):
            for net in cfg.networks_of(c):
                try:
                    api.disconnect_container_from_network(c.name, net, force=True)
                    said.append(f"docker: endpoint {c.name} on {net} removed through {other.name}")
                except docker.errors.NotFound:
                    said.append(f"docker: no endpoint {c.name} on {net} left")
    finally:
        tunnel.close()
    return said


def forget_in_standin(state_file: Path, names: set[str]) -> list[str]:
    from dataclasses import asdict

    from standin import state

    records = state.load(state_file)
    if not records:
        raise LabError(f"no stack state in {state_file}")
    kept, gone = without([asdict(r) for r in records], names, STANDIN)
    pending = [o for o in state.load_pending(state_file) if o.resource.name not in names]
    state.save(state_file, [state.Record(**r) for r in kept], pending)
    return [f"state: {len(gone)} resources out of {state_file}: {', '.join(gone)}"]


def forget_in_export(export: Path, names: set[str]) -> list[str]:
    data = json.loads(export.read_text())
    resources = data["deployment"]["resources"]
    kept, gone = without(resources, names, PULUMI)
    data["deployment"]["resources"] = kept
    out = export.with_suffix(".forgot.json")
    out.write_text(json.dumps(data, indent=2))
    return [
        f"state: {len(gone)} resources out of {out}: {', '.join(gone)}",
        f"now: pulumi stack import --file {out}",
    ]


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m overlaylab.forget", description=__doc__.split("\n")[0]
    )
    p.add_argument("--stack", required=True)
    p.add_argument("--host", required=True, help="the host that is gone for good")
    p.add_argument("--config-file", type=Path, help="this stack file, not stacks/Pulumi.<stack>")
    p.add_argument("--ssh-key", type=Path, required=True, help="the stack's private key")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/overlaylab/.standin"))
    p.add_argument("--state-file", type=Path, help="this stand-in state file, not STACK.json there")
    p.add_argument("--export", type=Path, help="a `pulumi stack export` file instead")
    args = p.parse_args(list(argv) if argv is not None else None)
    from overlaylab.config import parse
    from overlaylab.errors import ConfigError
    from overlaylab.stackconfig import raw_from_file

    try:
        raw = raw_from_file(args.stack, args.config_file)
        cfg = parse({**raw, "sshPrivateKey": args.ssh_key.read_text()}, args.stack)
        if cfg.transport != "ssh":
            raise LabError("a local lab's hosts cannot be gone: take it out and run up")
        gone = next((h for h in cfg.hosts if h.name == args.host), None)
        if gone is None:
            raise LabError(
                f"no host {args.host} in the stack ({', '.join(h.name for h in cfg.hosts)})"
            )
        if len(cfg.hosts) < 2:
            raise LabError("the stack's only host: destroy the stack's state instead")
        refuse_if_it_answers(cfg, gone)
        said = leave_cluster(cfg, gone)
        said += drop_endpoints(cfg, gone)
        names = names_of(cfg, gone.name)
        if args.export:
            said += forget_in_export(args.export, names)
        else:
            state_file = args.state_file or args.state_dir / f"{args.stack}.json"
            said += forget_in_standin(state_file, names)
    except (LabError, ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for line in said:
        print(line)
    print(f"next: take {args.host} and its containers out of the stack file, then run up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
