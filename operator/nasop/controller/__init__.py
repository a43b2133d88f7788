"""The Kubernetes operator: kopf handlers (thin) over plain functions that drive the engine.

Only this package imports kopf. It never imports Ax: it talks to `engine.search.Search`.
"""

__all__ = ["driver", "handlers", "kube", "main", "metrics", "settings", "status_writer"]
