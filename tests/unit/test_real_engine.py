"""What a real `pulumi preview` or `up` would have broken, run through the stand-in with the
engine's and pulumi-docker's behaviour (docs/engine.md §1): providers are configured in a
preview once their inputs are known, and pulumi-docker's Configure pings a unix:// host.

A fake Docker daemon (a unix socket answering ``GET /_ping``) stands for the daemons of a
running stack, so that no lab is needed."""

from __future__ import annotations

import copy
import http.server
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlaylab.config import parse
from standin import run_program
from standin.docker_ops import DOCKER_PROVIDER

NODE3 = {"name": "docker-node3", "address": "192.168.205.12"}


class _Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.pings.append(self.path)  # type: ignore[attr-defined]
        body = b"OK" if self.path.endswith("/_ping") else b"{}"
        self.send_response(200 if self.path.endswith("/_ping") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _UnixHTTP(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> Any:
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)


class FakeDaemons:
    """One ping-answering socket per host, where the stack's config puts dockerd's socket."""

    def __init__(self) -> None:
        self.servers: dict[str, _UnixHTTP] = {}

    def start(self, path: str, host: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        srv = _UnixHTTP(path, _Ping)
        srv.pings = []  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.servers[host] = srv

    def pings(self, host: str) -> int:
        return len(self.servers[host].pings)  # type: ignore[attr-defined]

    def stop(self) -> None:
        for srv in self.servers.values():
            srv.shutdown()
            srv.server_close()


@pytest.fixture
def local(seed_config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The local stack with its state in a short temporary directory (a socket path has a
    108-byte limit, so lab.stateDir is kept short): the daemons' sockets are there."""
    state = tempfile.mkdtemp(prefix="ovl-", dir="/tmp")
    raw = copy.deepcopy(seed_config)
    raw["lab"] = {**raw["lab"], "stateDir": state}
    yield raw
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def daemons() -> Iterator[FakeDaemons]:
    d = FakeDaemons()
    yield d
    d.stop()


def _sockets(raw: dict[str, Any]) -> dict[str, str]:
    cfg = parse(raw, "test config")
    return {h.name: cfg.docker_socket(h) for h in cfg.hosts}


def test_a_fresh_stacks_preview_configures_no_provider_of_a_daemon_still_to_create(
    local: dict[str, Any],
) -> None:
    """No daemon exists yet: a provider configured with a known unix:// host would ping it and
    fail the preview ("failed to connect to any docker daemon", pulumi-docker#1106). The
    providers' host is unknown until their daemon exists, so none is configured."""
    run = run_program(local, preview=True)
    assert run.error is None, run.error
    providers = [s for s in run.steps if s.type == DOCKER_PROVIDER]
    assert len(providers) == 3 and all(s.kind == "create" for s in providers), providers
    assert not any(Path(p).exists() for p in _sockets(local).values())


def test_a_preview_and_the_plan_of_an_up_adding_a_host_ping_only_running_daemons(
    local: dict[str, Any], daemons: FakeDaemons, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a running stack the engine configures (pings) the providers of the daemons that are
    there, and not the new host's, whose daemon is still to be created.

    The fake daemons are sockets in the hosts' directories, not a lab: the program's survey
    would find no etcd or dockerd process there and mend them (overlaylab/mends.py), which is
    not what this test is about; here the lab is taken as running."""
    import overlaylab.survey

    monkeypatch.setattr(overlaylab.survey, "survey", lambda cfg: overlaylab.survey.Survey(True))
    first = run_program(local, perform=False)
    assert first.error is None, first.error
    for host, sock in _sockets(local).items():
        daemons.start(sock, host)
    grown = copy.deepcopy(local)
    grown["hosts"] = [*grown["hosts"], NODE3]
    grown["containers"] = [*grown["containers"], {"name": "test3", "host": NODE3["name"]}]
    run = run_program(grown, preview=True, old=first.engine.state())
    assert run.error is None, run.error
    steps = {s.name: s for s in run.steps}
    assert steps["docker-docker-node3-docker"].kind == "create"
    for name in ("docker-docker-node1-docker", "docker-docker-node2-docker", "overlay-docker"):
        assert steps[name].kind == "same", f"{name}: {steps[name]}"
    # each running daemon pinged by its own provider (and host 1's by the network's too)
    assert daemons.pings("docker-node1") >= 2 and daemons.pings("docker-node2") >= 1
    assert not Path(_sockets(grown)["docker-node3"]).exists()
