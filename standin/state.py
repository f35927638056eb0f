"""The stand-in's state: a Record per registered resource, and the file that keeps them from
``up`` to ``down``.

A Record holds what the engine knew at registration (URN, type, name, dependency edges,
provider, options) and, in ``state``, what its provider needs to delete it later. Secret
values never reach the file; private keys are referred to by id (see ``commands.SshKeys``).
"""

from __future__ import annotations

import contextlib
import hashlib
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
    # What the engine keeps to diff the next update: the id, the inputs and outputs as
    # declared (secrets as hashes), the property dependencies and the resource options.
    id: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    prop_deps: dict[str, list[str]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    pending_delete: bool = False  # an old copy replaced create-first, not deleted yet
    # (standin-providers) a create that failed after the resource existed: the engine's
    # InitErrors (pulumi step.go:383-391); the next up updates it even when unchanged
    init_errors: list[str] = field(default_factory=list)


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


def for_state(value: Any) -> Any:
    """A value as the state file keeps it and the diff compares it: a secret as a hash of its
    value (never the value), a file archive as its path and a hash of its contents."""
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        digest = hashlib.sha256(json.dumps(unwrap(value), sort_keys=True).encode()).hexdigest()
        return {"secret": digest[:16]}
    if isinstance(value, dict):
        return {k: for_state(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [for_state(v) for v in value]
    path = getattr(value, "path", None)
    if path is not None and type(value).__name__ in ("FileArchive", "FileAsset"):
        return {"fileArchive": str(path), "sha256": tree_hash(Path(path))}
    return value


def tree_hash(path: Path) -> str:
    """Names and contents of a file or directory (``__pycache__`` left out), as a digest."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if "__pycache__" in f.parts:
            continue
        h.update(str(f.relative_to(path) if f != path else f.name).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
