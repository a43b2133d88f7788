"""nasop_trainer: the trial program that nasop launches for each architecture it tries.

It trains the "Multi-Objective NAS with Ax" tutorial's MLP with PyTorch Lightning and implements
the trial contract (parameters as ``--<name>=<value>`` flags or ``NASOP_PARAMS``, TensorBoard
scalars in ``NASOP_LOG_DIR``). It never imports Ax or nasop: the trainer image carries neither.

Importing this package is cheap; torch and Lightning load only when training starts.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
