"""Conformance of the stand-in's providers and engine to the real ones: one test per behaviour,
each naming the source (repository, tag, file:lines) it encodes. Docker daemons are faked
(an injected client); what needs a real daemon is for the lab tests."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import docker.errors
import pulumi
import pytest
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockResourceArgs

from standin import commands, docker_ops
from standin.diff import Options, diff
from standin.engine import RealEngine, Registration
from standin.ops import Context, ResourceFailed, UnsupportedResource
from standin.refresh import refresh
from standin.state import Record, for_state
from standin.targets import Targets

COMMAND, REMOTE, COPY = commands.COMMAND, commands.REMOTE_COMMAND, commands.COPY_TO_REMOTE
PROVIDER, NETWORK, CONTAINER, IMAGE = (
    docker_ops.DOCKER_PROVIDER,
    docker_ops.NETWORK,
    docker_ops.CONTAINER,
    docker_ops.REMOTE_IMAGE,
)
SECRET = {rpc._special_sig_key: rpc._special_secret_sig}


def register(
    engine: RealEngine,
    typ: str,
    name: str,
    inputs: dict[str, Any],
    provider: str = "",
    deps: list[str] | None = None,
    options: Options | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """One RegisterResource, as the monitor hands it to the engine."""
    engine.local.registration = Registration(
        urn=name, deps=deps or [], options=options or Options(), inputs=inputs
    )
    try:
        return engine.new_resource(
            MockResourceArgs(typ=typ, name=name, inputs=inputs, provider=provider, custom=True)
        )
    finally:
        engine.local.registration = None


def record(typ: str, name: str, **kw: Any) -> Record:
    return Record(urn=name, type=typ, name=name, deps=kw.pop("deps", []), parent="",
                  provider=kw.pop("provider", ""), custom=True, **kw)  # fmt: skip


# --- 1. providers configured in preview -------------------------------------------------------


def test_preview_configures_a_known_docker_provider_and_fails_when_no_daemon_answers(
    tmp_path: Path,
) -> None:
    """pulumi/pulumi v3.259.0 pkg/resource/deploy/providers/registry.go:947-970 (Create, in
    preview too, configures the provider) and sdk/go/common/resource/plugin/
    provider_plugin.go:1060-1076 (only when every input is known); pulumi/pulumi-docker v5.1.0
    provider/provider.go:80-90 -> provider/image.go:931-992 (Configure pings a non-ssh host:
    "failed to connect to any docker daemon"), provider/hybrid.go:77-80 (the wrapping)."""
    host = f"unix://{tmp_path}/no-such.sock"
    with pytest.raises(ResourceFailed, match="failed to connect to any docker daemon"):
        register(RealEngine(preview=True), PROVIDER, "p", {"host": host})


def test_preview_does_not_configure_a_provider_whose_host_is_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pulumi/pulumi v3.259.0 sdk/go/common/resource/plugin/provider_plugin.go:1060-1076: an
    unknown input leaves the provider unconfigured (no Configure, so no ping); a recording run
    (perform=False) pings nothing either."""
    pinged: list[str] = []
    monkeypatch.setattr(docker_ops, "ping", pinged.append)
    register(RealEngine(preview=True), PROVIDER, "p", {"host": rpc.UNKNOWN})
    assert pinged == []
    register(RealEngine(perform=False), PROVIDER, "p", {"host": "unix:///x.sock"})
    assert pinged == []
    register(RealEngine(preview=True), PROVIDER, "p", {"host": "unix:///x.sock"})
    assert pinged == ["unix:///x.sock"]


def test_an_ssh_docker_host_is_not_pinged(monkeypatch: pytest.MonkeyPatch) -> None:
    """pulumi/pulumi-docker v5.1.0 provider/image.go:944-949: no connection check for ssh."""
    pinged: list[str] = []
    monkeypatch.setattr(docker_ops, "ping", pinged.append)
    docker_ops.configure_provider(Context(), {"host": "ssh://root@h"})
    docker_ops.configure_provider(Context(), {"host": "tcp://127.0.0.1:1"})
    assert pinged == ["tcp://127.0.0.1:1"]


def test_an_unchanged_provider_is_configured_in_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """pulumi/pulumi v3.259.0 pkg/resource/deploy/providers/registry.go:788-870 (Same loads and
    configures the provider: "configure provider ...")."""
    pinged: list[str] = []
    monkeypatch.setattr(docker_ops, "ping", pinged.append)
    old = record(PROVIDER, "p", id="pid", inputs={"host": "unix:///d.sock"},
                 state={"host": "unix:///d.sock", "sshOpts": []})  # fmt: skip
    engine = RealEngine(old=[old])
    rid, _ = register(engine, PROVIDER, "p", {"host": "unix:///d.sock"})
    assert rid == "pid" and pinged == ["unix:///d.sock"]


# --- 2. CopyToRemote ---------------------------------------------------------------------------


@pytest.fixture
def local_ssh(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """ssh_run on this machine: the remote script through sh, its stdin as given."""
    scripts: list[str] = []

    def run(conn: Any, script: str, guard: Any, stdin: bytes | None = None) -> Any:
        scripts.append(script)
        return subprocess.run(["/bin/sh", "-c", script], input=stdin or b"",
                              capture_output=True, check=False)  # fmt: skip

    monkeypatch.setattr(commands, "ssh_run", run)
    return scripts


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "one" / "two").mkdir(parents=True)
    (src / "file1").write_text("1")
    (src / "one" / "file2").write_text("2")
    (src / "one" / "two" / "file3").write_text("3")
    return src


def _copy(source: Any, dest: Path | str) -> None:
    inputs = {"connection": {"host": "h"}, "source": source, "remotePath": str(dest)}
    commands.create_copy(Context(), record(COPY, "c"), inputs)


def test_copy_of_a_directory_lands_in_remote_path_slash_its_name(
    tmp_path: Path, local_ssh: list[str]
) -> None:
    """pulumi/pulumi-command v1.2.1 provider/pkg/provider/remote/copyController.go:221-255
    (table at 224-228): a directory without a trailing slash goes to dest/dir, whether dest
    exists (as a directory) or not (made with its parents); copyController_test.go "copy dir
    recursively"."""
    src = _src(tmp_path)
    existing = tmp_path / "existing"
    existing.mkdir()
    _copy(pulumi.FileArchive(str(src)), existing)
    assert _tree(existing) == ["src", "src/file1", "src/one", "src/one/file2",
                               "src/one/two", "src/one/two/file3"]  # fmt: skip
    missing = tmp_path / "a" / "b"
    _copy(pulumi.FileArchive(str(src)), missing)
    assert _tree(missing)[0] == "src" and (missing / "src" / "one" / "two" / "file3").exists()


def test_copy_of_a_directory_with_a_trailing_slash_puts_its_contents_in_remote_path(
    tmp_path: Path, local_ssh: list[str]
) -> None:
    """pulumi/pulumi-command v1.2.1 remote/copyController.go:230-238,255 and copyDir 293-320:
    "dir/" is copied into dest itself (made if missing: 231-235, so not dest/dir as the table's
    comment at 227 says); copyController_test.go "copy dir contents recursively"."""
    src = _src(tmp_path)
    for dest in (tmp_path / "existing", tmp_path / "new" / "deep"):
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.name == "existing":
            dest.mkdir()
        _copy(pulumi.FileArchive(f"{src}/"), dest)
        assert _tree(dest) == ["file1", "one", "one/file2", "one/two", "one/two/file3"]


def test_copy_of_a_directory_onto_a_file_fails(tmp_path: Path, local_ssh: list[str]) -> None:
    """pulumi/pulumi-command v1.2.1 remote/copyController.go:226-227 (error), 238-247, 315-316
    ("remote path ... exists but is not a directory")."""
    src = _src(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ResourceFailed, match="not a directory"):
        _copy(pulumi.FileArchive(str(src)), tmp_path / "f")
    with pytest.raises(ResourceFailed, match="exists but is not a directory"):
        _copy(pulumi.FileArchive(f"{src}/"), tmp_path / "f")


def test_copy_of_a_file_goes_into_a_directory_or_becomes_the_path(
    tmp_path: Path, local_ssh: list[str]
) -> None:
    """pulumi/pulumi-command v1.2.1 remote/copyController.go:256-266: a file into an existing
    directory is dest/file; else dest, its parents made; an existing file is overwritten."""
    f = tmp_path / "payload.txt"
    f.write_text("p")
    (tmp_path / "dir").mkdir()
    _copy(pulumi.FileAsset(str(f)), tmp_path / "dir")
    _copy(pulumi.FileAsset(str(f)), tmp_path / "x" / "y" / "named")
    (tmp_path / "over").write_text("old")
    _copy(pulumi.FileArchive(str(f)), tmp_path / "over")
    assert (tmp_path / "dir" / "payload.txt").read_text() == "p"
    assert (tmp_path / "x" / "y" / "named").read_text() == "p"
    assert (tmp_path / "over").read_text() == "p"


def test_copy_writes_files_as_sftp_does_and_removes_nothing(
    tmp_path: Path, local_ssh: list[str]
) -> None:
    """pulumi/pulumi-command v1.2.1 remote/copyController.go:271-289 (sftp Create: an existing
    file keeps its mode, a new one gets no mode of the source), 293-320 (nothing removed);
    copyToRemote.md / copy.go:46-49 ("overwriting existing files")."""
    src = _src(tmp_path)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    dest = tmp_path / "dest"
    (dest / "src").mkdir(parents=True)
    (dest / "src" / "stale").write_text("left")
    (dest / "src" / "file1").write_text("old")
    (dest / "src" / "file1").chmod(0o600)
    _copy(pulumi.FileArchive(str(src)), dest)
    assert (dest / "src" / "stale").read_text() == "left"
    assert stat.S_IMODE((dest / "src" / "file1").stat().st_mode) == 0o600
    assert not os.access(dest / "src" / "run.sh", os.X_OK)


def test_copy_update_copies_again_only_for_new_contents_or_path(
    tmp_path: Path, local_ssh: list[str]
) -> None:
    """pulumi/pulumi-command v1.2.1 remote/copyController.go:137-154: copy again when the
    source's hash or remotePath changed; a new connection (or the same contents at another
    local path) copies nothing; CopyToRemote has no Delete (pulumi/pulumi-go-provider v1.3.0
    infer/resource.go:1484-1499: no CustomDelete, nothing runs)."""
    src = _src(tmp_path)
    twin = tmp_path / "twin"
    subprocess.run(["cp", "-r", str(src), str(twin)], check=True)
    old_inputs = {"connection": {"host": "h"}, "source": pulumi.FileArchive(str(src)),
                  "remotePath": str(tmp_path / "d")}  # fmt: skip
    old = record(COPY, "c", id="cid", inputs=for_state(old_inputs))
    kind = commands.TYPES[COPY]
    kind.update(Context(), record(COPY, "c"), old, {**old_inputs, "connection": {"host": "h2"}})
    kind.update(
        Context(), record(COPY, "c"), old, {**old_inputs, "source": pulumi.FileArchive(str(twin))}
    )
    assert local_ssh == []
    (src / "file1").write_text("changed")
    kind.update(Context(), record(COPY, "c"), old, old_inputs)
    assert len(local_ssh) == 1
    kind.delete(Context(), old)
    assert len(local_ssh) == 1


# --- 8. ignore_changes -------------------------------------------------------------------------


def test_an_update_performs_with_the_old_value_of_an_ignored_input() -> None:
    """pulumi/pulumi v3.259.0 pkg/resource/deploy/step_generator.go:1264-1269 and
    processIgnoreChanges 3026-3049: the inputs sent to the provider (Check, Diff, Update) hold
    the old value of each ignored path."""
    first = RealEngine()
    opts = Options(ignore_changes=("stdin",))
    register(first, COMMAND, "c", {"create": "cat", "stdin": "old"}, options=opts)
    again = RealEngine(old=first.state())
    _, out = register(again, COMMAND, "c", {"create": "cat; echo", "stdin": "new"}, options=opts)
    assert out["stdout"] == "old"
    assert again.records[0].inputs["stdin"] == "old"


def test_ignore_changes_on_a_secret_is_refused() -> None:
    """pulumi/pulumi v3.259.0 step_generator.go:3026-3049 needs the old plain value; the
    stand-in's state keeps a secret only as a digest, so it refuses in one line."""
    first = RealEngine()
    opts = Options(ignore_changes=("stdin",))
    register(first, COMMAND, "c", {"create": "cat", "stdin": {**SECRET, "value": "s"}},
             options=opts)  # fmt: skip
    again = RealEngine(old=first.state())
    with pytest.raises(Exception, match="ignore_changes on stdin: its old value is a secret"):
        register(again, COMMAND, "c", {"create": "cat; echo", "stdin": "x"}, options=opts)


# --- 9. a container whose start fails ----------------------------------------------------------


class FakeContainer:
    def __init__(self, cid: str, status: str = "created", fail_start: bool = False) -> None:
        self.id, self.status, self.fail_start, self.started = cid, status, fail_start, 0
        self.attrs: dict[str, Any] = {"NetworkSettings": {"Networks": {}}}

    def start(self) -> None:
        if self.fail_start:
            raise RuntimeError("port is already allocated")
        self.started += 1
        self.status = "running"

    def reload(self) -> None:
        pass


class FakeDocker:
    """The docker-py surface the stand-in uses: containers, networks, images."""

    def __init__(self) -> None:
        self.by_id: dict[str, Any] = {}
        self.networks_: dict[str, Any] = {}
        self.images_: dict[str, Any] = {}
        self.next: FakeContainer | None = None
        fake = self

        class Containers:
            def create(self, *a: Any, **kw: Any) -> FakeContainer:
                c = fake.next or FakeContainer("cid")
                fake.by_id[c.id] = c
                return c

            def get(self, cid: str) -> Any:
                if cid not in fake.by_id:
                    raise docker.errors.NotFound("no such container")
                return fake.by_id[cid]

        class Networks:
            def get(self, nid: str) -> Any:
                if nid not in fake.networks_:
                    raise docker.errors.NotFound("no such network")
                return fake.networks_[nid]

        class Images:
            def get(self, name: str) -> Any:
                if name not in fake.images_:
                    raise docker.errors.ImageNotFound("no such image")
                return fake.images_[name]

        self.containers, self.networks, self.images = Containers(), Networks(), Images()


@pytest.fixture
def fake_docker(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    fake = FakeDocker()
    monkeypatch.setattr(docker_ops, "client", lambda host, opts, guard: fake)
    monkeypatch.setattr(docker_ops, "ping", lambda host: None)
    return fake


def _with_provider(engine: RealEngine) -> str:
    pid, _ = register(engine, PROVIDER, "p", {"host": "unix:///d.sock"})
    return f"p::{pid}"


def test_a_container_whose_start_fails_stays_in_the_state_and_the_next_up_updates_it(
    fake_docker: FakeDocker,
) -> None:
    """kreuzwerker/terraform-provider-docker v4.5.0 internal/provider/
    resource_docker_container_funcs.go:456-460 (id set), 586-587 (start fails); pulumi/
    terraform-plugin-sdk upstream-v2.38.1 helper/schema/resource.go:976-994 and
    grpc_provider.go:1542-1570 (the state with its id comes back with the error);
    pulumi/pulumi-terraform-bridge v3.133.0 pkg/tfbridge/provider.go:1340-1391,2051-2059
    (initializationError with id and properties); pulumi/pulumi v3.259.0 pkg/resource/deploy/
    step.go:383-391,443-447 (recorded with InitErrors); step_generator.go:1944-1947,2180-2195
    (unchanged, it is updated); no taint, no replace. The bridge's Update with no diff returns
    the old state (provider.go:1703-1708): the container is not started by that update."""
    engine = RealEngine()
    prov = _with_provider(engine)
    fake_docker.next = FakeContainer("cid", fail_start=True)
    inputs = {"name": "c", "image": "i", "mustRun": True}
    with pytest.raises(ResourceFailed, match="Unable to start container: port is already"):
        register(engine, CONTAINER, "c", inputs, provider=prov)
    rec = next(r for r in engine.state() if r.name == "c")
    assert rec.id == "cid" and rec.init_errors and rec.state["id"] == "cid"
    again = RealEngine(old=engine.state())
    prov2 = _with_provider(again)
    rid, _ = register(again, CONTAINER, "c", inputs, provider=prov2)
    assert rid == "cid" and again.planner.steps["c"].kind == "update"
    assert fake_docker.by_id["cid"].started == 0
    assert not next(r for r in again.state() if r.name == "c").init_errors


def test_a_container_that_exits_after_start_gets_must_run_false_and_is_started_next_up(
    fake_docker: FakeDocker,
) -> None:
    """kreuzwerker/terraform-provider-docker v4.5.0 resource_docker_container_funcs.go:664
    (Create ends with the Read), 813-823 (stopped with must_run: must_run false in state, no
    error), 997-1008 (Update: must_run false -> true starts it); the bridge diffs the state
    (pulumi-terraform-bridge v3.133.0 pkg/tfbridge/provider.go Diff)."""

    class Exits(FakeContainer):
        def start(self) -> None:
            self.started += 1
            self.status = "exited" if self.started == 1 else "running"

    engine = RealEngine()
    prov = _with_provider(engine)
    fake_docker.next = Exits("cid")
    inputs = {"name": "c", "image": "i", "mustRun": True}
    _, out = register(engine, CONTAINER, "c", inputs, provider=prov)
    assert out["mustRun"] is False
    again = RealEngine(old=engine.state())
    _, out2 = register(again, CONTAINER, "c", inputs, provider=_with_provider(again))
    assert again.planner.steps["c"].kind == "update" and out2["mustRun"] is True
    assert fake_docker.by_id["cid"].started == 2


# --- 10. the bridged Network's Optional+Computed inputs ----------------------------------------


def test_an_unset_optional_computed_network_input_is_no_change() -> None:
    """kreuzwerker/terraform-provider-docker v4.5.0 internal/provider/resource_docker_network.go:
    40-54 (driver, options: Optional, ForceNew, Computed), 56-62 (internal), 99-104
    (ipam_config); pulumi/terraform-plugin-sdk upstream-v2.38.1 helper/schema/schema.go:
    1534-1537 (a nil map of a computed attribute: no diff), 1589-1594 (sets), 1746-1751
    (strings, bools). attachable (64-69) is not Computed: unset, it is a change (ForceNew)."""
    old = {"name": "n", "driver": "overlay", "options": {"com.docker.network.driver.mtu": "1450"},
           "attachable": True}  # fmt: skip
    assert diff(NETWORK, old, {"name": "n", "driver": "overlay", "attachable": True},
                Options()).kind == "same"  # fmt: skip
    assert diff(NETWORK, old, {"name": "n", "attachable": True}, Options()).kind == "same"
    assert diff(NETWORK, old, {"name": "n", "driver": "overlay"}, Options()).kind == "replace"
    changed = {**old, "options": {"com.docker.network.driver.mtu": "1400"}}
    assert diff(NETWORK, old, changed, Options()).kind == "replace"


# --- 11. a Command's delete ---------------------------------------------------------------------


def test_a_local_delete_runs_with_its_old_stdin_environment_and_previous_outputs(
    tmp_path: Path,
) -> None:
    """pulumi/pulumi-command v1.2.1 provider/pkg/provider/local/commandController.go:93-99
    (Delete runs with the state: the old inputs and outputs), local/commandOutputs.go:81-99
    (the whole environment, PULUMI_COMMAND_STDOUT / _STDERR when not empty, the stdin)."""
    out = tmp_path / "seen"
    delete = (f'{{ cat; echo "|$PLAIN|$KEY|$PULUMI_COMMAND_STDOUT|$PULUMI_COMMAND_STDERR"; }}'
              f' > {out}')  # fmt: skip
    inputs = {
        "create": "echo made; echo warn >&2",
        "delete": delete,
        "stdin": "old-stdin",
        "environment": {"PLAIN": "p", "KEY": {**SECRET, "value": "s3cret"}},
    }
    engine = RealEngine()
    register(engine, COMMAND, "c", inputs)
    state = engine.state()
    assert "s3cret" not in str([r.state for r in state])
    commands.delete_local(Context(), state[0])
    assert out.read_text() == "old-stdin|p|s3cret|made|warn\n"


def test_a_local_delete_without_add_previous_output_gets_no_previous_outputs(
    tmp_path: Path,
) -> None:
    """pulumi/pulumi-command v1.2.1 local/commandOutputs.go:88-95: addPreviousOutputInEnv
    false leaves PULUMI_COMMAND_STDOUT / _STDERR out."""
    out = tmp_path / "seen"
    engine = RealEngine()
    delete = f'echo "[$PULUMI_COMMAND_STDOUT]" > {out}'
    inputs = {"create": "echo made", "addPreviousOutputInEnv": False, "delete": delete}
    register(engine, COMMAND, "c", inputs)
    commands.delete_local(Context(), engine.state()[0])
    assert out.read_text() == "[]\n"


def test_a_remote_delete_gets_its_old_stdin_and_previous_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pulumi/pulumi-command v1.2.1 provider/pkg/provider/remote/commandController.go:86-92
    (Delete runs the state's delete), remote/commandOutputs.go:51-75 (previous stdout and
    stderr, the stdin)."""
    sent: list[tuple[str, bytes | None]] = []

    def run(conn: Any, script: str, guard: Any, stdin: bytes | None = None) -> Any:
        sent.append((script, stdin))
        return subprocess.CompletedProcess([], 0, b"out", b"err")

    monkeypatch.setattr(commands, "ssh_run", run)
    engine = RealEngine()
    register(engine, REMOTE, "r", {"connection": {"host": "h"}, "create": "c",
                                   "delete": "d", "stdin": "in"})  # fmt: skip
    commands.delete_remote(Context(), engine.state()[0])
    script, stdin = sent[-1]
    assert stdin == b"in" and script.endswith("; d")
    assert "PULUMI_COMMAND_STDOUT=out" in script and "PULUMI_COMMAND_STDERR=err" in script


def test_a_delete_needing_a_secret_this_process_does_not_have_is_refused() -> None:
    """The state file never holds secret values (standin.state); pulumi-command's Delete would
    get the plain value (local/commandOutputs.go:81-86), so without it the stand-in refuses."""
    rec = record(COMMAND, "c", state={"delete": "true", "secretEnvironment":
                                      {"K": {"secretDigest": "0000000000000000"}}})  # fmt: skip
    with pytest.raises(UnsupportedResource, match="needs a secret"):
        commands.delete_local(Context(), rec)


# --- 12. refresh, --target, --replace ----------------------------------------------------------


def test_refresh_keeps_commands_and_reads_docker_resources(fake_docker: FakeDocker) -> None:
    """pulumi/pulumi-go-provider v1.3.0 infer/resource.go:1353-1363 (no CustomRead: the state
    as it is); kreuzwerker/terraform-provider-docker v4.5.0 resource_docker_container_funcs.go:
    766-773 (gone: no id), 813-823 (stopped with must_run: must_run false),
    resource_docker_network_funcs.go:165-170 (gone), resource_docker_image_funcs.go:119-123
    (gone); pulumi/pulumi-terraform-bridge v3.133.0 pkg/tfbridge/provider.go:1481-1535 and
    schema.go:2012-2020 (inputs already present take the state's values)."""
    fake_docker.by_id["stopped"] = FakeContainer("stopped", status="exited")
    prov = record(PROVIDER, "p", id="pid", state={"host": "unix:///d.sock", "sshOpts": []})
    common = {"provider": "p::pid", "deps": ["p"]}
    cmd = record(COMMAND, "cmd", id="x", inputs={"create": "true"}, outputs={"stdout": "o"})
    c1 = record(CONTAINER, "c1", id="stopped", state={"id": "stopped"},
                inputs={"name": "c1", "mustRun": True}, outputs={"mustRun": True},
                **common)  # fmt: skip
    c2 = record(CONTAINER, "c2", id="gone", state={"id": "gone"}, **common)
    net = record(NETWORK, "n", id="nid", state={"id": "nid"}, **common)
    img = record(IMAGE, "i", id="img", inputs={"name": "busybox"}, **common)
    done = refresh([prov, cmd, c1, c2, net, img])
    names = [r.name for r in done.records]
    assert names == ["p", "cmd", "c1"] and sorted(done.gone) == ["c2", "i", "n"]
    assert done.records[1] is cmd
    assert (
        done.records[2].outputs["mustRun"] is False and done.records[2].inputs["mustRun"] is False
    )
    assert diff(CONTAINER, done.records[2].inputs, {"name": "c1", "mustRun": True}, Options(),
                old_outputs=done.records[2].outputs).kind == "update"  # fmt: skip


def test_target_updates_only_the_named_resources_and_keeps_the_rest() -> None:
    """pulumi/pulumi v3.259.0 pkg/cmd/pulumi/operations/up.go:799-823 (--target,
    --target-dependents); pkg/resource/deploy/step_generator.go:158-190 (targeted when named or,
    with --target-dependents, a dependency is), 1553-1560 (untargeted: same, old state),
    1778-1782 (untargeted new: not created), 500-533 (a targeted one depending on it fails),
    2349-2460 (only targeted resources are deleted)."""
    first = RealEngine()
    register(first, COMMAND, "a", {"create": "echo a1"})
    register(first, COMMAND, "b", {"create": "echo b1"}, deps=["a"])
    register(first, COMMAND, "gone", {"create": "true"})
    again = RealEngine(old=first.state())
    again.targets = Targets(frozenset({"a"}))
    register(again, COMMAND, "a", {"create": "echo a2"})
    _, b = register(again, COMMAND, "b", {"create": "echo b2"}, deps=["a"])
    register(again, COMMAND, "new", {"create": "true"})
    assert again.finish() == []
    assert b["stdout"] == "b1" and {r.name for r in again.state()} == {"a", "b", "gone"}
    assert {s.name: s.kind for s in again.planner.steps.values()} == {"a": "update", "b": "same"}
    deps = RealEngine(old=first.state())
    deps.targets = Targets(frozenset({"a"}), dependents=True)
    register(deps, COMMAND, "a", {"create": "echo a2"})
    _, b2 = register(deps, COMMAND, "b", {"create": "echo b2"}, deps=["a"])
    assert b2["stdout"] == "b2"
    late = RealEngine(old=first.state())
    late.targets = Targets(frozenset({"c"}))
    register(late, COMMAND, "n", {"create": "true"})
    with pytest.raises(ResourceFailed, match="was not specified in --target list"):
        register(late, COMMAND, "c", {"create": "true"}, deps=["n"])
    with pytest.raises(UnsupportedResource, match="wildcards"):
        Targets(frozenset({"urn:*"}))


def test_replace_replaces_a_resource_whatever_its_diff() -> None:
    """pulumi/pulumi v3.259.0 pkg/cmd/pulumi/operations/up.go:811-819 (--replace,
    --target-replace); step_generator.go:1321-1327 (isTargetedReplace: its old state is not
    diffed, it is replaced)."""
    first = RealEngine()
    rid, _ = register(first, COMMAND, "a", {"create": "echo a"})
    again = RealEngine(old=first.state())
    again.planner.replaces = {"a"}
    rid2, _ = register(again, COMMAND, "a", {"create": "echo a"})
    assert again.planner.steps["a"].kind == "replace" and rid2 != rid
