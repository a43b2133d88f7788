"""The search engine: spec -> Ax experiment and generation strategy, the non-blocking tick, the
Pareto front. Knows nothing of kopf or Kubernetes clients.

Import the modules themselves (`from nasop.engine import search`): the package imports nothing,
so the pure parts (state, phases, pareto, conditions) load without Ax.
"""
