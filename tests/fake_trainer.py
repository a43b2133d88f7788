"""A BoringModel-sized trial program for engine tests: instant, deterministic, contract-true.

It implements the trial contract (DESIGN.md) without training anything: metrics are smooth
functions of the parameters, written as real TensorBoard event files. `--fail` exits non-zero
with one line on stderr; `--sleep` per epoch makes trials long enough to stop or interrupt.
With `NASOP_PACK` it runs the members one after another, each into its own log dir, and records
each one's end there (the packed-trial contract).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time


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
    if opts.pop("fail", None) == "always":
        print("fake trainer: asked to fail", file=sys.stderr)
        return 3
    if os.environ.get("NASOP_PACK"):  # the packed-trial contract: each member as a lone trial
        from nasop import _members

        for member in json.loads(os.environ["NASOP_PACK"]):
            trial(member["params"], member["logDir"], sleep)
            _members.write_end(member["logDir"], _members.COMPLETED)
        return 0
    return trial(params, os.environ["NASOP_LOG_DIR"], sleep)


def trial(params: dict, log_dir: str, sleep: float) -> int:
    h1 = float(params.get("hidden_size_1", 32))
    h2 = float(params.get("hidden_size_2", 32))
    lr = float(params.get("learning_rate", 1e-3))
    epochs = int(params.get("epochs", 3))
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(log_dir)
    num_params = 64 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10
    final = 1 - 0.6 / math.sqrt(1 + h1 * h2 / 64) - 0.05 * abs(math.log10(lr) + 2.5)
    w.add_scalar("num_params", num_params, 0)
    for e in range(epochs):
        w.add_scalar("val_acc", final * (1 - 0.5 ** (e + 1)), e)
        w.flush()
        time.sleep(sleep)
    w.add_scalar("latency_ms", 0.01 * (h1 + h2), 0)
    w.close()
    print(json.dumps({"val_acc": final, "num_params": num_params}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
