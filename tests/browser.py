"""The HTML report in a real headless browser (Debian's `chromium`), shared by the report tests.

A probe is added to a copy of the page: a first script records errors (window.onerror, rejected
promises, console.error), a last one writes what the page drew into `<pre id="probe">` once the
page marks its plots drawn; `chromium --dump-dom` prints the DOM after that, and `draw` returns
the probe's JSON: {plots: "ready" | "timeout", errors: [...], figures: [{id, traces, svg,
points, names, y}]}.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: `pytestmark` entry of a module whose tests need the browser
NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed "
    "(apt-get install -y chromium) so the page cannot be rendered",
)

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
              names: (gd.data || []).map(function (t) { return t.name || null; }),
              y: (gd.data || []).map(function (t) { return t.y ? Array.from(t.y) : null; })};
    });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({plots: state || "timeout", errors: window.__errors,
                                    figures: figures});
  document.body.appendChild(pre);
})(200);
</script>"""


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
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


def probed(page: str) -> str:
    """The page with the error recorder first and the probe last."""
    return page.replace("<head>", "<head>" + ERRORS, 1).replace("</body>", PROBE + "</body>")


def draw(path: pathlib.Path) -> dict:
    """Open the probed page at `path` in chromium; what it drew (the probe's JSON)."""
    dom = chromium("--dump-dom", path.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, flags=re.DOTALL)
    assert found, dom.stderr[-3000:]
    return dict(
        json.loads(
            found.group(1)
            .replace("&quot;", '"')
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
        )
    )
