"""nasop.formatting.number: the one way a value is shown to a person."""

from __future__ import annotations

import pytest

from nasop import formatting


@pytest.mark.parametrize(
    ("value", "digits", "shown"),
    [
        (80000.0, 4, "80000"),  # a parameter count stays whole, not 8e+04
        (0.912345, 4, "0.9123"),
        (0.912345, 6, "0.912345"),
        (1561.234, 4, "1561"),
        (1.5e-05, 4, "1.5e-05"),
        (3e12, 4, "3e+12"),  # too large to be a count: scientific
        (64, 4, "64"),
        ("relu", 4, "relu"),
        ("", 4, ""),
    ],
)
def test_number(value: object, digits: int, shown: str) -> None:
    assert formatting.number(value, digits) == shown
