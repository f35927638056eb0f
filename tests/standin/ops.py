"""What performing a resource type means to the stand-in, and how performing one fails.

Each resource type it performs is one ``ResourceType`` in a table (``commands.TYPES``,
``docker_ops.TYPES``): the inputs it implements, ``create`` (run while the program registers
the resource) and ``delete`` (run by destroy, from the Record alone). An operation gets what it
needs beyond its resource from a ``Context``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from overlaylab.netrule import RouteGuard
from tests.standin.state import Record


class UnsupportedResource(Exception):
    """The program declared something the stand-in cannot perform faithfully."""


class ResourceFailed(Exception):
    """A resource's real operation failed (the engine would fail `up` here)."""


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


def no_delete(ctx: Context, rec: Record) -> None:
    """For resources whose provider deletes nothing (a provider, CopyToRemote)."""


def no_placeholders(name: str) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ResourceType:
    """One resource type the stand-in performs."""

    token: str
    inputs: frozenset[str]
    create: Create
    delete: Delete = no_delete
    #: Computed outputs that look plausible when the graph is only recorded (``perform=False``).
    placeholders: Callable[[str], dict[str, Any]] = no_placeholders


def new_id(name: str) -> str:
    """An id as pulumi-command gives its resources: unique per create."""
    return f"{name}-{uuid.uuid4().hex[:8]}"
