"""The trial contract, version 2: how a trial reports its metrics through Kubernetes itself.

A trial prints one line per logged point on stdout (``NASOP1 {"seq":7,"step":6,"v":{...}}``)
and, at exit, writes its final values to its termination message (the file named by
``NASOP_TERMINATION_LOG``; in a cluster, the container's ``/dev/termination-log``, which only
the kubelet reads back). Stdlib only: the trainer image and the fast trial wrapper import it.
The format is documented in docs/contract.md.
"""

from nasop.results.collector import Collector, LineSplitter
from nasop.results.lines import KATIB, NASOP, PREFIX, format_point
from nasop.results.termination import (
    MAX_MESSAGE_BYTES,
    TERMINATION_ENV,
    decode_final,
    encode_final,
    write_final,
)

__all__ = [
    "KATIB",
    "MAX_MESSAGE_BYTES",
    "NASOP",
    "PREFIX",
    "TERMINATION_ENV",
    "Collector",
    "LineSplitter",
    "decode_final",
    "encode_final",
    "format_point",
    "write_final",
]
