"""The search engine: spec -> Ax experiment and generation strategy, the non-blocking tick, the
Pareto front. Knows nothing of kopf or Kubernetes clients.
"""

from nasop.engine import experiment, pareto, search, status, strategy

__all__ = ["experiment", "pareto", "search", "status", "strategy"]
