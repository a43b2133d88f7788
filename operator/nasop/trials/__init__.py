"""Launching trials and reading their metrics: TorchX runners and TensorBoard metrics for Ax.

Only this package (and the ConfigMap store) imports TorchX or Kubernetes clients.
"""

from nasop.trials import appdef, metric, registry, runner

__all__ = ["appdef", "metric", "registry", "runner"]
