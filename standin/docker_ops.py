"""pulumi-docker's resources, performed through Docker's Engine API on their provider's daemon,
with exactly the declared arguments: a unix socket, or ``ssh://`` through a forwarded socket.

A Docker resource is performed only through an explicit provider declared in the program;
its Record keeps the provider's host and ssh options, so its delete goes to the same daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

from overlaylab.netrule import RouteGuard
from standin.ops import Context, ResourceFailed, ResourceType, UnsupportedResource
from standin.state import Record

DOCKER_PROVIDER = "pulumi:providers:docker"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
CONTAINER = "docker:index/container:Container"


class Tunnels:
    """ssh:// Docker hosts reached through forwarded sockets, one per (host, options)."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, tuple[str, ...]], Any] = {}
        self.lock = threading.Lock()

    def url(self, host: str, ssh_opts: list[str], guard: RouteGuard | None) -> str:
        if not host.startswith("ssh://"):
            return host
        from overlaylab.sshdocker import SshDockerTunnel

        key = (host, tuple(ssh_opts))
        with self.lock:
            if key not in self.open:
                self.open[key] = SshDockerTunnel(host, ssh_opts, guard)
            return str(self.open[key].url)

    def close(self) -> None:
        with self.lock:
            for t in self.open.values():
                t.close()
            self.open.clear()


#: Closed by the executor at the end of every run and every destroy.
TUNNELS = Tunnels()


def client(host: str, ssh_opts: list[str] | None, guard: RouteGuard | None) -> Any:
    import docker

    url = TUNNELS.url(host, [os.path.expanduser(o) for o in ssh_opts or []], guard)
    return docker.DockerClient(base_url=url, version="1.41", timeout=60)


def _connect(ctx: Context, rec: Record) -> Any:
    """The client of a resource's provider; the Record keeps where that is, for its delete."""
    found = ctx.provider(rec.provider)
    if found is None:
        raise UnsupportedResource(
            f"{rec.type} ({rec.name}) has no explicit docker provider; the stand-in only "
            f"performs docker resources through a declared provider"
        )
    host, ssh_opts = found
    rec.state.update(host=host, sshOpts=ssh_opts)
    return client(host, ssh_opts, ctx.guard)


def _delete_by_id(ctx: Context, rec: Record, remove: Callable[[Any, str], Any]) -> None:
    """``remove(client, id)`` on the resource's daemon; already gone counts as deleted."""
    if not rec.state.get("id"):
        return
    import docker

    # Where its provider is now: an updated provider keeps its id and takes later operations,
    # deletes included, to its new host.
    host, ssh_opts = ctx.provider(rec.provider) or (rec.state["host"], rec.state.get("sshOpts"))
    c = client(host, ssh_opts, ctx.guard)
    with contextlib.suppress(docker.errors.NotFound):
        remove(c, rec.state["id"])


# --- pulumi:providers:docker ----------------------------------------------------------------------


def create_provider(
    ctx: Context, rec: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    pid = uuid.uuid4().hex
    raw_opts = inputs.get("sshOpts") or []
    # Provider config travels as strings: a list arrives JSON-encoded.
    opts = json.loads(raw_opts) if isinstance(raw_opts, str) else list(raw_opts)
    ctx.add_provider(pid, inputs["host"], opts)
    rec.state = {"host": inputs["host"], "sshOpts": opts}
    return pid, inputs


def update_provider(
    ctx: Context, rec: Record, old: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """A changed provider keeps its id: what uses it stays, and its later operations
    (deletes included) go to the new host."""
    raw_opts = inputs.get("sshOpts") or []
    opts = json.loads(raw_opts) if isinstance(raw_opts, str) else list(raw_opts)
    ctx.add_provider(old.id, inputs["host"], opts)
    rec.state = {"host": inputs["host"], "sshOpts": opts}
    return old.id, inputs


def adopt_provider(ctx: Context, rec: Record) -> None:
    ctx.add_provider(rec.id, rec.state["host"], list(rec.state.get("sshOpts") or []))


# --- RemoteImage ----------------------------------------------------------------------------------


def create_image(ctx: Context, rec: Record, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    import docker

    c = _connect(ctx, rec)
    try:
        image = c.images.get(inputs["name"])
    except docker.errors.ImageNotFound:
        image = c.images.pull(inputs["name"])
    rec.state.update(id=image.id, keepLocally=bool(inputs.get("keepLocally")))
    return image.id + inputs["name"], {**inputs, "imageId": image.id, "repoDigest": ""}


def delete_image(ctx: Context, rec: Record) -> None:
    if not rec.state.get("keepLocally"):
        _delete_by_id(ctx, rec, lambda c, i: c.images.remove(i, force=True))


# --- Network --------------------------------------------------------------------------------------


def create_network(ctx: Context, rec: Record, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    import docker

    c = _connect(ctx, rec)
    pools = [
        docker.types.IPAMPool(subnet=p.get("subnet"), gateway=p.get("gateway"))
        for p in inputs.get("ipamConfigs") or []
    ]
    net = c.networks.create(
        inputs["name"],
        driver=inputs.get("driver"),
        ipam=docker.types.IPAMConfig(pool_configs=pools) if pools else None,
        options=inputs.get("options"),
        attachable=inputs.get("attachable"),
        internal=bool(inputs.get("internal", False)),
    )
    net.reload()
    rec.state["id"] = net.id
    return net.id, {**inputs, "scope": net.attrs.get("Scope")}


def delete_network(ctx: Context, rec: Record) -> None:
    _delete_by_id(ctx, rec, lambda c, i: c.networks.get(i).remove())


# --- Container ------------------------------------------------------------------------------------


def create_container(
    ctx: Context, rec: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    client_ = _connect(ctx, rec)
    nets = inputs.get("networksAdvanced") or []
    for n in nets:
        extra = set(n) - {"name"}
        if extra:
            raise UnsupportedResource(f"networksAdvanced.{sorted(extra)} not implemented")
    c = client_.containers.create(
        inputs["image"],
        inputs.get("command"),
        name=inputs["name"],
        hostname=inputs.get("hostname"),
        network=nets[0]["name"] if nets else None,
        detach=True,
    )
    rec.state["id"] = c.id
    for n in nets[1:]:
        client_.networks.get(n["name"]).connect(c)
    try:
        c.start()
    except Exception as e:
        raise ResourceFailed(f"container {inputs['name']}: {e}") from e
    c.reload()
    if inputs.get("mustRun") and c.status != "running":
        raise ResourceFailed(f"container {inputs['name']} is {c.status}, mustRun is set")
    return c.id, {**inputs, "networkData": _network_data(c)}


def _network_data(c: Any) -> list[dict[str, Any]]:
    return [
        {
            "networkName": name,
            "ipAddress": d.get("IPAddress"),
            "macAddress": d.get("MacAddress"),
            "gateway": d.get("Gateway"),
        }
        for name, d in c.attrs["NetworkSettings"]["Networks"].items()
    ]


def delete_container(ctx: Context, rec: Record) -> None:
    _delete_by_id(ctx, rec, lambda c, i: c.containers.get(i).remove(force=True))


TYPES: dict[str, ResourceType] = {
    DOCKER_PROVIDER: ResourceType(
        DOCKER_PROVIDER,
        frozenset({"host", "version", "sshOpts"}),
        create_provider,
        update=update_provider,
        adopt=adopt_provider,
    ),
    REMOTE_IMAGE: ResourceType(
        REMOTE_IMAGE,
        # triggers: only in the diff (a change replaces); the provider stores them
        frozenset({"name", "keepLocally", "triggers"}),
        create_image,
        delete_image,
        lambda name: {"imageId": f"sha256:{name}", "repoDigest": ""},
    ),
    NETWORK: ResourceType(
        NETWORK,
        frozenset({"name", "driver", "ipamConfigs", "options", "attachable", "internal"}),
        create_network,
        delete_network,
        lambda name: {"scope": "global"},
    ),
    CONTAINER: ResourceType(
        CONTAINER,
        frozenset({"name", "image", "command", "hostname", "networksAdvanced", "mustRun"}),
        create_container,
        delete_container,
        lambda name: {"networkData": []},
    ),
}
