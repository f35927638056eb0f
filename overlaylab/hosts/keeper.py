"""The names keeper: the names gate's mend, every time a container joins an overlay.

The names gate (``names.py``) runs in ``up``. A user who restarts a container by hand
(``docker restart test2``) runs no ``up``: when that container is its host's only one on the
network, the restart ends the host's watch on the network's endpoints and starts a new one,
whose first read of the endpoints may fail on a loaded machine and is never retried
(libnetwork ``store.go``: ``processEndpointDelete`` drops the network's service records with
its last local endpoint; ``networkWatchLoop`` logs a failed ``getEndpointsFromStore`` at debug
level). The container then never again resolves the other hosts' names.

So each host runs this keeper beside its dockerd (a process in the lab's host directory on a
local lab, a systemd unit bound to docker.service on a real host). It follows Docker's events;
each time a container joins an overlay network (and for every such container whenever the
keeper (re)connects to the daemon), it waits for the other endpoints' names to resolve in it,
and where they do not, makes the names gate's endpoint change: a container of the same image
started on the network and gone. The names it expects are the endpoints Docker wrote in etcd
for that network, so a container started by hand is looked after too.

Standard library only (it runs on real hosts); Docker is reached with its CLI.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Sequence

from overlaylab.errors import DockerError, LabError
from overlaylab.etcd import EtcdClient
from overlaylab.hosts.dockerd import ENDPOINTS
from overlaylab.hosts.names import SETTLE, endpoint_change, missing_names, settle_names
from overlaylab.hosts.proc import log, run

#: Containers the program itself starts on a network (the gate's, the keeper's): never checked.
OWN_PREFIX = "overlaylab-"
#: Endpoint changes per join before the keeper gives up (and says so in its log).
CHANGES = 3
#: Seconds a container that joined a network is given to be running: the connect event comes
#: while Docker starts it (state created, or restarting for a `docker restart`).
START_WAIT = 30.0


def probe_name(hostname: str) -> str:
    return f"{OWN_PREFIX}keeper-{hostname}"


def expected_names(store: EtcdClient, network_id: str, own: str) -> list[str]:
    """Every endpoint's name on the network, as Docker wrote them in etcd, but ``own`` and
    the program's own probes."""
    node = store.v2_get(f"{ENDPOINTS}/{network_id}")
    names = set()
    for n in node.nodes if node else ():
        if n.value:
            try:
                name = str(json.loads(n.value).get("name", ""))
            except ValueError:
                continue
            if name and name != own and not name.startswith(OWN_PREFIX):
                names.add(name)
    return sorted(names)


class Keeper:
    def __init__(
        self, *, hostname: str, docker: Sequence[str], store: EtcdClient, settle: float = SETTLE
    ) -> None:
        self.hostname = hostname
        self.docker = list(docker)
        self.store = store
        self.settle = settle
        # One mend at a time: the probe has one name per host.
        self._mend = threading.Lock()

    # --- one container on one network ----------------------------------------------------------

    def look_after(self, container: str, network_id: str, network: str) -> None:
        """Wait for ``container`` to resolve the network's other names; mend where it does not."""
        try:
            self._look_after(container, network_id, network)
        except LabError as e:
            log(f"{self.hostname}: keeper: {container} on {network}: {e}")

    def _inspect(self, container: str) -> tuple[str, str, bool] | None:
        """Its name, image and whether it runs; None when it is gone."""
        res = run(
            [*self.docker, "inspect", "-f", "{{.Name}} {{.Config.Image}} {{.State.Running}}",
             container],
            check=False,
        )  # fmt: skip
        parts = res.stdout.split()
        if res.returncode != 0 or len(parts) != 3:
            return None
        return parts[0].lstrip("/"), parts[1], parts[2] == "true"

    def _name_and_image(self, container: str, wait: float = 0.0) -> tuple[str, str] | None:
        """Its name and image once it runs, else None (gone, or not running after ``wait``
        seconds: nothing to look after). Docker sends `network connect` while it starts the
        container, before State.Running (a `docker restart` shows it exited until then), so a
        container that joined is given ``wait`` to run; the keeper's and the gate's own probes
        are not waited for."""
        deadline = time.monotonic() + wait
        while True:
            found = self._inspect(container)
            if found is None:
                return None
            name, image, running = found
            if running:
                return name, image
            if name.startswith(OWN_PREFIX) or time.monotonic() >= deadline:
                return None
            time.sleep(0.2)

    def _look_after(self, container: str, network_id: str, network: str) -> None:
        found = self._name_and_image(container, wait=START_WAIT)
        if found is None:
            return
        name, image = found
        if name.startswith(OWN_PREFIX):
            return

        def change(n: int, missing: list[str]) -> None:
            with self._mend:
                log(f"{self.hostname}: keeper: {name} does not resolve {', '.join(missing)} "
                    f"on {network}: Docker lost a read of the network's endpoints; an endpoint "
                    f"change ({n} of {CHANGES}) makes it read them again")  # fmt: skip
                try:
                    endpoint_change(self.docker, self.hostname, network, image,
                                    probe_name(self.hostname))  # fmt: skip
                except DockerError as e:
                    log(f"{self.hostname}: keeper: the endpoint change on {network} failed: {e}")

        missing = settle_names(
            lambda: self._missing(name, network_id), change, changes=CHANGES, seconds=self.settle
        )
        if missing:
            log(f"{self.hostname}: keeper: {name} still does not resolve {', '.join(missing)} "
                f"on {network} after {CHANGES} endpoint changes: run the validator")  # fmt: skip
        else:
            log(f"{self.hostname}: keeper: {name} resolves every name on {network}")

    def _missing(self, name: str, network_id: str) -> list[str]:
        if self._name_and_image(name) is None:
            return []  # stopped meanwhile
        expected = expected_names(self.store, network_id, name)
        return missing_names(self.docker, name, expected) if expected else []

    # --- the daemon's events -------------------------------------------------------------------

    def _spawn(self, container: str, network_id: str, network: str) -> None:
        threading.Thread(
            target=self.look_after, args=(container, network_id, network), daemon=True
        ).start()

    def sweep(self) -> None:
        """Every container on an overlay network, running or not: at (re)connection, a join
        may have been missed, and one whose connect event came before the subscription may
        not be running yet (a `docker restart` shows it exited until it runs); each is given
        the start wait, as after a connect event."""
        nets = run(
            [*self.docker, "network", "ls", "--filter", "driver=overlay", "--format",
             "{{.ID}} {{.Name}}"],
            check=False,
        )  # fmt: skip
        overlays = dict(line.split(" ", 1) for line in nets.stdout.splitlines() if " " in line)
        if not overlays:
            return
        ps = run([*self.docker, "ps", "-a", "-q", "--no-trunc"], check=False)
        for cid in ps.stdout.split():
            res = run(
                [*self.docker, "inspect", "-f",
                 "{{range .NetworkSettings.Networks}}{{.NetworkID}} {{end}}", cid],
                check=False,
            )  # fmt: skip
            for nid in res.stdout.split():
                short = next((k for k in overlays if nid.startswith(k)), None)
                if short is not None:
                    self._spawn(cid, nid, overlays[short])

    def follow(self) -> None:
        """Forever: follow the daemon's network-connect events, reconnecting when it goes."""
        while True:
            proc = subprocess.Popen(
                [*self.docker, "events", "--format", "{{json .}}", "--filter", "type=network",
                 "--filter", "event=connect"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )  # fmt: skip
            try:
                time.sleep(0.5)
                if proc.poll() is None:
                    self.sweep()  # after the subscription: nothing falls between the two
                assert proc.stdout is not None
                for line in proc.stdout:
                    self._event(line)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            time.sleep(1)  # the daemon is gone or restarting

    def _event(self, line: str) -> None:
        try:
            ev = json.loads(line)
            attrs = ev["Actor"]["Attributes"]
            if attrs.get("type") == "overlay":
                self._spawn(attrs["container"], ev["Actor"]["ID"], attrs.get("name", "?"))
        except (ValueError, KeyError, TypeError):
            log(f"{self.hostname}: keeper: an event it does not read: {line.strip()[:200]}")


def names_keep(*, hostname: str, docker: Sequence[str], store: EtcdClient) -> None:
    log(f"{hostname}: names keeper following {' '.join(docker)}")
    Keeper(hostname=hostname, docker=docker, store=store).follow()
