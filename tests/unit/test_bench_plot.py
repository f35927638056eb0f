"""The benchmark's plot from synthetic result rows (no lab): a PNG of the size it draws."""

from __future__ import annotations

import struct
from pathlib import Path


def test_bench_plot_is_a_png(tmp_path: Path) -> None:
    from bench.bench_lab import Round, Size, machine, plot

    sizes = []
    for n, up in ((2, 8.6), (4, 13.0), (8, 31.6)):
        s = Size(n)
        for i in (1, 2, 3):
            s.rounds.append(Round("script", i, up=up * 0.75, down=3.5 + n))
            s.rounds.append(Round("program", i, up=up, down=3.4 + n, why="" if i < 3 else "x"))
        sizes.append(s)
    out = tmp_path / "bench.png"
    plot(sizes, out, "2026-12-02 01:10 UTC", machine())
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (1000, 440)
