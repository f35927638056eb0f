"""``overlaylab.http1`` and the clients on it: a real etcd, and servers on real sockets that
answer with each framing HTTP/1.1 allows (and some it does not)."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from overlaylab import http1
from overlaylab.errors import EtcdError, EtcdRefused
from overlaylab.etcd import EtcdClient
from overlaylab.hosts.engineapi import EngineAPI, EngineAPIError
from tests.unit.v2etcd import dead_endpoint, single_etcd

Answer = Callable[[bytes], bytes]  # the request's bytes -> the response's


def _serve(listener: socket.socket, answer: Answer, seen: list[bytes]) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return  # closed: the test is over
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(x.split(b":")[1])
                    for x in head.split(b"\r\n")
                    if x.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(rest) < length:
                rest += conn.recv(65536)
            seen.append(head + b"\r\n\r\n" + rest)
            conn.sendall(answer(data))


@contextmanager
def server(answer: Answer, unix: bool = False) -> Iterator[tuple[dict[str, object], list[bytes]]]:
    """A server on 127.0.0.1 (or a unix socket) that answers each request with ``answer``:
    yields the address to give ``http1.request`` and the requests it saw."""
    seen: list[bytes] = []
    with tempfile.TemporaryDirectory() as tmp:
        if unix:
            path = str(Path(tmp) / "api.sock")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            where: dict[str, object] = {"host": "docker", "unix": path}
        else:
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            where = {"host": "127.0.0.1", "port": listener.getsockname()[1]}
        listener.listen(8)
        t = threading.Thread(target=_serve, args=(listener, answer, seen), daemon=True)
        t.start()
        try:
            yield where, seen
        finally:
            listener.shutdown(socket.SHUT_RDWR) if not unix else None
            listener.close()
            t.join(timeout=5)


def fixed(raw: bytes) -> Answer:
    return lambda _req: raw


def test_a_body_is_read_by_its_content_length_and_the_request_says_close() -> None:
    with server(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello")) as (w, seen):
        resp = http1.request("PUT", "/k?x=1", body=b"v=1", headers={"Content-Type": "a/b"}, **w)  # type: ignore[arg-type]
    assert (resp.status, resp.reason, resp.body, resp.headers["x-a"]) == (200, "OK", b"hello", "1")
    head = seen[0].decode()
    assert head.startswith("PUT /k?x=1 HTTP/1.1\r\n")
    assert "Connection: close\r\n" in head and "Content-Length: 3\r\n" in head
    assert "Content-Type: a/b\r\n" in head and head.endswith("\r\n\r\nv=1")


def test_a_chunked_body_with_extensions_and_trailers_is_put_together() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    with server(fixed(raw)) as (w, _):
        assert http1.request("GET", "/", **w).body == b"abcdefg"  # type: ignore[arg-type]


def test_a_body_with_no_length_runs_to_the_end_and_a_1xx_is_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nX: y\r\n\r\ngone"
    with server(fixed(raw)) as (w, _):
        resp = http1.request("GET", "/", **w)  # type: ignore[arg-type]
    assert (resp.status, resp.body) == (404, b"gone")


def test_no_body_for_204_nor_for_head() -> None:
    with server(fixed(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n")) as (w, _):
        assert http1.request("DELETE", "/", **w).body == b""  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "ended after 5 of 10"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not a chunk size"),
        (b"", "closed the connection before its response"),
    ],
)
def test_what_is_not_http_is_a_bad_response_that_says_why(raw: bytes, said: str) -> None:
    with server(fixed(raw)) as (w, _), pytest.raises(http1.BadResponse, match=said):
        http1.request("GET", "/", **w)  # type: ignore[arg-type]


def test_a_refused_connection_is_the_oserror_it_is() -> None:
    host, port = dead_endpoint().removeprefix("http://").rsplit(":", 1)
    with pytest.raises(ConnectionRefusedError):
        http1.request("GET", "/", host=host, port=int(port), timeout=2)


def test_the_etcd_client_on_a_real_member_reads_a_chunked_answer() -> None:
    """etcd (Go's net/http) sends an answer larger than its buffer chunked: a v2 directory
    of 200 keys is one."""
    with single_etcd() as c:
        for i in range(200):
            c.v2_put(f"/http1/k{i:03d}", "v" * 64)
        host, port = c.endpoint.removeprefix("http://").rsplit(":", 1)
        raw = http1.request("GET", "/v2/keys/http1?recursive=true", host=host, port=int(port))
        assert raw.headers.get("transfer-encoding") == "chunked"  # what this test is about
        node = c.v2_get("/http1")
        assert node is not None and len(node.children()) == 200
        assert c.v2_delete("/http1", recursive=True)
        assert c.v2_get("/http1") is None
        assert c.health()


def test_the_etcd_client_says_refused_and_unreachable_in_its_words() -> None:
    with pytest.raises(EtcdRefused, match="refused the connection: stopped"):
        EtcdClient(dead_endpoint(), None, timeout=2).health()
    with server(lambda _r: b"") as (w, _), pytest.raises(EtcdError, match="is unreachable"):
        EtcdClient(f"http://127.0.0.1:{w['port']}", None, timeout=2).health()
    with pytest.raises(EtcdError, match="not an etcd endpoint"):
        EtcdClient("etcd://127.0.0.1:2379", None).health()


def _json(status: str, obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def test_engine_api_a_missing_image_is_none_and_an_error_says_the_daemons_message() -> None:
    def answer(req: bytes) -> bytes:
        if req.startswith(b"GET /v1.41/images/busybox:latest/json "):
            return _json("404 Not Found", {"message": "No such image: busybox:latest"})
        if req.startswith(b"DELETE /v1.41/containers/abc?force=1 "):
            return _json("409 Conflict", {"message": "removal of container abc is in progress"})
        return _json("500 Internal Server Error", {"message": "unexpected"})

    with server(answer, unix=True) as (w, _):
        api = EngineAPI(str(w["unix"]), timeout=5)
        assert api.image_id("busybox:latest") is None
        with pytest.raises(EngineAPIError, match="409 Conflict: removal of container abc") as e:
            api.remove_container("abc")
        assert e.value.status == 409


def test_engine_api_an_import_that_streams_an_error_fails() -> None:
    stream = (
        b'{"status":"sha256:1"}\r\n{"errorDetail":{"message":"no space"},"error":"no space"}\r\n'
    )
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw += f"{len(stream):x}\r\n".encode() + stream + b"\r\n0\r\n\r\n"
    with (
        server(fixed(raw), unix=True) as (w, seen),
        pytest.raises(EngineAPIError, match="import busybox:latest: no space"),
    ):
        EngineAPI(str(w["unix"]), timeout=5).import_image(b"TAR", "busybox", "latest")
    head = seen[0].decode()
    assert head.startswith("POST /v1.41/images/create?fromSrc=-&repo=busybox&tag=latest ")
    assert "Content-Type: application/x-tar\r\n" in head and head.endswith("\r\n\r\nTAR")


def test_engine_api_on_a_socket_nobody_serves_fails_and_ping_says_false(tmp_path: Path) -> None:
    api = EngineAPI(str(tmp_path / "none.sock"), timeout=2)
    assert api.ping() is False
    with pytest.raises(EngineAPIError, match=r"GET /info on .*none\.sock"):
        api.info()
