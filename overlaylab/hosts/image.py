"""The test image: a busybox root file system, imported into a daemon (no registry here)."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

from overlaylab.errors import DockerError, PreflightError
from overlaylab.hosts.engineapi import EngineAPI
from overlaylab.hosts.proc import log, run


def busybox_rootfs() -> bytes:
    """A tar of a minimal busybox root: /bin/busybox and a link per applet."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise PreflightError("busybox not found: install Debian's busybox-static")
    applets = run([busybox, "--list"]).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for a in applets:
            if a == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{a}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
    return buf.getvalue()


def image_import(*, hostname: str, socket_path: str, image: str) -> None:
    """Import ``image`` from busybox through the Engine API at ``socket_path``, if missing."""
    client = EngineAPI(socket_path, timeout=60)
    if client.image_id(image) is not None:
        log(f"{hostname}: image {image} present")
        return
    repo, _, tag = image.partition(":")
    client.import_image(busybox_rootfs(), repository=repo, tag=tag or "latest")
    imported = client.image_id(image)
    if imported is None:
        raise DockerError(f"{hostname}: the import of {image} ended, but the daemon has no {image}")
    log(f"{hostname}: imported {image} from busybox-static ({imported})")


def image_remove(*, hostname: str, socket_path: str, image: str) -> None:
    if not Path(socket_path).exists():
        return
    try:
        if EngineAPI(socket_path, timeout=30).remove_image(image, force=True):
            log(f"{hostname}: removed image {image}")
    except DockerError as e:  # the daemon is going (its data-root with it) or already gone
        log(f"{hostname}: image {image} not removed: {e}")
