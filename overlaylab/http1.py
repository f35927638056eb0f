"""One HTTP/1.1 request per connection, with nothing but the standard library's ``socket``.

Every verb is a process of its own (``python -m overlaylab.hostops``), and an up at 8 hosts
runs about fifty of them. ``urllib.request`` and ``http.client`` import ``ssl`` and ``email``
before a request is made: about 20 ms of CPU per process, a fifth of a verb's start
(``docs/benchmarks.md``, "the step processes"). The two servers the verbs talk to are Go's
``net/http``: etcd's client port and dockerd's socket. This is the part of HTTP/1.1 they
need: a request with ``Connection: close`` and a ``Content-Length`` body, and a response
read by its ``Content-Length``, ``Transfer-Encoding: chunked``, or to the end of the stream.
``ssl`` is imported only by the caller that makes a TLS context (``hosts.pki.client_tls``).

Errors are ``OSError``: the connection's own (refused, timed out), or :class:`BadResponse`.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any, BinaryIO

#: A status line or a header longer than this is not from etcd or dockerd.
MAX_LINE = 65536


class BadResponse(OSError):
    """The server's answer is not HTTP/1.x as this module reads it."""


class Response:
    """A whole response: status, reason, headers (names in lower case), body."""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


def request(
    method: str,
    path: str,
    *,
    host: str,
    port: int | None = None,
    unix: str | None = None,
    tls: Any = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    """Send ``method path`` to ``host:port`` (TCP, TLS when ``tls`` is an ``ssl.SSLContext``),
    or to the unix socket ``unix`` (then ``host`` is only the Host header). ``timeout`` bounds
    each connect, send and receive, as ``socket.settimeout`` does."""
    if unix is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(unix)
        except BaseException:
            sock.close()
            raise
    else:
        if port is None:
            raise ValueError("request: a TCP request needs a port")
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
    with sock:
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {host if port is None else f'{host}:{port}'}",
            "Connection: close",
            "Accept-Encoding: identity",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        with sock.makefile("rb") as stream:
            return read_response(stream, method)


def read_response(stream: BinaryIO, method: str = "GET") -> Response:
    """The response on ``stream``, skipping any 1xx before it."""
    while True:
        status, reason = _status_line(_line(stream))
        headers = _headers(stream)
        if not 100 <= status < 200:
            break
    if method == "HEAD" or status in (204, 304):
        return Response(status, reason, headers, b"")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return Response(status, reason, headers, _chunked(stream))
    length = headers.get("content-length")
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            raise BadResponse(f"Content-Length is not a number: {length!r}") from None
        data = stream.read(n)
        if len(data) != n:
            raise BadResponse(f"the body ended after {len(data)} of {n} bytes")
        return Response(status, reason, headers, data)
    return Response(status, reason, headers, stream.read())


def _line(stream: BinaryIO) -> bytes:
    line = stream.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise BadResponse("a line of the response is longer than 64 KiB")
    if not line:
        raise BadResponse("the server closed the connection before its response")
    return line


def _status_line(line: bytes) -> tuple[int, str]:
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise BadResponse(f"not an HTTP/1.x status line: {line[:80]!r}")
    return int(parts[1]), parts[2] if len(parts) > 2 else ""


def _headers(stream: BinaryIO) -> dict[str, str]:
    headers: dict[str, str] = {}
    while True:
        line = _line(stream).decode("latin-1").rstrip("\r\n")
        if not line:
            return headers
        name, sep, value = line.partition(":")
        if not sep:
            raise BadResponse(f"not a header line: {line[:80]!r}")
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value


def _chunked(stream: BinaryIO) -> bytes:
    parts: list[bytes] = []
    while True:
        size_text = _line(stream).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadResponse(f"not a chunk size: {size_text[:20]!r}") from None
        if size == 0:
            _headers(stream)  # trailers, up to the blank line
            return b"".join(parts)
        data = stream.read(size)
        if len(data) != size:
            raise BadResponse(f"a chunk ended after {len(data)} of {size} bytes")
        parts.append(data)
        if stream.read(2) != b"\r\n":
            raise BadResponse("a chunk is not followed by CRLF")
