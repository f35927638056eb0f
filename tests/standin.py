"""A test-only stand-in for the Pulumi engine: runs the real program and performs it for real.

No Pulumi CLI or provider plugin can be installed on these machines, so tests cannot run
``pulumi up``. This runs ``__main__.py`` under ``pulumi.runtime.set_mocks`` with a ``Mocks``
that, instead of faking, *does* what each registered resource declares, in the order the
Pulumi runtime registers them (a resource only after what it depends on; independent ones
concurrently, from a thread pool):

- ``command:local:Command``: runs ``create`` with its environment and dir; records stdout;
  destroy runs ``delete``.
- ``pulumi:providers:docker``: remembers its ``host``.
- ``docker:index/remoteImage:RemoteImage``, ``.../network:Network``, ``.../container:Container``:
  the same operation through Docker's Engine API on that provider's daemon, with exactly the
  declared arguments.

Anything else, or any input it does not implement, is refused, so it can never silently drop
what the program declares. Destroy runs in reverse dependency order (dependents first,
independent ones concurrently) and goes on past a failed delete so nothing is left behind.

This is test tooling, not a deployment tool:

    python -m tests.standin up --stack local     # like `pulumi up` on the local stack
    python -m tests.standin down --stack local   # like `pulumi destroy`
    python -m tests.standin preview --stack local
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import concurrent.futures as cf
import contextlib
import ctypes
import hashlib
import io
import json
import os
import runpy
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as psettings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from overlaylab.netrule import RouteGuard  # noqa: E402
from overlaylab.stackconfig import PROJECT, raw_from_file  # noqa: E402

DEFAULT_STATE_DIR = Path("/var/lib/overlaylab/.standin")

COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"
COPY_TO_REMOTE = "command:remote:CopyToRemote"
DOCKER_PROVIDER = "pulumi:providers:docker"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
CONTAINER = "docker:index/container:Container"

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

ALLOWED_INPUTS: dict[str, set[str]] = {
    COMMAND: {"create", "delete", "environment", "dir", "triggers", "addPreviousOutputInEnv"},
    REMOTE_COMMAND: {
        "connection",
        "create",
        "delete",
        "triggers",
        "addPreviousOutputInEnv",
        "stdin",
    },
    COPY_TO_REMOTE: {"connection", "source", "remotePath", "triggers"},
    DOCKER_PROVIDER: {"host", "version", "sshOpts"},
    REMOTE_IMAGE: {"name", "keepLocally"},
    NETWORK: {"name", "driver", "ipamConfigs", "options", "attachable", "internal"},
    CONTAINER: {"name", "image", "command", "hostname", "networksAdvanced", "mustRun"},
}


class UnsupportedResource(Exception):
    """The program declared something the stand-in cannot perform faithfully."""


class ResourceFailed(Exception):
    """A resource's real operation failed (the engine would fail `up` here)."""


@dataclass
class Record:
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


def unwrap(value: Any) -> Any:
    """A secret input as the provider sees it: its plain value."""
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


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


class Tunnels:
    """ssh:// Docker hosts reached through forwarded sockets, one per (host, options)."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, tuple[str, ...]], Any] = {}
        self.lock = threading.Lock()
        self.guard: RouteGuard | None = None

    def url(self, host: str, ssh_opts: list[str]) -> str:
        if not host.startswith("ssh://"):
            return host
        from overlaylab.sshdocker import SshDockerTunnel

        key = (host, tuple(ssh_opts))
        with self.lock:
            if key not in self.open:
                self.open[key] = SshDockerTunnel(host, ssh_opts, self.guard)
            return str(self.open[key].url)

    def close(self) -> None:
        with self.lock:
            for t in self.open.values():
                t.close()
            self.open.clear()


TUNNELS = Tunnels()


def _docker(host: str, ssh_opts: list[str] | None = None) -> Any:
    import docker

    url = TUNNELS.url(host, [os.path.expanduser(o) for o in ssh_opts or []])
    return docker.DockerClient(base_url=url, version="1.41", timeout=60)


def _connection(conn: dict[str, Any]) -> dict[str, Any]:
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


class RealEngine(pmocks.Mocks):
    """``Mocks`` that performs each resource for real and records what it did."""

    def __init__(
        self,
        preview: bool = False,
        state_file: Path | None = None,
        perform: bool = True,
        guard: RouteGuard | None = None,
    ) -> None:
        self.guard = guard
        TUNNELS.guard = guard
        self.preview = preview
        self.perform = perform and not preview
        self.state_file = state_file
        self.records: list[Record] = []
        self.providers: dict[str, tuple[str, list[str]]] = {}  # id -> (host, ssh opts)
        self.inputs: dict[str, dict[str, Any]] = {}  # urn -> declared inputs
        self.lock = threading.Lock()
        self.local = threading.local()

    # --- registration ---------------------------------------------------------------------------

    def call(
        self, args: pmocks.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise UnsupportedResource(f"function call {args.token} is not implemented by the stand-in")

    def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        meta = getattr(self.local, "meta", {})
        rec = Record(
            urn=meta.get("urn", ""),
            type=args.typ,
            name=args.name,
            deps=meta.get("deps", []),
            parent=meta.get("parent", ""),
            provider=args.provider or "",
            custom=bool(args.custom),
            delete_before_replace=meta.get("deleteBeforeReplace", False),
        )
        with self.lock:
            self.inputs[rec.urn] = dict(args.inputs)
        if not args.custom:
            with self.lock:
                self.records.append(rec)
            return "", {}
        allowed = ALLOWED_INPUTS.get(args.typ)
        if allowed is None:
            raise UnsupportedResource(
                f"{args.typ} ({args.name}) is not implemented by the stand-in"
            )
        unknown = sorted(set(args.inputs) - allowed)
        if unknown:
            raise UnsupportedResource(
                f"{args.typ} ({args.name}) declares inputs the stand-in does not implement: "
                f"{', '.join(unknown)}"
            )
        start = time.monotonic()
        if self.perform:
            rid, outputs = self._create(rec, args)
        else:
            rid, outputs = self._pretend(args)
        rec.seconds = time.monotonic() - start
        with self.lock:
            self.records.append(rec)
            self._save()
        return rid, outputs

    def _pretend(self, args: pmocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        """What the engine returns without doing anything: in preview, computed outputs are
        unknown (absent) and ids empty; otherwise they are plausible placeholders."""
        if self.preview:
            return "", dict(args.inputs)
        by_type: dict[str, dict[str, Any]] = {
            COMMAND: {"stdout": f"{args.name} done", "stderr": ""},
            REMOTE_COMMAND: {"stdout": f"{args.name} done", "stderr": ""},
            REMOTE_IMAGE: {"imageId": f"sha256:{args.name}", "repoDigest": ""},
            NETWORK: {"scope": "global"},
            CONTAINER: {"networkData": []},
        }
        computed = by_type.get(args.typ, {})
        return f"{args.name}-id", {**args.inputs, **computed}

    def _create(self, rec: Record, args: pmocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        if args.typ == COMMAND:
            out = self._run_shell(args.name, inputs["create"], unwrap(inputs), "")
            env = inputs.get("environment") or {}
            rec.state = {
                "delete": inputs.get("delete"),
                # secret values stay out of the state file (deletes here do not need them)
                "environment": {k: v for k, v in env.items() if isinstance(v, str)},
                "dir": inputs.get("dir"),
                "stdout": out.stdout.rstrip("\n"),
            }
            return f"{args.name}-{uuid.uuid4().hex[:8]}", {
                **inputs,
                "stdout": out.stdout.rstrip("\n"),
                "stderr": out.stderr.rstrip("\n"),
            }
        if args.typ == REMOTE_COMMAND:
            conn = _connection(unwrap(inputs["connection"]))
            stdin = unwrap(inputs.get("stdin"))
            res = ssh_run(conn, inputs["create"], self.guard, stdin.encode() if stdin else None)
            text, err = res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
            if res.returncode != 0:
                tail = (err or text).strip().splitlines()[-3:]
                raise ResourceFailed(
                    f"command {args.name} on {conn['host']} exited {res.returncode}: "
                    f"{' | '.join(tail) or 'no output'}"
                )
            rec.state = {"delete": inputs.get("delete"), "connection": conn}
            return f"{args.name}-{uuid.uuid4().hex[:8]}", {
                **inputs,
                "stdout": text.rstrip("\n"),
                "stderr": err.rstrip("\n"),
            }
        if args.typ == COPY_TO_REMOTE:
            conn = _connection(unwrap(inputs["connection"]))
            self._copy(args.name, conn, inputs["source"], inputs["remotePath"])
            return f"{args.name}-{uuid.uuid4().hex[:8]}", inputs
        if args.typ == DOCKER_PROVIDER:
            pid = uuid.uuid4().hex
            raw_opts = inputs.get("sshOpts") or []
            # Provider config travels as strings: a list arrives JSON-encoded.
            opts = json.loads(raw_opts) if isinstance(raw_opts, str) else list(raw_opts)
            with self.lock:
                self.providers[pid] = (inputs["host"], opts)
            rec.state = {"host": inputs["host"], "sshOpts": opts}
            return pid, inputs
        host, ssh_opts = self._provider_host(args)
        rec.state.update(host=host, sshOpts=ssh_opts)
        client = _docker(host, ssh_opts)
        if args.typ == REMOTE_IMAGE:
            import docker

            try:
                image = client.images.get(inputs["name"])
            except docker.errors.ImageNotFound:
                image = client.images.pull(inputs["name"])
            rec.state.update(id=image.id, keepLocally=bool(inputs.get("keepLocally")))
            return image.id + inputs["name"], {**inputs, "imageId": image.id, "repoDigest": ""}
        if args.typ == NETWORK:
            import docker

            pools = [
                docker.types.IPAMPool(subnet=c.get("subnet"), gateway=c.get("gateway"))
                for c in inputs.get("ipamConfigs") or []
            ]
            net = client.networks.create(
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
        if args.typ == CONTAINER:
            return self._create_container(rec, client, inputs)
        raise UnsupportedResource(args.typ)

    def _create_container(
        self, rec: Record, client: Any, inputs: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        nets = inputs.get("networksAdvanced") or []
        for n in nets:
            extra = set(n) - {"name"}
            if extra:
                raise UnsupportedResource(f"networksAdvanced.{sorted(extra)} not implemented")
        c = client.containers.create(
            inputs["image"],
            inputs.get("command"),
            name=inputs["name"],
            hostname=inputs.get("hostname"),
            network=nets[0]["name"] if nets else None,
            detach=True,
        )
        rec.state["id"] = c.id
        for n in nets[1:]:
            client.networks.get(n["name"]).connect(c)
        try:
            c.start()
        except Exception as e:
            raise ResourceFailed(f"container {inputs['name']}: {e}") from e
        c.reload()
        if inputs.get("mustRun") and c.status != "running":
            raise ResourceFailed(f"container {inputs['name']} is {c.status}, mustRun is set")
        network_data = [
            {
                "networkName": name,
                "ipAddress": d.get("IPAddress"),
                "macAddress": d.get("MacAddress"),
                "gateway": d.get("Gateway"),
            }
            for name, d in c.attrs["NetworkSettings"]["Networks"].items()
        ]
        return c.id, {**inputs, "networkData": network_data}

    def _copy(self, name: str, conn: dict[str, Any], source: Any, remote_path: str) -> None:
        """CopyToRemote of a FileArchive directory: into remote_path if that is a directory
        already, else as remote_path (pulumi-command's documented behaviour)."""
        path = getattr(source, "path", None)
        if not isinstance(source, pulumi.FileArchive) or not path or not Path(path).is_dir():
            raise UnsupportedResource(f"{name}: only a FileArchive of a directory is implemented")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(
                path,
                arcname=Path(path).name,
                filter=lambda t: None if "__pycache__" in t.name else t,
            )
        q = shlex.quote(remote_path)
        script = (
            f"if [ -d {q} ]; then tar -C {q} -xf -; else mkdir -p {q} && "
            f"tar -C {q} --strip-components=1 -xf -; fi"
        )
        res = ssh_run(conn, script, self.guard, stdin=buf.getvalue())
        if res.returncode != 0:
            raise ResourceFailed(f"{name}: copy to {conn['host']} failed: {res.stderr.decode()}")

    def _provider_host(self, args: pmocks.MockResourceArgs) -> tuple[str, list[str]]:
        pid = (args.provider or "").rsplit("::", 1)[-1]
        with self.lock:
            host = self.providers.get(pid)
        if host is None:
            raise UnsupportedResource(
                f"{args.typ} ({args.name}) has no explicit docker provider; the stand-in only "
                f"performs docker resources through a declared provider"
            )
        return host

    def _run_shell(
        self, name: str, script: str, inputs: dict[str, Any], stdout: str
    ) -> subprocess.CompletedProcess[str]:
        return run_local(
            f"command {name}", script, inputs.get("environment"), inputs.get("dir"), stdout
        )

    # --- state and destroy ---------------------------------------------------------------------

    def _save(self) -> None:
        if self.state_file is None or not self.perform:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(r) for r in self.records], indent=1))
        tmp.replace(self.state_file)

    @staticmethod
    def load(state_file: Path) -> list[Record]:
        if not state_file.exists():
            return []
        return [Record(**r) for r in json.loads(state_file.read_text())]


def run_local(
    what: str, script: str, environment: dict[str, str] | None, cwd: str | None, stdout: str = ""
) -> subprocess.CompletedProcess[str]:
    """A local Command's script, as pulumi-command runs it: sh -c, its environment, its dir."""
    env = {**os.environ, **(environment or {})}
    if stdout:
        env["PULUMI_COMMAND_STDOUT"] = stdout
    proc = subprocess.run(
        ["/bin/sh", "-c", script],
        env=env,
        cwd=cwd or None,
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


def _delete_one(rec: Record) -> None:
    if rec.type == COMMAND:
        if rec.state.get("delete"):
            run_local(
                f"delete of {rec.name}",
                rec.state["delete"],
                rec.state.get("environment"),
                rec.state.get("dir"),
                rec.state.get("stdout", ""),
            )
        return
    if rec.type == REMOTE_COMMAND:
        script = rec.state.get("delete")
        if not script:
            return
        res = ssh_run(rec.state["connection"], script, TUNNELS.guard)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).decode(errors="replace").strip().splitlines()[-3:]
            raise ResourceFailed(
                f"delete of {rec.name} exited {res.returncode}: {' | '.join(tail)}"
            )
        return
    if rec.type in (NETWORK, CONTAINER, REMOTE_IMAGE) and rec.state.get("id"):
        import docker

        client = _docker(rec.state["host"], rec.state.get("sshOpts"))
        try:
            if rec.type == CONTAINER:
                client.containers.get(rec.state["id"]).remove(force=True)
            elif rec.type == NETWORK:
                client.networks.get(rec.state["id"]).remove()
            elif not rec.state.get("keepLocally"):
                client.images.remove(rec.state["id"], force=True)
        except docker.errors.NotFound:
            pass


def destroy(records: list[Record], workers: int = 8) -> list[str]:
    """Delete in reverse dependency order; returns the errors (empty when all went well)."""
    try:
        return _destroy(records, workers)
    finally:
        TUNNELS.close()


def _destroy(records: list[Record], workers: int) -> list[str]:
    pending = {r.urn: r for r in records}
    dependents: dict[str, set[str]] = {u: set() for u in pending}
    for r in records:
        for d in [*r.deps, r.parent, r.provider.rsplit("::", 1)[0]]:
            if d in dependents and d != r.urn:
                dependents[d].add(r.urn)
    done: set[str] = set()
    errors: list[str] = []
    running: dict[cf.Future[None], str] = {}
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        while pending or running:
            for urn in [u for u in pending if dependents[u] <= done]:
                running[pool.submit(_delete_one, pending.pop(urn))] = urn
            if not running:
                errors.append(f"dependency cycle among {sorted(pending)}")
                break
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for f in finished:
                urn = running.pop(f)
                if f.exception() is not None:
                    # Go on: what depends on a failed delete is already gone, and leaving the
                    # rest (namespaces, processes) behind would be worse than a partial error.
                    errors.append(f"{urn.rsplit('::', 1)[-1]}: {f.exception()}")
                done.add(urn)
    return errors


class RecordingMonitor(pmocks.MockMonitor):
    """Passes each registration's URN, parent and dependencies to the engine's new_resource."""

    def __init__(self, engine: RealEngine) -> None:
        super().__init__(engine)
        self.engine = engine

    def RegisterResource(self, request: Any) -> Any:
        deps = set(request.dependencies)
        for pd in request.propertyDependencies.values():
            deps.update(pd.urns)
        self.engine.local.meta = {
            "urn": self.make_urn(request.parent, request.type, request.name),
            "deps": sorted(deps),
            "parent": request.parent,
            "deleteBeforeReplace": bool(request.deleteBeforeReplace),
        }
        try:
            return super().RegisterResource(request)
        finally:
            self.engine.local.meta = {}


# --- running the program -------------------------------------------------------------------------


def stack_config(raw: dict[str, Any]) -> dict[str, str]:
    return {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


@dataclass
class Run:
    engine: RealEngine
    outputs: dict[str, Any] | None
    error: BaseException | None
    seconds: float

    @property
    def records(self) -> list[Record]:
        """Every resource the program registered, in registration order."""
        return self.engine.records

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        """Each resource's declared inputs, by URN."""
        return self.engine.inputs

    def destroy(self) -> list[str]:
        return destroy(self.engine.records)


def run_program(
    raw_config: dict[str, Any],
    stack: str = "local",
    preview: bool = False,
    state_file: Path | None = None,
    perform: bool = True,
    guard: RouteGuard | None = None,
    secrets: dict[str, str] | None = None,
) -> Run:
    """Run ``__main__.py`` with this config; never raises for the program's own errors.

    ``perform=False`` records the graph without touching the machine (unit tests)."""
    engine = RealEngine(preview=preview, state_file=state_file, perform=perform, guard=guard)
    # Each run is a fresh program: no root stack, RPCs or errors left from an earlier run.
    psettings.ROOT.set(None)
    psettings.SETTINGS.rpc_manager.clear()
    psettings.SETTINGS.outputs.clear()
    pmocks.set_mocks(
        engine, project=PROJECT, stack=stack, preview=preview, monitor=RecordingMonitor(engine)
    )
    config = stack_config(raw_config)
    config.update({f"{PROJECT}:{k}": v for k, v in (secrets or {}).items()})
    pulumi.runtime.set_all_config(config, [f"{PROJECT}:{k}" for k in secrets or {}])
    holder: dict[str, Any] = {}

    def body() -> None:
        runpy.run_path(str(PROJECT_DIR / "__main__.py"), run_name="__main__")
        root = psettings.get_root_resource()
        exported: dict[str, Any] = getattr(root, "outputs", {}) if root is not None else {}
        # Key by key, so that in preview one unknown output does not hide the known ones.
        holder["outputs"] = {
            k: _sync_await(pulumi.Output.from_input(v).future(with_unknowns=True))
            for k, v in exported.items()
        }

    start = time.monotonic()
    error: BaseException | None = None
    _quiet_reported_failures()
    try:
        _sync_await(run_pulumi_func(body))
    except BaseException as e:
        error = e
    finally:
        TUNNELS.close()
    return Run(engine, holder.get("outputs"), error, time.monotonic() - start)


def _quiet_reported_failures() -> None:
    """A failed resource reaches the caller as ``Run.error``; the runtime's other futures that
    carry the same exception would each be logged again at exit as "never retrieved"."""
    loop = asyncio.get_event_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), ResourceFailed | UnsupportedResource):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


_REAPABLE = {"etcd", "dockerd", "containerd", "containerd-shim", "runc", "docker-proxy", "sleep"}
_reaper_started = False


def become_subreaper() -> None:
    """Adopt the lab's orphaned daemons and reap them when they exit.

    hostops starts daemons detached; once it exits they are re-parented to PID 1, and on
    machines whose PID 1 does not reap (containers, this CI) they linger as zombies. Marking
    this process as a child subreaper makes it their parent instead, and a thread reaps the
    known daemon names only, never the children that ``subprocess`` waits for itself.
    """
    global _reaper_started
    if _reaper_started:
        return
    _reaper_started = True
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

    def reap() -> None:
        me = os.getpid()
        while True:
            for p in Path("/proc").iterdir():
                if not p.name.isdigit():
                    continue
                try:
                    stat = (p / "stat").read_text()
                except OSError:
                    continue
                comm = stat[stat.find("(") + 1 : stat.rfind(")")]
                fields = stat[stat.rfind(")") + 2 :].split()
                if fields[0] == "Z" and int(fields[1]) == me and comm in _REAPABLE:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(int(p.name), os.WNOHANG)
            time.sleep(0.3)

    threading.Thread(target=reap, name="standin-reaper", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.standin", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["up", "down", "preview"])
    p.add_argument("--stack", default="local")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.add_argument("--ssh-key", type=Path, help="private key of an ssh stack (its sshPrivateKey)")
    args = p.parse_args(argv)
    raw = raw_from_file(args.stack)
    bridge = (raw.get("lab") or {}).get("bridge")
    guard = RouteGuard(bridge) if bridge else None
    secrets = {"sshPrivateKey": args.ssh_key.read_text()} if args.ssh_key else {}
    for v in secrets.values():
        KEYS.add(v)
    TUNNELS.guard = guard
    state_file = args.state_dir / f"{args.stack}.json"
    become_subreaper()
    if args.action == "down":
        records = RealEngine.load(state_file)
        errors = destroy(records)
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        if not errors:
            state_file.unlink(missing_ok=True)
            for d in (state_file.parent, state_file.parent.parent):
                with contextlib.suppress(OSError):
                    d.rmdir()
            print(f"destroyed {sum(r.custom for r in records)} resources of stack {args.stack}")
        return 1 if errors else 0
    if args.action == "up" and RealEngine.load(state_file):
        print(
            f"stack {args.stack} is already up (state in {state_file}): run down first",
            file=sys.stderr,
        )
        return 1
    run = run_program(
        raw, args.stack, args.action == "preview", state_file, guard=guard, secrets=secrets
    )
    for r in run.engine.records:
        if r.custom:
            print(
                f"{'+ ' if run.engine.preview else 'created'} {r.type} {r.name}"
                f"{'' if run.engine.preview else f' ({r.seconds:.1f}s)'}"
            )
    if run.error is not None:
        print(f"error: {run.error}", file=sys.stderr)
        print(
            f"up failed after {run.seconds:.1f}s; `python -m tests.standin down --stack "
            f"{args.stack}` removes what was created",
            file=sys.stderr,
        )
        return 1
    outputs = dict(run.outputs or {})
    report = outputs.pop("validationReport", None)
    print(json.dumps(outputs, indent=2, default=str))
    if isinstance(report, str):
        print(f"\nvalidation report:\n{report}")
    print(f"{'preview' if run.engine.preview else 'up'} done in {run.seconds:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
