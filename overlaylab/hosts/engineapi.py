"""The few Docker Engine API calls the host verbs make, on the daemon's unix socket.

The verbs used the docker SDK, whose import (requests, urllib3) cost about 75 ms of CPU in
every ``docker-up``, ``docker-down`` and ``image-import`` process; real hosts have no SDK at
all. These calls are plain HTTP (``overlaylab.http1``) to API 1.41, Docker 20.10's, as the SDK
was pinned to. The tools that run beside Pulumi (the validator, ``labdump``) keep the SDK.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from overlaylab import http1
from overlaylab.errors import DockerError

API = "/v1.41"


class EngineAPIError(DockerError):
    """A call the daemon refused (``status`` is its HTTP status), or could not be made
    (``status`` 0: the socket refused, timed out, or the answer was not HTTP)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class EngineAPI:
    """One daemon's Engine API at ``socket_path``; ``timeout`` bounds each socket operation."""

    def __init__(self, socket_path: str, timeout: float = 30) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> http1.Response:
        url = API + path + ("?" + urllib.parse.urlencode(query) if query else "")
        try:
            return http1.request(
                method,
                url,
                host="docker",
                unix=self.socket_path,
                body=body,
                headers={"Content-Type": content_type} if content_type else None,
                timeout=self.timeout,
            )
        except OSError as e:
            raise EngineAPIError(
                f"Docker API: {method} {path} on {self.socket_path}: {e.strerror or e}"
            ) from None

    def _ok(self, method: str, path: str, resp: http1.Response) -> http1.Response:
        if 200 <= resp.status < 300:
            return resp
        raise EngineAPIError(
            f"Docker API: {method} {path}: {resp.status} {resp.reason}: {_message(resp.body)}",
            resp.status,
        )

    def _json(self, method: str, path: str, query: dict[str, str] | None = None) -> Any:
        resp = self._ok(method, path, self._call(method, path, query))
        try:
            return json.loads(resp.body)
        except ValueError:
            raise EngineAPIError(f"Docker API: {method} {path}: the answer is not JSON") from None

    def ping(self) -> bool:
        """Does the daemon answer (``GET /_ping``: ``OK``)? False on any failure."""
        try:
            resp = self._call("GET", "/_ping")
        except EngineAPIError:
            return False
        return resp.status == 200 and resp.body.strip() == b"OK"

    def info(self) -> dict[str, Any]:
        info = self._json("GET", "/info")
        if not isinstance(info, dict):
            raise EngineAPIError("Docker API: GET /info: the answer is not an object")
        return info

    def containers(self, all: bool = True) -> list[dict[str, Any]]:
        found = self._json("GET", "/containers/json", {"all": "1" if all else "0"})
        return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []

    def remove_container(self, container: str, force: bool = True) -> bool:
        """Remove a container; False if it was not there."""
        return self._delete(f"/containers/{urllib.parse.quote(container, safe='')}", force)

    def image_id(self, image: str) -> str | None:
        """The image's id, or None if the daemon has no such image."""
        path = f"/images/{urllib.parse.quote(image, safe=':')}/json"
        resp = self._call("GET", path)
        if resp.status == 404:
            return None
        self._ok("GET", path, resp)
        try:
            return str(json.loads(resp.body)["Id"])
        except (ValueError, KeyError, TypeError):
            raise EngineAPIError(f"Docker API: GET {path}: no Id in the answer") from None

    def import_image(self, tar: bytes, repository: str, tag: str) -> None:
        """``docker import``: a root file system's tar as ``repository:tag``. The daemon answers
        200 with a stream of JSON messages, and reports a failure as one with ``error``."""
        path = "/images/create"
        query = {"fromSrc": "-", "repo": repository, "tag": tag}
        resp = self._ok("POST", path, self._call("POST", path, query, tar, "application/x-tar"))
        for line in resp.body.splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("error"):
                raise EngineAPIError(f"Docker API: import {repository}:{tag}: {msg['error']}")

    def remove_image(self, image: str, force: bool = True) -> bool:
        """Remove an image; False if it was not there."""
        return self._delete(f"/images/{urllib.parse.quote(image, safe=':')}", force)

    def _delete(self, path: str, force: bool) -> bool:
        """``DELETE path?force=``: False if the daemon had no such thing (404)."""
        resp = self._call("DELETE", path, {"force": "1" if force else "0"})
        if resp.status == 404:
            return False
        self._ok("DELETE", path, resp)
        return True


def _message(body: bytes) -> str:
    """The daemon's ``{"message": ...}``, else the body's start."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace").strip() or "no body"
    if isinstance(obj, dict) and "message" in obj:
        return str(obj["message"])
    return body[:200].decode(errors="replace").strip()
