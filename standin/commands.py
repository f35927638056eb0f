"""pulumi-command's resources, performed as the provider does: a local ``Command`` through
``sh -c`` here, a remote ``Command`` and ``CopyToRemote`` over ``ssh`` with the connection's
key (kept as a 0600 file for the run, never in the state file)."""

from __future__ import annotations

import atexit
import hashlib
import io
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pulumi

from overlaylab.netrule import RouteGuard
from standin.ops import (
    Context,
    ResourceFailed,
    ResourceType,
    UnsupportedResource,
    new_id,
)
from standin.state import Record, for_state, unwrap

COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"
COPY_TO_REMOTE = "command:remote:CopyToRemote"

CONNECTION_FIELDS = {"host", "port", "user", "privateKey", "dialErrorLimit", "perDialTimeout"}
SSH_BASE = [
    "ssh",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "BatchMode=yes",
]


class SshKeys:
    """Private keys of remote connections, as 0600 files for ssh, never in the state file."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="standin-keys-"))
        self.files: dict[str, Path] = {}
        self.lock = threading.Lock()
        atexit.register(shutil.rmtree, self.dir, True)

    def add(self, key: str) -> str:
        kid = hashlib.sha256(key.encode()).hexdigest()[:16]
        with self.lock:
            if kid not in self.files:
                f = self.dir / kid
                fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(key if key.endswith("\n") else key + "\n")
                self.files[kid] = f
        return kid

    def file(self, kid: str) -> Path:
        if kid not in self.files:
            raise ResourceFailed(f"the SSH key {kid} is not loaded: pass --ssh-key to the stand-in")
        return self.files[kid]


KEYS = SshKeys()


def connection(conn: dict[str, Any]) -> dict[str, Any]:
    """A remote connection as the state keeps it: defaults filled in, the key as its id."""
    extra = set(conn) - CONNECTION_FIELDS
    if extra:
        raise UnsupportedResource(f"connection fields {sorted(extra)} are not implemented")
    out = {
        "host": conn["host"],
        "port": int(conn.get("port") or 22),
        "user": conn.get("user") or "root",
        "dials": int(conn.get("dialErrorLimit") or 10),
        "dialTimeout": int(conn.get("perDialTimeout") or 15),
    }
    if conn.get("privateKey"):
        out["keyId"] = KEYS.add(conn["privateKey"])
    return out


def ssh_run(
    conn: dict[str, Any], script: str, guard: RouteGuard | None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``script`` on a connection's host, as pulumi-command's remote.Command does."""
    if guard is not None:
        guard.check(conn["host"])
    argv = [*SSH_BASE, "-p", str(conn["port"]), "-o", f"ConnectTimeout={conn['dialTimeout']}"]
    if conn.get("keyId"):
        argv += ["-i", str(KEYS.file(conn["keyId"]))]
    argv += [f"{conn['user']}@{conn['host']}", script]
    # Like the provider, retry the dial (ssh exits 255 when it could not connect), not the command.
    for _ in range(max(1, conn["dials"]) - 1):
        res = subprocess.run(argv, input=stdin, capture_output=True, check=False)
        if res.returncode != 255 or b"onnect" not in res.stderr:
            return res
        time.sleep(1)
    return subprocess.run(argv, input=stdin, capture_output=True, check=False)


def run_local(
    what: str,
    script: str,
    environment: dict[str, str] | None,
    cwd: str | None,
    stdout: str = "",
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """A local Command's script, as pulumi-command runs it: sh -c, its environment, its dir,
    its stdin; ``stdout`` is the previous run's (an update or a delete sees it)."""
    env = {**os.environ, **(environment or {})}
    if stdout:
        env["PULUMI_COMMAND_STDOUT"] = stdout
    proc = subprocess.run(
        ["/bin/sh", "-c", script],
        env=env,
        cwd=cwd or None,
        input=stdin or "",
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        # as pulumi-command's error, both streams: stderr's end, and stdout's start (where
        # the validator puts its failures)
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        msg = f"{what} exited {proc.returncode}: {' | '.join(tail) or 'no output'}"
        if proc.stderr.strip() and proc.stdout.strip():
            msg += "\nstdout:\n" + "\n".join(proc.stdout.strip().splitlines()[:12])
        raise ResourceFailed(msg)
    return proc


def _tail(res: subprocess.CompletedProcess[bytes]) -> str:
    """The last lines of a failed remote command: stderr, or stdout when stderr is empty."""
    return " | ".join((res.stderr or res.stdout).decode(errors="replace").strip().splitlines()[-3:])


# --- command:local:Command ------------------------------------------------------------------------


def create_local(ctx: Context, rec: Record, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return new_id(rec.name), _run_local_command(rec, inputs, inputs["create"], "")


def update_local(
    ctx: Context, rec: Record, old: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The new ``update``, or the new ``create`` where ``update`` is unset, with the new
    inputs; the previous stdout in PULUMI_COMMAND_STDOUT. The id stays."""
    script = inputs.get("update") or inputs["create"]
    return old.id, _run_local_command(rec, inputs, script, old.state.get("stdout", ""))


def _run_local_command(
    rec: Record, inputs: dict[str, Any], script: str, previous: str
) -> dict[str, Any]:
    plain = unwrap(inputs)
    out = run_local(
        f"command {rec.name}",
        script,
        plain.get("environment"),
        plain.get("dir"),
        previous,
        plain.get("stdin"),
    )
    env = inputs.get("environment") or {}
    rec.state = {
        "delete": inputs.get("delete"),
        # secret values stay out of the state file (deletes here do not need them)
        "environment": {k: v for k, v in env.items() if isinstance(v, str)},
        "dir": inputs.get("dir"),
        "stdout": out.stdout.rstrip("\n"),
    }
    return {**inputs, "stdout": out.stdout.rstrip("\n"), "stderr": out.stderr.rstrip("\n")}


def delete_local(ctx: Context, rec: Record) -> None:
    if rec.state.get("delete"):
        run_local(
            f"delete of {rec.name}",
            rec.state["delete"],
            rec.state.get("environment"),
            rec.state.get("dir"),
            rec.state.get("stdout", ""),
        )


# --- command:remote:Command -----------------------------------------------------------------------


def create_remote(ctx: Context, rec: Record, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return new_id(rec.name), _run_remote_command(ctx, rec, inputs, inputs["create"], "")


def update_remote(
    ctx: Context, rec: Record, old: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    script = inputs.get("update") or inputs["create"]
    return old.id, _run_remote_command(ctx, rec, inputs, script, old.state.get("stdout", ""))


def _run_remote_command(
    ctx: Context, rec: Record, inputs: dict[str, Any], script: str, previous: str
) -> dict[str, Any]:
    conn = connection(unwrap(inputs["connection"]))
    stdin = unwrap(inputs.get("stdin"))
    if previous:
        # as the provider does, through the session's environment
        script = (
            f"PULUMI_COMMAND_STDOUT={shlex.quote(previous)}; export PULUMI_COMMAND_STDOUT; {script}"
        )
    res = ssh_run(conn, script, ctx.guard, stdin.encode() if stdin else None)
    if res.returncode != 0:
        raise ResourceFailed(
            f"command {rec.name} on {conn['host']} exited {res.returncode}: "
            f"{_tail(res) or 'no output'}"
        )
    text = res.stdout.decode(errors="replace").rstrip("\n")
    rec.state = {"delete": inputs.get("delete"), "connection": conn, "stdout": text}
    return {**inputs, "stdout": text, "stderr": res.stderr.decode(errors="replace").rstrip("\n")}


def delete_remote(ctx: Context, rec: Record) -> None:
    script = rec.state.get("delete")
    if not script:
        return
    res = ssh_run(rec.state["connection"], script, ctx.guard)
    if res.returncode != 0:
        raise ResourceFailed(f"delete of {rec.name} exited {res.returncode}: {_tail(res)}")


# --- command:remote:CopyToRemote ------------------------------------------------------------------


def create_copy(ctx: Context, rec: Record, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A FileArchive directory as pulumi-command v1.2.1 copies it (remote/copyController.go
    sftpCopy, 229-255): remotePath is made if missing (an existing file is an error); a source
    path without a trailing "/" lands in remotePath/<its basename>, one with it has its entries
    copied into remotePath. It has no delete: files stay."""
    conn = connection(unwrap(inputs["connection"]))
    archive = _tar_of_directory(rec.name, inputs["source"])
    q = shlex.quote(inputs["remotePath"])
    into = str(getattr(inputs["source"], "path", "")).endswith("/")
    script = (
        f"if [ -e {q} ] && [ ! -d {q} ]; then echo 'remote path exists but is not a directory' "
        f">&2; exit 1; fi; mkdir -p {q} && tar -C {q} {'--strip-components=1 ' if into else ''}"
        "-xf -"
    )
    res = ssh_run(conn, script, ctx.guard, stdin=archive)
    if res.returncode != 0:
        raise ResourceFailed(f"{rec.name}: copy to {conn['host']} failed: {res.stderr.decode()}")
    return new_id(rec.name), inputs


def update_copy(
    ctx: Context, rec: Record, old: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Copies again only when the source's contents or the path changed (a new connection
    alone copies nothing)."""
    if for_state(inputs.get("source")) != old.inputs.get("source") or inputs.get(
        "remotePath"
    ) != old.inputs.get("remotePath"):
        create_copy(ctx, rec, inputs)
    return old.id, inputs


def _tar_of_directory(name: str, source: Any) -> bytes:
    path = getattr(source, "path", None)
    if not isinstance(source, pulumi.FileArchive) or not path or not Path(path).is_dir():
        raise UnsupportedResource(f"{name}: only a FileArchive of a directory is implemented")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(
            path,
            arcname=Path(path).name,  # Path drops a trailing "/": create_copy strips it
            filter=lambda t: None if "__pycache__" in t.name else t,
        )
    return buf.getvalue()


def _command_placeholders(name: str) -> dict[str, Any]:
    return {"stdout": f"{name} done", "stderr": ""}


TYPES: dict[str, ResourceType] = {
    COMMAND: ResourceType(
        COMMAND,
        frozenset(
            {
                "create",
                "update",
                "delete",
                "environment",
                "dir",
                "triggers",
                "stdin",
                "addPreviousOutputInEnv",
            }
        ),
        create_local,
        delete_local,
        _command_placeholders,
        update_local,
    ),
    REMOTE_COMMAND: ResourceType(
        REMOTE_COMMAND,
        frozenset(
            {
                "connection",
                "create",
                "update",
                "delete",
                "triggers",
                "addPreviousOutputInEnv",
                "stdin",
            }
        ),
        create_remote,
        delete_remote,
        _command_placeholders,
        update_remote,
    ),
    COPY_TO_REMOTE: ResourceType(
        COPY_TO_REMOTE,
        frozenset({"connection", "source", "remotePath", "triggers"}),
        create_copy,
        update=update_copy,
    ),
}
