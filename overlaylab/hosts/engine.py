"""Facts about dockerd that both transports rely on: its node key, serf, the Engine API."""

from __future__ import annotations

from typing import Any

from overlaylab.hosts.proc import run

SERF_PORT = 7946


def node_key(advertise: str) -> str:
    """The v2 key a daemon registers in its cluster store (``/docker/nodes/<advertise>``)."""
    return f"/docker/nodes/{advertise}"


def serf_listening(netns: str | None = None) -> bool:
    """Has dockerd started the overlay's gossip (serf on TCP 7946)? It does so only once its
    store discovery has seen this host, which is when it knows its own advertise address."""
    prefix = ["nsenter", f"--net=/run/netns/{netns}", "--"] if netns else []
    out = run([*prefix, "ss", "-Hltn", "sport", "=", f":{SERF_PORT}"], check=False).stdout
    return bool(out.strip())


def docker_api(socket_path: str, timeout: float = 30) -> Any:
    """A Docker Engine API client on a unix socket (API 1.41 = Docker 20.10; no version probe).

    ``docker`` is imported here, not at module level: real hosts have no docker SDK."""
    import docker

    return docker.APIClient(base_url=f"unix://{socket_path}", version="1.41", timeout=timeout)
