"""A BoringModel-sized trial program for engine tests: instant, deterministic, contract-true.

It implements the trial contract (docs/contract.md) without training anything: metrics are
smooth functions of the parameters, printed as `NASOP1` lines with the final values in the
termination message, and written as real TensorBoard event files (`--format=tensorboard`: only
those, for the TensorBoard opt-in; `--format=katib`: Katib's `name=value` lines instead).
`--fail` exits non-zero with one line on stderr; `--tensorboard=off` writes no TensorBoard files
(no torch import: a trial starts at once); `--sleep` per epoch makes trials long enough to
stop or interrupt. Under torchrun (`WORLD_SIZE` > 1, a distributed trial) every rank joins one
gloo process group and all-reduces its rank + 1 (each logs the sum on stderr: the ranks met),
`--fail-rank=R` makes rank R exit 3 after that, and only rank 0 reports.
With `NASOP_PACK` it runs the members one after another, each into its own
log dir, and records
each one's end there (the packed-trial contract).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
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
    fail_rank = opts.pop("fail-rank", None)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _rank_zero_after_meeting(fail_rank):
        return 3 if fail_rank is not None and int(fail_rank) == _rank() else 0
    if opts.pop("fail", None) == "always":
        print("fake trainer: asked to fail", file=sys.stderr)
        return 3
    if os.environ.get("NASOP_PACK"):  # the packed-trial contract: each member as a lone trial
        from nasop.local import member_files

        ends = {}
        for member in json.loads(os.environ["NASOP_PACK"]):
            index = int(member["trial"])
            seq = iter(range(10**6))
            asked: list[str | None] = [None]

            def stop(log_dir: str = member["logDir"], index: int = index, asked=asked) -> bool:
                asked[0] = member_files.stop_reason(log_dir, index)
                return asked[0] is not None

            finals = trial(member["params"], member["logDir"], sleep, fmt, index, seq, stop)
            state = member_files.STOPPED if asked[0] is not None else member_files.COMPLETED
            member_files.write_end(member["logDir"], state, asked[0] or "")
            print(results.lines.format_end(next(seq), index, state, asked[0] or ""), flush=True)
            ends[index] = {"state": state, "reason": asked[0] or "", "final": finals}
        results.write_final(results.encode_final({}, ends))
        return 0
    finals = trial(params, os.environ["NASOP_LOG_DIR"], sleep, fmt)
    if fmt == "nasop":
        results.write_final(results.encode_final(finals))
    return 0


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _rank_zero_after_meeting(fail_rank: str | None) -> bool:
    """Joins the trial's process group; True on the one rank that reports (and does not fail)."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    total = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(total)
    world = dist.get_world_size()
    print(f"fake trainer: rank {_rank()}/{world} allreduce={total.item():g}", file=sys.stderr)
    dist.destroy_process_group()
    if fail_rank is not None and int(fail_rank) == _rank():
        print(f"fake trainer: rank {_rank()} asked to fail", file=sys.stderr, flush=True)
        return False
    return _rank() == 0


def trial(
    params: dict,
    log_dir: str,
    sleep: float,
    fmt: str = "nasop",
    member: int | None = None,
    seq: Iterator[int] | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, tuple[int, float]]:
    """Reports one trial's points; returns its final values. A pack member asked to `stop`
    ends after the epoch it is in."""
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
        if stop is not None and stop():
            w.close()
            return finals
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
