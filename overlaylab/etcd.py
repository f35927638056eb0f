"""A small etcd client over plain HTTP, for both of the APIs this lab needs.

Docker's libkv writes through the etcd **v2** API; those keys are invisible to the v3 API, so
reading them needs v2 HTTP whatever v3 client one picks. Health, version, the member list and
a member's status come from endpoints every etcd 3.4/3.5 serves over HTTP (``/health``,
``/version`` and the v3 JSON gateway's ``/v3/cluster/member/list`` and
``/v3/maintenance/status``). Using the standard library for all of it avoids the ``etcd3``
package, which is unmaintained and does not import beside pulumi's protobuf. The requests go
through ``overlaylab.http1`` (a verb's process does not pay for ``urllib.request``'s imports).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from overlaylab import http1
from overlaylab.errors import EtcdError, EtcdRefused
from overlaylab.netrule import RouteGuard


def etcd_url(address: str, port: int | None, tls: bool) -> str:
    """An etcd member's client or peer URL: the one place its scheme is chosen. No ``port``:
    ``address`` has it already (``host:port``, as a cluster store names its members)."""
    return f"{'https' if tls else 'http'}://{address}{'' if port is None else f':{port}'}"


@dataclass(frozen=True)
class V2Node:
    key: str
    value: str | None
    dir: bool
    ttl: int | None
    nodes: tuple[V2Node, ...]
    #: etcd's ``modifiedIndex``: a write of the key (a daemon's heartbeat) makes a new one.
    modified: int = 0

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> V2Node:
        return cls(
            key=obj.get("key", "/"),
            value=obj.get("value"),
            dir=bool(obj.get("dir", False)),
            ttl=obj.get("ttl"),
            nodes=tuple(cls.from_json(n) for n in obj.get("nodes", []) or []),
            modified=int(obj.get("modifiedIndex") or 0),
        )

    def walk(self) -> list[V2Node]:
        """Every node below and including this one."""
        out = [self]
        for n in self.nodes:
            out.extend(n.walk())
        return out

    def children(self) -> dict[str, V2Node]:
        return {n.key.rsplit("/", 1)[-1]: n for n in self.nodes}


@dataclass(frozen=True)
class MemberStatus:
    """One member's ``/v3/maintenance/status``: its id and its leader's, decimal strings as the
    member list's ``ID`` (``leader`` is empty while the cluster has none)."""

    member_id: str
    leader: str
    version: str


class EtcdClient:
    """One etcd endpoint (``http://ip:2379``); every call checks the route first."""

    def __init__(
        self, endpoint: str, guard: RouteGuard | None, timeout: float = 3.0, tls: Any = None
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.guard = guard
        self.timeout = timeout
        self._ctx: Any = tls  # an ssl.SSLContext (hosts.pki.client_tls), or None

    def _request(
        self, method: str, path: str, body: bytes | None = None, form: bool = False
    ) -> tuple[int, Any]:
        if self.guard is not None:
            self.guard.check_url(self.endpoint)
        parts = urllib.parse.urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EtcdError(f"not an etcd endpoint (http[s]://host:port): {self.endpoint!r}")
        tls = None
        if parts.scheme == "https":
            tls = self._ctx
            if tls is None:  # as urllib did: the system's CAs
                import ssl

                tls = ssl.create_default_context()
        headers = {}
        if body is not None:
            headers["Content-Type"] = (
                "application/x-www-form-urlencoded" if form else "application/json"
            )
        try:
            resp = http1.request(
                method,
                parts.path.rstrip("/") + path,
                host=parts.hostname,
                port=parts.port or (443 if tls is not None else 80),
                tls=tls,
                body=body,
                headers=headers,
                timeout=self.timeout,
            )
        except ConnectionRefusedError:
            raise EtcdRefused(f"etcd at {self.endpoint} refused the connection: stopped") from None
        except OSError as e:
            raise EtcdError(f"etcd at {self.endpoint} is unreachable: {_reason(e)}") from None
        try:
            return resp.status, json.loads(resp.body or b"null")
        except ValueError:
            if resp.status < 400:
                raise EtcdError(
                    f"etcd at {self.endpoint} answered {method} {path} with {resp.status} and"
                    f" a body that is not JSON: {resp.body[:80]!r}"
                ) from None
            return resp.status, resp.body.decode(errors="replace")

    def health(self) -> bool:
        status, body = self._request("GET", "/health")
        return status == 200 and isinstance(body, dict) and body.get("health") == "true"

    def version(self) -> str:
        status, body = self._request("GET", "/version")
        if status != 200 or not isinstance(body, dict):
            raise EtcdError(f"etcd at {self.endpoint} answered /version with {status}")
        return str(body.get("etcdserver", ""))

    def cluster_version(self) -> str:
        """``/version``'s ``etcdcluster``: ``not_decided`` until the cluster has had a leader
        (etcd 3.4 ``etcdserver/api/etcdhttp/base.go:64``). Asked of a member's *peer* URL it
        answers before the member is ready (the peer handler, ``api/etcdhttp/peer.go:67``, is
        served from the start; the client port waits on ``ReadyNotify``, ``embed/serve.go:94``)."""
        status, body = self._request("GET", "/version")
        if status != 200 or not isinstance(body, dict):
            raise EtcdError(f"etcd at {self.endpoint} answered /version with {status}")
        return str(body.get("etcdcluster", ""))

    def members(self) -> tuple[str, list[dict[str, Any]]]:
        """(cluster id, members) as the v3 JSON gateway reports them."""
        status, body = self._request("POST", "/v3/cluster/member/list", b"{}")
        if status != 200 or not isinstance(body, dict):
            raise EtcdError(f"etcd at {self.endpoint} answered member/list with {status}: {body}")
        return str(body.get("header", {}).get("cluster_id", "")), list(body.get("members", []))

    def status(self) -> MemberStatus:
        """This member's id, its leader's and its version, as the v3 JSON gateway reports them."""
        status, body = self._request("POST", "/v3/maintenance/status", b"{}")
        if status != 200 or not isinstance(body, dict):
            raise EtcdError(
                f"etcd at {self.endpoint} answered maintenance/status with {status}: {body}"
            )
        header = body.get("header")
        me = str(header.get("member_id", "")) if isinstance(header, dict) else ""
        leader = str(body.get("leader") or "")
        return MemberStatus(me, "" if leader == "0" else leader, str(body.get("version", "")))

    def leader_name(self) -> str | None:
        """The name of this member's leader: its status, then the member list for the name;
        None while the cluster has no leader, or its leader is not listed by name."""
        leader = self.status().leader
        if not leader:
            return None
        _, members = self.members()
        names = [str(m.get("name") or "") for m in members if str(m.get("ID", "")) == leader]
        return names[0] if names and names[0] else None

    def member_add(self, peer_urls: list[str]) -> None:
        """Runtime reconfiguration: announce a new member before it starts."""
        body = json.dumps({"peerURLs": peer_urls}).encode()
        status, answer = self._request("POST", "/v3/cluster/member/add", body)
        if status != 200 or not isinstance(answer, dict) or "member" not in answer:
            raise EtcdError(f"etcd at {self.endpoint} refused member add {peer_urls}: {answer}")

    def member_remove(self, member_id: str) -> None:
        body = json.dumps({"ID": member_id}).encode()
        status, answer = self._request("POST", "/v3/cluster/member/remove", body)
        if status != 200 or not isinstance(answer, dict):
            raise EtcdError(f"etcd at {self.endpoint} refused member remove {member_id}: {answer}")

    def v2_enabled(self) -> bool:
        status, _ = self._request("GET", "/v2/keys/")
        return status == 200

    def v2_get(self, key: str, recursive: bool = True) -> V2Node | None:
        q = "?recursive=true" if recursive else ""
        status, body = self._request("GET", "/v2/keys" + _quote(key) + q)
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict):
            raise EtcdError(f"etcd at {self.endpoint} answered GET v2 {key} with {status}: {body}")
        return V2Node.from_json(body["node"])

    def v2_put(self, key: str, value: str, ttl: int | None = None) -> None:
        body = urllib.parse.urlencode({"value": value, **({"ttl": ttl} if ttl else {})}).encode()
        status, answer = self._request("PUT", "/v2/keys" + _quote(key), body, form=True)
        if status not in (200, 201):
            raise EtcdError(f"etcd at {self.endpoint} refused PUT v2 {key}: {status} {answer}")

    def v2_mkdir(self, key: str) -> bool:
        """Make a directory; False if it is there already (as a directory)."""
        body = urllib.parse.urlencode({"dir": "true", "prevExist": "false"}).encode()
        status, answer = self._request("PUT", "/v2/keys" + _quote(key), body, form=True)
        if status in (200, 201):
            return True
        # 105 "Key already exists": there, as a directory or as a key (which a restore reports)
        if status == 412 and isinstance(answer, dict) and answer.get("errorCode") == 105:
            node = self.v2_get(key, recursive=False)
            if node is not None and node.dir:
                return False
        raise EtcdError(f"etcd at {self.endpoint} refused mkdir v2 {key}: {status} {answer}")

    def v2_rmdir(self, key: str) -> bool:
        """Remove a directory if it is empty; False if it is not there or not empty."""
        status, _ = self._request("DELETE", "/v2/keys" + _quote(key) + "?dir=true")
        return status == 200

    def v2_delete(self, key: str, recursive: bool = False, prev_index: int | None = None) -> bool:
        """Delete a key (a directory with ``recursive``); False if it is not there. With
        ``prev_index``, only while the key's ``modifiedIndex`` is still that (compare and
        delete): False if it was written since."""
        q = "?recursive=true&dir=true" if recursive else ""
        if prev_index is not None:
            q = f"?prevIndex={prev_index}"
        status, body = self._request("DELETE", "/v2/keys" + _quote(key) + q)
        if status == 404:
            return False
        if status == 412 and prev_index is not None:
            return False  # 101 "Compare failed": written since it was read
        if status != 200:
            raise EtcdError(f"etcd at {self.endpoint} refused DELETE v2 {key}: {status} {body}")
        return True


def _quote(key: str) -> str:
    return urllib.parse.quote("/" + key.lstrip("/"))


def _reason(e: OSError) -> str:
    """An OSError in the words urllib used: a timeout says so, an errno its text."""
    if isinstance(e, TimeoutError):
        return "timed out"
    return e.strerror or str(e) or type(e).__name__
