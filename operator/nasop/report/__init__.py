"""`nasop report`: one self-contained HTML page per search (page.py), the views of how the search
got there (history.py) and the inlined plotly.js that lets the page open offline (assets.py)."""

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
