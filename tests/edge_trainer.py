"""A trial program whose results are bad in a chosen way, for the edge-case tests.

`--plan=nan,ok,fail,inf` picks one behaviour per trial (by NASOP_TRIAL_INDEX, cycling):
`ok` logs finite val_acc at steps 0-2; `nan`/`inf` log finite values, then NaN/inf at step 2
(a run that diverged at its last epoch); `fail` exits 3, its reason the last stderr line. Every
trial
logs num_params; each point is printed as a `NASOP1` line (the trial contract) and written to
real TensorBoard event files (torch's SummaryWriter).
"""

from __future__ import annotations

import json
import os
import sys

from nasop import results


def main(argv: list[str]) -> int:
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    plan = opts.get("plan", "ok").split(",")
    index = int(os.environ["NASOP_TRIAL_INDEX"])
    what = plan[index % len(plan)]
    if what == "fail":
        print(f"edge trainer: trial {index} asked to fail", file=sys.stderr)
        print("edge trainer: out of patience", file=sys.stderr)
        return 3
    params = json.loads(os.environ.get("NASOP_PARAMS", "{}"))
    h1, h2 = float(params.get("hidden_size_1", 32)), float(params.get("hidden_size_2", 32))
    final = 1 - 0.6 / (1 + h1 * h2 / 64) ** 0.5
    last = {"ok": final, "nan": float("nan"), "inf": float("inf")}[what]
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(os.environ["NASOP_LOG_DIR"])
    points = [(0, "num_params", 64 * h1 + h1 * h2 + 10 * h2)]
    points += [(step, "val_acc", v) for step, v in enumerate([final / 2, final * 0.9, last])]
    for seq, (step, name, value) in enumerate(points):
        w.add_scalar(name, value, step)
        print(results.format_point(seq, step, {name: value}), flush=True)
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
