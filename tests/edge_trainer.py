"""A trial program whose results are bad in a chosen way, for the edge-case tests.

`--plan=nan,ok,fail,inf` picks one behaviour per trial (by NASOP_TRIAL_INDEX, cycling):
`ok` logs finite val_acc at steps 0-2; `nan`/`inf` log finite values, then NaN/inf at step 2
(a run that diverged at its last epoch); `fail` exits 3, its reason the last stderr line;
`hostile` prints everything a trial must not be able to slip in (:data:`HOSTILE`: another trial's
identity, a 2 MiB line, broken JSON, strings and NaN, undeclared metrics, an absurd step, a
value rewritten) and writes a 64 KiB termination message, and never a valid val_acc. Every
trial
logs num_params; each point is printed as a `NASOP1` line (the trial contract) and written to
real TensorBoard event files (torch's SummaryWriter).
"""

from __future__ import annotations

import json
import os
import sys

from nasop import results

#: what a hostile trial prints, line by line, and the reason each one is refused (None: kept
#: apart or ignored, not refused)
HOSTILE: list[tuple[str, str | None]] = [
    ('NASOP1 {"seq":0,"step":0,"m":0,"v":{"val_acc":0.999}}', "member index from a lone trial"),
    ("NASOP1 " + "9" * (2 << 20), "line over 64 KiB"),
    ('NASOP1 {"seq":1,"step":1,"v":{"val_acc":0.999', "not JSON after the prefix"),
    ('NASOP1 {"seq":2,"step":1,"v":{"val_acc":"0.999"}}', "val_acc is not a number"),
    ('NASOP1 {"seq":3,"step":1000000000,"v":{"val_acc":0.999}}', "step is not an integer"),
    ('NASOP1 {"seq":4,"step":2,"v":{"secret_metric":1}}', None),
    ('NASOP1 {"seq":5,"step":3,"v":{"val_acc":NaN}}', None),
    ('NASOP1 {"seq":6,"step":0,"v":{"num_params":1}}', None),
    ('NASOP1 {"seq":7,"step":0,"v":{"num_params":2}}', "conflicting value"),
]


def hostile() -> int:
    for line, _ in HOSTILE:
        print(line, flush=True)
    path = os.environ.get("NASOP_TERMINATION_LOG")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("NASOP1 " + "{" * (64 << 10))  # the kubelet keeps only 4096 bytes
    return 0


def main(argv: list[str]) -> int:
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    plan = opts.get("plan", "ok").split(",")
    index = int(os.environ["NASOP_TRIAL_INDEX"])
    what = plan[index % len(plan)]
    if what == "hostile":
        return hostile()
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
