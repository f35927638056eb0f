"""The lab's certificates (the TLS stacks): made here, bundled per host, and the TLS flags.

``pki_up``/``pki_down``/``pki_bundle`` run where pulumi runs; ``pki_install``/``pki_remove``
run on a host, which gets its bundle on stdin.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import shutil
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from overlaylab.errors import LabError, PreflightError
from overlaylab.hosts.proc import log, remove_if_empty, run

if TYPE_CHECKING:
    import ssl

CLIENT = "client"  # the certificate dockerd, the health gate and the validator present
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def pki_up(*, directory: str, members: Sequence[str]) -> None:
    """A CA, one certificate per member (server and peer, for its IP) and one client cert."""
    if shutil.which("openssl") is None:
        raise PreflightError(
            "openssl is missing (it makes the lab's certificates): install openssl"
        )
    d = Path(os.path.expanduser(directory))
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not (d / "ca.pem").exists():
        run(
            [
                *("openssl", "req", "-x509", *_EC, "-keyout", str(d / "ca-key.pem")),
                *("-out", str(d / "ca.pem"), "-days", "825", "-subj", "/CN=overlay-etcd lab CA"),
            ]
        )
    wanted = [m.split("=", 1) for m in members] + [[CLIENT, ""]]
    for name, ip in wanted:
        if not (d / f"{name}.pem").exists():
            _certificate(d, name, ip)
    for key in d.glob("*-key.pem"):
        key.chmod(0o600)
    log(f"pki in {d}: CA, {len(members)} member certificates, a client certificate")


def _certificate(d: Path, name: str, ip: str) -> None:
    """A key and a CA-signed certificate for ``name`` (and ``ip``, if any)."""
    san = f"IP:{ip},IP:127.0.0.1,DNS:{name}" if ip else f"DNS:{name}"
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n")
    csr = d / f"{name}.csr"
    run(
        [
            *("openssl", "req", *_EC, "-keyout", str(d / f"{name}-key.pem")),
            *("-out", str(csr), "-subj", f"/CN={name}"),
        ]
    )
    run(
        [
            *("openssl", "x509", "-req", "-in", str(csr), "-CA", str(d / "ca.pem")),
            *("-CAkey", str(d / "ca-key.pem"), "-CAcreateserial", "-days", "825"),
            *("-extfile", str(ext), "-out", str(d / f"{name}.pem")),
        ]
    )
    csr.unlink()
    ext.unlink()


def pki_down(*, directory: str) -> None:
    d = Path(os.path.expanduser(directory))
    shutil.rmtree(d, ignore_errors=True)
    remove_if_empty(d.parent)
    log(f"pki {d} removed")


def pki_bundle(*, directory: str, member: str) -> None:
    """Print what one host needs (CA, its member pair, the client pair) as base64 tar."""
    d = Path(os.path.expanduser(directory))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in (
            "ca.pem",
            f"{member}.pem",
            f"{member}-key.pem",
            f"{CLIENT}.pem",
            f"{CLIENT}-key.pem",
        ):
            tar.add(d / f, arcname=f)
    print(base64.b64encode(buf.getvalue()).decode(), flush=True)


def pki_install(*, name: str, directory: str) -> None:
    """Unpack this host's certificates (a base64 tar on stdin, from pki-bundle)."""
    data = base64.b64decode(sys.stdin.read().strip())
    d = Path(directory)
    d.mkdir(mode=0o750, parents=True, exist_ok=True)
    # Member by member, plain files with plain names only (the hosts' python 3.11.2 predates
    # extraction filters).
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            src = tar.extractfile(m) if m.isfile() and "/" not in m.name else None
            if src is None or m.name.startswith("."):
                raise LabError(f"unexpected entry {m.name!r} in the certificate bundle")
            (d / m.name).write_bytes(src.read())
    # etcd runs as the etcd user and must read its own key; the client key stays root's.
    for f in d.iterdir():
        if f.name == f"{name}-key.pem":
            f.chmod(0o640)
        elif f.name.endswith("-key.pem"):
            f.chmod(0o600)
        else:
            f.chmod(0o644)
    if run(["id", "etcd"], check=False).returncode == 0:
        run(["chgrp", "etcd", str(d), str(d / f"{name}-key.pem")])
    log(f"{name}: certificates installed in {d}")


def pki_remove(*, name: str, directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):
        Path(directory).parent.rmdir()
    log(f"{name}: certificates removed from {directory}")


def etcd_tls_files(tls_dir: str, name: str) -> tuple[str, str, str]:
    """A member's (certificate, key, CA) paths."""
    return f"{tls_dir}/{name}.pem", f"{tls_dir}/{name}-key.pem", f"{tls_dir}/ca.pem"


def etcd_tls_flags(tls_dir: str | None, name: str) -> list[str]:
    if not tls_dir:
        return []
    cert, key, ca = etcd_tls_files(tls_dir, name)
    return [
        "--cert-file",
        cert,
        "--key-file",
        key,
        "--trusted-ca-file",
        ca,
        "--client-cert-auth",
        "--peer-cert-file",
        cert,
        "--peer-key-file",
        key,
        "--peer-trusted-ca-file",
        ca,
        "--peer-client-cert-auth",
    ]


def docker_tls_opts(tls_dir: str | None) -> dict[str, str] | None:
    """dockerd's cluster-store options for the client certificate (None without TLS)."""
    if not tls_dir:
        return None
    return {
        "kv.cacertfile": f"{tls_dir}/ca.pem",
        "kv.certfile": f"{tls_dir}/{CLIENT}.pem",
        "kv.keyfile": f"{tls_dir}/{CLIENT}-key.pem",
    }


def docker_tls_flags(tls_dir: str | None) -> list[str]:
    opts = docker_tls_opts(tls_dir) or {}
    return [a for k, v in opts.items() for a in ("--cluster-store-opt", f"{k}={v}")]


def client_tls(tls_dir: str | None) -> ssl.SSLContext | None:
    """An SSL context that trusts the lab's CA and presents its client certificate."""
    if not tls_dir:
        return None
    d = os.path.expanduser(tls_dir)
    import ssl  # here: a lab without TLS does not pay for its import in every verb

    ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
    ctx.load_cert_chain(f"{d}/{CLIENT}.pem", f"{d}/{CLIENT}-key.pem")
    return ctx
