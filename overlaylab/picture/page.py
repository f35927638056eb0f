"""The report page: one self-contained HTML file (inline CSS and SVG, no script, no URL).

On top the stack, when the checks ran and the diagnosis lines; then the report's last line
(``N checks, F failed, in S s``), the drawing, the failed checks with their expected and actual
values, and every check in a closed ``<details>``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from overlaylab.picture.graph import FILL, LINE, svg
from overlaylab.picture.model import Picture, Status, build
from overlaylab.validate.diagnose import diagnose
from overlaylab.validate.facts import Facts
from overlaylab.validate.records import Result
from overlaylab.validate.report import count_line

CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 16px 20px;
       color: #1d1d1d; font-size: 14px; }
h1 { font-size: 20px; margin: 0 0 4px 0; }
h2 { font-size: 16px; margin: 18px 0 6px 0; }
.meta { color: #555; margin: 0 0 10px 0; }
.diagnosis { background: #fde2e1; border-left: 5px solid #c62828; padding: 3px 10px;
             margin: 2px 0; font-family: "DejaVu Sans Mono", monospace; font-size: 13px; }
.healthy { background: #e3f4e1; border-left: 5px solid #2e7d32; padding: 6px 10px; }
.planned-note { background: #f4f4f4; border-left: 5px solid #8c8c8c; padding: 6px 10px; }
#summary { font-family: "DejaVu Sans Mono", monospace; font-weight: bold; margin: 8px 0; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 8px; border: 1px solid;
               border-radius: 4px; font-size: 12px; }
figure { margin: 8px 0; }
svg.drawing { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.failed td { background: #fff4f4; }
td.mono { font-family: "DejaVu Sans Mono", monospace; }
details summary { cursor: pointer; margin: 12px 0 6px 0; }
"""

LEGEND: tuple[tuple[Status, str], ...] = (
    ("passed", "passed: every check about it passed"),
    ("failed", "failed: a check about it failed"),
    ("unknown", "unknown: no check is about it"),
    ("planned", "planned: drawn from the config, nothing checked"),
)


def _e(x: Any) -> str:
    return html.escape(str(x))


def _rows(results: Iterable[Result], where: dict[int, list[str]]) -> str:
    out = []
    for r in results:
        drawn = ", ".join(where.get(id(r), [])) or "(not drawn)"
        cls = "" if r.ok else ' class="failed"'
        out.append(
            f"<tr{cls}><td>{'ok' if r.ok else 'FAIL'}</td><td class=mono>{_e(r.check)}</td>"
            f"<td>{_e(r.subject)}</td><td>{_e(r.expected)}</td><td>{_e(r.actual)}</td>"
            f"<td class=mono>{_e(drawn)}</td></tr>"
        )
    return "\n".join(out)


def _table(rid: str, results: list[Result], where: dict[int, list[str]]) -> str:
    return (
        f'<table id="{rid}"><thead><tr><th></th><th>check</th><th>subject</th>'
        "<th>expected</th><th>actual</th><th>drawn on</th></tr></thead>\n<tbody>\n"
        f"{_rows(results, where)}\n</tbody></table>"
    )


def page(
    spec: dict[str, Any],
    results: Iterable[Result] = (),
    facts: Facts | None = None,
    *,
    seconds: float = 0.0,
    at: str | None = None,
    stack: str | None = None,
    planned: bool = False,
    now: datetime | None = None,
) -> str:
    """The page of a lab as the validator found it, or (``planned``) as configured."""
    results = list(results)
    pic = build(spec, results, facts, planned=planned)
    drawing = svg(pic)
    made = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = f"stack {stack}" if stack else f"lab {spec['lab'].get('id', '?')}"
    nets = ", ".join(f"{n.name} {n.subnet}" for n in pic.overlays)
    hosts = spec["hosts"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>overlay-etcd: {_e(name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<header><h1 id=stack>overlay-etcd: {_e(name)}</h1>",
        f"<p class=meta>{len(hosts)} host{'s' if len(hosts) != 1 else ''}, "
        f"{len(spec['containers'])} containers, overlay {_e(nets)}; ",
    ]
    if planned:
        parts.append(f"planned at <time id=made>{made}</time></p></header>")
        parts.append(
            '<p class=planned-note id="planned">The stack as configured, before <code>up</code>: '
            "nothing was checked, every element is planned.</p>"
        )
    else:
        when = f"checks made at <time id=checked>{_e(at)}</time>, " if at else ""
        parts.append(f"{when}page made at <time id=made>{made}</time></p></header>")
        lines = diagnose(results)
        parts.append('<section id="diagnosis">')
        if lines:
            parts += [f'<p class="diagnosis">{_e(x)}</p>' for x in lines]
        else:
            parts.append('<p class="healthy">no diagnosis: no layer is broken</p>')
        parts.append("</section>")
        parts.append(f'<p id="summary">{_e(count_line(results, seconds, at))}</p>')
    parts.append('<p class="legend">')
    for st, text in LEGEND:
        parts.append(
            f'<span style="background:{FILL[st]};border-color:{LINE[st]}">{_e(text)}</span>'
        )
    parts.append("<br><small>? : a value the validator does not read. Hover an element for the "
                 "checks about it.</small></p>")  # fmt: skip
    parts.append(f'<figure id="drawing">{drawing}</figure>')
    if not planned:
        where = _drawn_on(pic)
        failed = [r for r in results if not r.ok]
        parts.append(f"<h2>Failed checks ({len(failed)})</h2>")
        if failed:
            parts.append(_table("failed-checks", failed, where))
        else:
            parts.append('<p id="failed-checks">none</p>')
        parts.append(f"<details><summary>All {len(results)} checks</summary>")
        parts.append(_table("all-checks", results, where))
        parts.append("</details>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _drawn_on(pic: Picture) -> dict[int, list[str]]:
    where: dict[int, list[str]] = {}
    for eid, el in pic.elements.items():
        for r in el.checks:
            where.setdefault(id(r), []).append(eid)
    return where
