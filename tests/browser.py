"""Headless Chromium (Debian's ``chromium``) on a local page: its rendered DOM and a screenshot.

Only ``file://`` pages are opened, and Chromium is kept off the network: no background
requests, no DNS (every name resolves to nothing) and any request through a proxy on a closed
loopback port."""

from __future__ import annotations

import html.parser
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def chromium(page: Path, *, screenshot: Path | None = None, height: int = 900) -> str:
    """The page's DOM after rendering (``--dump-dom``); with ``screenshot``, a 1280 px wide
    PNG of it there too (a second run)."""
    if not Path(CHROMIUM).exists():
        raise AssertionError(f"{CHROMIUM} is missing: run scripts/setup (it installs chromium)")
    runs = [["--dump-dom"]] + ([[f"--screenshot={screenshot}"]] if screenshot else [])
    dom = ""
    for extra in runs:
        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            res = subprocess.run(
                [
                    CHROMIUM,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--host-resolver-rules=MAP * ~NOTFOUND",
                    "--proxy-server=127.0.0.1:9",
                    f"--user-data-dir={profile}",
                    f"--window-size=1280,{height}",
                    "--hide-scrollbars",
                    *extra,
                    page.resolve().as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        assert res.returncode == 0, res.stderr[-2000:]
        if extra == ["--dump-dom"]:
            dom = res.stdout
    if screenshot is not None:
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", screenshot
    return dom


class Dom(html.parser.HTMLParser):
    """What a test asserts on: each element's classes by id, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: dict[str, set[str]] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.classes[str(a["id"])] = set((a.get("class") or "").split())

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def status(self, eid: str) -> str:
        found = [c for c in self.classes[eid] if c.startswith("status-")]
        assert len(found) == 1, (eid, self.classes[eid])
        return found[0][len("status-") :]


def parse(dom: str) -> Dom:
    d = Dom()
    d.feed(dom)
    return d
