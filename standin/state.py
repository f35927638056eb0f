"""The stand-in's state: a Record per registered resource, and the file that keeps them from
``up`` to ``down``.

A Record holds what the engine knew at registration (URN, type, name, dependency edges,
provider, options) and, in ``state``, what its provider needs to delete it later. Secret
values never reach the file; private keys are referred to by id (see ``commands.SshKeys``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Sequence
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
    # Outputs the engine keeps secret: additional_secret_outputs, and those whose input was.
    secret_outputs: list[str] = field(default_factory=list)
    # A create that failed after the resource existed: the engine's
    # InitErrors (pulumi step.go:383-391); the next up updates it even when unchanged
    init_errors: list[str] = field(default_factory=list)


#: The engine's operation types (pulumi/pulumi pkg/resource/operation.go).
CREATING, UPDATING, DELETING = "creating", "updating", "deleting"


@dataclass
class Operation:
    """A step in flight: recorded in the file before the step starts, removed once it ended."""

    type: str
    resource: Record


def load(state_file: Path) -> list[Record]:
    """The records of a stack that is up; none when it is not."""
    return _load(state_file)[0]


def load_pending(state_file: Path) -> list[Operation]:
    """The operations a run left in flight (interrupted): none after a run that ended."""
    return _load(state_file)[1]


def _load(state_file: Path) -> tuple[list[Record], list[Operation]]:
    if not state_file.exists():
        return [], []
    text = state_file.read_text()
    data = json.loads(text)
    if isinstance(data, list):  # the format before pending operations
        data = {"resources": data}
    if _SECRET_REF in text:
        sfile = secrets_file(state_file)
        data = _reveal(data, _read_secrets(sfile)["values"], sfile)
    ops = [
        Operation(o["type"], Record(**o["resource"])) for o in data.get("pending_operations", [])
    ]
    return [Record(**r) for r in data["resources"]], ops


def save(state_file: Path, records: list[Record], pending: Sequence[Operation] = ()) -> None:
    """Write every record and the operations in flight, atomically: a crash mid-write keeps
    the previous file. Secret output values go to the 0600 secrets file, written first."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "resources": [asdict(r) for r in records],
        "pending_operations": [{"type": o.type, "resource": asdict(o.resource)} for o in pending],
    }
    hidden = {s for r in [*records, *(o.resource for o in pending)] for s in _secret_values(r)}
    sfile = secrets_file(state_file)
    if hidden or sfile.exists():
        table = _read_secrets(sfile)
        key = bytes.fromhex(table["key"])
        values: dict[str, str] = {}
        data = _hide(data, hidden, key, values)
        # Keep what the file on disk still refers to, until it is replaced below.
        old = state_file.read_text() if state_file.exists() else ""
        for ref in re.findall(rf'"{_SECRET_REF}": "([0-9a-f]+)"', old):
            if ref in table["values"]:
                values.setdefault(ref, table["values"][ref])
        _write_private(sfile, json.dumps({"key": table["key"], "values": values}))
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(state_file)


def outputs_file(state_file: Path) -> Path:
    return state_file.with_suffix(".outputs.json")


def save_outputs(state_file: Path, outputs: dict[str, Any]) -> None:
    """The stack's outputs after an `up` that succeeded (the checkpoint's root Stack outputs),
    for `stack output`."""
    tmp = outputs_file(state_file).with_suffix(".tmp")
    tmp.write_text(json.dumps(outputs, indent=1, default=str))
    tmp.replace(outputs_file(state_file))


def records_file(state_file: Path) -> Path:
    """Where the validator run by `up` leaves its records for the page (see ``cli``)."""
    return state_file.with_suffix(".validation.json")


def page_file(state_file: Path) -> Path:
    """The page of the lab that `up` draws from them."""
    return state_file.with_suffix(".html")


def load_outputs(state_file: Path) -> dict[str, Any] | None:
    f = outputs_file(state_file)
    return dict(json.loads(f.read_text())) if f.exists() and state_file.exists() else None


def forget(state_file: Path) -> None:
    """Remove a destroyed stack's file, and its directories once they are empty."""
    state_file.unlink(missing_ok=True)
    secrets_file(state_file).unlink(missing_ok=True)
    outputs_file(state_file).unlink(missing_ok=True)
    records_file(state_file).unlink(missing_ok=True)
    page_file(state_file).unlink(missing_ok=True)
    for d in (state_file.parent, state_file.parent.parent):
        with contextlib.suppress(OSError):
            d.rmdir()


def pending_warning(ops: Sequence[Operation]) -> str:
    """What the engine warns, in one line, when a run starts on a state with operations in
    flight (pkg/resource/deploy/deployment_executor.go printPendingOperationsWarning)."""
    items = "; ".join(f"{o.resource.urn}, interrupted while {o.type}" for o in ops)
    return (
        f"warning: Attempting to deploy or update resources with {len(ops)} pending operations "
        f"from previous deployment: {items}. These resources are in an unknown state because "
        "the run was interrupted while waiting for changes to them to complete: check them on "
        "the hosts; pending CREATE operations stay in the state until cleared (`pulumi refresh "
        "--clear-pending-creates`, or `pulumi stack export`/`import`)"
    )


# --- secrets ------------------------------------------------------------------------------------

_SECRET_REF = "secret-ref"


def secrets_file(state_file: Path) -> Path:
    """Where a state file's secret values are kept (mode 0600)."""
    return state_file.with_name(f"{state_file.stem}.secrets.json")


def contains_secret(value: Any) -> bool:
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_secret(v) for v in value)
    return False


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _secret_values(rec: Record) -> set[str]:
    return {s for k in rec.secret_outputs for s in _strings(rec.outputs.get(k)) if s}


def _hide(value: Any, hidden: set[str], key: bytes, values: dict[str, str]) -> Any:
    """Every string that is a secret value, anywhere, replaced with a reference to it."""
    if isinstance(value, str) and value in hidden:
        ref = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]
        values[ref] = value
        return {_SECRET_REF: ref}
    if isinstance(value, dict):
        return {k: _hide(v, hidden, key, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v, hidden, key, values) for v in value]
    return value


def _reveal(value: Any, values: dict[str, str], sfile: Path) -> Any:
    if isinstance(value, dict) and set(value) == {_SECRET_REF}:
        if value[_SECRET_REF] not in values:
            raise ValueError(f"the state refers to a secret that {sfile} does not hold")
        return values[value[_SECRET_REF]]
    if isinstance(value, dict):
        return {k: _reveal(v, values, sfile) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v, values, sfile) for v in value]
    return value


def _read_secrets(sfile: Path) -> dict[str, Any]:
    if sfile.exists():
        table: dict[str, Any] = json.loads(sfile.read_text())
        return table
    return {"key": secrets.token_hex(32), "values": {}}


def _write_private(path: Path, text: str) -> None:
    """Atomically, readable by its owner only."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


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
