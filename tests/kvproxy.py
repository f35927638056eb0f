"""A fault injector between one host's dockerd and etcd: the List of a network's endpoints is
held past libkv's 3 s header timeout while armed, everything else passes untouched.

It runs inside the host's network namespace as a transparent proxy. An iptables REDIRECT in
that namespace sends every new TCP connection to port 2379 (any member: the etcd client fails
over between members) to it; it finds the original destination with SO_ORIGINAL_DST and
connects there with mark 1, which the REDIRECT skips. Connections opened before the rule go on
directly, so the daemon is restarted after :meth:`KvProxy.install`.

    python -m tests.kvproxy PORT ARM_FILE DELAY    # (inside the namespace; the class does it)
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

#: libkv's List of a network's endpoints: GET .../endpoint/<network id>/?...recursive=true
LIST = re.compile(rb"GET /v2/keys/docker/network/v1\.0/endpoint/([0-9a-f]+)/?\?[^ ]*recursive=true")
SO_ORIGINAL_DST = 80
SO_MARK = 36
MARK = "1"


class KvProxy:
    """Installed in ``netns`` (a path under /run/netns); :meth:`remove` undoes all of it."""

    def __init__(self, netns: str, workdir: Path, port: int = 12379, delay: float = 12) -> None:
        self.netns, self.port, self.delay = netns, port, delay
        self.arm_file = workdir / "kvproxy.arm"
        self.log = workdir / "kvproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.rule = ["-p", "tcp", "--dport", "2379", "-m", "mark", "!", "--mark", MARK,
                     "-j", "REDIRECT", "--to-ports", str(port)]  # fmt: skip

    def _ns(self, *argv: str) -> list[str]:
        return ["nsenter", f"--net={self.netns}", "--", *argv]

    def install(self) -> None:
        with self.log.open("wb") as out:
            argv = [sys.executable, "-m", "tests.kvproxy", str(self.port), str(self.arm_file)]
            self.proc = subprocess.Popen(
                self._ns(*argv, str(self.delay)), stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while "listening" not in self.log.read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)
        subprocess.run(self._ns("iptables", "-t", "nat", "-A", "OUTPUT", *self.rule), check=True)

    def arm(self) -> None:
        self.arm_file.touch()

    def disarm(self) -> None:
        self.arm_file.unlink(missing_ok=True)

    def held(self, network_id: str) -> int:
        """How many Lists of that network's endpoints were held so far."""
        return sum(
            1 for ln in self.log.read_text().splitlines() if ln.startswith(f"held {network_id}")
        )

    def remove(self) -> None:
        self.disarm()
        subprocess.run(self._ns("iptables", "-t", "nat", "-D", "OUTPUT", *self.rule),
                       capture_output=True)  # fmt: skip
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.unlink(missing_ok=True)


async def _pipe(
    r: asyncio.StreamReader, w: asyncio.StreamWriter, arm: Path | None, delay: float
) -> None:
    try:
        while data := await r.read(65536):
            m = LIST.search(data) if arm is not None else None
            if m and arm is not None and arm.exists():
                print(f"held {m.group(1).decode()} {delay}s", flush=True)
                await asyncio.sleep(delay)
            w.write(data)
            await w.drain()
    except OSError:
        pass
    finally:
        w.close()


async def _serve(port: int, arm: Path, delay: float) -> None:
    loop = asyncio.get_running_loop()

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        raw = cw.get_extra_info("socket").getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        dport, ip = struct.unpack("!2xH4s8x", raw)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, SO_MARK, int(MARK))
        s.setblocking(False)
        try:
            await loop.sock_connect(s, (socket.inet_ntoa(ip), dport))
        except OSError:
            s.close()
            cw.close()
            return
        sr, sw = await asyncio.open_connection(sock=s)
        await asyncio.gather(_pipe(cr, sw, arm, delay), _pipe(sr, cw, None, delay))

    server = await asyncio.start_server(handle, "0.0.0.0", port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])))
