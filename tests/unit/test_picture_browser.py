"""The page in a real browser (headless Chromium), from synthetic records: what a person sees
is what the page says: every host, container and tunnel drawn, the broken tunnels and only
they failed, the diagnosis line on the page. Screenshots go to $OVERLAYLAB_SCREENSHOTS if set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from overlaylab.picture import page
from tests import picture_samples as samples
from tests.browser import chromium, parse


@pytest.mark.parametrize(("hosts", "drop"), [(2, None), (8, "docker-node2")])
def test_the_page_as_chromium_renders_it(tmp_path: Path, hosts: int, drop: str | None) -> None:
    sp = samples.spec(hosts)
    html = tmp_path / "lab.html"
    results = samples.records(sp, drop)
    html.write_text(page(sp, results, samples.facts(sp), seconds=1.3, at="2026-12-02T01:00:00Z"))
    shots = os.environ.get("OVERLAYLAB_SCREENSHOTS")
    shot = Path(shots) / f"picture-unit-{hosts}hosts.png" if shots else None
    dom = parse(chromium(html, screenshot=shot, height=900 if hosts == 2 else 1700))
    names = [h["name"] for h in sp["hosts"]]
    for h in names:
        assert dom.status(f"host-{h}") == "passed"
    for c in sp["containers"]:
        assert dom.status(f"container-{c['name']}") == "passed"
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    for a, b in pairs:
        want = "failed" if drop in (a, b) else "passed"
        assert dom.status(f"tunnel-{a}-{b}") == want
    text = " ".join(dom.text)
    if drop:
        assert f"diagnosis: VXLAN from docker-node1 to {drop} is dropped" in text
    else:
        assert "no diagnosis: no layer is broken" in text and text.count("diagnosis:") == 1
    assert f"{len(results)} checks, {sum(not r.ok for r in results)} failed" in text
