"""The SSH hosts' package layout, run for real in a directory here: the provider's copy of a
directory (into remotePath/<basename>), the link switched to a new version before the old
one's delete, and the delete of the current version removing everything."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from components.remote_hosts import link_package, remove_package

PACKAGE = Path(__file__).resolve().parents[2] / "overlaylab"


def _sh(script: str) -> None:
    subprocess.run(["sh", "-c", script], check=True, capture_output=True)


def _copy(root: Path, version: str, marker: str) -> None:
    """What CopyToRemote does with source=FileArchive(".../overlaylab"), no trailing "/", and
    remotePath=root/<version> (pulumi-command v1.2.1 remote/copyController.go:229-255)."""
    dest = root / version / PACKAGE.name
    shutil.copytree(PACKAGE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "_version.py").write_text(f"V = {marker!r}\n")


def _imported(root: Path) -> str:
    res = subprocess.run(
        [sys.executable, "-c", "import overlaylab.hostops, overlaylab._version as v; print(v.V)"],
        env={"PYTHONPATH": str(root)},
        cwd=root.parent,  # not the project: python -c puts the working directory first
        capture_output=True,
        text=True,
        check=True,
    )
    return res.stdout.strip()


def test_an_upgrade_links_the_new_version_before_the_old_ones_delete_removes_only_itself(
    tmp_path: Path,
) -> None:
    root = tmp_path / "lib"
    _copy(root, "aaaa", "one")
    _sh(link_package("aaaa", str(root)))
    assert _imported(root) == "one"
    # the engine's order for a create-first replacement: new copy, new link, then old delete
    _copy(root, "bbbb", "two")
    _sh(link_package("bbbb", str(root)))
    assert _imported(root) == "two"
    _sh(remove_package("aaaa", str(root)))
    assert sorted(p.name for p in root.iterdir()) == ["bbbb", "overlaylab"]
    assert _imported(root) == "two"
    # the current version's delete (destroy, or the host leaving): nothing is left
    _sh(remove_package("bbbb", str(root)))
    assert not root.exists()


def test_the_link_replaces_the_directory_an_earlier_layout_left(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    shutil.copytree(PACKAGE, root / "overlaylab", ignore=shutil.ignore_patterns("__pycache__"))
    _copy(root, "cccc", "three")
    _sh(link_package("cccc", str(root)))
    assert (root / "overlaylab").is_symlink()
    assert _imported(root) == "three"
