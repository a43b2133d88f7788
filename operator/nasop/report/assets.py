"""plotly.js for the report page, packed: gzip-compressed, base64-encoded, unpacked by the browser.

Why: plotly.js is nearly all of a report's bytes; the figures and the trial table of a search of
a few dozen trials are small beside it (the page states its own numbers at its end, from
:func:`size_note`). The page must stay one file that opens without network access, so plotly.js
cannot be fetched from a CDN; gzip shrinks it to about a third. The browser unpacks it with
`DecompressionStream` (Chromium 80, Firefox 113, Safari 16.4 and later) and then draws the
figures: until then `Plotly.newPlot` calls are queued by a small stand-in. If the browser cannot
unpack it, a note at the top of the page says so.

`<html data-plots="ready">` marks a page whose plots are drawn (tests and scripts can wait on it).
"""

from __future__ import annotations

import base64
import functools
import gzip

_SHIM = """
window.__nasopQueue = [];
window.Plotly = {newPlot: function () { window.__nasopQueue.push(arguments); }};
"""

_LOADER = """
(async function () {
  var packed = document.getElementById("plotlyjs-gz").textContent.trim();
  var bytes = Uint8Array.from(atob(packed), function (c) { return c.charCodeAt(0); });
  var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  var script = document.createElement("script");
  script.textContent = await new Response(stream).text();
  document.head.appendChild(script);
  var queued = window.__nasopQueue;
  window.__nasopQueue = [];
  await Promise.all(queued.map(function (args) {
    return window.Plotly.newPlot.apply(window.Plotly, args);
  }));
  document.documentElement.dataset.plots = "ready";
})().catch(function (err) {
  document.documentElement.dataset.plots = "failed";
  var note = document.createElement("p");
  note.className = "note";
  note.textContent = "The plots could not be drawn: this browser could not unpack plotly.js ("
    + err + "). Open the report in a current Chrome, Firefox, Edge or Safari.";
  document.body.insertBefore(note, document.body.firstChild);
});
"""


@functools.lru_cache(maxsize=1)
def packed_plotlyjs() -> tuple[str, int]:
    """plotly.js as base64 of its gzip, and its unpacked size in bytes."""
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs().encode("utf-8")
    return base64.b64encode(gzip.compress(js, compresslevel=9, mtime=0)).decode("ascii"), len(js)


def head_scripts() -> str:
    """The `<head>` scripts: the queueing stand-in for Plotly and the packed plotly.js."""
    packed, _ = packed_plotlyjs()
    return (
        f"<script>{_SHIM}</script>"
        f'<script id="plotlyjs-gz" type="application/octet-stream">{packed}</script>'
    )


def body_end_script() -> str:
    """Unpacks plotly.js and draws the queued figures; goes after every figure's `<div>`."""
    return f"<script>{_LOADER}</script>"


def size_note(page_bytes: int) -> str:
    """One sentence stating the page's size and what it is made of."""
    packed, unpacked = packed_plotlyjs()
    rest = page_bytes - len(packed)
    return (
        f"This page is {_mb(page_bytes)}: plotly.js takes {_mb(len(packed))} "
        f"({_mb(unpacked)} unpacked; stored compressed so that the page needs no network), "
        f"the figures and tables {_mb(rest)}."
    )


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


__all__ = ["body_end_script", "head_scripts", "packed_plotlyjs", "size_note"]
