"""`nasop status` / `nasop run`'s Pareto-front table: full column names at 80 columns (the
table turns to one column per trial, split as needed), one row per trial when it is wider."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from nasop import spec
from nasop.local import progress
from stubs import manifest

SPEC = spec.parse_manifest(manifest("table")).spec
NAMES = [
    "val_acc (max)",
    "num_params (min)",
    "hidden_size_1",
    "hidden_size_2",
    "learning_rate",
    "dropout",
    "batch_size",
    "epochs",
]


def _status(points: int) -> spec.NASExperimentStatus:
    front = [
        spec.ParetoPoint(
            trial=3 * i,
            parameters={
                "hidden_size_1": 16 + i,
                "hidden_size_2": 100 + i,
                "learning_rate": 0.00012345 * (i + 1),
                "epochs": 3,
                "dropout": 0.25,
                "batch_size": 64,
            },
            metrics={"val_acc": 0.9 + i / 1000, "num_params": 41234.0 + i},
        )
        for i in range(points)
    ]
    return spec.NASExperimentStatus(
        phase=spec.Phase.SUCCEEDED,
        pareto_front=front,
        pareto_size=points,
        hypervolume=12.5,
        objective_thresholds={"val_acc": 0.5, "num_params": 2e4},
    )


def _render(width: int, points: int) -> list[str]:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    progress.print_front(_status(points), SPEC, console)
    return console.file.getvalue().splitlines()


@pytest.mark.parametrize("points", [1, 4, 12])
def test_80_columns_keep_every_name_and_value(points):
    lines = _render(80, points)
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text
    for name in NAMES:
        assert sum(name in line for line in lines) >= 1, name
    for i in range(points):
        assert f"#{3 * i}" in text  # each trial is a column
        assert f"{41234 + i}" in text and f"{100 + i}" in text
    # one row per name in each of the tables the trials need
    tables = text.count("Pareto front (continued)") + 1
    assert all(text.count(f"│ {n} ") == tables for n in ("dropout", "epochs"))
    assert (tables > 1) == (points > 5)


def test_160_columns_use_the_width_one_row_per_trial():
    lines = _render(160, 12)
    header = next(line for line in lines if "trial" in line and "learning_rate" in line)
    assert all(name in header for name in NAMES)  # all names on one header line
    assert max(len(line) for line in lines) <= 160
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 12
    assert rows[0].split("│")[1].strip() == "0" and "41234" in rows[0]
