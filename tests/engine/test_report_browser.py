"""The report in a real headless browser (Debian's `chromium`, through tests/browser.py):
plotly.js unpacks, every figure is drawn with its data, nothing reaches the console as an error,
and a screenshot is taken.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from test_report_history import history_search

import browser
from nasop import report

pytestmark = [pytest.mark.slow, browser.NEEDS_CHROMIUM]


def _png_size(path: Any) -> tuple[int, int]:
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_renders_in_chromium_without_errors_and_with_every_plot(tmp_path):
    search = history_search(tmp_path / "logs", completed=14)
    path = tmp_path / "report.html"
    path.write_text(browser.probed(report.render_html(search)), encoding="utf-8")
    probe = browser.draw(path)
    assert probe["plots"] == "ready", probe
    assert probe["errors"] == []
    figures = {f["id"]: f for f in probe["figures"]}
    expected = {
        "plot-tradeoff",
        "plot-hypervolume",
        "plot-curves-0",
        "plot-importance-0",
        "plot-importance-1",
        "plot-cv-0",
        "plot-cv-1",
    }
    assert expected <= set(figures), sorted(figures)
    for fid in expected:
        assert figures[fid]["svg"] >= 1 and figures[fid]["traces"] >= 1, figures[fid]
        assert figures[fid]["points"] >= 1, figures[fid]  # markers or bars were drawn
    # what the browser plotted is the search's data
    hv = [t for t in figures["plot-hypervolume"]["y"] if t][-1]  # the hypervolume line
    assert hv[-1] == pytest.approx(search.front().hypervolume)
    assert len(figures["plot-curves-0"]["y"]) == 14  # a curve per trial

    shot = tmp_path / "report.png"
    browser.chromium(
        f"--screenshot={shot}", "--window-size=1280,7000", "--hide-scrollbars", path.as_uri()
    )
    assert shot.exists() and _png_size(shot) == (1280, 7000)
    assert shot.stat().st_size > 100_000  # plots, not a blank page
