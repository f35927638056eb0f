"""Network probes run from inside the lab's network namespaces, in this process.

Why in-process: a ``docker exec`` per ping costs tens of milliseconds of API round trips and
process start-up, and busybox's ping cannot set the don't-fragment bit. Here a probe's socket
is created inside the namespace it must speak from (``setns(2)`` on the creating thread, under
a lock, then straight back), and the socket stays in that namespace for its whole life, so
every probe after that is plain socket I/O, run in parallel by threads. Needs root (raw
sockets, ``setns``), which a local lab needs anyway; without it the caller falls back to
``docker exec``.

Each probe answers one honest question:

- :func:`icmp_echo`: an ICMP echo from a namespace to an address, optionally full-size with the
  don't-fragment bit (``IP_PMTUDISC_PROBE``: DF set, the route's cached path MTU ignored, so
  every run tests the path itself, as ``ping -M probe`` does); an ICMP "fragmentation needed"
  coming back is reported with its next-hop MTU.
- :func:`udp_reaches`: UDP has no handshake and the port may already be taken (the kernel's
  VXLAN socket holds 4789, serf holds 7946), so the destination cannot simply listen. Instead a
  *raw* UDP socket is opened in the destination namespace for the moment of the probe: raw
  sockets get a copy of every UDP datagram delivered locally, after the firewall's INPUT hook
  and before the UDP layer. A datagram carrying a random nonce is sent from the source
  namespace; it reached the destination host iff the raw socket sees the nonce. The payload is
  chosen to be ignored by whoever owns the port (see :data:`VXLAN_NOOP`, :data:`SERF_NOOP`).
- :func:`tcp_open`: a TCP handshake (connect, then close).
- :func:`dns_lookup`: an A query to Docker's embedded DNS (127.0.0.11:53) from a container's
  namespace, which is what a container's resolver asks.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
IP_MTU_DISCOVER = 10
IP_PMTUDISC_PROBE = 3
SIOCGIFMTU = 0x8921
SIOCGIFADDR = 0x8915
SO_BINDTODEVICE = 25
DNS_SERVER = "127.0.0.11"  # Docker's embedded DNS inside every container on a user network

#: A VXLAN header without the I flag: the kernel's VXLAN socket drops it as "invalid flags"
#: before looking at the VNI, so it learns nothing and forwards nothing.
VXLAN_NOOP = b"\x00" * 8
#: A memberlist (serf) compound message of zero parts: accepted and ignored without a log line.
SERF_NOOP = b"\x07\x00"

_libc = ctypes.CDLL(None, use_errno=True)
_setns_lock = threading.Lock()
_ids = random.Random()
_ids_lock = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def _inside(netns: str) -> Iterator[None]:
    """Run the body on this thread inside ``netns`` (a path), then return to where it was."""
    with _setns_lock:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(netns, os.O_RDONLY)
            try:
                _setns(target)
                try:
                    yield
                finally:
                    _setns(own)
            finally:
                os.close(target)
        finally:
            os.close(own)


def socket_in(netns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket that lives in the network namespace at path ``netns``."""
    with _inside(netns):
        return socket.socket(family, kind, proto)


def can_enter() -> bool:
    """Whether this process may create sockets in other namespaces (root, setns)."""
    return os.geteuid() == 0


def link_mtu(netns: str, ifname: str) -> int:
    """The MTU of interface ``ifname`` in namespace ``netns``."""
    with socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM) as s:
        import fcntl

        req = struct.pack("16si12x", ifname.encode(), 0)
        res = fcntl.ioctl(s.fileno(), SIOCGIFMTU, req)
        return int(struct.unpack("16si12x", res)[1])


def addresses(netns: str) -> dict[str, str]:
    """The IPv4 address of each interface in namespace ``netns`` that has one (by name)."""
    import fcntl

    out: dict[str, str] = {}
    with _inside(netns):
        names = [n for _, n in socket.if_nameindex()]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        for name in names:
            req = struct.pack("16sH14s", name.encode()[:15], socket.AF_INET, b"\0" * 14)
            try:
                res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, req)
            except OSError:
                continue  # no IPv4 address
            out[name] = socket.inet_ntoa(res[20:24])
    return out


def _new_id() -> int:
    with _ids_lock:
        return _ids.randrange(1, 0xFFFF)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_echo(
    netns: str,
    dst: str,
    size: int = 56,
    df: bool = False,
    timeout: float = 1.0,
    ifname: str | None = None,
) -> Outcome:
    """One echo request of ``size`` payload bytes from ``netns`` to ``dst``; wait for its reply.
    ``ifname``: sent out of that interface only (``SO_BINDTODEVICE``), as ``ping -I``."""
    ident, seq = _new_id(), 1
    payload = os.urandom(8) + b"\0" * max(0, size - 8)
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
    s = socket_in(netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        if df:
            s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
        if ifname:
            s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
        try:
            s.sendto(packet, (dst, 0))
        except OSError as e:
            return Outcome(False, f"cannot send to {dst}: {e.strerror or e}")
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            data, (src, _) = s.recvfrom(65535)
            ihl = (data[0] & 0x0F) * 4
            typ, code = data[ihl], data[ihl + 1]
            if typ == 0 and src == dst and struct.unpack("!H", data[ihl + 4 : ihl + 6])[0] == ident:
                return Outcome(True, "reply")
            if typ == 3 and _quotes(data[ihl + 8 :], dst, ident):
                if code == 4:
                    mtu = struct.unpack("!H", data[ihl + 6 : ihl + 8])[0]
                    return Outcome(False, f"fragmentation needed (next-hop MTU {mtu}, from {src})")
                return Outcome(False, f"destination unreachable (code {code}, from {src})")
        return Outcome(False, f"no reply from {dst} in {timeout:g}s")
    finally:
        s.close()


def _quotes(inner: bytes, dst: str, ident: int) -> bool:
    """Does an ICMP error's quoted packet name our echo to ``dst``?"""
    if len(inner) < 28:
        return False
    ihl = (inner[0] & 0x0F) * 4
    return (
        socket.inet_ntoa(inner[16:20]) == dst
        and len(inner) >= ihl + 6
        and struct.unpack("!H", inner[ihl + 4 : ihl + 6])[0] == ident
    )


def udp_reaches(
    src_netns: str,
    dst_netns: str,
    dst: str,
    port: int,
    payload: bytes,
    timeout: float = 1.0,
) -> Outcome:
    """Does a UDP datagram to ``dst:port`` sent from ``src_netns`` get delivered in
    ``dst_netns``? Observed by a raw socket there (after the firewall, before UDP)."""
    nonce = os.urandom(12)
    listener = socket_in(dst_netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    sender = socket_in(src_netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        try:
            sender.sendto(payload + nonce, (dst, port))
        except OSError as e:
            return Outcome(False, f"cannot send UDP {port} to {dst}: {e.strerror or e}")
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([listener], [], [], left)[0]:
                break
            data = listener.recv(65535)
            ihl = (data[0] & 0x0F) * 4
            dport = struct.unpack("!H", data[ihl + 2 : ihl + 4])[0]
            if dport == port and data.endswith(nonce):
                return Outcome(True, "delivered")
        return Outcome(False, f"not delivered in {timeout:g}s")
    finally:
        listener.close()
        sender.close()


def tcp_open(netns: str, dst: str, port: int, timeout: float = 1.0) -> Outcome:
    """A TCP handshake from ``netns`` to ``dst:port``."""
    s = socket_in(netns, socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        try:
            s.connect((dst, port))
        except TimeoutError:
            return Outcome(False, f"no answer in {timeout:g}s")
        except OSError as e:
            return Outcome(False, e.strerror or str(e))
        return Outcome(True, "open")
    finally:
        s.close()


def dns_lookup(netns: str, name: str, timeout: float = 1.0) -> tuple[list[str], str]:
    """A records of ``name`` from Docker's embedded DNS, asked from ``netns``: (addresses, '')
    or ([], why not)."""
    qid = _new_id()
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)
    s = socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        try:
            s.sendto(query, (DNS_SERVER, 53))
            while True:
                data = s.recv(4096)
                if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                    break
        except TimeoutError:
            return [], f"no answer from {DNS_SERVER} in {timeout:g}s"
        except OSError as e:
            return [], f"cannot ask {DNS_SERVER}: {e.strerror or e}"
    finally:
        s.close()
    flags, qd, an = struct.unpack("!HHH", data[2:8])
    if flags & 0xF:
        rcode = flags & 0xF
        return [], {2: "SERVFAIL", 3: "NXDOMAIN"}.get(rcode, f"rcode {rcode}")
    pos = 12
    for _ in range(qd):
        pos = _skip_name(data, pos) + 4
    found: list[str] = []
    for _ in range(an):
        pos = _skip_name(data, pos)
        typ, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[pos : pos + 10])
        pos += 10
        if typ == 1 and rdlen == 4:
            found.append(socket.inet_ntoa(data[pos : pos + 4]))
        pos += rdlen
    return found, "" if found else "no A record"


def _skip_name(data: bytes, pos: int) -> int:
    while True:
        n = data[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += n + 1
