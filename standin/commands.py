"""pulumi-command's resources, performed as the provider does: a local ``Command`` through
``sh -c`` here, a remote ``Command`` and ``CopyToRemote`` over ``ssh`` with the connection's
key (kept as a 0600 file for the run, never in the state file)."""

from __future__ import annotations

import atexit
import hashlib
import io
import json
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
from pulumi.runtime import rpc

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
    stderr: str = "",
    add_previous: bool | None = None,
) -> subprocess.CompletedProcess[str]:
    """A local Command's script, as pulumi-command runs it: sh -c, its environment, its dir,
    its stdin; ``stdout`` and ``stderr`` are the previous run's (an update or a delete sees
    them, unless ``addPreviousOutputInEnv`` is false: local/commandOutputs.go:81-99)."""
    env = {**os.environ, **(environment or {})}
    if add_previous is None or add_previous:
        if stdout:
            env["PULUMI_COMMAND_STDOUT"] = stdout
        if stderr:
            env["PULUMI_COMMAND_STDERR"] = stderr
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


class Secrets:
    """Secret input values a later delete needs, in this process only, by the digest the
    state file keeps in their place (``state.for_state``): never written anywhere."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.lock = threading.Lock()

    def remember(self, value: Any) -> str:
        """``value`` a secret input (or a plain secret, as the CLI's --ssh-key)."""
        plain = unwrap(value)
        digest = for_state(value)["secret"] if is_secret(value) else _digest(plain)
        with self.lock:
            self.values[digest] = plain
        return str(digest)

    def recall(self, digest: str, what: str) -> Any:
        with self.lock:
            if digest in self.values:
                return self.values[digest]
        raise UnsupportedResource(
            f"{what} needs a secret the stand-in's state does not keep (it writes no secret "
            f"values): run it in the process that ran `up`, or pass the secret again (--ssh-key)"
        )


def _digest(plain: Any) -> str:
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


SECRETS = Secrets()


def _kept(value: Any) -> Any:
    """An input as the Record keeps it for the delete: a secret as its digest."""
    return {"secretDigest": SECRETS.remember(value)} if is_secret(value) else value


def _restored(value: Any, what: str) -> Any:
    if isinstance(value, dict) and set(value) == {"secretDigest"}:
        return SECRETS.recall(value["secretDigest"], what)
    return value


def _old_inputs_for_delete(inputs: dict[str, Any], out: dict[str, str]) -> dict[str, Any]:
    """What pulumi-command's Delete runs with: the resource's state, that is its last inputs
    (stdin, the whole environment, dir, addPreviousOutputInEnv) and its last outputs
    (local/commandController.go:93-99, remote/commandController.go:86-92)."""
    env = inputs.get("environment") or {}
    if is_secret(env):  # a map with a secret value is secret as a whole (the SDK marks it)
        env = {k: {**env, "value": v} for k, v in unwrap(env).items()}
    return {
        "delete": inputs.get("delete"),
        "environment": {k: v for k, v in env.items() if not is_secret(v)},
        "secretEnvironment": {k: _kept(v) for k, v in env.items() if is_secret(v)},
        "dir": inputs.get("dir"),
        "stdin": _kept(inputs.get("stdin")),
        "addPreviousOutputInEnv": inputs.get("addPreviousOutputInEnv"),
        "stdout": out["stdout"],
        "stderr": out["stderr"],
    }


def _delete_environment(rec: Record) -> dict[str, str]:
    env = dict(rec.state.get("environment") or {})
    for k, v in (rec.state.get("secretEnvironment") or {}).items():
        env[k] = _restored(v, f"delete of {rec.name} (its environment's {k})")
    return env


def create_local(ctx: Context, rec: Record, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return new_id(rec.name), _run_local_command(rec, inputs, inputs["create"], {})


def update_local(
    ctx: Context, rec: Record, old: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The new ``update``, or the new ``create`` where ``update`` is unset, with the new
    inputs; the previous stdout and stderr in PULUMI_COMMAND_STDOUT / _STDERR
    (local/commandController.go:67-90). The id stays."""
    script = inputs.get("update") or inputs["create"]
    return old.id, _run_local_command(rec, inputs, script, old.state)


def _run_local_command(
    rec: Record, inputs: dict[str, Any], script: str, previous: dict[str, Any]
) -> dict[str, Any]:
    plain = unwrap(inputs)
    proc = run_local(
        f"command {rec.name}",
        script,
        plain.get("environment"),
        plain.get("dir"),
        previous.get("stdout", ""),
        plain.get("stdin"),
        previous.get("stderr", ""),
        plain.get("addPreviousOutputInEnv"),
    )
    out = {"stdout": proc.stdout.rstrip("\n"), "stderr": proc.stderr.rstrip("\n")}
    rec.state = _old_inputs_for_delete(inputs, out)
    return {**inputs, **out}


def delete_local(ctx: Context, rec: Record) -> None:
    if rec.state.get("delete"):
        run_local(
            f"delete of {rec.name}",
            rec.state["delete"],
            _delete_environment(rec),
            rec.state.get("dir"),
            rec.state.get("stdout", ""),
            _restored(rec.state.get("stdin"), f"delete of {rec.name} (its stdin)"),
            rec.state.get("stderr", ""),
            rec.state.get("addPreviousOutputInEnv"),
        )


# --- command:remote:Command -----------------------------------------------------------------------


def create_remote(ctx: Context, rec: Record, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return new_id(rec.name), _run_remote_command(ctx, rec, inputs, inputs["create"], {})


def update_remote(
    ctx: Context, rec: Record, old: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    script = inputs.get("update") or inputs["create"]
    return old.id, _run_remote_command(ctx, rec, inputs, script, old.state)


def _with_previous(script: str, previous: dict[str, Any]) -> str:
    """The previous outputs in PULUMI_COMMAND_STDOUT / _STDERR, unless
    ``addPreviousOutputInEnv`` is false (remote/commandOutputs.go:51-70). The provider sets
    them through the session (sshd's AcceptEnv decides); here, in the script."""
    if previous.get("addPreviousOutputInEnv") is False:
        return script
    for var, key in (("PULUMI_COMMAND_STDOUT", "stdout"), ("PULUMI_COMMAND_STDERR", "stderr")):
        if previous.get(key):
            script = f"{var}={shlex.quote(previous[key])}; export {var}; {script}"
    return script


def _run_remote_command(
    ctx: Context, rec: Record, inputs: dict[str, Any], script: str, previous: dict[str, Any]
) -> dict[str, Any]:
    conn = connection(unwrap(inputs["connection"]))
    stdin = unwrap(inputs.get("stdin"))
    if previous:
        previous = {**previous, "addPreviousOutputInEnv": inputs.get("addPreviousOutputInEnv")}
    script = _with_previous(script, previous)
    res = ssh_run(conn, script, ctx.guard, stdin.encode() if stdin else None)
    if res.returncode != 0:
        raise ResourceFailed(
            f"command {rec.name} on {conn['host']} exited {res.returncode}: "
            f"{_tail(res) or 'no output'}"
        )
    out = {
        "stdout": res.stdout.decode(errors="replace").rstrip("\n"),
        "stderr": res.stderr.decode(errors="replace").rstrip("\n"),
    }
    rec.state = {**_old_inputs_for_delete(inputs, out), "connection": conn}
    return {**inputs, **out}


def delete_remote(ctx: Context, rec: Record) -> None:
    """The old ``delete`` with the old stdin and the previous outputs, over the old
    connection (remote/commandController.go:86-92)."""
    script = rec.state.get("delete")
    if not script:
        return
    stdin = _restored(rec.state.get("stdin"), f"delete of {rec.name} (its stdin)")
    res = ssh_run(
        rec.state["connection"],
        _with_previous(script, rec.state),
        ctx.guard,
        stdin.encode() if stdin else None,
    )
    if res.returncode != 0:
        raise ResourceFailed(f"delete of {rec.name} exited {res.returncode}: {_tail(res)}")


# --- command:remote:CopyToRemote ------------------------------------------------------------------


def create_copy(ctx: Context, rec: Record, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """pulumi-command's sftpCopy (remote/copyController.go:203-320), over ssh: a directory
    ``d`` lands in ``remotePath/d`` (made, with its parents, if missing); ``d/`` (a trailing
    slash) puts its contents in ``remotePath``; a file goes into ``remotePath`` if that is a
    directory, else becomes it. Files are written as sftp writes them (an existing file keeps
    its mode, a new one gets the umask's), nothing is removed, and it has no delete."""
    conn = connection(unwrap(inputs["connection"]))
    source = _source_path(rec.name, inputs["source"])
    archive = _tar_of(source)
    script = copy_script(source, inputs["remotePath"], Path(source).is_dir())
    res = ssh_run(conn, script, ctx.guard, stdin=archive)
    if res.returncode != 0:
        raise ResourceFailed(f"{rec.name}: copy to {conn['host']} failed: {_tail(res)}")
    return new_id(rec.name), inputs


def update_copy(
    ctx: Context, rec: Record, old: Record, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Copies again only when the source's hash or the path changed (a new connection, or
    the same contents at another local path, copies nothing: copyController.go:148)."""
    old_hash = (old.inputs.get("source") or {}).get("sha256")
    new_hash = (for_state(inputs.get("source")) or {}).get("sha256")
    if new_hash != old_hash or inputs.get("remotePath") != old.inputs.get("remotePath"):
        create_copy(ctx, rec, inputs)
    return old.id, inputs


def copy_script(source: str, dest: str, is_dir: bool) -> str:
    """The remote side of sftpCopy: the source arrives on stdin as a tar (a directory's
    contents, or the file as ``f``), unpacked in a temporary directory, then written out as
    sftpCopy writes it (copyController.go:221-268; copyDir 293-320: WalkDir order, Mkdir,
    Create)."""
    q = shlex.quote(dest)
    head = (
        "set -e; t=$(mktemp -d); trap 'rm -rf \"$t\"' EXIT; "
        'tar -C "$t" --no-same-owner --no-same-permissions -xf -; '
        f"dest={q}; "
    )
    if not is_dir:
        base = shlex.quote(Path(source).name)
        return head + (
            f'if [ -d "$dest" ]; then d="$dest"/{base}; '
            'elif [ ! -e "$dest" ]; then mkdir -p "$(dirname "$dest")"; d="$dest"; '
            'else d="$dest"; fi; cat "$t/f" > "$d"'
        )
    body = 'if [ ! -e "$dest" ]; then mkdir -p "$dest"; fi; '
    if source.endswith("/"):
        body += 'd="$dest"; '
    else:
        base = shlex.quote(Path(source).name)
        body += (
            f'd="$dest"/{base}; '
            '[ -d "$dest" ] || { echo "failed to stat remote path $d: not a directory" >&2; '
            "exit 1; }; "
        )
    walk = (
        # the root of the walk, then every entry in lexical order (parents first)
        'if [ -e "$d" ]; then [ -d "$d" ] || { echo "remote path $d exists but is not a '
        'directory" >&2; exit 1; }; else mkdir "$d"; fi; '
        'cd "$t"; find . -mindepth 1 | LC_ALL=C sort | while IFS= read -r p; do '
        'p=${p#./}; r="$d/$p"; '
        'if [ -d "$p" ]; then '
        'if [ -e "$r" ]; then [ -d "$r" ] || { echo "remote path $r exists but is not a '
        'directory" >&2; exit 1; }; else mkdir "$r"; fi; '
        'else cat "$p" > "$r"; fi; done'
    )
    return head + body + walk


def _source_path(name: str, source: Any) -> str:
    """The path of a FileArchive or FileAsset, as given (a trailing slash matters)."""
    path = getattr(source, "path", None)
    if not isinstance(source, pulumi.FileArchive | pulumi.FileAsset) or not path:
        raise UnsupportedResource(f"{name}: only a FileArchive or FileAsset path is implemented")
    if not Path(path).exists():
        raise ResourceFailed(f"{name}: open {path}: no such file or directory")
    return str(path)


def _tar_of(path: str) -> bytes:
    """Everything under a directory (as ``os.DirFS`` walks it: nothing left out, symlinks
    followed), or one file as ``f``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", dereference=True) as tar:
        if Path(path).is_dir():
            for child in sorted(Path(path).iterdir()):
                tar.add(child, arcname=child.name)
        else:
            tar.add(path, arcname="f")
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
