"""``refresh`` (and ``up --refresh``): each resource's provider Read, the state replaced by
what it answers.

- pulumi-command has no Read: the default Read of pulumi-go-provider (v1.3.0
  infer/resource.go:1353-1363) answers the state as it is, so Commands and CopyToRemote stay;
- the Docker resources are read through their provider's daemon (docker_ops ``read_*``): a
  missing container, network or image answers no id and leaves the state (the next ``up``
  creates it again); a stopped container with mustRun gets mustRun false (the next ``up``
  updates it, which starts it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from overlaylab.netrule import RouteGuard
from standin import docker_ops
from standin.engine import TYPES
from standin.ops import Context
from standin.state import Record


@dataclass
class Refreshed:
    records: list[Record]
    changed: list[str] = field(default_factory=list)  # names whose state the Read changed
    gone: list[str] = field(default_factory=list)  # names the Read found missing


def refresh(records: list[Record], guard: RouteGuard | None = None) -> Refreshed:
    ctx = Context(guard)
    for r in records:
        if r.type == docker_ops.DOCKER_PROVIDER and r.id and r.state.get("host"):
            ctx.add_provider(r.id, r.state["host"], list(r.state.get("sshOpts") or []))
    out = Refreshed([])
    try:
        for r in records:
            kind = TYPES.get(r.type)
            if not r.custom or kind is None or kind.read is None:
                out.records.append(r)
                continue
            new = kind.read(ctx, r)
            if new is None:
                out.gone.append(r.name)
                continue
            if (new.inputs, new.outputs, new.id) != (r.inputs, r.outputs, r.id):
                out.changed.append(r.name)
            out.records.append(new)
    finally:
        docker_ops.TUNNELS.close()
    return out
