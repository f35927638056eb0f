"""The lab's page in a real browser, on a real lab (issue 17).

A 2-host lab (``OVERLAYLAB_PICTURE_HOSTS`` for more); the validator writes its page
(``--html``) and headless Chromium renders it. Healthy: every host, container and tunnel is
drawn, none failed. With UDP 4789 dropped on one host (as in test_faults.py): the tunnels
touching that host, and only they, are drawn failed, and the diagnosis line is on the page.
Screenshots go to ``$OVERLAYLAB_SCREENSHOTS`` when it is set.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlaylab.netrule import RouteGuard
from overlaylab.spec import OUT_VALIDATION_SPEC
from tests.browser import Dom, chromium, parse
from tests.labtools import Running, failed_first, kept_up, lab_config, parsed, validate_cli

pytestmark = pytest.mark.lab

LAB_ID = "pic"
SEGMENT = "192.168.232"
HOSTS = int(os.environ.get("OVERLAYLAB_PICTURE_HOSTS", "2"))
RULE = ["INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    state = tmp_path_factory.mktemp(LAB_ID) / "state.json"
    lab = Running(LAB_ID, state, RouteGuard(f"ovbr-{LAB_ID}"))
    with kept_up(lab, lab_config(HOSTS, lab_id=LAB_ID, segment=SEGMENT)):
        yield lab


def shown(lab: Running, tmp: Path, suffix: str, code: int, timeout: float) -> Dom:
    """The validator's page of the lab now, as Chromium renders it (and screenshots it)."""
    html = tmp / f"picture{suffix}.html"
    res = validate_cli(lab.outputs[OUT_VALIDATION_SPEC], timeout, "--html", str(html))
    assert res.returncode == code, failed_first(res.stdout) + res.stderr[-2000:]
    shots = os.environ.get("OVERLAYLAB_SCREENSHOTS")
    shot = Path(shots) / f"picture-{HOSTS}hosts{suffix}.png" if shots else None
    return parse(chromium(html, screenshot=shot, height=max(900, 450 + 180 * HOSTS)))


def tunnels(lab: Running) -> list[tuple[str, str]]:
    names = [h.name for h in parsed(lab.cfg).hosts]
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def test_the_page_of_a_healthy_lab(lab: Running, tmp_path: Path) -> None:
    dom = shown(lab, tmp_path, "", 0, 60)
    cfg = parsed(lab.cfg)
    ids = [f"host-{h.name}" for h in cfg.hosts] + [f"container-{c.name}" for c in cfg.containers]
    ids += [f"tunnel-{a}-{b}" for a, b in tunnels(lab)]
    assert {i: dom.status(i) for i in ids} == dict.fromkeys(ids, "passed")


def test_the_page_with_udp_4789_dropped_on_one_host(lab: Running, tmp_path: Path) -> None:
    cfg = parsed(lab.cfg)
    host = cfg.hosts[1]
    ns = ["nsenter", f"--net=/run/netns/{host.netns(cfg.lab_id)}", "--", "iptables"]
    subprocess.run([*ns, "-I", *RULE], check=True, capture_output=True)
    try:
        subprocess.run([*ns, "-C", *RULE], check=True, capture_output=True)  # it is in place
        dom = shown(lab, tmp_path, "-vxlan-dropped", 1, 1)
    finally:
        subprocess.run([*ns, "-D", *RULE], check=True, capture_output=True)
    assert subprocess.run([*ns, "-C", *RULE], capture_output=True).returncode != 0
    got = {(a, b): dom.status(f"tunnel-{a}-{b}") for a, b in tunnels(lab)}
    assert got == {t: "failed" if host.name in t else "passed" for t in tunnels(lab)}
    first = cfg.hosts[0].name
    line = f"diagnosis: VXLAN from {first} to {host.name} is dropped: underlay ping works"
    assert line in " ".join(dom.text)
    lab.validate()  # undone, the lab validates again
