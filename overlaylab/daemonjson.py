"""Docker's /etc/docker/daemon.json on a real host: our keys merged in, the rest kept.

Pure functions, so the merge can be tested as a table of before/after cases. Restoring is
byte for byte: the original file (or its absence) is saved before the first change.
"""

from __future__ import annotations

import json
from typing import Any

from overlaylab.errors import ConfigError
from overlaylab.etcd import etcd_url

#: The keys this project owns in daemon.json.
OWNED = ("cluster-store", "cluster-advertise", "cluster-store-opts")
TLS_KEYS = ("kv.cacertfile", "kv.certfile", "kv.keyfile")


def merge(
    existing: str | None,
    cluster_store: str,
    cluster_advertise: str,
    store_opts: dict[str, str] | None = None,
) -> str:
    """daemon.json text with the cluster store set and every other key as it was."""
    current: dict[str, Any] = {}
    if existing is not None and existing.strip():
        try:
            parsed = json.loads(existing)
        except ValueError as e:
            raise ConfigError(
                f"/etc/docker/daemon.json is not valid JSON ({e}): fix or remove it first"
            ) from None
        if not isinstance(parsed, dict):
            raise ConfigError(
                "/etc/docker/daemon.json is not a JSON object: fix or remove it first"
            )
        current = parsed
    if store_opts:
        present = [k for k in TLS_KEYS if store_opts.get(k)]
        if present and len(present) != len(TLS_KEYS):
            raise ConfigError(
                f"cluster-store-opts needs all of {', '.join(TLS_KEYS)} or none, got "
                f"{', '.join(present)}"
            )
    merged = {k: v for k, v in current.items() if k not in OWNED}
    merged["cluster-store"] = cluster_store
    merged["cluster-advertise"] = cluster_advertise
    if store_opts:
        merged["cluster-store-opts"] = dict(store_opts)
    return json.dumps(merged, indent=2) + "\n"


def tcp_listeners(text: str | None) -> list[str]:
    """The TCP addresses a daemon.json makes dockerd listen on (there should be none)."""
    if not text or not text.strip():
        return []
    hosts = json.loads(text).get("hosts") or []
    return [h for h in hosts if str(h).startswith("tcp://")]


def store_endpoints(text: str | None) -> tuple[list[str], dict[str, str] | None]:
    """The etcd client URLs a daemon.json's cluster store names, and its TLS files (or None).

    ``etcd://a:2379,b:2379`` with ``kv.*`` files in ``cluster-store-opts`` is
    ``https://a:2379``, ``https://b:2379``; without them, ``http``. No store: no URLs.
    """
    if not text or not text.strip():
        return [], None
    conf = json.loads(text)
    store = str(conf.get("cluster-store") or "")
    if not store.startswith("etcd://"):
        return [], None
    opts = conf.get("cluster-store-opts") or {}
    tls = {k: str(opts[k]) for k in TLS_KEYS if opts.get(k)}
    on = len(tls) == len(TLS_KEYS)
    hosts = [h.strip() for h in store.removeprefix("etcd://").split("/")[0].split(",")]
    return [etcd_url(h, None, on) for h in hosts if h], (tls if on else None)
