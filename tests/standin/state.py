"""The stand-in's state: a Record per registered resource, and the file that keeps them from
``up`` to ``down``.

A Record holds what the engine knew at registration (URN, type, name, dependency edges,
provider, options) and, in ``state``, what its provider needs to delete it later. Secret
values never reach the file; private keys are referred to by id (see ``commands.SshKeys``).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pulumi.runtime import rpc

DEFAULT_STATE_DIR = Path("/var/lib/overlaylab/.standin")


@dataclass
class Record:
    """One registered resource, component or custom, in registration order."""

    urn: str
    type: str
    name: str
    deps: list[str]
    parent: str
    provider: str
    custom: bool
    delete_before_replace: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def load(state_file: Path) -> list[Record]:
    """The records of a stack that is up; none when it is not."""
    if not state_file.exists():
        return []
    return [Record(**r) for r in json.loads(state_file.read_text())]


def save(state_file: Path, records: list[Record]) -> None:
    """Write every record, atomically: a crash mid-write keeps the previous file."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(r) for r in records], indent=1))
    tmp.replace(state_file)


def forget(state_file: Path) -> None:
    """Remove a destroyed stack's file, and its directories once they are empty."""
    state_file.unlink(missing_ok=True)
    for d in (state_file.parent, state_file.parent.parent):
        with contextlib.suppress(OSError):
            d.rmdir()


def unwrap(value: Any) -> Any:
    """A secret input as the provider sees it: its plain value."""
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value
