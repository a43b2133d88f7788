"""A BoringModel-sized trial program for engine tests: instant, deterministic, contract-true.

It implements the trial contract (docs/contract.md) without training anything: metrics are
smooth functions of the parameters, printed as `NASOP1` lines with the final values in the
termination message, and written as real TensorBoard event files (`--format=tensorboard`: only
those, for the TensorBoard opt-in; `--format=katib`: Katib's `name=value` lines instead).
`--fail` exits non-zero with one line on stderr; `--tensorboard=off` writes no TensorBoard files
(no torch import: a trial starts at once); `--sleep` per epoch makes trials long enough to
stop or interrupt. With `NASOP_PACK` it runs the members one after another, each into its own
log dir, and records
each one's end there (the packed-trial contract).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from nasop import results

TENSORBOARD = True  # --tensorboard=off: the nasop contract only, no TensorBoard files


def main(argv: list[str]) -> int:
    # a trial forked by `nasop run --preload torch...` starts with torch imported (e2e checks it)
    print(f"fake trainer: torch imported at start: {'torch' in sys.modules}", file=sys.stderr)
    params = json.loads(os.environ.get("NASOP_PARAMS", "{}"))
    opts = {}
    for a in argv:
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            opts[k] = v
    sleep = float(opts.pop("sleep", "0"))
    fmt = opts.pop("format", "nasop")
    global TENSORBOARD
    TENSORBOARD = opts.pop("tensorboard", "on") != "off"
    if opts.pop("fail", None) == "always":
        print("fake trainer: asked to fail", file=sys.stderr)
        return 3
    if os.environ.get("NASOP_PACK"):  # the packed-trial contract: each member as a lone trial
        from nasop.local import member_files

        ends = {}
        for member in json.loads(os.environ["NASOP_PACK"]):
            index = int(member["trial"])
            seq = iter(range(10**6))
            finals = trial(member["params"], member["logDir"], sleep, fmt, index, seq)
            member_files.write_end(member["logDir"], member_files.COMPLETED)
            print(results.lines.format_end(next(seq), index, "completed"), flush=True)
            ends[index] = {"state": "completed", "final": finals}
        results.write_final(results.encode_final({}, ends))
        return 0
    finals = trial(params, os.environ["NASOP_LOG_DIR"], sleep, fmt)
    if fmt == "nasop":
        results.write_final(results.encode_final(finals))
    return 0


def trial(
    params: dict,
    log_dir: str,
    sleep: float,
    fmt: str = "nasop",
    member: int | None = None,
    seq: Iterator[int] | None = None,
) -> dict[str, tuple[int, float]]:
    """Reports one trial's points; returns its final values."""
    finals: dict[str, tuple[int, float]] = {}
    seq = seq or iter(range(10**6))

    def report(step: int, name: str, value: float) -> None:
        finals[name] = (step, value)
        w.add_scalar(name, value, step)
        w.flush()
        if fmt == "nasop":
            line = results.format_point(next(seq), step, {name: value}, member)
            print(line, flush=True)
        elif fmt == "katib":
            print(f"epoch {step}: {name}={value}", flush=True)

    h1 = float(params.get("hidden_size_1", 32))
    h2 = float(params.get("hidden_size_2", 32))
    lr = float(params.get("learning_rate", 1e-3))
    epochs = int(params.get("epochs", 3))
    if TENSORBOARD:
        from torch.utils.tensorboard import SummaryWriter

        w: Any = SummaryWriter(log_dir)
    else:  # --tensorboard=off: no torch import, a trial starts in a fraction of a second
        w = _NoWriter()
    num_params = 64 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10
    final = 1 - 0.6 / math.sqrt(1 + h1 * h2 / 64) - 0.05 * abs(math.log10(lr) + 2.5)
    report(0, "num_params", num_params)
    for e in range(epochs):
        report(e, "val_acc", final * (1 - 0.5 ** (e + 1)))
        time.sleep(sleep)
    report(0, "latency_ms", 0.01 * (h1 + h2))
    w.close()
    print(json.dumps({"val_acc": final, "num_params": num_params}))
    return finals


class _NoWriter:
    def add_scalar(self, *_: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
