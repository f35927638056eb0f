"""What performing a resource type means to the stand-in, and how performing one fails.

Each resource type it performs is one ``ResourceType`` in a table (``commands.TYPES``,
``docker_ops.TYPES``): the inputs it implements, ``create`` (run while the program registers
the resource), ``update`` (run in its place when the diff says update), ``delete`` (run by
destroy or after an update's program, from the Record alone) and ``adopt`` (what an unchanged
resource of the last run needs known in this one). An operation gets what it
needs beyond its resource from a ``Context``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from overlaylab.netrule import RouteGuard
from standin.state import Record


class UnsupportedResource(Exception):
    """The program declared something the stand-in cannot perform faithfully."""


class ResourceFailed(Exception):
    """A resource's real operation failed (the engine would fail `up` here)."""


class PartialCreate(ResourceFailed):
    """A create that failed after the resource came to exist: the provider answers with its id
    and state along with the error (the bridge's initializationError, pulumi-terraform-bridge
    pkg/tfbridge/provider.go:1340-1391), and the engine records it with its init errors
    (pulumi pkg/resource/deploy/step.go:383-391, 443-447)."""

    def __init__(self, message: str, rid: str, outputs: dict[str, Any]) -> None:
        super().__init__(message)
        self.rid = rid
        self.outputs = outputs


@dataclass
class Context:
    """What operations share within one run: the route check for lab addresses, and the Docker
    providers created so far (id -> host and ssh options), as the engine routes a resource's
    operations to its provider."""

    guard: RouteGuard | None = None
    providers: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_provider(self, pid: str, host: str, ssh_opts: list[str]) -> None:
        with self.lock:
            self.providers[pid] = (host, ssh_opts)

    def provider(self, ref: str) -> tuple[str, list[str]] | None:
        """The provider behind a provider reference (``<urn>::<id>``), if created here."""
        with self.lock:
            return self.providers.get(ref.rsplit("::", 1)[-1])


#: Performs the resource with its declared inputs, fills ``Record.state`` with what its delete
#: will need, and returns the id and outputs the engine hands back to the program.
Create = Callable[[Context, Record, dict[str, Any]], tuple[str, dict[str, Any]]]
#: Deletes the resource described by its Record (the delete the provider would run).
Delete = Callable[[Context, Record], None]
#: Updates in place: the new Record, the old one (its state), the new inputs -> id, outputs.
Update = Callable[[Context, Record, Record, dict[str, Any]], tuple[str, dict[str, Any]]]
#: Makes an unchanged resource of an earlier run known to this run (a provider's host).
Adopt = Callable[[Context, Record], None]
#: The provider's Read (refresh): the resource as it is now (its Record with new outputs, and
#: the inputs it had taken from them), or None when it is gone.
Read = Callable[[Context, Record], "Record | None"]


def no_delete(ctx: Context, rec: Record) -> None:
    """For resources whose provider deletes nothing (a provider, CopyToRemote)."""


def no_placeholders(name: str) -> dict[str, Any]:
    return {}


def update_state_only(
    ctx: Context, rec: Record, old: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """An update the provider makes in its state only (e.g. a container's ``mustRun``)."""
    rec.state = {**old.state}
    return old.id, {**old.outputs, **inputs}


def no_adopt(ctx: Context, rec: Record) -> None:
    """Most resources need nothing in this run's context to stay as they are."""


@dataclass(frozen=True)
class ResourceType:
    """One resource type the stand-in performs."""

    token: str
    inputs: frozenset[str]
    create: Create
    delete: Delete = no_delete
    #: Computed outputs that look plausible when the graph is only recorded (``perform=False``).
    placeholders: Callable[[str], dict[str, Any]] = no_placeholders
    update: Update = update_state_only
    adopt: Adopt = no_adopt
    #: None: the provider has no Read, a refresh keeps the resource as it is.
    read: Read | None = None
    #: A provider resource's Configure, run in preview too when its inputs are all known.
    configure: Callable[[Context, dict[str, Any]], None] | None = None


def new_id(name: str) -> str:
    """An id as pulumi-command gives its resources: unique per create."""
    return f"{name}-{uuid.uuid4().hex[:8]}"
