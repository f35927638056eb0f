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
from dataclasses import replace
from typing import Any

from overlaylab.netrule import RouteGuard
from standin.ops import Context, PartialCreate, ResourceFailed, ResourceType, UnsupportedResource
from standin.state import Record, for_state

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

#: pulumi-docker's Configure error when no daemon answers (provider/image.go:991, wrapped by
#: provider/hybrid.go:77-80).
NO_DAEMON = (
    "docker native provider returned an unexpected error from Configure: "
    "failed to connect to any docker daemon"
)


def ping(host: str) -> None:
    """Docker's ``GET /_ping`` on ``host`` (docker-py); raises when nothing answers."""
    import docker

    docker.APIClient(base_url=host, version="1.41", timeout=10).ping()


def configure_provider(ctx: Context, inputs: dict[str, Any]) -> None:
    """pulumi-docker's Configure (provider/provider.go:80-103 -> image.go:931-992): a client
    for ``host``, and, unless it is ssh://, a ping; no answer fails with its message. The
    engine calls it at every provider step, in preview too (registry.go Create/Update/Same),
    but only when every input is known (sdk/.../plugin/provider_plugin.go:1060-1076)."""
    host = inputs.get("host") or "unix:///var/run/docker.sock"
    if host.startswith("ssh://"):
        return  # image.go:944-949: no connection check for ssh
    try:
        ping(host)
    except Exception as e:
        raise ResourceFailed(f"{NO_DAEMON} (at {host}: {e})") from e


def _opts(inputs: dict[str, Any]) -> list[str]:
    raw_opts = inputs.get("sshOpts") or []
    # Provider config travels as strings: a list arrives JSON-encoded.
    return json.loads(raw_opts) if isinstance(raw_opts, str) else list(raw_opts)


def create_provider(
    ctx: Context, rec: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    configure_provider(ctx, inputs)
    pid = uuid.uuid4().hex
    opts = _opts(inputs)
    ctx.add_provider(pid, inputs["host"], opts)
    rec.state = {"host": inputs["host"], "sshOpts": opts}
    return pid, inputs


def update_provider(
    ctx: Context, rec: Record, old: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """A changed provider keeps its id: what uses it stays, and its later operations
    (deletes included) go to the new host."""
    configure_provider(ctx, inputs)
    opts = _opts(inputs)
    ctx.add_provider(old.id, inputs["host"], opts)
    rec.state = {"host": inputs["host"], "sshOpts": opts}
    return old.id, inputs


def adopt_provider(ctx: Context, rec: Record) -> None:
    """An unchanged provider is configured too (registry.go Same: "configure provider")."""
    configure_provider(ctx, {"host": rec.state["host"]})
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
    """resourceDockerContainerCreate (terraform-provider-docker v4.5.0
    internal/provider/resource_docker_container_funcs.go:43-664): create (the id is set at
    460), connect the networks, start, then the Read (750-830): a container that is not
    running with mustRun gets mustRun false in its state (no error). A failure after the id
    is set leaves the container, recorded with the error (an init error)."""
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
        # resource_docker_container_funcs.go:135-137: the set of {label, value} as a map
        labels={x["label"]: x["value"] for x in inputs.get("labels") or []} or None,
        network=nets[0]["name"] if nets else None,
        detach=True,
    )
    rec.state["id"] = c.id
    outputs = {**inputs, "networkData": []}
    try:
        for n in nets[1:]:
            client_.networks.get(n["name"]).connect(c)
        try:
            c.start()
        except Exception as e:
            raise ResourceFailed(f"Unable to start container: {e}") from e
    except Exception as e:
        raise PartialCreate(f"container {inputs['name']}: {e}", c.id, outputs) from e
    return c.id, _read_back(c, outputs)


def _read_back(c: Any, outputs: dict[str, Any]) -> dict[str, Any]:
    """The Read's part of a container's state: its networks, and mustRun false when it is
    not running (resource_docker_container_funcs.go:813-823)."""
    c.reload()
    out = {**outputs, "networkData": _network_data(c)}
    if c.status != "running" and out.get("mustRun", True):
        out["mustRun"] = False
    return out


def update_container(
    ctx: Context, rec: Record, old: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """resourceDockerContainerUpdate (resource_docker_container_funcs.go:991-1010): mustRun
    from false (in the state) to true starts the container; the rest is state only."""
    rec.state = {**old.state}
    outputs = {**old.outputs, **inputs}
    if old.outputs.get("mustRun", True) is False and inputs.get("mustRun", True):
        client_ = _connect(ctx, rec)
        c = client_.containers.get(old.id)
        try:
            c.start()
        except Exception as e:
            raise ResourceFailed(
                f"container {inputs['name']}: Unable to start container: {e}"
            ) from e
        outputs = _read_back(c, outputs)
    return old.id, outputs


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


# --- Read (refresh) -------------------------------------------------------------------------------


def _read_client(ctx: Context, rec: Record) -> Any:
    host, ssh_opts = ctx.provider(rec.provider) or (rec.state["host"], rec.state.get("sshOpts"))
    return client(host, ssh_opts, ctx.guard)


def _refreshed(rec: Record, outputs: dict[str, Any]) -> Record:
    """The bridge's Read answer: the new state, and each input the resource already had taken
    from it (pulumi-terraform-bridge pkg/tfbridge/provider.go:1481-1535, schema.go:2012-2020,
    1802-1820: only inputs that are present)."""
    inputs = {k: outputs.get(k, v) for k, v in rec.inputs.items()}
    return replace(rec, outputs=for_state(outputs), inputs=for_state(inputs))


def read_container(ctx: Context, rec: Record) -> Record | None:
    """resourceDockerContainerRead (resource_docker_container_funcs.go:750-830): gone -> no
    id (the engine drops it); stopped with mustRun -> mustRun false."""
    import docker

    try:
        c = _read_client(ctx, rec).containers.get(rec.state.get("id") or rec.id)
    except docker.errors.NotFound:
        return None
    return _refreshed(rec, _read_back(c, dict(rec.outputs)))


def read_network(ctx: Context, rec: Record) -> Record | None:
    """resourceDockerNetworkReadRefreshFunc (resource_docker_network_funcs.go:160-199): gone
    -> no id; else name, driver, internal, attachable, scope, options and ipam from the
    daemon."""
    import docker

    try:
        n = _read_client(ctx, rec).networks.get(rec.state.get("id") or rec.id)
    except docker.errors.NotFound:
        return None
    a = n.attrs
    outputs = {
        **rec.outputs,
        "name": a.get("Name"),
        "driver": a.get("Driver"),
        "internal": bool(a.get("Internal")),
        "attachable": bool(a.get("Attachable")),
        "scope": a.get("Scope"),
        "options": a.get("Options") or {},
        "ipamConfigs": [
            {"subnet": p.get("Subnet"), "gateway": p.get("Gateway")}
            for p in (a.get("IPAM") or {}).get("Config") or []
        ],
    }
    return _refreshed(rec, outputs)


def read_image(ctx: Context, rec: Record) -> Record | None:
    """resourceDockerImageRead (resource_docker_image_funcs.go:103-132): not found locally ->
    no id; else its id and imageId."""
    import docker

    name = rec.inputs.get("name") or rec.outputs.get("name")
    try:
        image = _read_client(ctx, rec).images.get(name)
    except docker.errors.ImageNotFound:
        return None
    new = _refreshed(rec, {**rec.outputs, "imageId": image.id})
    new.id = image.id + name
    new.state = {**rec.state, "id": image.id}
    return new


TYPES: dict[str, ResourceType] = {
    DOCKER_PROVIDER: ResourceType(
        DOCKER_PROVIDER,
        frozenset({"host", "version", "sshOpts"}),
        create_provider,
        update=update_provider,
        adopt=adopt_provider,
        configure=configure_provider,
    ),
    REMOTE_IMAGE: ResourceType(
        REMOTE_IMAGE,
        # triggers: only in the diff (a change replaces); the provider stores them
        frozenset({"name", "keepLocally", "triggers"}),
        create_image,
        delete_image,
        lambda name: {"imageId": f"sha256:{name}", "repoDigest": ""},
        read=read_image,
    ),
    NETWORK: ResourceType(
        NETWORK,
        frozenset({"name", "driver", "ipamConfigs", "options", "attachable", "internal"}),
        create_network,
        delete_network,
        lambda name: {"scope": "global"},
        read=read_network,
    ),
    CONTAINER: ResourceType(
        CONTAINER,
        frozenset(
            {"name", "image", "command", "hostname", "networksAdvanced", "mustRun", "labels"}
        ),
        create_container,
        delete_container,
        lambda name: {"networkData": []},
        update_container,
        read=read_container,
    ),
}
