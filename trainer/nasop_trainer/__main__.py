"""``python -m nasop_trainer`` / ``nasop-trainer``: run one trial, print its result as JSON.

With ``NASOP_PACK`` set it runs a pack of trials instead (``pack.py``) and prints
``{"pack": {TRIAL: result}}``; each member's end is also recorded in its own log dir.

Expected failures (bad flags or values, missing data) print one line on stderr and exit with
the error's code (2 or 3), so the operator records a readable reason; stdout's last line is the
result ``{"val_acc": ..., "num_params": ..., "latency_ms": ...}`` on success.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from nasop_trainer import cli, errors


def main(argv: Sequence[str] | None = None) -> int:
    """Parses, trains and reports; returns the process exit code."""
    try:
        config = cli.parse(argv)
        raw_pack = os.environ.get("NASOP_PACK", "").strip()
        if raw_pack:
            from nasop_trainer import pack  # torch loads only for a valid request

            result: dict = {"pack": pack.run(config, pack.parse_members(raw_pack))}
        else:
            from nasop_trainer import train  # torch and Lightning load only for a valid request

            result = train.train(config)
    except errors.TrainerError as exc:
        print(f"nasop-trainer: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    if os.environ.get("RANK", "0") == "0":  # a data-parallel trial's other ranks stay quiet
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
