"""nasop: Kubernetes-native multi-objective neural architecture search.

Layers (enforced by `.importlinter`): `controller`/`cli` -> `engine` -> `trials`, `state` -> `spec`.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
