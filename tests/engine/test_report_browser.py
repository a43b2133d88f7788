"""The report in a real headless browser (Debian's `chromium`): plotly.js unpacks, every figure
is drawn with its data, nothing reaches the console as an error, and a screenshot is taken.

A probe is added to a copy of the page: a first script records errors (window.onerror, rejected
promises, console.error), a last one writes what the page drew into `<pre id="probe">` once the
page marks its plots drawn; `chromium --dump-dom` prints the DOM after that.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from typing import Any

import pytest
from test_report_history import history_search

from nasop import report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed "
        "(apt-get install -y chromium) so the page cannot be rendered",
    ),
]

ERRORS = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push("error: " + e.message); });
window.addEventListener("unhandledrejection", function (e) {
  window.__errors.push("rejection: " + e.reason); });
var consoleError = console.error;
console.error = function () {
  window.__errors.push("console: " + Array.prototype.join.call(arguments, " "));
  consoleError.apply(console, arguments);
};
</script>"""

PROBE = """<script>
(function wait(left) {
  var state = document.documentElement.dataset.plots;
  if (!state && left > 0) { setTimeout(function () { wait(left - 1); }, 100); return; }
  var figures = Array.prototype.map.call(document.querySelectorAll(".plotly-graph-div"),
    function (gd) {
      return {id: gd.id, traces: (gd.data || []).length,
              svg: gd.querySelectorAll(".main-svg").length,
              points: gd.querySelectorAll(".point, .bars path").length,
              y: (gd.data || []).map(function (t) { return t.y ? Array.from(t.y) : null; })};
    });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({plots: state || "timeout", errors: window.__errors,
                                    figures: figures});
  document.body.appendChild(pre);
})(200);
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=60000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def _png_size(path: Any) -> tuple[int, int]:
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_renders_in_chromium_without_errors_and_with_every_plot(tmp_path):
    search = history_search(tmp_path / "logs", completed=14)
    page = report.render_html(search)
    probed = page.replace("<head>", "<head>" + ERRORS, 1).replace("</body>", PROBE + "</body>")
    path = tmp_path / "report.html"
    path.write_text(probed, encoding="utf-8")

    dom = _chromium("--dump-dom", path.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, flags=re.DOTALL)
    assert found, dom.stderr[-3000:]
    probe = json.loads(
        found.group(1)
        .replace("&quot;", '"')
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
    )
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
    _chromium(f"--screenshot={shot}", "--window-size=1280,7000", "--hide-scrollbars", path.as_uri())
    assert shot.exists() and _png_size(shot) == (1280, 7000)
    assert shot.stat().st_size > 100_000  # plots, not a blank page
