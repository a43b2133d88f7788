"""`nasop report`: one self-contained HTML page per search (page.py), the views of how the search
got there (history.py), the inlined plotly.js that lets the page open offline (assets.py), and a
cluster experiment read from the cluster, read-only (cluster.py).

The page's names are re-exported lazily: `nasop.report.cluster` answers "not found" or
"forbidden" without importing Ax and plotly first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nasop.report.page import (
        cross_validation,
        fitted_model,
        importance,
        render_html,
        splom_figure,
        tradeoff_figure,
        trial_table,
        write_report,
    )

__all__ = [
    "cross_validation",
    "fitted_model",
    "importance",
    "render_html",
    "splom_figure",
    "tradeoff_figure",
    "trial_table",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nasop.report import page

        return getattr(page, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
