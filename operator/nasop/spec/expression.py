"""Safe arithmetic over parameter names: the `expression` of a known objective.

An objective that is a known function of the parameters (an MLP's parameter count) can be
stated in the manifest as `784*hidden_size_1 + hidden_size_1*hidden_size_2 + ...`. The text is
parsed with Python's `ast` and every node is checked against a whitelist: numbers, parameter
names, `+ - * / // % **`, unary `+ -`, parentheses and the calls `min(a, b, ...)`,
`max(a, b, ...)`, `abs(a)`. Nothing is ever passed to `eval`: `evaluate` walks the checked tree
itself, so an expression can compute and nothing else.

The same tree evaluates on plain floats (validation, the status) and on anything with the
arithmetic operators, such as torch tensors (the acquisition: `nasop.generators.known`); `min`
and `max` are written with `abs` so that both work without importing torch here.
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_FUNCTIONS = ("min", "max", "abs")
#: longest expression accepted (a size formula is a few hundred characters)
MAX_LENGTH = 2000


def _min2(a: Any, b: Any) -> Any:
    return (a + b - abs(a - b)) / 2


def _max2(a: Any, b: Any) -> Any:
    return (a + b + abs(a - b)) / 2


@dataclass(frozen=True)
class Expression:
    """A checked expression: its text, its tree and the parameter names it uses."""

    text: str
    tree: ast.expr
    names: tuple[str, ...]

    def __call__(self, values: Mapping[str, Any]) -> Any:
        """The expression's value with each name bound to `values[name]` (floats or tensors)."""
        return _eval(self.tree, values)


def parse(text: str) -> Expression:
    """Parse and check `text`; raises ValueError naming the construct that is not allowed.

    Args:
        text: e.g. `784*h1 + h1*h2 + 10*h2`.

    Returns:
        The checked expression (names in order of first use).
    """
    if len(text) > MAX_LENGTH:
        raise ValueError(f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ValueError(
            f"not an arithmetic expression ({e.msg} at column {e.offset}): write numbers, "
            "parameter names, + - * / // % ** and parentheses"
        ) from None
    names: dict[str, None] = {}
    _check(tree, names)
    return Expression(text=text, tree=tree, names=tuple(names))


def _check(node: ast.AST, names: dict[str, None]) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ValueError(f"{ast.unparse(node)} is not a number")
    elif isinstance(node, ast.Name):
        if node.id in _FUNCTIONS:
            raise ValueError(f"{node.id} is a function: call it, e.g. {node.id}(a, b)")
        names.setdefault(node.id)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ValueError(f"operator in {ast.unparse(node)!r} is not allowed")
        _check(node.left, names)
        _check(node.right, names)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise ValueError(f"operator in {ast.unparse(node)!r} is not allowed")
        _check(node.operand, names)
    elif isinstance(node, ast.Call):
        func = node.func.id if isinstance(node.func, ast.Name) else None
        if func not in _FUNCTIONS or node.keywords:
            raise ValueError(
                f"call {ast.unparse(node)!r} is not allowed: only min(...), max(...), abs(...)"
            )
        wanted = "one argument" if func == "abs" else "two or more arguments"
        if (func == "abs") != (len(node.args) == 1) or not node.args:
            raise ValueError(f"{func}() takes {wanted}: {ast.unparse(node)!r}")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise ValueError(f"{ast.unparse(node)!r}: *arguments are not allowed")
            _check(arg, names)
    else:
        raise ValueError(
            f"{ast.unparse(node)!r} is not allowed ({type(node).__name__}): use numbers, "
            "parameter names, + - * / // % **, parentheses, min, max, abs"
        )


def _eval(node: ast.expr, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):  # a float: 10**10**10 overflows, never a huge int
        if not isinstance(node.value, (int, float)):  # parse() let no other constant in
            raise ValueError(f"{ast.unparse(node)} is not a number")
        return float(node.value)
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        args = [_eval(a, values) for a in node.args]
        if node.func.id == "abs":
            return abs(args[0])
        pick = _min2 if node.func.id == "min" else _max2
        out = args[0]
        for a in args[1:]:
            out = pick(out, a)
        return out
    raise ValueError(f"{ast.unparse(node)!r} is not allowed")  # parse() let nothing else in


#: evaluate at most this many points of the space when checking an expression
CHECK_POINTS = 4096


def check_on_space(expr: Expression, candidates: Mapping[str, Sequence[float]]) -> None:
    """Evaluate `expr` on a grid of the space; raise ValueError at the first point where it is
    not a finite real number (a division by zero, a negative number to a fractional power).

    Args:
        expr: a parsed expression.
        candidates: per name, the values to try (bounds and a few between, or every choice);
            the grid is their product, cut to the bounds alone past `CHECK_POINTS` points.
    """
    names = list(expr.names)
    lists = [list(candidates[n]) for n in names]
    if math.prod(len(v) for v in lists) > CHECK_POINTS:
        lists = [[v[0], v[-1]] if len(v) > 1 else v for v in lists]
    points: Iterable[tuple[float, ...]] = itertools.product(*lists)
    for point in points:
        at = dict(zip(names, point))
        where = ", ".join(f"{n}={v:g}" for n, v in at.items()) or "any point"
        try:
            value = expr(at)
        except ZeroDivisionError:
            raise ValueError(
                f"divides by zero at {where}: change the expression or the bounds"
            ) from None
        except OverflowError:
            raise ValueError(f"overflows at {where}: change the expression or the bounds") from None
        if isinstance(value, complex):
            raise ValueError(
                f"is not a real number at {where} (a negative number to a fractional power): "
                "change the expression or the bounds"
            )
        if not math.isfinite(value):
            raise ValueError(
                f"is {value} at {where} (not a finite real number): change the expression "
                "or the bounds"
            )


__all__ = ["CHECK_POINTS", "MAX_LENGTH", "Expression", "check_on_space", "parse"]
